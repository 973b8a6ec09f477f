"""Comparing greedy outputs produced under different batch compositions.

llama.cpp's CPU kernels pick their reduction order by batch shape (tiled flash attention
with float32 accumulators for 64+ query rows, a per-cell loop with float16 accumulators
below that, a split-KV path for one query over 512+ cells), so the same request can get
logits a few hundredths of a nat apart when it shares a batch (ggml-org/llama.cpp#6583,
#7052). Greedy outputs are therefore equal up to near-ties: two runs may only part where
the top two tokens were nearly tied. A real batching bug (a sequence reading another's
KV cells, a wrong position) breaks outputs at confident tokens, which this check catches.
"""
from __future__ import annotations

TIE = 0.5  # nats between the top two tokens; measured divergences sat at 0.001-0.17


def tokens(chunks) -> list:
    """The TokenLogprobs of a stream (request with logprobs=True, top_logprobs=2)."""
    out = []
    for c in chunks:
        out += c.logprobs or []
    return out


def first_divergence(a: list, b: list) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x.token != y.token:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def assert_same_up_to_ties(a: list, b: list) -> bool:
    """Assert two greedy runs agree until (at most) a near-tie; True if they agree entirely."""
    i = first_divergence(a, b)
    if i is None:
        return True
    if i >= min(len(a), len(b)):
        # One run ended (chose end-of-turn, which streams no token) where the other went on:
        # a near-tie only if the end was close behind the token the longer run took.
        longer = a if len(a) > len(b) else b
        gap = longer[i].top[0][1] - longer[i].top[1][1]
        assert gap < TIE, (f"one run stopped at token {i} where the other was confident (gap {gap:.3f}): "
                           f"{''.join(t.token for t in a)!r} vs {''.join(t.token for t in b)!r}")
        return False
    gap = min(a[i].top[0][1] - a[i].top[1][1], b[i].top[0][1] - b[i].top[1][1])
    assert gap < TIE, (f"runs part at token {i} ({a[i].token!r} vs {b[i].token!r}) where the model was "
                       f"confident (top-2 gap {gap:.3f} nats): {''.join(t.token for t in a)!r}")
    return False
