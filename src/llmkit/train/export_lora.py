"""PEFT LoRA → GGUF LoRA adapter (llama.cpp's ``lora_path``), and a LoRA merged into its base for
:func:`llmkit.train.export.export_gguf`'s ``merge_lora=``.

    export_lora_gguf("runs/lora/final", "adapter.gguf")           # base folder from adapter_config.json
    lk.model("llamacpp:base.gguf", lora="adapter.gguf")

The base model's config, tensor names, Q/K row permutation and the atomic GGUF writer are
:mod:`llmkit.train.export`'s, so an adapter lines up with the model file that module writes.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..core.errors import ConfigError
from ..core.files import atomic_path
from .export import (
    FILE_TYPES,
    _config,
    _folder,
    _json,
    _out_file,
    _permute,
    _safetensors,
    _write_tensors,
)


def export_lora_gguf(adapter_dir: str | Path, out_path: str | Path, base_dir: str | Path | None = None, *,
                     dtype: str = "f16") -> Path:
    """Convert a PEFT LoRA adapter folder to a GGUF LoRA adapter llama.cpp loads with ``lora_path``.

    Tensors become ``blk.N.attn_q.weight.lora_a`` / ``lora_b``, with B's rows permuted like the base's Q/K;
    ``adapter.lora.alpha`` is the adapter's lora_alpha (llama.cpp scales by alpha / rank, as PEFT does).
    Per-module ranks/alphas and rsLoRA are folded into B so every module keeps PEFT's exact scale.

    Args:
        adapter_dir: a folder with adapter_config.json and adapter_model.safetensors.
        out_path: the .gguf file to write.
        base_dir: the base model's transformers folder (default: the adapter's base_model_name_or_path).
        dtype: f16 (as llama.cpp's convert_lora_to_gguf), f32 or bf16.

    Example:
        >>> export_lora_gguf("runs/lora/final", "adapter.gguf", base_dir="runs/base")
        >>> lk.model("llamacpp:base.gguf", lora="adapter.gguf")
    """
    import gguf

    if dtype not in FILE_TYPES:
        raise ConfigError(f"LoRA dtype {dtype!r} is not supported; choose one of: {', '.join(FILE_TYPES)}")
    adapter_dir, out = _folder(adapter_dir, "adapter_dir"), _out_file(out_path)
    cfg = _adapter_config(adapter_dir)
    if base_dir is None:
        base_dir = cfg.get("base_model_name_or_path") or ""
        if not Path(base_dir).is_dir():
            raise ConfigError(f"the adapter's base model {base_dir!r} is not a local folder; pass base_dir=")
    base_dir = _folder(base_dir, "base_dir")
    config, (arch, permute) = _config(base_dir)
    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config["num_hidden_layers"])
    alpha = float(cfg.get("lora_alpha") or cfg["r"])
    pairs = []  # (gguf name, loader, shape, source dtype), as _tensor_plan
    with _safetensors(adapter_dir, "adapter_model") as tensors:
        for key in sorted(tensors):
            if ".lora_B." in key:
                continue
            if ".lora_A." not in key:
                raise ConfigError(f"adapter tensor {key!r} is not a LoRA A/B pair (embedding LoRA, DoRA, trained biases or "
                                  "modules_to_save); merge instead: export_gguf(base, out, merge_lora=adapter)")
            module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
            target = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if target is None or (target.startswith("output.") and config.get("tie_word_embeddings")):
                raise ConfigError(f"LoRA on {module!r} has no place in a GGUF LoRA for {arch}; merge instead")
            a, b = tensors[key], tensors[key.replace(".lora_A.", ".lora_B.")]
            rank = a.shape()[0]
            scale = _pattern(cfg.get("alpha_pattern"), module, cfg.get("lora_alpha") or cfg["r"])
            scale /= math.sqrt(rank) if cfg.get("use_rslora") else rank
            fold = scale / (alpha / rank)  # 1.0 unless patterns or rsLoRA set a module's own scale
            heads = n_head if module.endswith("q_proj") else n_kv if module.endswith("k_proj") else None

            def load_b(b=b, fold=fold, heads=heads):
                w = b.load().float() * fold
                return _permute(w, heads) if permute and heads else w

            pairs.append((f"{target}.lora_a", lambda a=a: a.load().float(), a.shape(), a.dtype))
            pairs.append((f"{target}.lora_b", load_b, b.shape(), b.dtype))
        if not pairs:
            raise ConfigError(f"{adapter_dir} holds no LoRA tensors")
        with atomic_path(out) as tmp:
            w = gguf.GGUFWriter(tmp, arch)
            w.add_type(gguf.GGUFType.ADAPTER)
            w.add_string(gguf.Keys.Adapter.TYPE, "lora")
            w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
            w.add_name(adapter_dir.name)
            _write_tensors(w, [(n, load, shape, dtype) for n, load, shape, _ in pairs], tmp, f"Writing {out.name}")
    return out

# --- LoRA ------------------------------------------------------------------------------------------
def _adapter_config(adapter_dir: Path) -> dict:
    cfg = _json(adapter_dir / "adapter_config.json")
    if not cfg:
        raise ConfigError(f"{adapter_dir} has no adapter_config.json: is it a PEFT adapter folder?")
    if cfg.get("peft_type") != "LORA" or cfg.get("use_dora"):
        kind = "DoRA" if cfg.get("use_dora") else cfg.get("peft_type")
        raise ConfigError(f"adapter type {kind!r} cannot be a GGUF LoRA (only plain LoRA); merge it instead")
    return cfg


def _pattern(patterns: dict | None, module: str, default: float) -> float:
    """PEFT's alpha_pattern lookup: the first key matching the end of the module's dotted name."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return float(default)


def _merge(base_dir: Path, adapter_dir: Path, tmp: Path) -> Path:
    """The base with the adapter merged in (PEFT's merge_and_unload), saved to ``tmp``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models.hf import _offline

    _adapter_config(adapter_dir)
    with _offline():
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto", local_files_only=True)
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        model.save_pretrained(tmp)
        has_tok = (adapter_dir / "tokenizer.json").is_file()  # a run that added tokens saves its tokenizer beside the adapter
        AutoTokenizer.from_pretrained(adapter_dir if has_tok else base_dir, local_files_only=True).save_pretrained(tmp)
    return tmp


__all__ = ["export_lora_gguf"]
