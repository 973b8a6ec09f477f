"""Context extension: RoPE scaling (linear, dynamic NTK, YaRN) and perplexity at long lengths.

RoPE encodes position p by rotating query/key pairs at frequencies θ_i·p. Beyond the trained
length the model meets rotations it never saw; the scalings map long positions back:

    linear   positions divided by the factor (Chen et al. 2023, "position interpolation")
    dynamic  NTK-aware: the base θ grows with the sequence once it passes the trained length, so
             short inputs are untouched (bloc97/emozilla 2023); works without fine-tuning
    yarn     interpolates low frequencies, keeps high ones, and tempers attention logits
             (Peng et al. 2023); the best after a short fine-tune

The fine-tune recipe is SFT on long rows with the scaling applied (``rope_scaling`` and
``rope_factor`` are fields of every training config; see examples/recipes/context-yarn.yaml):

    llmkit train sft --data long.jsonl --rope-scaling yarn --rope-factor 2 --max-length 16384 \\
        --packing --train-on all

Example:
    >>> from llmkit.train.context import perplexity, scale_rope
    >>> model, tok = load_pretrained("smollm2")
    >>> perplexity(model, tok, text, length=16384)             # 2× SmolLM2's 8192: the model is lost
    >>> scale_rope(model, "yarn", 2.0); perplexity(model, tok, text, length=16384)
"""
from __future__ import annotations

import math
from typing import Any

from ..core.errors import ConfigError

KINDS = ("linear", "dynamic", "yarn")


def original_context(config) -> int:
    """The context the model was trained on (before any scaling)."""
    params = getattr(config, "rope_parameters", None) or {}
    return int(params.get("original_max_position_embeddings") or config.max_position_embeddings)


def scale_rope(model, kind: str, factor: float) -> None:
    """Switch ``model``'s rotary embedding to ``kind`` scaling by ``factor``, in place.

    The config records the scaling (``rope_parameters``), so a model saved afterwards reloads
    with it, and ``max_position_embeddings`` becomes the new context (dynamic NTK keeps the
    trained length there: it scales only inputs longer than that).
    """
    if kind not in KINDS:
        raise ConfigError(f"rope_scaling={kind!r} is not supported; accepted: {', '.join(KINDS)}")
    if factor <= 1:
        raise ConfigError(f"rope_factor={factor} must be > 1 (the new context is factor × the original)")
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    old = dict(getattr(config, "rope_parameters", None) or {})
    if old.get("rope_type", "default") not in ("default", kind):
        raise ConfigError(f"the model already uses {old['rope_type']!r} RoPE scaling; scale its original instead")
    trained = original_context(config)
    params = {"rope_type": kind, "factor": float(factor), "rope_theta": old.get("rope_theta", getattr(config, "rope_theta", 10000.0))}
    if kind == "yarn":
        params["original_max_position_embeddings"] = trained
    config.rope_parameters = params
    config.max_position_embeddings = trained if kind == "dynamic" else int(trained * factor)
    _rebuild_rotary(model, config)


def _rebuild_rotary(model, config) -> None:
    """Replace every ``*RotaryEmbedding`` module with a fresh one built from the updated config."""
    found = 0
    for name, module in list(model.named_modules()):
        if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "inv_freq"):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            device = module.inv_freq.device
            setattr(parent, name.rsplit(".", 1)[-1], type(module)(config=config).to(device))
            found += 1
    if not found:
        raise ConfigError(f"{type(model).__name__} has no rotary embedding module to scale")


def perplexity(model, tokenizer, text: str | list[str], length: int, max_windows: int | None = None) -> float:
    """Perplexity of ``text`` read in non-overlapping windows of ``length`` tokens.

    Every token of a window but the first is predicted from all the tokens before it in the
    window, so a window of 2× the trained context measures whether the model still reads at
    positions it was never trained on.

    Raises:
        ConfigError: the text is shorter than one window.
    """
    import torch
    import torch.nn.functional as F

    texts = [text] if isinstance(text, str) else text
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t)["input_ids"]
    windows = [ids[k:k + length] for k in range(0, len(ids) - length + 1, length)][:max_windows]
    if not windows:
        raise ConfigError(f"the text has {len(ids)} tokens, fewer than one window of {length}; give a longer text")
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w])
            logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()
            nll += float(F.cross_entropy(logits, x[0, 1:], reduction="sum"))
            count += len(w) - 1
    return math.exp(nll / count)


def compare(model_path: str, text: str | list[str], factor: float = 2.0, kinds: tuple[str, ...] = ("none",) + KINDS,
            max_windows: int | None = 1) -> dict[str, Any]:
    """Perplexity at ``factor`` × the trained context for each scaling (no fine-tuning), plus at 1×.

    Returns:
        ``{"trained_context": n, "length": factor·n, "at_trained": ppl, "none": ppl, "linear": ppl, …}``
    """
    from ..models.hf import embedded_dir, load_pretrained

    path = str(embedded_dir()) if model_path in ("smollm2", "hf:smollm2") else model_path
    model, tok = load_pretrained(path)
    n = original_context(model.config)
    length = int(n * factor)
    out: dict[str, Any] = {"trained_context": n, "length": length,
                           "at_trained": perplexity(model, tok, text, n, max_windows)}
    for kind in kinds:
        model, tok = load_pretrained(path)
        if kind != "none":
            scale_rope(model, kind, factor)
        out[kind] = perplexity(model, tok, text, length, max_windows)
    return out
