"""Per-request token selection with llama.cpp's own sampler chain.

Order (llama.cpp's): penalties → top-k → typical → top-p → min-p → temperature → seeded draw.
Greedy (temperature 0) is a plain argmax after the penalties. A field left unset takes
llama.cpp's default, the same as ``llama-cli``.
"""
from __future__ import annotations

import random

from ..core.sampling import Sampling

DEFAULTS = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0,
                repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0)
PENALTY_WINDOW = 64  # llama.cpp's default: penalties look at the last 64 generated tokens

SUPPORTED = frozenset({"temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty",
                       "frequency_penalty", "presence_penalty", "seed", "stop", "max_tokens",
                       "logprobs", "top_logprobs"})


def resolved(s: Sampling) -> dict:
    """Every knob with llama.cpp's default filled in where the request left it unset."""
    return {k: (getattr(s, k) if getattr(s, k) is not None else v) for k, v in DEFAULTS.items()}


def is_plain_greedy(s: Sampling) -> bool:
    """Greedy with no penalties: the next token is the logits' argmax (what speculation verifies)."""
    p = resolved(s)
    return (p["temperature"] == 0 and p["repetition_penalty"] == 1.0 and p["frequency_penalty"] == 0.0
            and p["presence_penalty"] == 0.0)


def build(C, n_vocab: int, s: Sampling):
    """A new llama.cpp sampler chain for one request (free it with ``C.llama_sampler_free``).

    Constraints are not part of the chain: the engine masks the logits before sampling."""
    p = resolved(s)
    chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
    add = lambda smpl: C.llama_sampler_chain_add(chain, smpl)  # noqa: E731
    if (p["repetition_penalty"], p["frequency_penalty"], p["presence_penalty"]) != (1.0, 0.0, 0.0):
        add(C.llama_sampler_init_penalties(n_vocab, PENALTY_WINDOW, p["repetition_penalty"],
                                           p["frequency_penalty"], p["presence_penalty"]))
    if p["temperature"] == 0:
        add(C.llama_sampler_init_greedy())
        return chain
    add(C.llama_sampler_init_top_k(p["top_k"]))
    add(C.llama_sampler_init_typical(p["typical_p"], 1))
    add(C.llama_sampler_init_top_p(p["top_p"], 1))
    add(C.llama_sampler_init_min_p(p["min_p"], 1))
    add(C.llama_sampler_init_temp(p["temperature"]))
    add(C.llama_sampler_init_dist(s.seed if s.seed is not None else random.randint(0, 2**31 - 1)))
    return chain
