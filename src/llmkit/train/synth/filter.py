"""Cleaning rows: an LLM judge's grade (:func:`judge_filter`), near-duplicate removal by word
shingles with MinHash LSH and an optional embedder (:func:`dedup`), and both as a config says
(:func:`filter_rows`).

Example:
    >>> from llmkit.train.synth import dedup, judge_filter
    >>> rows = judge_filter(lk.model(), dedup(rows, threshold=0.9), threshold=4)
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from ...core.errors import ConfigError, StructuredOutputError
from .common import _progress
from .config import FilterConfig
from .io import Rows, check_row
from .text import jaccard, shingles

#: What ``judge_filter`` asks the judge to check (``RUBRIC_TEMPLATE`` of llmkit.evals.judges).
JUDGE_RUBRIC = ("The answer does what the request asks: it is correct, complete and relevant, follows every "
                "instruction in the request, and is clear. A refusal, or an off-topic, cut-off or made-up answer "
                "does not meet the rubric.")


def _turns(row: dict) -> tuple[str, str]:
    """The last assistant turn and the user turn before it."""
    msgs = row["messages"]
    answer = msgs[-1]["content"]
    question = next((m["content"] for m in reversed(msgs[:-1]) if m["role"] == "user"), "")
    return question, answer


def judge_filter(model: Any, rows: Iterable[dict], threshold: int = 4, *, rubric: str = JUDGE_RUBRIC,
                 template: str | None = None, scale: tuple[int, int] = (1, 5), max_reasoning: int = 400,
                 progress: bool | None = None, **sampling: Any) -> Rows:
    """Grade each row's answer with an LLM judge (:func:`llmkit.evals.judges.grade`, the request as the
    question) and keep rows scoring at least ``threshold``; ``meta`` gets ``judge_score`` and
    ``judge_reasoning``. A judge that never gave a valid grade drops the row (``judge_error``).

    Example:
        >>> kept = judge_filter(lk.model("openai:gpt-4o-mini"), rows, threshold=4)
        >>> kept.rejected["low_score"]
    """
    from ...evals import judges

    low, high = scale if isinstance(scale, (tuple, list)) and len(scale) == 2 else (None, None)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (low, high)) or low >= high:
        raise ConfigError(f"scale={scale!r} must be two integers (low, high) with low < high, e.g. (1, 5)")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not low <= threshold <= high:
        raise ConfigError(f"threshold={threshold!r} must be a number within the judge's scale {low}-{high}")
    sampling.setdefault("max_tokens", max_reasoning + 64)  # the reasoning is capped in characters: it always fits
    out = Rows(rejected=getattr(rows, "rejected", None))
    rows = list(rows)
    with _progress(len(rows), "judge", progress) as advance:
        for i, row in enumerate(rows, 1):
            question, answer = _turns(check_row(row, f"row {i}"))
            try:
                g = judges.grade(model, answer, rubric, question=question, scale=(low, high), template=template,
                                 max_reasoning=max_reasoning, **sampling)
            except StructuredOutputError:
                out.rejected["judge_error"] += 1
                advance(1)
                continue
            advance(1)
            if g.score < threshold:
                out.rejected["low_score"] += 1
                continue
            out.append({**row, "meta": {**row.get("meta", {}), "judge_score": g.score, "judge_reasoning": g.reasoning}})
    return out


def _text(row: dict, on: str) -> str:
    return "\n".join(m["content"] for m in row["messages"] if on == "all" or m["role"] == on)


def _mix(z):
    """splitmix64's finalizer over a uint64 array: each input bit flips about half the output bits, so
    XOR with a random key, then mix, acts as a fresh random permutation per key. (The textbook
    ``(a*x + b) mod p`` with 32-bit ``a, x`` never wraps modulo p, so a small ``x`` wins every minimum.)"""
    import numpy as np

    with np.errstate(over="ignore"):  # multiplication modulo 2^64 is the point
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def minhash(texts: list[str], num_perm: int = 128, shingle_size: int = 2, seed: int = 0):
    """MinHash signatures (``len(texts)`` × ``num_perm`` uint64): the share of equal positions of two
    signatures estimates the Jaccard similarity of the texts' shingle sets (standard error about
    ``sqrt(J (1 - J) / num_perm)``)."""
    import numpy as np

    keys = np.random.default_rng(seed).bit_generator.random_raw(num_perm).astype(np.uint64)
    out = np.full((len(texts), num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    for i, t in enumerate(texts):
        s = shingles(t, shingle_size)
        if s:
            x = np.array([int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") for w in s],
                         dtype=np.uint64)
            out[i] = _mix(x[:, None] ^ keys[None, :]).min(axis=0)
    return out


@lru_cache(maxsize=32)
def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH bands × rows per band: of the layouts that make a pair at ``threshold`` a candidate with
    probability ≥ 0.99 (``1 - (1 - s^r)^b``, so at most 1% of true duplicates are missed), the one
    with the fewest candidates below it (least false-positive area; each costs one exact check)."""
    best, least = (num_perm, 1), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            if 1 - (1 - threshold ** r) ** b < 0.99:
                continue
            fp = sum(1 - (1 - (threshold * (i + 0.5) / 64) ** r) ** b for i in range(64))
            if fp < least:
                best, least = (b, r), fp
    return best


def dedup(rows: Iterable[dict], threshold: float = 0.9, embedder: Any = None, *, shingle_size: int = 2,
          on: str = "all", method: str = "minhash", num_perm: int = 128, seed: int = 0) -> Rows:
    """Drop near-duplicate rows, keeping the first of each group: a row goes when the Jaccard similarity
    of its word shingles with a row already kept reaches ``threshold``; with an ``embedder``
    (``llmkit.rag.Embedder()``…) also when the cosine of their embeddings does.

    ``method="minhash"`` finds candidate pairs with MinHash LSH and checks each candidate's exact
    Jaccard, so it drops only true duplicates (and may, rarely, miss one); ``"exact"`` compares every
    pair (quadratic).

    Args:
        rows: chat rows.
        threshold: similarity at which two rows are duplicates (Jaccard, and cosine with an embedder).
        embedder: anything with ``.embed(list[str])``; None = words only.
        shingle_size: words per shingle.
        on: which turns are compared: ``"all"``, ``"user"`` or ``"assistant"``.

    Example:
        >>> kept = dedup(rows, threshold=0.9, embedder=llmkit.rag.Embedder())
        >>> kept.rejected
        Counter({'near_duplicate': 12, 'similar_meaning': 3})
    """
    import numpy as np

    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold={threshold!r} must be in (0, 1]")
    if on not in ("all", "user", "assistant"):
        raise ConfigError(f"on={on!r} is not one of all, user, assistant")
    if method not in ("minhash", "exact"):
        raise ConfigError(f"method={method!r} is not one of minhash, exact")
    out = Rows(rejected=getattr(rows, "rejected", None))
    rows = list(rows)
    texts = [_text(check_row(r, f"row {i}"), on) for i, r in enumerate(rows, 1)]
    sets = [shingles(t, shingle_size) for t in texts]
    kept: list[int] = []
    if method == "exact":
        for i, s in enumerate(sets):
            if any(jaccard(s, sets[j]) >= threshold for j in kept):
                out.rejected["near_duplicate"] += 1
            else:
                kept.append(i)
    else:
        b, r = _bands(threshold, num_perm)
        sig = minhash(texts, num_perm, shingle_size, seed)
        buckets: list[dict[bytes, list[int]]] = [{} for _ in range(b)]
        for i, s in enumerate(sets):
            keys = [sig[i, band * r:(band + 1) * r].tobytes() for band in range(b)]
            candidates = {j for band, key in enumerate(keys) for j in buckets[band].get(key, ())}
            if any(jaccard(s, sets[j]) >= threshold for j in sorted(candidates)):
                out.rejected["near_duplicate"] += 1
                continue
            kept.append(i)
            for band, key in enumerate(keys):
                buckets[band].setdefault(key, []).append(i)
    if embedder is not None and kept:
        vectors = np.asarray(embedder.embed([texts[i] for i in kept]), dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        chosen: list[int] = []
        for pos in range(len(kept)):
            if chosen and float((vectors[chosen] @ vectors[pos]).max()) >= threshold:
                out.rejected["similar_meaning"] += 1
            else:
                chosen.append(pos)
        kept = [kept[pos] for pos in chosen]
    out.extend(rows[i] for i in kept)
    return out


def filter_rows(rows: Iterable[dict], config: FilterConfig | None = None, *, judge: Any = None,
                embedder: Any = None, progress: bool | None = None) -> Rows:
    """Clean rows as ``config`` says: :func:`dedup` first (cheap), then :func:`judge_filter` on what is left.

    Args:
        judge: the judging model, needed when ``config.judge_threshold`` is set.
        embedder: for ``config.embed``; None there = the embedded all-MiniLM-L6-v2.

    Example:
        >>> filter_rows(rows, FilterConfig(judge_threshold=4, embed=True), judge=lk.model())
    """
    cfg = config or FilterConfig()
    out = rows if isinstance(rows, Rows) else Rows(rows)
    if cfg.embed and not cfg.dedup:
        raise ConfigError("embed compares rows for dedup, which is off; turn dedup on or leave embed off")
    if cfg.dedup:
        if cfg.embed and embedder is None:
            from ...rag.embedders import Embedder

            embedder = Embedder()
        out = dedup(out, cfg.dedup_threshold, embedder if cfg.embed else None, shingle_size=cfg.shingle_size)
    if cfg.judge_threshold is not None:
        if judge is None:
            raise ConfigError("judge_threshold is set but no judge model was given")
        out = judge_filter(judge, out, cfg.judge_threshold, progress=progress)
    return out
