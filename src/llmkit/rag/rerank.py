"""Rerankers: read each retrieved passage together with the question and order them again.

Every reranker has ``rerank(question, hits, k=None) -> list[Hit]``: the hits best first, each
with the reranker's score in ``.score`` (ties keep the retrieval order), cut to ``k``.

- :class:`CrossEncoderReranker`: a sentence-transformers CrossEncoder from a local folder or the
  Hugging Face cache (never downloaded).
- :class:`LLMReranker` ``mode="pointwise"``: a yes/no relevance question per passage, scored by
  P(yes) / (P(yes) + P(no)) from the first token's log-probabilities (:data:`POINTWISE_TEMPLATE`).
- :class:`LLMReranker` ``mode="listwise"``: one call ranks all passages, answering a JSON array
  of passage numbers (:data:`LISTWISE_TEMPLATE`), repaired into a permutation
  (:func:`as_permutation`).

    >>> from llmkit.rag.rerank import LLMReranker
    >>> r = LLMReranker(lk.model(), mode="pointwise")
    >>> hits = r.rerank("How do I reset my password?", kb.search("reset password", k=20), k=5)
    >>> answer(m, kb, question, rerank=r)            # retrieve 20, keep the best k
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .retrievers import _check_k, _fill, _record, _span
from .stores import Hit

# Question first: with SmolLM2-135M this wording ranked the answering passage first in 10 of 10
# test triples; passage-first wordings did so in 1 to 5 of them.
POINTWISE_TEMPLATE = """Question: {question}
Passage: {passage}
Is the answer to the question in the passage? Answer yes or no."""

LISTWISE_TEMPLATE = """Rank the {n} passages below by how well they answer the question, most relevant first.

{passages}

Question: {question}

Reply with the passage numbers, best first, as a JSON array such as [2, 1, 3]."""

YES, NO = "yes", "no"


def _reranked(hits: Sequence[Hit], scores: Sequence[float], k: int | None) -> list[Hit]:
    """Hits sorted by ``scores`` (stable: ties keep retrieval order), each carrying its score."""
    order = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [replace(hits[i], score=float(scores[i])) for i in order][:k]


def as_permutation(order: Sequence[Any], n: int) -> list[int]:
    """A model's ranking (1-based passage numbers) made a permutation of ``0 .. n-1``: numbers out
    of range and repeats dropped, the passages it left out appended in their original order.

        >>> as_permutation([3, 3, 9, 1], 4)
        [2, 0, 1, 3]
    """
    seen: dict[int, None] = {}
    for x in order:
        if isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= n:
            seen.setdefault(x - 1, None)
    return list(seen) + [i for i in range(n) if i not in seen]


def yes_probability(logprobs: Any) -> float | None:
    """P(yes) / (P(yes) + P(no)) from the first generated token and its top alternatives
    (``Completion.logprobs``); tokens count as yes/no whatever their case and spaces. A side not
    among them gets the smallest probability shown (an upper bound on it). None when neither is."""
    if not logprobs:
        return None
    first = logprobs[0]
    seen = dict(first.top)
    seen.setdefault(first.token, first.logprob)
    sides: dict[str, list[float]] = {YES: [], NO: []}
    for token, lp in seen.items():
        word = token.strip().lower()
        if word in sides:
            sides[word].append(lp)
    if not sides[YES] and not sides[NO]:
        return None
    floor = min(seen.values())
    total = {w: math.log(sum(math.exp(x) for x in lps)) if lps else floor for w, lps in sides.items()}
    return 1.0 / (1.0 + math.exp(total[NO] - total[YES]))  # the two-way softmax, written stably


class LLMReranker:
    """Rerank with a chat model, pointwise (a yes/no question per passage) or listwise (one ranking).

    Args:
        model: an llmkit model.
        mode: ``"pointwise"``: one call per passage, score P(yes)/(P(yes)+P(no)) from the first
            token's ``top_logprobs``; a backend without logprobs answers through ``model.choose``
            between yes and no instead (score 1 or 0). ``"listwise"``: one call, the model answers a
            JSON array of passage numbers; score ``1 / rank``.
        template: the prompt; pointwise takes ``{passage}`` and ``{question}``, listwise ``{n}``,
            ``{passages}`` (``[1] text`` blocks) and ``{question}``. Default: :data:`POINTWISE_TEMPLATE`
            or :data:`LISTWISE_TEMPLATE`.
        top_logprobs: alternatives read at the first token (pointwise).
        **sampling: for every call (``temperature`` defaults to 0).

    Example:
        >>> r = LLMReranker(lk.model(), mode="listwise")
        >>> [h.source for h in r.rerank("capital of France?", hits, k=3)]
    """

    MODES = ("pointwise", "listwise")

    def __init__(self, model: Any, mode: str = "pointwise", *, template: str | None = None, top_logprobs: int = 20,
                 **sampling: Any):
        if mode not in self.MODES:
            raise ConfigError(f"unknown rerank mode {mode!r}; accepted: {', '.join(self.MODES)}")
        self.model, self.mode, self.top_logprobs = model, mode, top_logprobs
        self.template = template or (POINTWISE_TEMPLATE if mode == "pointwise" else LISTWISE_TEMPLATE)
        self.sampling = {"temperature": 0, **sampling}

    def rerank(self, question: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
        """The hits best first by the model's judgement, ``.score`` set, at most ``k``."""
        _check_k(k)
        with _span("rerank", question, reranker=f"llm-{self.mode}", hits_in=len(hits)) as s:
            scores = self._pointwise(question, hits) if self.mode == "pointwise" else self._listwise(question, hits)
            out = _reranked(hits, scores, k)
            _record(s, out, scores=[h.score for h in out])
        return out

    def score(self, question: str, passage: str) -> float:
        """Pointwise relevance of one passage, in [0, 1]."""
        prompt = _fill(self.template, passage=passage.strip(), question=question)
        if "logprobs" in getattr(self.model, "supported", ()):
            c = self.model.chat(prompt, **{"max_tokens": 1, **self.sampling, "logprobs": True,
                                           "top_logprobs": self.top_logprobs})
            p = yes_probability(c.logprobs)
            if p is not None:
                return p
        # no logprobs (the backend has none, or neither word was among the likeliest): ask for one word
        return 1.0 if self.model.choose(prompt, [YES, NO], **self.sampling) == YES else 0.0

    def _pointwise(self, question: str, hits: Sequence[Hit]) -> list[float]:
        return [self.score(question, h.text) for h in hits]

    def _listwise(self, question: str, hits: Sequence[Hit]) -> list[float]:
        n = len(hits)
        if n < 2:
            return [1.0] * n
        passages = "\n\n".join(f"[{i}] {h.text.strip()}" for i, h in enumerate(hits, 1))
        schema = {"type": "array", "minItems": 1, "maxItems": n, "items": {"type": "integer", "minimum": 1, "maximum": n}}
        order = self.model.json(_fill(self.template, n=n, passages=passages, question=question), schema=schema,
                                **{"max_tokens": 4 * n + 8, **self.sampling})
        scores = [0.0] * n
        for rank, i in enumerate(as_permutation(order, n), 1):
            scores[i] = 1.0 / rank
        return scores


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``) that
    reads question and passage together and scores their relevance.

    Loaded only from disk: a folder, or a hub name already in the Hugging Face cache
    (``HF_HUB_OFFLINE=1``, ``local_files_only``); anything else is a ConfigError, never a download.

    Args:
        model_name_or_path: a CrossEncoder folder (``CrossEncoder.save_pretrained``) or a cached hub name.
        batch_size: pairs per forward pass.
        max_length: truncate each (question, passage) pair to this many tokens; None = the model's.

    Example:
        >>> r = CrossEncoderReranker("~/models/ms-marco-MiniLM-L6-v2")
        >>> r.rerank("How do I reset my password?", kb.search("reset password", k=20), k=5)
    """

    def __init__(self, model_name_or_path: str | Path, *, batch_size: int = 32, max_length: int | None = None,
                 device: str = "cpu"):
        folder = Path(model_name_or_path).expanduser()
        self.name = str(folder if folder.is_dir() else model_name_or_path)
        self.batch_size = batch_size
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import CrossEncoder
        except ImportError:
            raise ConfigError("CrossEncoderReranker needs sentence-transformers: pip install 'llmkit[rag]'") from None
        try:
            self.model = CrossEncoder(self.name, local_files_only=True, max_length=max_length, device=device)
        except (OSError, ValueError) as e:
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ConfigError(f"no cross-encoder {str(model_name_or_path)!r} on this machine ({why}); pass the "
                              "folder of a saved CrossEncoder, or put the model in the Hugging Face cache first: "
                              "llmkit never downloads one") from None

    def rerank(self, question: str, hits: Sequence[Hit], k: int | None = None) -> list[Hit]:
        """The hits best first by the cross-encoder's score (after its activation, e.g. a sigmoid)."""
        _check_k(k)
        with _span("rerank", question, reranker=f"cross-encoder:{self.name}", hits_in=len(hits)) as s:
            scores: list[float] = []
            if hits:
                raw = self.model.predict([(question, h.text) for h in hits], batch_size=self.batch_size,
                                         show_progress_bar=False)
                # a two-label model (irrelevant, relevant) scores by its last label
                scores = [float(x[-1]) if getattr(x, "ndim", 0) else float(x) for x in raw]
            out = _reranked(hits, scores, k)
            _record(s, out, scores=[h.score for h in out])
        return out
