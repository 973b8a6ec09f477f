"""GGUF export: a transformers folder → a GGUF file llama.cpp runs (a PEFT LoRA → a GGUF LoRA is
``export_lora.py``, which shares this file's model config, tensor names and writers).

    export_gguf("runs/sft/final", "model.gguf", quant="q8_0")     # f32 | f16 | bf16 | q8_0 | q4_k_m
    export_gguf("runs/base", "merged.gguf", merge_lora="runs/lora/final")

A focused converter, not llama.cpp's ``convert_hf_to_gguf.py`` (which the llama-cpp-python wheel does
not ship): decoder-only llama-family models (``LlamaForCausalLM``, ``MistralForCausalLM``,
``Qwen2ForCausalLM``) with a byte-level BPE ``tokenizer.json`` (SmolLM, Llama 3, Qwen2). It writes
what that script writes for them — hparams, rope scaling (linear, yarn, llama3), the Q/K row
permutation llama.cpp's llama architecture expects, tied embeddings (no ``output.weight``), the
tokenizer with its pre-tokenizer name, special ids and chat template — as an f16 (or f32/bf16) GGUF
with gguf-py, streaming one tensor at a time. q8_0 and q4_k_m are then made by llama.cpp's own
quantizer (``llama_model_quantize``). Every output is written to a temp file beside it and renamed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import ConfigError
from ..core.files import atomic_path, scratch_path
from ..core.progress import steps

# quant → (float type written by gguf-py, llama.cpp ftype to quantize to afterwards or None)
QUANTS: dict[str, tuple[str, int | None]] = {
    "f32": ("f32", None), "f16": ("f16", None), "bf16": ("bf16", None),
    "q8_0": ("f16", 7),    # LLAMA_FTYPE_MOSTLY_Q8_0: ~0.53x the f16 file, near-lossless
    "q4_k_m": ("f16", 15),  # LLAMA_FTYPE_MOSTLY_Q4_K_M: ~0.3x; rows not a multiple of 256 fall back to other types
}
FILE_TYPES = {"f32": 0, "f16": 1, "bf16": 32}  # general.file_type of the float outputs (LlamaFileType)
# HF architecture → (llama.cpp architecture, permute Q/K rows). llama.cpp's llama graph applies rope to
# interleaved pairs; HF's rotate_half pairs dimension i with i + d/2, so Q/K rows are reordered. Qwen2
# runs llama.cpp's NEOX rope, which pairs like HF: no permutation.
ARCHITECTURES = {"LlamaForCausalLM": ("llama", True), "MistralForCausalLM": ("llama", True),
                 "Qwen2ForCausalLM": ("qwen2", False)}
# tokenizer.json Split regexes → llama.cpp pre-tokenizer names (the patterns llama-vocab.cpp ports)
_SPLIT_PRE = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
}
# Vocabularies named by identity, as convert_hf_to_gguf names them by a hash of token ids: folders
# converted back from a GGUF (llmkit's embedded_dir()) keep the vocab but lose the Digits pre-step.
_KNOWN_VOCABS = {"d1f2ce856b324081b621d9e2e8dbd22879f462329f3fd4aa39fa758dddb2ce55": "smollm"}  # SmolLM, SmolLM2


def export_gguf(model_dir: str | Path, out_path: str | Path, quant: str = "q8_0", *,
                merge_lora: str | Path | None = None) -> Path:
    """Convert a transformers folder to a GGUF file for llama.cpp.

    Args:
        model_dir: a folder with config.json, *.safetensors and tokenizer.json (what fine-tuning writes).
        out_path: the .gguf file to write (replaced atomically if it exists).
        quant: one of ``QUANTS``: f32, f16, bf16 (written directly) or q8_0, q4_k_m (llama.cpp's quantizer).
        merge_lora: a PEFT LoRA adapter folder trained on ``model_dir``: merged into it first.

    Returns:
        The path written.

    Example:
        >>> export_gguf(embedded_dir(), "smollm2-q8.gguf", quant="q8_0")
        >>> lk.model("llamacpp:smollm2-q8.gguf").chat("Hi", max_tokens=8).text
    """
    if quant not in QUANTS:
        raise ConfigError(f"quant {quant!r} is not supported; choose one of: {', '.join(QUANTS)}")
    model_dir, out = _folder(model_dir, "model_dir"), _out_file(out_path)
    if merge_lora is None:
        return _export(model_dir, out, quant, model_dir.name)
    # imported here: export_lora imports this module's helpers, so a top-level import would be a cycle
    from .export_lora import _merge

    adapter = _folder(merge_lora, "merge_lora")
    with tempfile.TemporaryDirectory(prefix=".merge-", dir=out.parent) as tmp:
        return _export(_merge(model_dir, adapter, Path(tmp)), out, quant, f"{model_dir.name}+{adapter.name}")


def _export(model_dir: Path, out: Path, quant: str, name: str) -> Path:
    config, (arch, permute) = _config(model_dir)
    plan = _tensor_plan(model_dir, config, arch, permute)
    kind, ftype = QUANTS[quant]
    if ftype is not None and any(dtype == "BF16" for *_, dtype in plan):
        kind = "bf16"  # a bf16 checkpoint keeps its range on the way to the quantizer (f16 tops out at 65504)
    if ftype is None:
        with atomic_path(out) as tmp:
            _write_model(name, model_dir, config, arch, plan, kind, tmp)
        return out
    with scratch_path(out) as floats, atomic_path(out) as tmp:
        _write_model(name, model_dir, config, arch, plan, kind, floats)
        _quantize(floats, tmp, ftype, quant)
    return out


# --- the model -------------------------------------------------------------------------------
def _config(model_dir: Path) -> tuple[dict, tuple[str, bool]]:
    if (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
        raise ConfigError(f"{model_dir} is a LoRA adapter, not a model: export it with export_lora_gguf "
                          "(llmkit export BASE --lora ADAPTER) or merge it (merge_lora=)")
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{model_dir} has no readable config.json ({e}); is it a transformers model folder?") from None
    arch = (config.get("architectures") or ["(none)"])[0]
    if arch not in ARCHITECTURES:
        raise ConfigError(f"architecture {arch!r} of {model_dir} is not supported for GGUF export; "
                          f"supported: {', '.join(ARCHITECTURES)}")
    return config, ARCHITECTURES[arch]


def _rope(config: dict) -> dict:
    """Rope settings from either layout: transformers 5's rope_parameters or 4's rope_theta + rope_scaling."""
    params = {**(config.get("rope_scaling") or {}), **(config.get("rope_parameters") or {})}
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    if params["rope_type"] not in ("default", "linear", "yarn", "llama3"):
        raise ConfigError(f"rope type {params['rope_type']!r} is not supported for GGUF export; "
                          "supported: default, linear, yarn, llama3")
    return params


def _tensor_plan(model_dir: Path, config: dict, arch: str, permute: bool) -> list:
    """(gguf name, loader → float32 torch tensor, shape, source dtype) per tensor, in file order."""
    import gguf

    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config["num_hidden_layers"])
    plan = []
    with _safetensors(model_dir, "model") as tensors:
        for key, t in tensors.items():
            if key.endswith("rotary_emb.inv_freq") or (key == "lm_head.weight" and config.get("tie_word_embeddings")):
                continue  # recomputed by llama.cpp / the same matrix as token_embd
            name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ConfigError(f"tensor {key!r} of {model_dir} has no GGUF name in the llama layout")
            heads = n_head if ".q_proj." in key else n_kv if ".k_proj." in key else None

            def load(t=t, heads=heads):
                w = t.load().float()
                return _permute(w, heads) if permute and heads else w

            plan.append((name, load, t.shape(), t.dtype))
    rope = _rope(config)
    if rope["rope_type"] == "llama3":
        factors = _llama3_factors(config, rope)
        plan.append(("rope_freqs.weight", lambda: factors, tuple(factors.shape), "F32"))
    return plan


def _permute(w, n_head: int):
    """Reorder each head's rows from HF's halves (i, i + d/2) to llama.cpp's adjacent pairs (2i, 2i + 1)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama3_factors(config: dict, rope: dict):
    """Llama 3.1's per-frequency rope divisors, stored as the rope_freqs tensor llama.cpp multiplies in."""
    import torch

    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings") or config.get("original_max_position_embeddings", 8192)
    out = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32)


def _write_model(name: str, model_dir: Path, config: dict, arch: str, plan: list, kind: str, path: Path) -> None:
    import gguf

    w = gguf.GGUFWriter(path, arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    if head_dim != config["hidden_size"] // n_head:  # llama.cpp assumes hidden / heads otherwise
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    rope = _rope(config)
    w.add_rope_freq_base(float(rope["rope_theta"]))
    w.add_rope_dimension_count(head_dim)
    if rope["rope_type"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    elif rope["rope_type"] == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        for key, add in (("extrapolation_factor", w.add_rope_scaling_yarn_ext_factor),
                         ("attention_factor", w.add_rope_scaling_yarn_attn_factor),
                         ("beta_fast", w.add_rope_scaling_yarn_beta_fast), ("beta_slow", w.add_rope_scaling_yarn_beta_slow)):
            if rope.get(key) is not None:
                add(rope[key])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    n_vocab = next((shape[0] for t, _, shape, _ in plan if t == "token_embd.weight"), None)
    if n_vocab is None:
        raise ConfigError(f"{model_dir} has no embedding matrix (model.embed_tokens.weight)")
    w.add_vocab_size(n_vocab)
    w.add_file_type(FILE_TYPES[kind])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _write_vocab(w, model_dir, n_vocab)
    _write_tensors(w, [(n, load, shape, "f32" if len(shape) <= 1 or n.endswith("_norm.weight") else kind)
                       for n, load, shape, _ in plan], path, f"Writing {name}")


def _write_tensors(w, items: list, path: Path, what: str) -> None:
    """Declare every tensor, then stream them one at a time (only one is ever in memory)."""
    import gguf
    import numpy as np
    import torch

    as_numpy = {"f32": lambda t: t.float().numpy(), "f16": lambda t: t.half().numpy(),
                "bf16": lambda t: t.bfloat16().view(torch.int16).numpy().view(np.uint16)}  # numpy has no bf16
    for name, _, shape, kind in items:
        dtype = np.dtype({"f32": np.float32, "f16": np.float16, "bf16": np.uint16}[kind])
        raw = gguf.GGMLQuantizationType.BF16 if kind == "bf16" else None
        w.add_tensor_info(name, shape, dtype, math.prod(shape) * dtype.itemsize, raw_dtype=raw)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    with steps(len(items), what) as advance:
        for _, load, _, kind in items:
            w.write_tensor_data(np.ascontiguousarray(as_numpy[kind](load())))
            advance()
    w.close()


# --- the tokenizer ---------------------------------------------------------------------------------
def _write_vocab(w, model_dir: Path, n_vocab: int) -> None:
    """tokenizer.ggml.*: a GPT-2-style byte-level BPE vocab, as convert_hf_to_gguf's _set_vocab_gpt2."""
    import gguf

    try:
        tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{model_dir} has no readable tokenizer.json ({e}); GGUF export needs a fast tokenizer") from None
    if tok.get("model", {}).get("type") != "BPE" or "ByteLevel" not in json.dumps(tok.get("pre_tokenizer")):
        raise ConfigError(f"the tokenizer of {model_dir} is {tok.get('model', {}).get('type')!r} without byte-level "
                          "pre-tokenization; GGUF export supports byte-level BPE (SmolLM, Llama 3, Qwen2)")
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    by_id.update({i: a["content"] for i, a in added.items()})
    if max(by_id) >= n_vocab:
        raise ConfigError(f"the tokenizer has {max(by_id) + 1} tokens but the embedding only {n_vocab} rows")
    tokens, types = [], []
    for i in range(n_vocab):
        text = by_id.get(i)
        tokens.append(text if text is not None else f"[PAD{i}]")
        if text is None:
            types.append(gguf.TokenType.UNUSED)
        elif i in added and (added[i].get("special") or (text.startswith("<|") and text.endswith("|>"))):
            types.append(gguf.TokenType.CONTROL)
        else:
            types.append(gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_tokenizer(tok, [by_id[i] for i in sorted(by_id)]))
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)
    special.add_special_token.setdefault("bos", False)  # the HF tokenizer adds no BOS unless its template says so
    special.add_to_gguf(w, quiet=True)
    cfg = _json(model_dir / "tokenizer_config.json")
    byte_level = next((p for p in _steps(tok.get("pre_tokenizer")) if p.get("type") == "ByteLevel"), {})
    w.add_add_space_prefix(bool(cfg.get("add_prefix_space", byte_level.get("add_prefix_space", False))))


def _steps(pre: dict | None) -> list[dict]:
    pre = pre or {}
    return pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]


def _pre_tokenizer(tok: dict, vocab: list[str]) -> str:
    """llama.cpp's pre-tokenizer name (the regex it splits text with before BPE)."""
    known = _KNOWN_VOCABS.get(hashlib.sha256("\n".join(vocab).encode()).hexdigest())
    if known:
        return known
    steps = _steps(tok.get("pre_tokenizer"))
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"  # llama.cpp: \p{N} first, then GPT-2's regex (also starcoder's)
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        name = _SPLIT_PRE.get((steps[0].get("pattern") or {}).get("Regex"))
        if name:
            return name
    raise ConfigError(f"pre-tokenizer {kinds} is not one llama.cpp's converter is known to name here; "
                      "supported: GPT-2 (ByteLevel), SmolLM (Digits + ByteLevel), Llama 3, Qwen2")


# --- plumbing ----------------------------------------------------------------------------------------
def _quantize(src: Path, dst: Path, ftype: int, quant: str) -> None:
    import ctypes

    import llama_cpp as C

    from ..core.progress import loading
    from ..engine.runtime import quiet_logs

    quiet_logs()
    params = C.llama_model_quantize_default_params()
    params.ftype, params.nthread = ftype, os.cpu_count() or 1
    with loading(f"Quantizing to {quant}"):
        rc = C.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise ConfigError(f"llama.cpp's quantizer failed on {src.name} with code {rc}")


class _Tensor:
    """One safetensors entry: shape and dtype ("F32", "BF16", …) from the header, data only when loaded."""

    def __init__(self, handle, key: str):
        self.handle, self.key = handle, key
        self.dtype = handle.get_slice(key).get_dtype()

    def shape(self) -> tuple[int, ...]:
        return tuple(self.handle.get_slice(self.key).get_shape())

    def load(self):
        return self.handle.get_tensor(self.key)


@contextmanager
def _safetensors(folder: Path, stem: str) -> Iterator[dict[str, _Tensor]]:
    """Every tensor of ``stem.safetensors`` or its shards, opened lazily."""
    from safetensors import safe_open

    files = sorted(folder.glob(f"{stem}*.safetensors"))
    if not files:
        raise ConfigError(f"{folder} has no {stem}*.safetensors; save the model with safe_serialization (the default)")
    handles = [safe_open(str(f), framework="pt") for f in files]
    yield {k: _Tensor(h, k) for h in handles for k in h.keys()}


def _folder(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is not a folder; pass a transformers/PEFT folder "
                          "(config.json or adapter_config.json, safetensors, tokenizer)")
    return p


def _out_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"output {str(p)!r} is a folder; pass a file path such as model.gguf")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


__all__ = ["ARCHITECTURES", "QUANTS", "export_gguf"]
