"""Constraints → llguidance matchers → token bitmasks applied to logits.

A tokenizer is wrapped once per model (about a second for a 49k vocabulary) and each grammar is
compiled once per tokenizer; a request gets a cheap ``deep_copy`` of the compiled matcher.
``fill_masks`` computes the masks of every constrained sequence in a decoding step together on
llguidance's thread pool, and ``apply_mask`` sets the logits of forbidden tokens to -inf, so the
sampler (penalties, top-k/p, min-p, temperature, the seeded draw) then works within the allowed set.

Example:
    >>> tok = llamacpp_tokenizer(engine.runtime)
    >>> m = matcher(Regex(r"[0-9]+"), tok)
    >>> masks = new_masks(1, tok.vocab_size); fill_masks([(m, 0)], masks); apply_mask(logits, masks[0])
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..core.errors import ConstraintError
from .constraints import Constraint

CACHE_SIZE = 256  # compiled grammars kept per process (a schema compiles in well under a millisecond to ~100 ms)

_lock = threading.RLock()
_compiled: OrderedDict = OrderedDict()   # (id(tokenizer), grammar) -> template LLMatcher
_executor = None


def llamacpp_tokenizer(runtime):
    """The llguidance tokenizer of a llama.cpp model (``engine.runtime.Runtime``), built once per model.

    Every end-of-generation token (EOS, EOT, ``<|im_end|>``) counts as the end: a grammar that
    is complete lets the model stop with whichever its chat template uses."""
    with _lock:  # built once even when many threads ask at the same time
        tok = getattr(runtime, "_llg_tokenizer", None)
        if tok is None:
            import warnings

            from llguidance.llamacpp import lltokenizer_from_vocab

            eog = [t for t in range(runtime.n_vocab) if runtime.is_eog(t)]
            with warnings.catch_warnings():  # it calls a llama_cpp alias deprecated in newer bindings
                warnings.simplefilter("ignore", DeprecationWarning)
                tok = runtime._llg_tokenizer = lltokenizer_from_vocab(runtime.vocab, eos_token=eog or None)
    return tok


def hf_tokenizer(tokenizer, n_vocab: int | None = None):
    """The llguidance tokenizer of a Hugging Face fast tokenizer, built once per tokenizer.

    ``n_vocab``: the model's logits width when it is larger than the tokenizer (padded embeddings)."""
    with _lock:
        tok = getattr(tokenizer, "_llg_tokenizer", None)
        if tok is None:
            from llguidance.hf import from_tokenizer

            eos = [t for t in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
                   if isinstance(t, int) and t >= 0 and t != tokenizer.unk_token_id]
            tok = tokenizer._llg_tokenizer = from_tokenizer(tokenizer, n_vocab=n_vocab, eos_token=eos or None)
    return tok


def matcher(constraint: Constraint, tokenizer):
    """A fresh llguidance matcher for one generation (compiled once per tokenizer and grammar)."""
    import llguidance

    key = (id(tokenizer), constraint.grammar())
    with _lock:
        template = _compiled.get(key)
        if template is not None:
            _compiled.move_to_end(key)
    if template is None:
        template = llguidance.LLMatcher(tokenizer, key[1], log_level=0)
        if template.is_error():
            raise ConstraintError(f"{constraint!r} cannot be enforced: {template.get_error()}")
        with _lock:
            _compiled[key] = template
            while len(_compiled) > CACHE_SIZE:
                _compiled.popitem(last=False)
    return template.deep_copy()


def new_masks(n: int, n_vocab: int) -> np.ndarray:
    """Room for ``n`` bitmasks over ``n_vocab`` tokens (the tokenizer's ``vocab_size``; one bit per token)."""
    return np.full((n, (n_vocab + 31) // 32), -1, dtype=np.int32)


def fill_masks(pairs: list[tuple[object, int]], masks: np.ndarray) -> None:
    """Compute the next-token mask of each ``(matcher, row)`` into ``masks[row]``, all in parallel."""
    global _executor
    import llguidance

    if _executor is None:
        _executor = llguidance.LLExecutor()
    _executor.unsafe_compute_mask_ptr(pairs, masks.ctypes.data, masks.shape[1] * 4, masks.shape[0])


def allowed(mask: np.ndarray, n_vocab: int) -> np.ndarray:
    """One mask row as booleans over the vocabulary."""
    bits = np.unpackbits(mask.view(np.uint8), bitorder="little")
    if len(bits) < n_vocab:
        bits = np.concatenate([bits, np.zeros(n_vocab - len(bits), np.uint8)])
    return bits[:n_vocab].astype(bool)


def apply_mask(logits: np.ndarray, mask: np.ndarray) -> None:
    """Forbid (set to -inf, in place) every token the mask does not allow."""
    logits[~allowed(mask, logits.shape[-1])] = -np.inf
