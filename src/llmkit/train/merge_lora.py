"""LoRA/DoRA → base: merge a PEFT adapter folder into its base model's weights, tensor by tensor.

Reads and writes safetensors with the streaming helpers of :mod:`llmkit.train.merge` (one tensor in
memory at a time, output staged in a temp folder beside ``out_dir`` and renamed into place), and
checks every adapter tensor against the base before writing anything.

Example:
    >>> from llmkit.train.merge_lora import merge_lora
    >>> merge_lora("base/", "runs/sft-lora/adapter", "out/merged")
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .merge import (
    SHARD_BYTES,
    _copy_model_files,
    _refuse_input_as_output,
    _staging,
    _torch_dtype,
    load_tensor,
    tensor_index,
    write_safetensors,
)

_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B"
                       r"|lora_magnitude_vector)(?:\.default)?(?:\.(?P<param>weight|bias))?$")


def merge_lora(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, *,
               max_shard_size: int = SHARD_BYTES, overwrite: bool = False) -> Path:
    """Merge a PEFT LoRA (or DoRA) adapter folder into its base model's weights, tensor by tensor.

    W' = W + s·B@A with s = lora_alpha/r (lora_alpha/√r with ``use_rslora``; ``alpha_pattern``
    honoured; transposed for ``fan_in_fan_out``); embeddings get s·(B@A)ᵀ; ``lora_bias`` adds s·b
    to the bias. DoRA (``use_dora``) rescales each output row of W + s·B@A to the learned magnitude
    m: W' = m / ‖W + s·B@A‖_row · (W + s·B@A), as PEFT's merge. ``modules_to_save`` weights
    replace the base's. The result equals PEFT's ``merge_and_unload()``; the base's dtype is kept.

    Example:
        >>> merge_lora("base/", "runs/sft/adapter", "merged/")
    """
    import torch

    base_dir, adapter_dir = Path(base_dir).expanduser(), Path(adapter_dir).expanduser()
    acfg = _adapter_config(adapter_dir)
    index = tensor_index(base_dir)
    adapter = tensor_index(adapter_dir, files=("adapter_model.safetensors",))
    loras: dict[str, dict[str, str]] = {}
    replaced: dict[str, str] = {}  # base tensor name → adapter tensor name (modules_to_save)
    for key in adapter:
        m = _LORA_KEY.match(key)
        if m:
            loras.setdefault(m["module"], {})[m["kind"] + ("." + m["param"] if m["param"] else "")] = key
            continue
        # modules_to_save copies, and the embeddings PEFT saves beside an embedding LoRA (base_layer), replace the base's
        name = re.sub(r"\.(modules_to_save(\.default)?|base_layer)\.", ".", key.removeprefix("base_model.model."))
        if name not in index:
            raise ConfigError(f"adapter tensor {key!r} matches no tensor of {str(base_dir)!r}: is this the adapter's base model?")
        if adapter[key][2] != index[name][2]:
            raise ConfigError(f"adapter tensor {key!r} has shape {adapter[key][2]} but {name!r} is {index[name][2]} in "
                              f"{str(base_dir)!r} (a resized vocabulary?); load it with PEFT and call merge_and_unload()")
        replaced[name] = key
    for module, parts in loras.items():
        where = f"{module}.weight"
        if where not in index:
            raise ConfigError(f"the adapter adapts {module!r} but {str(base_dir)!r} has no tensor {where!r}: "
                              "is this the adapter's base model?")
        if "lora_magnitude_vector" in parts and "lora_embedding_A" in parts:
            raise ConfigError(f"DoRA on an embedding ({module}) is not supported by llmkit's merge; load the adapter "
                              "with PEFT and call merge_and_unload()")
        a, b = (adapter[parts[k]][2] for k in (("lora_embedding_A", "lora_embedding_B") if "lora_embedding_A" in parts
                                               else ("lora_A.weight", "lora_B.weight")))
        delta = [a[1], b[0]] if "lora_embedding_A" in parts or acfg.get("fan_in_fan_out") else [b[0], a[1]]
        if delta != index[where][2]:
            raise ConfigError(f"the adapter's update for {where!r} has shape {delta} but the tensor is {index[where][2]} "
                              f"in {str(base_dir)!r}: is this the adapter's base model?")

    def produce(name: str) -> torch.Tensor:
        w = (load_tensor(adapter, replaced[name]).to(_torch_dtype(index[name][1])) if name in replaced
             else load_tensor(index, name))
        module, _, param = name.rpartition(".")
        parts = loras.get(module)
        if not parts or not w.is_floating_point():
            return w
        def get(kind: str) -> torch.Tensor:
            return load_tensor(adapter, parts[kind]).float()

        embedding = "lora_embedding_A" in parts
        a = get("lora_embedding_A" if embedding else "lora_A.weight")
        scale = _lora_scale(acfg, module, a.shape[0])
        if param == "bias":
            return (w.float() + scale * get("lora_B.bias")).to(w.dtype) if "lora_B.bias" in parts else w
        if param != "weight":
            return w
        if embedding:
            return (w.float() + scale * (get("lora_embedding_B") @ a).T).to(w.dtype)
        delta = scale * (get("lora_B.weight") @ a)
        fan_in_fan_out = bool(acfg.get("fan_in_fan_out"))
        delta = delta.T if fan_in_fan_out else delta  # Conv1D stores (in, out)
        merged = w.float() + delta
        if "lora_magnitude_vector" in parts:  # DoRA: row norms of W + ΔW, taken in (out, in) layout
            rows = merged.T if fan_in_fan_out else merged
            factor = (get("lora_magnitude_vector") / torch.linalg.norm(rows, dim=1)).view(-1, 1)
            merged = (factor * rows).T if fan_in_fan_out else factor * rows
        return merged.to(w.dtype)

    plan = [(name, dtype, shape) for name, (_, dtype, shape) in index.items()]
    out = Path(out_dir).expanduser()
    _refuse_input_as_output(out, [base_dir, adapter_dir])
    with _staging(out, overwrite) as tmp:
        write_safetensors(tmp, plan, produce, max_shard_size, "Merging LoRA")
        _copy_model_files(base_dir, base_dir, tmp, None)
    return out


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise ConfigError(f"{str(adapter_dir)!r} is not a PEFT adapter folder: it has no adapter_config.json")
    acfg = json.loads(path.read_text())
    if acfg.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"adapter {str(adapter_dir)!r} is {acfg['peft_type']}, not LORA; only LoRA/DoRA adapters "
                          "merge into the weights")
    for key in ("trainable_token_indices", "layer_replication"):
        if acfg.get(key):
            raise ConfigError(f"adapter {str(adapter_dir)!r} uses {key}, which llmkit's merge does not support; load it "
                              "with PEFT and call merge_and_unload()")
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise ConfigError(f"{str(adapter_dir)!r} has no adapter_model.safetensors (a pickled adapter_model.bin is "
                          "not read: re-save it with save_pretrained(safe_serialization=True))")
    return acfg


def _lora_scale(acfg: dict[str, Any], module: str, r: int) -> float:
    """lora_alpha / r (or / √r with rsLoRA); alpha from ``alpha_pattern`` by PEFT's rule (pattern matches a name suffix)."""
    alpha = acfg.get("lora_alpha", 8)
    for pattern, value in (acfg.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            alpha = value
            break
    return alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r


__all__ = ["merge_lora"]
