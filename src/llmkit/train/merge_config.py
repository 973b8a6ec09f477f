"""``MergeConfig``: a model merge, read from mergekit's YAML format.

The same file drives ``llmkit merge config.yaml -o OUT`` and ``mergekit-yaml config.yaml OUT``
for the methods llmkit implements (``train/merge.py``)::

    merge_method: ties            # linear | slerp | task_arithmetic | ties | dare_linear | dare_ties
    base_model: ./base            # required by every method but linear
    models:
      - model: ./math-ft
        parameters: {weight: 0.6, density: 0.5}
      - model: ./code-ft
        parameters: {weight: 0.4, density: 0.7}
    parameters: {normalize: true, lambda: 1.0}   # shared; weight/density here are defaults per model
    dtype: bfloat16

Models are local transformers folders holding ``*.safetensors`` (one file or shards). Relative paths
are relative to the working directory, as in mergekit. Hub ids are not downloaded.

What differs from mergekit, on purpose:

- Parameters are scalars. mergekit's gradient lists (``weight: [0, 0.5, 1]``, one value per layer)
  and per-tensor filters (``- filter: self_attn``) raise a "not supported" ConfigError, as do
  ``slices:``/``modules:`` (frankenmerges) and ``tokenizer_source: union``.
- Arithmetic is float32 (float64 for float64 inputs) whatever ``dtype`` says; ``dtype`` (or
  ``out_dtype``) is the dtype written. mergekit computes the task-arithmetic family in ``dtype``,
  so bfloat16 merges differ from it by bfloat16 rounding; float32 merges agree to float rounding.
- DARE rescales kept entries by 1/density, as in the paper (Yu et al. 2023); mergekit's
  ``rescale: true`` matches the L1 norm instead, equal in expectation. Its random mask comes from a
  generator seeded by ``seed``, the tensor's name and the model's position, so a merge repeats
  exactly and does not depend on tensor order.
- ``int8_mask`` is accepted and ignored: in mergekit it only stores the sign mask in int8 to save
  memory; the result is the same.
- A parameter the method does not use (``t`` for ties, ``density`` for linear…) is an error, not
  silently dropped.

Example:
    >>> cfg = MergeConfig.from_yaml("merge.yaml")
    >>> cfg = MergeConfig(merge_method="slerp", base_model="a", models=[{"model": "b"}], parameters={"t": 0.3})
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.errors import ConfigError

MERGE_METHODS = ("linear", "slerp", "task_arithmetic", "ties", "dare_linear", "dare_ties")
TASK_METHODS = ("task_arithmetic", "ties", "dare_linear", "dare_ties")  # base + weighted task vectors
#: mergekit methods llmkit does not implement: named in the error so the user knows where to go.
MERGEKIT_ONLY = ("passthrough", "model_stock", "della", "della_linear", "breadcrumbs", "breadcrumbs_ties", "nuslerp",
                 "multislerp", "karcher", "sce", "nearswap", "arcee_fusion", "ram", "ramplus_tl")
#: which parameters each method reads (mergekit's names); anything else given is an error.
METHOD_PARAMETERS = {
    "linear": ("weight", "normalize"),
    "slerp": ("t",),
    "task_arithmetic": ("weight", "normalize", "lambda", "int8_mask"),
    "ties": ("weight", "density", "normalize", "lambda", "int8_mask"),
    "dare_linear": ("weight", "density", "normalize", "lambda", "int8_mask", "rescale"),
    "dare_ties": ("weight", "density", "normalize", "lambda", "int8_mask", "rescale"),
}
#: mergekit's defaults for ``normalize`` (divide by the sum of weights) per method.
NORMALIZE_DEFAULT = {"linear": True, "ties": True}
Dtype = Literal["float32", "float16", "bfloat16"]


def _scalar(value: Any) -> Any:
    """Reject mergekit's non-scalar parameter forms with a message that says so."""
    if isinstance(value, list):
        raise ValueError("gradient lists (one value per layer) are not supported by llmkit; give one number")
    if isinstance(value, dict):
        raise ValueError("per-tensor filters ({filter: ..., value: ...}) are not supported by llmkit; give one number")
    return value


class ModelParameters(BaseModel):
    """Per-model parameters (``models[i].parameters``)."""

    model_config = ConfigDict(extra="forbid")

    weight: float | None = Field(None, description="this model's weight: its share in linear, the scale of its task "
                                                   "vector (θ − base) in task_arithmetic/ties/dare")
    density: float | None = Field(None, gt=0, le=1, description="ties/dare: fraction of the task vector kept (ties: the "
                                                                "largest magnitudes; dare: a random subset); default 1")

    @field_validator("*", mode="before")
    @classmethod
    def _scalars(cls, v: Any) -> Any:
        return _scalar(v)


class MergeParameters(ModelParameters):
    """Top-level ``parameters:``: shared settings, plus defaults for per-model weight/density."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    t: float | None = Field(None, ge=0, le=1, description="slerp: interpolation from base_model (0) to the other model (1)")
    normalize: bool | None = Field(None, description="divide the weighted sum by the sum of weights (ties: of the weights "
                                                     "whose sign agrees); default true for linear and ties, else false")
    lambda_: float | None = Field(None, alias="lambda", description="task methods: scale of the merged task vector "
                                                                   "(base + λ·Σ wᵢ δᵢ); default 1")
    int8_mask: bool | None = Field(None, description="accepted for mergekit compatibility and ignored: it only changes "
                                                     "mergekit's mask storage, not the result")
    rescale: bool | None = Field(None, description="dare: divide kept entries by density so the task vector keeps its "
                                                   "expected value (the paper's DARE); default true")


class ModelSpec(BaseModel):
    """One entry of ``models:``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="a local transformers folder with *.safetensors (one file or shards)")
    parameters: ModelParameters = Field(default_factory=ModelParameters, description="weight and density for this model")


class MergeConfig(BaseModel):
    """A merge in mergekit's YAML schema (the scalar subset; see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    merge_method: Literal["linear", "slerp", "task_arithmetic", "ties", "dare_linear", "dare_ties"] = Field(
        ..., description="linear (Wortsman et al. 2022), slerp, task_arithmetic (Ilharco et al. 2023), ties (Yadav "
                         "et al. 2023), dare_linear or dare_ties (Yu et al. 2023)")
    base_model: str | None = Field(None, description="the model task vectors are taken from (required except for linear); "
                                                     "slerp's t=0 end; the default source of config.json and tokenizer")
    models: list[ModelSpec] = Field(..., min_length=1, description="the models to merge, each with its parameters")
    parameters: MergeParameters = Field(default_factory=MergeParameters, description="shared parameters and per-model defaults")
    dtype: Dtype | None = Field(None, description="dtype of the merged weights (arithmetic is float32); default: the "
                                                  "base model's")
    out_dtype: Dtype | None = Field(None, description="mergekit's output dtype; overrides dtype when both are given")
    tokenizer_source: str | None = Field(None, description="'base' or a model folder to copy the tokenizer from "
                                                           "(default: base_model, else the first model)")
    seed: int = Field(0, description="llmkit extension: seeds DARE's random drop masks (same seed, same merge)")

    @field_validator("merge_method", mode="before")
    @classmethod
    def _known_method(cls, v: Any) -> Any:
        if v in MERGEKIT_ONLY:
            raise ValueError(f"mergekit's {v!r} is not implemented by llmkit (use mergekit for it); llmkit merges with "
                             + ", ".join(MERGE_METHODS))
        if v not in MERGE_METHODS:
            raise ValueError(f"unknown merge_method {v!r}; accepted: {', '.join(MERGE_METHODS)}")
        return v

    @field_validator("tokenizer_source")
    @classmethod
    def _tokenizer_source(cls, v: str | None) -> str | None:
        if v == "union":
            raise ValueError("tokenizer_source 'union' (merging vocabularies) is not supported; give 'base' or a model folder")
        return v

    @model_validator(mode="after")
    def _check(self) -> MergeConfig:
        method = self.merge_method
        used = METHOD_PARAMETERS[method]
        for where, params in [("parameters", self.parameters)] + [(f"models[{i}].parameters ({m.model})", m.parameters)
                                                                    for i, m in enumerate(self.models)]:
            for name in params.model_fields_set:
                key = "lambda" if name == "lambda_" else name
                if key not in used:
                    raise ValueError(f"{where}: {method} does not use {key!r}; it takes {', '.join(used)}")
        keys = [_key(m.model) for m in self.models]
        dupes = {m.model for m, k in zip(self.models, keys) if keys.count(k) > 1}
        if dupes:
            raise ValueError(f"model {min(dupes)!r} is listed twice under models")
        if method != "linear" and not self.base_model:
            raise ValueError(f"{method} needs base_model (the model the others are merged onto)")
        inputs = self.inputs()
        if method == "slerp":
            if len(inputs) != 2:
                raise ValueError(f"slerp interpolates exactly two models (base_model and one other); got {len(inputs)}: "
                                 + ", ".join(m.model for m in inputs))
            if self.parameters.t is None:
                raise ValueError("slerp needs parameters.t (0 = base_model, 1 = the other model)")
        for m in inputs:
            is_base = self.base_model is not None and _key(m.model) == _key(self.base_model)
            needs_weight = method == "linear" or (method in TASK_METHODS and not is_base)
            if needs_weight and self.param(m, "weight") is None:
                hint = (" (base_model is merged as an input in linear: list it under models with a weight, or drop "
                        "base_model and use tokenizer_source)" if is_base else "")
                raise ValueError(f"model {m.model!r} has no weight: set models[].parameters.weight or a default "
                                 f"parameters.weight{hint}")
        if method in TASK_METHODS and len(inputs) < 2:
            raise ValueError(f"{method} needs at least one model besides base_model")
        return self

    # --- reading the resolved config -------------------------------------------------------
    def inputs(self) -> list[ModelSpec]:
        """Every model merged, in order: ``models`` plus ``base_model`` at the end when not listed (as mergekit)."""
        out = list(self.models)
        if self.base_model and _key(self.base_model) not in {_key(m.model) for m in self.models}:
            out.append(ModelSpec(model=self.base_model))
        return out

    def is_base(self, spec: ModelSpec) -> bool:
        """Whether ``spec`` is the base model."""
        return self.base_model is not None and _key(spec.model) == _key(self.base_model)

    def param(self, spec: ModelSpec, name: str, default: Any = None) -> Any:
        """A per-model parameter: the model's own value, else the top-level one, else ``default``."""
        own = getattr(spec.parameters, name)
        if own is not None:
            return own
        shared = getattr(self.parameters, name)
        return default if shared is None else shared

    def normalize(self) -> bool:
        """``parameters.normalize`` with mergekit's per-method default."""
        n = self.parameters.normalize
        return NORMALIZE_DEFAULT.get(self.merge_method, False) if n is None else n

    def output_dtype(self) -> str | None:
        """The dtype written: out_dtype, else dtype, else None (each tensor keeps the base model's dtype)."""
        return self.out_dtype or self.dtype

    def tokenizer_folder(self) -> str:
        """The folder the tokenizer files are copied from."""
        if self.tokenizer_source and self.tokenizer_source != "base":
            return self.tokenizer_source
        return self.base_model or self.models[0].model

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "merge config") -> MergeConfig:
        """Validate a parsed mapping; any problem is a one-line ConfigError naming the key and value."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a mapping (merge_method:, models:, …), not {type(data).__name__}")
        for key, why in (("slices", "layer slices (frankenmerges) are not supported; merge whole models with models:"),
                         ("modules", "per-module definitions are not supported; merge whole models with models:"),
                         ("tokenizer", "the tokenizer: block (vocabulary surgery) is not supported; use tokenizer_source")):
            if key in data:
                raise ConfigError(f"{source}: {key!r}: {why}")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(_one_line(e, source)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> MergeConfig:
        """Read a mergekit-style YAML file.

        Example:
            >>> MergeConfig.from_yaml("ties.yaml").merge_method
            'ties'
        """
        import yaml

        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"merge config {str(p)!r} does not exist; pass a YAML file (merge_method:, models:, …)")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"merge config {str(p)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
        return cls.from_dict(data, source=str(p))


def _key(path: str) -> str:
    """A comparable form of a model path (``./a`` and ``a/`` are the same model)."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


_ACCEPTED = {(): MergeConfig, ("models", int): ModelSpec, ("models", int, "parameters"): ModelParameters,
             ("parameters",): MergeParameters}


def _one_line(e: ValidationError, source: str) -> str:
    """The first validation error as ``source: key=value is invalid: why`` (unknown keys list the accepted ones)."""
    err = e.errors()[0]
    loc = tuple(err["loc"])
    where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        shape = tuple(int if isinstance(p, int) else p for p in loc[:-1])
        cls = _ACCEPTED.get(shape)
        names = [f.alias or n for n, f in cls.model_fields.items()] if cls else []
        accepted = f"; accepted: {', '.join(names)}" if names else ""
        return f"{source}: unknown key {where!r}{accepted}"
    if not loc:
        return f"{source}: {msg}"
    if err["type"] == "missing":
        return f"{source}: {where!r} is required"
    return f"{source}: {where}={err.get('input')!r} is invalid: {msg}"


__all__ = ["MergeConfig", "ModelSpec", "ModelParameters", "MergeParameters", "MERGE_METHODS"]
