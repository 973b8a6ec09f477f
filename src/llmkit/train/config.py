"""``TrainConfig``: what every trainer shares — the model, the data, the optimiser, the loop,
the adapter. Each method's config (``sft_config.py``, ``dpo_config.py``, …) subclasses it and adds
its own knobs. The CLI flags (``llmkit train sft --help``) and YAML recipes
(``llmkit train sft --config recipe.yaml --lr 1e-4``) are derived from these classes; there is no
second list of options.

Example:
    >>> from llmkit.train import SFTConfig
    >>> cfg = SFTConfig(data="chat.jsonl", peft="lora", lora_r=8, epochs=3)
    >>> cfg = SFTConfig.from_yaml("recipe.yaml", lr=1e-4)   # flags override the recipe
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.errors import ConfigError

PEFT_METHODS = ("none", "lora", "dora", "qlora", "prompt", "prefix")


class TrainConfig(BaseModel):
    """Shared by every trainer. Field names follow transformers' ``TrainingArguments`` where one exists."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # --- what to train, on what ------------------------------------------------------------
    model: str = Field("smollm2", description="model to train: 'smollm2' (the embedded SmolLM2-135M-Instruct) or a "
                                              "transformers folder; 'hf:' prefixes are accepted", json_schema_extra={"short": "-m"})
    data: str = Field("", description="training data: a .jsonl or .json file (see `llmkit.train.data` for the row formats)",
                      json_schema_extra={"short": "-d"})
    eval_data: str | None = Field(None, description="validation data file; default: hold out --val-split of --data")
    val_split: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of --data held out for validation loss when "
                                                               "--eval-data is not given (0 = no validation)")
    output_dir: str = Field("", description="where checkpoints, the final model, metrics.json and curves.png go "
                                            "(default: $LLMKIT_HOME/runs/<method>-<time>)", json_schema_extra={"short": "-o"})
    max_length: int = Field(512, ge=8, description="tokens per example; longer ones are truncated (from the right)")
    packing: bool = Field(False, description="concatenate examples into --max-length rows (no padding; attention "
                                             "stays within each example)")
    chat_template: bool = Field(True, description="wrap prompt/completion rows in the tokenizer's chat template as a "
                                                  "user and an assistant turn (False: raw text, prompt + completion)")

    # --- optimiser and schedule ------------------------------------------------------------
    epochs: float = Field(1.0, gt=0, description="passes over the training data (fractions allowed)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps (overrides --epochs)")
    batch_size: int = Field(4, ge=1, description="examples per forward pass")
    grad_accum: int = Field(1, ge=1, description="forward passes per optimiser step (effective batch = batch_size × grad_accum)")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (AdamW)", json_schema_extra={"short": "--lr"})
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field("cosine", description="decay after warmup: constant, linear or cosine to 0")
    warmup_steps: int = Field(0, ge=0, description="linear warmup from 0 over this many optimiser steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="clip the gradient norm to this (0 = no clipping)")
    seed: int = Field(0, description="seeds shuffling, dropout, adapter init and the validation split")

    # --- the loop --------------------------------------------------------------------------
    eval_every: int = Field(0, ge=0, description="validation loss every N optimiser steps (0 = at the end of each epoch)")
    save_every: int = Field(0, ge=0, description="checkpoint every N optimiser steps (0 = at the end of each epoch)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk (the oldest are deleted)")
    early_stopping_patience: int = Field(0, ge=0, description="stop after this many validations without a better "
                                                              "validation loss, then keep the best weights (0 = off)")
    resume: bool = Field(False, description="continue from the newest checkpoint in --output-dir (same data and config)")
    log_every: int = Field(1, ge=1, description="record the training loss every N optimiser steps")

    # --- the adapter -----------------------------------------------------------------------
    peft: Literal["none", "lora", "dora", "qlora", "prompt", "prefix"] = Field(
        "lora", description="what is trained: none (every weight), lora, dora, qlora (LoRA on a 4-bit base; needs a "
                            "CUDA GPU for bitsandbytes, else LoRA), prompt (soft prompt, Lester et al. 2021), prefix "
                            "(prefix tuning, Li & Liang 2021)")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: float = Field(32, gt=0, description="LoRA scale numerator: updates are scaled by alpha / r")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] = Field(default_factory=lambda: ["all-linear"],
                                      description="modules LoRA/DoRA adapt: names such as q_proj v_proj, or all-linear "
                                                  "(every linear layer but the output head)")
    num_virtual_tokens: int = Field(16, ge=1, description="prompt/prefix tuning: trained virtual tokens")
    prompt_init_text: str | None = Field(None, description="prompt tuning: initialise the soft prompt from this text's "
                                                           "embeddings (default: random vocabulary embeddings)")

    # --- the model -------------------------------------------------------------------------
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="weights and compute: float32 (CPU default) or bfloat16")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, ~30% slower")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    rope_scaling: Literal["none", "linear", "dynamic", "yarn"] = Field(
        "none", description="extend the context while training: RoPE scaling type (see train/context.py)")
    rope_factor: float = Field(2.0, gt=1.0, description="RoPE scaling factor: the new context is factor × the original")
    merge: bool = Field(True, description="after training an adapter (lora/dora/qlora), also write the base with the "
                                          "adapter merged in to <output-dir>/merged (what `llmkit export` takes)")

    export: Literal["none", "f16", "q8_0", "q4_k_m"] = Field(
        "none", description="after training, also write <output-dir>/model-<quant>.gguf (the merged or full model) "
                            "for `llmkit serve -m llamacpp:PATH`; none = no GGUF")

    # --- derived ---------------------------------------------------------------------------
    method: str = Field("", description="(set by the trainer) the method name, recorded in the run's files")

    def out_dir(self) -> Path:
        """``output_dir``, or a fresh ``$LLMKIT_HOME/runs/<method>-<time>`` folder."""
        if self.output_dir:
            return Path(self.output_dir).expanduser()
        from ..core.settings import home

        return home() / "runs" / f"{self.method or 'train'}-{time.strftime('%Y%m%d-%H%M%S')}"

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, **overrides: Any) -> "TrainConfig":
        """The recipe at ``path`` (a YAML mapping of field names), with ``overrides`` on top.

        Keys may use dashes or underscores (``learning-rate`` or ``learning_rate``); ``lr`` is
        accepted for ``learning_rate``. An unknown key is an error naming it.
        """
        fields: dict[str, Any] = {}
        if path is not None:
            fields = read_recipe(path)
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return build(cls, fields)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML recipe as a dict of field names (dashes → underscores, ``lr`` → ``learning_rate``)."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"recipe {str(p)!r} does not exist; pass a YAML file of config fields")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {str(p)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {str(p)!r} must be a mapping of field: value, not {type(raw).__name__}")
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        out["learning_rate" if name == "lr" else name] = value
    return out


def build(cls: type[TrainConfig], fields: dict[str, Any]) -> TrainConfig:
    """``cls(**fields)`` with a validation error turned into one line naming the field, value and rule."""
    unknown = sorted(set(fields) - set(cls.model_fields))
    if unknown:
        accepted = ", ".join(f for f in cls.model_fields if f != "method")
        raise ConfigError(f"unknown {cls.__name__} field {unknown[0]!r}; accepted: {accepted}")
    try:
        return cls(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or cls.__name__
        raise ConfigError(f"{field}={err.get('input')!r} is invalid: {err['msg']}") from None


def resolve(cls: type[TrainConfig], config: TrainConfig | str | Path | None, fields: dict[str, Any], method: str) -> TrainConfig:
    """A trainer's config from a config object, a YAML recipe path or keyword fields (fields win)."""
    if isinstance(config, TrainConfig):
        if not isinstance(config, cls):
            raise ConfigError(f"{method} needs a {cls.__name__}, got {type(config).__name__}")
        cfg = config.model_copy(update=fields) if fields else config
        if fields:
            cfg = build(cls, cfg.model_dump())
    else:
        cfg = cls.from_yaml(config, **fields)
    return cfg.model_copy(update={"method": method})
