"""Model merging, tensor by tensor: linear, SLERP, task arithmetic, TIES, DARE (LoRA → base is
``merge_lora.py``, which shares the safetensors helpers at the end of this file).

Memory stays bounded by one tensor per input model: each tensor is read with its own short
``safe_open`` (a handle kept open leaves every page it touched resident, so the process would grow to
the size of all models), merged in float32, and streamed straight into a safetensors file whose
header was written up front; nothing waits in memory for a shard to fill. Output goes to a temp
folder beside ``out_dir`` that is renamed into place at the end.

The methods, on task vectors δᵢ = θᵢ − θ_base:

- linear: Σ wᵢθᵢ / Σ wᵢ (``normalize: false`` drops the division).
- slerp: spherical interpolation of each whole tensor from base (t=0) to the other model (t=1);
  lerp when the two are nearly colinear (|cos| > 0.9995), as mergekit.
- task_arithmetic: θ_base + λ·Σ wᵢδᵢ.
- ties: keep each δᵢ's top ``density`` fraction by magnitude, elect a sign per entry (sign of
  Σ wᵢδᵢ), average the agreeing entries: Σ wᵢδᵢ[agree] / Σ wᵢ[agree].
- dare_linear / dare_ties: drop each δᵢ entry with probability 1 − density, rescale survivors by
  1/density, then combine as task_arithmetic / ties.

Example:
    >>> from llmkit.train.merge import merge
    >>> merge("ties.yaml", "out/merged")
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..core.errors import ConfigError
from ..core.progress import steps
from .merge_config import MergeConfig

if TYPE_CHECKING:
    import torch

SHARD_BYTES = 2 * 1024**3  # 2 GiB per output file, like transformers' default max_shard_size in recent versions
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "spiece.model", "chat_template.jinja",
                   "chat_template.json")
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
             "I8": 1, "U8": 1, "BOOL": 1}
_DTYPE_NAME = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


# --- the methods: plain functions on tensors -----------------------------------------------
def linear(tensors: list[torch.Tensor], weights: list[float], normalize: bool = True) -> torch.Tensor:
    """Σ wᵢθᵢ, divided by Σ wᵢ when ``normalize`` (Wortsman et al. 2022, model soups)."""
    import torch

    out = torch.zeros_like(tensors[0])
    for w, t in zip(weights, tensors):
        out.add_(t, alpha=w)  # in place: no temporary per model (allocations dominate on big tensors)
    return out.div_(sum(weights)) if normalize else out


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, dot_threshold: float = 0.9995, eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation between whole tensors ``a`` (t=0) and ``b`` (t=1).

    The angle comes from the normalised tensors; the coefficients are applied to the originals (as
    mergekit), and near-colinear pairs (|cos θ| > ``dot_threshold``) fall back to linear interpolation,
    where sin θ → 0 makes the spherical formula unstable.
    """
    import torch

    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    na, nb = (na if na > eps else 1.0), (nb if nb > eps else 1.0)
    dot = min(1.0, max(-1.0, float(torch.vdot(a.reshape(-1), b.reshape(-1))) / (na * nb)))  # no normalised copies
    if abs(dot) > dot_threshold:
        return a.mul(1 - t).add_(b, alpha=t)
    theta = math.acos(dot)
    return a.mul(math.sin((1 - t) * theta) / math.sin(theta)).add_(b, alpha=math.sin(t * theta) / math.sin(theta))


def magnitude_prune(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``max(1, int(density·n))`` largest-magnitude entries of ``delta``, zero the rest (TIES' trim), in place."""
    import torch

    n = delta.numel()
    if density >= 1:
        return delta
    k = max(1, int(density * n))
    flat = delta.abs().reshape(-1)
    threshold = flat.kthvalue(n - k + 1).values  # the k-th largest magnitude
    keep = flat > threshold
    short = k - int(keep.sum())
    if short > 0:  # ties at the threshold: keep the first ones so exactly k survive
        keep[torch.nonzero(flat == threshold).squeeze(1)[:short]] = True
    return delta.mul_(keep.reshape(delta.shape))


def dare_mask(shape: tuple[int, ...], density: float, seed: int, tensor: str, model_index: int) -> torch.Tensor:
    """DARE's random keep-mask (each entry kept with probability ``density``), reproducible from its arguments.

    The generator is seeded from (seed, tensor name, model position), so a merge repeats exactly
    and a tensor's mask does not depend on which tensors were merged before it.
    """
    import torch

    digest = hashlib.sha256(f"{seed}\0{model_index}\0{tensor}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.rand(shape, generator=g) < density


def combine(base: torch.Tensor, deltas: list[torch.Tensor], weights: list[float], *, elect_sign: bool,
            normalize: bool, lam: float = 1.0) -> torch.Tensor:
    """θ_base + λ · (Σ wᵢδᵢ [/ Σ wᵢ]); with ``elect_sign`` only entries agreeing with the sign of Σ wᵢδᵢ count (TIES).

    ``deltas`` are overwritten (weighted in place) to keep one tensor per model in memory.
    """
    import torch

    mixed = torch.zeros_like(base)
    for w, d in zip(weights, deltas):
        mixed.add_(d.mul_(w))  # the deltas are consumed: weighted in place
    if elect_sign:
        majority = torch.where(mixed >= 0, 1.0, -1.0).to(base.dtype)  # sign of Σ wᵢδᵢ; ties go to +
        mixed.zero_()
        divisor = torch.zeros_like(base)
        for w, d in zip(weights, deltas):
            agree = torch.sign(d) == majority  # pruned (zero) entries never agree, so they do not count
            mixed.add_(d.mul_(agree))
            divisor.add_(agree, alpha=w)
        divisor[divisor == 0] = 1
    else:
        divisor = sum(weights)
        divisor = 1.0 if abs(divisor) < 1e-8 else divisor
    if normalize:
        mixed.div_(divisor)
    return mixed.mul_(lam).add_(base)


def merge_tensor(cfg: MergeConfig, name: str, tensors: list[torch.Tensor]) -> torch.Tensor:
    """One merged tensor from the inputs' float tensors, in ``cfg.inputs()`` order.

    ``tensors`` is consumed: each θᵢ is turned into its task vector in place and dropped from the
    list, so a task merge holds about one copy per model, not two.
    """
    inputs, method = cfg.inputs(), cfg.merge_method
    if method == "linear":
        return linear(tensors, [cfg.param(m, "weight") for m in inputs], cfg.normalize())
    b = next(i for i, m in enumerate(inputs) if cfg.is_base(m))
    if method == "slerp":
        return slerp(cfg.parameters.t, tensors[b], tensors[1 - b])
    base, deltas, weights = tensors[b], [], []
    for i, (m, t) in enumerate(zip(inputs, tensors)):
        if i == b:
            continue
        delta, density = t.sub_(base), cfg.param(m, "density", 1.0)  # θᵢ becomes δᵢ in place
        tensors[i] = None
        if method == "ties":
            delta = magnitude_prune(delta, density)
        elif method.startswith("dare") and density < 1:
            delta.mul_(dare_mask(delta.shape, density, cfg.seed, name, i))
            if cfg.parameters.rescale is not False:
                delta.div_(density)
        deltas.append(delta)
        weights.append(cfg.param(m, "weight"))
    lam = 1.0 if cfg.parameters.lambda_ is None else cfg.parameters.lambda_
    return combine(base, deltas, weights, elect_sign=method in ("ties", "dare_ties"), normalize=cfg.normalize(),
                   lam=lam)


# --- the drivers ---------------------------------------------------------------------------
def merge(config: MergeConfig | str | Path, out_dir: str | Path, *, max_shard_size: int = SHARD_BYTES,
          overwrite: bool = False) -> Path:
    """Merge the models of ``config`` (a MergeConfig or a mergekit-style YAML file) into ``out_dir``.

    Writes ``model.safetensors`` (or shards of at most ``max_shard_size`` bytes plus
    ``model.safetensors.index.json``), config.json (with the output dtype), generation_config.json,
    the tokenizer files and ``llmkit_merge.yaml``. Returns ``out_dir``.

    Example:
        >>> merge(MergeConfig(merge_method="linear", models=[{"model": "a", "parameters": {"weight": 1}},
        ...                                                  {"model": "b", "parameters": {"weight": 1}}]), "ab")
    """
    import torch

    cfg = config if isinstance(config, MergeConfig) else MergeConfig.from_yaml(config)
    inputs = cfg.inputs()
    indexes = [tensor_index(m.model) for m in inputs]
    _same_tensors(indexes, [m.model for m in inputs])
    first = next((i for i, m in enumerate(inputs) if cfg.is_base(m)), 0)
    out_name = _DTYPE_NAME.get(cfg.output_dtype() or "")
    plan = []
    for name, (_, dtype, shape) in indexes[first].items():
        is_float = dtype.startswith(("F", "BF"))
        plan.append((name, out_name if is_float and out_name else dtype, shape))

    def produce(name: str) -> torch.Tensor:
        tensors = [load_tensor(idx, name) for idx in indexes]
        if not tensors[first].is_floating_point():  # integer buffers are not merged: the base's are kept
            return tensors[first]
        work = torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32
        return merge_tensor(cfg, name, [t.to(work) for t in tensors])

    out = Path(out_dir).expanduser()
    _refuse_input_as_output(out, [m.model for m in inputs])
    with _staging(out, overwrite) as tmp:
        write_safetensors(tmp, plan, produce, max_shard_size, f"Merging ({cfg.merge_method})")
        src = Path(inputs[first].model).expanduser()
        _copy_model_files(src, Path(cfg.tokenizer_folder()).expanduser(), tmp, cfg.output_dtype())
        import yaml

        (tmp / "llmkit_merge.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True,
                                                                             exclude_defaults=True), sort_keys=False))
    return out


# --- safetensors in and out ----------------------------------------------------------------
def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (names, dtypes, shapes, offsets) without reading the data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def tensor_index(folder: str | Path, files: tuple[str, ...] | None = None) -> dict[str, tuple[Path, str, list[int]]]:
    """``{tensor name: (file, dtype, shape)}`` over a folder's *.safetensors (or the named ``files``)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"model folder {str(folder)!r} does not exist (llmkit merges local transformers folders; "
                          "download hub models first, e.g. `huggingface-cli download ORG/NAME --local-dir DIR`)")
    if files:
        paths = [folder / f for f in files]
    elif (folder / "model.safetensors.index.json").is_file():  # shards named by the index, not every stray file
        weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
        paths = [folder / f for f in sorted(set(weight_map.values()))]
    elif (folder / "model.safetensors").is_file():
        paths = [folder / "model.safetensors"]
    else:
        paths = sorted(folder.glob("*.safetensors"))
    if not paths or not all(p.is_file() for p in paths):
        raise ConfigError(f"{str(folder)!r} holds no {', '.join(files) if files else '*.safetensors'} "
                          "(pickled .bin weights are not read: re-save with save_pretrained(safe_serialization=True))")
    index: dict[str, tuple[Path, str, list[int]]] = {}
    for p in paths:
        for name, info in read_header(p).items():
            if name != "__metadata__":
                index[name] = (p, info["dtype"], info["shape"])
    return index


def load_tensor(index: dict[str, tuple[Path, str, list[int]]], name: str) -> torch.Tensor:
    """One tensor, through its own short-lived ``safe_open`` (see the module docstring for why)."""
    from safetensors import safe_open

    with safe_open(index[name][0], framework="pt") as f:
        return f.get_tensor(name)


def _same_tensors(indexes: list[dict], models: list[str]) -> None:
    names = set(indexes[0])
    for idx, model in zip(indexes[1:], models[1:]):
        for name in sorted(names ^ set(idx)):
            has, lacks = (models[0], model) if name in names else (model, models[0])
            raise ConfigError(f"tensor {name!r} is in {has!r} but not in {lacks!r}: the models must share an architecture")
        for name in sorted(names):
            if idx[name][2] != indexes[0][name][2]:
                raise ConfigError(f"tensor {name!r} has shape {idx[name][2]} in {model!r} but {indexes[0][name][2]} in "
                                  f"{models[0]!r}: the models must share an architecture and vocabulary size")


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
            "BOOL": torch.bool}[name]


def write_safetensors(folder: Path, plan: list[tuple[str, str, list[int]]], produce: Callable[[str], torch.Tensor],
                      max_shard_size: int = SHARD_BYTES, what: str = "Writing") -> None:
    """Stream tensors into safetensors shards: each header is written first (every name, dtype and shape
    is known from ``plan``), then ``produce(name)`` is called and its bytes written, one tensor at a time."""
    import torch

    shards: list[list[tuple[str, str, list[int], int]]] = [[]]
    size = 0
    for name, dtype, shape in plan:
        nbytes = math.prod(shape) * _ITEMSIZE[dtype]
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append((name, dtype, shape, nbytes))
        size += nbytes
    files = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    with steps(len(plan), what) as step:
        for file, shard in zip(files, shards):
            header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
            offset = 0
            for name, dtype, shape, nbytes in shard:
                header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)  # the format pads the header so the data starts 8-byte aligned
            with open(folder / file, "wb") as f:
                f.write(struct.pack("<Q", len(raw)) + raw)
                for name, dtype, shape, nbytes in shard:
                    t = produce(name).to(_torch_dtype(dtype)).contiguous()
                    if list(t.shape) != list(shape):
                        raise RuntimeError(f"merged {name!r} has shape {list(t.shape)}, expected {shape}")
                    f.write(t.reshape(-1).view(torch.uint8).numpy().data)  # native order: little-endian, as the format wants
                    del t
                    step()
    if len(shards) > 1:
        weight_map = {name: file for file, shard in zip(files, shards) for name, *_ in shard}
        total = sum(nbytes for shard in shards for *_, nbytes in shard)
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


@contextlib.contextmanager
def _staging(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temp folder beside ``out``, renamed to ``out`` when the block succeeds and deleted when it fails."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"output {str(out)!r} already exists and is not empty; choose another folder or pass overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model folder is for everyone who can read its parent
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
        os.replace(tmp, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _refuse_input_as_output(out: Path, inputs: list[str | Path]) -> None:
    for p in inputs:
        if out.resolve() == Path(p).expanduser().resolve():
            raise ConfigError(f"output {str(out)!r} is also an input; write the merge to another folder")


def _copy_model_files(src: Path, tokenizer_src: Path, dst: Path, dtype: str | None) -> None:
    """config.json (its dtype set to the output's), generation_config.json and the tokenizer files."""
    if (src / "config.json").is_file():
        config = json.loads((src / "config.json").read_text())
        if dtype:
            keys = [k for k in ("dtype", "torch_dtype") if k in config] or ["dtype"]
            config.update({k: dtype for k in keys})
        (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if (src / "generation_config.json").is_file():
        shutil.copyfile(src / "generation_config.json", dst / "generation_config.json")
    if not tokenizer_src.is_dir():
        raise ConfigError(f"tokenizer_source {str(tokenizer_src)!r} is not a folder")
    for name in TOKENIZER_FILES:
        if (tokenizer_src / name).is_file():
            shutil.copyfile(tokenizer_src / name, dst / name)


__all__ = ["merge", "merge_tensor", "linear", "slerp", "magnitude_prune", "dare_mask", "combine",
           "tensor_index", "load_tensor", "write_safetensors"]
