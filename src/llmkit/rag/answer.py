"""Answer a question from a knowledge base, citing the passages used.

``answer(model, kb, question)`` searches, numbers the hits ``[1] [2] …`` into
:data:`ANSWER_TEMPLATE`, asks the model, and maps the ``[n]`` markers in its reply back to
the chunks. With nothing retrieved it answers :data:`NOT_FOUND_TEXT` without calling the model.

    >>> from llmkit.rag import KnowledgeBase, answer
    >>> a = answer(lk.model(), KnowledgeBase("notes"), "How do I install it?", k=4)
    >>> a.text, [(c.n, c.source) for c in a.citations], a.found
    >>> print(ANSWER_TEMPLATE)        # the whole prompt; pass template= to change it

Also here, as plain functions: :func:`reorder_lost_in_the_middle` (best passages at both ends
of the prompt) and :func:`mmr` (maximal marginal relevance over vectors; :func:`mmr_hits`
embeds the hits for it).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import tracing
from ..core.errors import ConfigError
from .stores import Hit

NOT_FOUND_TEXT = "Not found in the documents."

ANSWER_TEMPLATE = """Answer the question using only the numbered passages below.
Cite the passages you use as [1], [2], … right after the sentence they support.
If the passages do not contain the answer, reply exactly: {not_found}

Passages:
{context}

Question: {question}
Answer:"""

CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")  # [2] and [1, 3]


@dataclass
class Citation:
    """A ``[n]`` marker in the answer, resolved to the n-th passage of the prompt."""

    n: int
    chunk_id: str
    source: str
    text: str


@dataclass
class Answer:
    """What :func:`answer` returns.

    Attributes:
        text: the model's reply (or :data:`NOT_FOUND_TEXT` when nothing was retrieved).
        citations: the passages the reply cites, in order of first mention, each once.
        hits: the passages in prompt order: ``hits[n - 1]`` is passage ``[n]``.
        found: False when nothing was retrieved or the model said :data:`NOT_FOUND_TEXT`.
    """

    text: str
    citations: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    found: bool = True


def format_context(hits: Sequence[Hit]) -> str:
    """``[1] (source) text`` blocks, one per hit, numbered from 1."""
    return "\n\n".join(f"[{i}] ({h.source}) {h.text.strip()}" for i, h in enumerate(hits, 1))


def build_prompt(question: str, hits: Sequence[Hit], template: str = ANSWER_TEMPLATE) -> str:
    """The prompt :func:`answer` sends; ``template`` may use ``{context}``, ``{question}``, ``{not_found}``."""
    try:
        return template.format(context=format_context(hits), question=question, not_found=NOT_FOUND_TEXT)
    except (KeyError, IndexError) as e:
        raise ConfigError(f"answer template has an unknown placeholder {e}; accepted: "
                          "{context}, {question}, {not_found} (double other braces: {{ }})") from None


def parse_citations(text: str, hits: Sequence[Hit]) -> list[Citation]:
    """The ``[n]`` markers in ``text`` mapped to ``hits[n - 1]``; numbers out of range are dropped."""
    seen: dict[int, Citation] = {}
    for group in CITATION.findall(text):
        for n in (int(x) for x in group.split(",")):
            if 1 <= n <= len(hits) and n not in seen:
                h = hits[n - 1]
                seen[n] = Citation(n, h.chunk_id, h.source, h.text)
    return list(seen.values())


def says_not_found(text: str) -> bool:
    """Whether a reply is the not-found answer (case and the final full stop do not matter)."""
    return NOT_FOUND_TEXT.rstrip(".").lower() in text.lower()


def reorder_lost_in_the_middle(hits: Sequence[Any]) -> list[Any]:
    """Put the best items at both ends, the weakest in the middle (models read the middle least).

    Input best first; output 1st, 3rd, 5th, … then …, 4th, 2nd — LangChain's LongContextReorder.

        >>> reorder_lost_in_the_middle([1, 2, 3, 4, 5])
        [1, 3, 5, 4, 2]
    """
    hits = list(hits)
    return hits[0::2] + hits[1::2][::-1]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb) if na and nb else 0.0


def mmr(query_vec: Sequence[float], hits_vecs: Sequence[Sequence[float]], k: int, lambda_: float = 0.5) -> list[int]:
    """Maximal marginal relevance: indices of ``k`` vectors relevant to the query yet unlike each other.

    Each step picks the vector maximising ``lambda_ * sim(query) - (1 - lambda_) * max sim(picked)``
    (cosine); ``lambda_=1`` is plain relevance order, ``0`` pure diversity.

        >>> mmr([1, 0], [[0.9, 0.44], [0.88, 0.47], [0.8, -0.6]], k=2)  # skips the near-twin of the first
        [0, 2]
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ConfigError(f"lambda_={lambda_} must be between 0 and 1")
    relevance = [_cosine(query_vec, v) for v in hits_vecs]
    picked: list[int] = []
    left = list(range(len(hits_vecs)))
    while left and len(picked) < k:
        def gain(i: int) -> float:
            redundancy = max((_cosine(hits_vecs[i], hits_vecs[j]) for j in picked), default=0.0)
            return lambda_ * relevance[i] - (1 - lambda_) * redundancy
        best = max(left, key=gain)  # max keeps the first of ties: the better-ranked hit
        picked.append(best)
        left.remove(best)
    return picked


def mmr_hits(embedder: Any, query: str, hits: Sequence[Hit], k: int, lambda_: float = 0.5) -> list[Hit]:
    """:func:`mmr` over hits: embeds the query and the hit texts with ``embedder`` (e.g. ``kb.embedder``).

        >>> hits = mmr_hits(kb.embedder, q, kb.search(q, k=20), k=5)
    """
    if not hits:
        return []
    query_vec, *vecs = embedder.embed([query, *(h.text for h in hits)])
    return [hits[i] for i in mmr(query_vec, vecs, k, lambda_)]


def answer(model: Any, kb: Any, question: str, *, k: int = 5, mode: str = "hybrid",
           filter: dict[str, Any] | None = None, min_score: float | None = None,
           template: str = ANSWER_TEMPLATE, reorder: bool = True,
           retrieve: Callable[[str, int], Sequence[Hit]] | None = None, rerank: Any = None,
           candidates: int | None = None, **sampling: Any) -> Answer:
    """Retrieve, then answer from the passages only, with ``[n]`` citations.

    Args:
        model: an llmkit model (``lk.model(...)``).
        kb: a :class:`~llmkit.rag.KnowledgeBase` (anything with ``search(query, k, mode, filter)``).
        question: the user's question.
        k, mode, filter: passed to ``kb.search``.
        min_score: drop hits scoring below it (mind the scale: hybrid RRF scores are ~0.01-0.03,
            dense are cosines, bm25 unbounded; with ``rerank`` the reranker's scores).
        template: the prompt, with ``{context}``, ``{question}`` and ``{not_found}``.
        reorder: put the best passages at both ends of the prompt (:func:`reorder_lost_in_the_middle`).
        retrieve: a retrieval strategy ``(question, k) -> hits`` used instead of ``kb.search``,
            e.g. ``lambda q, k: rag_fusion(m, kb, q, k=k)`` (see :mod:`llmkit.rag.retrievers`);
            it takes its own mode and filter.
        rerank: a reranker (:mod:`llmkit.rag.rerank`): ``candidates`` hits are retrieved, the
            reranker keeps the best ``k``.
        candidates: with ``rerank``, hits retrieved before reranking (default ``max(20, 4 * k)``).
        **sampling: sampling fields for ``model.chat`` (``temperature`` defaults to 0).

    Returns:
        an :class:`Answer`; ``found`` is False, and the model is not called, when nothing is retrieved.

    Example:
        >>> a = answer(lk.model(), kb, "What is the capital of France?", k=3, max_tokens=200)
        >>> print(a.text); [c.source for c in a.citations]
        >>> a = answer(m, kb, q, retrieve=lambda q, k: hyde(m, kb, q, k=k), rerank=LLMReranker(m))
    """
    if retrieve is not None and filter is not None:
        raise ConfigError("filter= applies to kb.search; with retrieve= pass the filter to your strategy instead")
    if candidates is not None and rerank is None:
        raise ConfigError("candidates= is the number of hits retrieved for rerank=; pass a reranker too, or drop it")
    fetch = (candidates or max(20, 4 * k)) if rerank is not None else k
    content = tracing.record_content()
    with tracing.span("rag.retrieve", {"llmkit.rag.question": question if content else None,
                                       "llmkit.rag.k": k, "llmkit.rag.mode": None if retrieve else mode,
                                       "llmkit.rag.candidates": fetch if rerank is not None else None}) as s:
        if retrieve is not None:
            hits = list(retrieve(question, fetch))[:fetch]  # a strategy that returns more gets cut
        else:
            hits = kb.search(question, k=fetch, mode=mode, filter=filter)
        if rerank is not None:
            hits = rerank.rerank(question, hits, k=k)
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        if reorder:
            hits = reorder_lost_in_the_middle(hits)
        s.set_attributes(tracing.clean({"llmkit.rag.hit_ids": [h.chunk_id for h in hits]}))
    if not hits:
        return Answer(NOT_FOUND_TEXT, [], [], found=False)

    sampling.setdefault("temperature", 0)
    with tracing.span("rag.answer", {"llmkit.rag.question": question if content else None,
                                     "llmkit.rag.k": k, "llmkit.rag.mode": None if retrieve else mode,
                                     "llmkit.rag.hit_ids": [h.chunk_id for h in hits]}) as s:
        reply = model.chat(build_prompt(question, hits, template), **sampling).text
        found = not says_not_found(reply)
        citations = parse_citations(reply, hits) if found else []
        s.set_attributes(tracing.clean({"llmkit.rag.found": found, "llmkit.rag.cited": [c.n for c in citations]}))
    return Answer(reply, citations, hits, found)
