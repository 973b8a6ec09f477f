"""Retrieval strategies over a knowledge base: query rewriting, HyDE, RAG-Fusion, parent-document
and sentence-window expansion, contextual compression.

Each is a plain function over a :class:`~llmkit.rag.KnowledgeBase` that returns hits best first,
records a ``rag.<name>`` span, and builds its prompt from a module-level template you can print
and pass back changed (``template=``):

    >>> from llmkit.rag.retrievers import MULTI_QUERY_TEMPLATE, multi_query, hyde, rag_fusion
    >>> print(MULTI_QUERY_TEMPLATE)
    >>> hits = rag_fusion(lk.model(), kb, "How do I reset my password?", n=4, k=5)
    >>> hits = parent_document(kb, "vacation policy", k=3)    # a KB ingested with ParentChildSplitter
    >>> hits = expand_window(kb, kb.search("vacation policy", k=3), w=1)
    >>> hits = compress(lk.model(), question, hits)            # only the sentences that matter

Any of them plugs into :func:`~llmkit.rag.answer` as ``retrieve=lambda q, k: hyde(m, kb, q, k=k)``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..core import tracing
from ..core.errors import ConfigError
from .kb import rrf
from .splitters import sentences
from .stores import Hit

MULTI_QUERY_TEMPLATE = """Write {n} different search queries for finding documents that answer the question below.
Each query should word the question differently (other terms, synonyms, a more specific or a more general form).

Question: {question}"""

HYDE_TEMPLATE = """Write a short passage, as it might appear in a reference document, that answers the question below.
Write only the passage.

Question: {question}
Passage:"""

COMPRESS_TEMPLATE = """Below are the numbered sentences of a passage, then a question.
List the numbers of the sentences that help answer the question; an empty list if none does.

Sentences:
{sentences}

Question: {question}"""

#: A filter for child chunks only (those with a ``parent_id``): a missing key reads as NULL, never > "".
CHILDREN = {"parent_id": {"$gt": ""}}


# --------------------------------------------------------------------------------------------- shared

def _fill(template: str, **fields: Any) -> str:
    """``template.format(**fields)``, with an error naming the placeholders accepted."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError) as e:
        names = ", ".join("{" + f + "}" for f in fields)
        raise ConfigError(f"template has an unknown placeholder {e}; accepted: {names} (double other braces: {{ }})") from None


def _span(name: str, question: str | None, **attrs: Any):
    """A ``rag.<name>`` span; the question is recorded only where content is (LLMKIT_TRACE_CONTENT)."""
    content = tracing.record_content()
    return tracing.span(f"rag.{name}", {"llmkit.rag.question": question if content else None,
                                        **{f"llmkit.rag.{k}": v for k, v in attrs.items()}})


def _record(s: Any, hits: Sequence[Hit], **attrs: Any) -> None:
    s.set_attributes(tracing.clean({"llmkit.rag.hit_ids": [h.chunk_id for h in hits],
                                    **{f"llmkit.rag.{k}": v for k, v in attrs.items()}}))


def _check_k(k: int | None, name: str = "k") -> None:
    if k is not None and (not isinstance(k, int) or k < 1):
        raise ConfigError(f"{name}={k!r} must be a positive integer")


def search(kb: Any, query: str, k: int = 5, mode: str = "hybrid", filter: dict[str, Any] | None = None) -> list[Hit]:
    """``kb.search`` in a ``rag.search`` span (each sub-query of a strategy shows in the trace)."""
    with _span("search", query, k=k, mode=mode) as s:
        hits = kb.search(query, k=k, mode=mode, filter=filter)
        _record(s, hits)
    return hits


# --------------------------------------------------------------------------------------------- query rewriting

def rewrite(model: Any, question: str, n: int = 3, *, template: str = MULTI_QUERY_TEMPLATE, max_chars: int = 200,
            **sampling: Any) -> list[str]:
    """``n`` rewrites of ``question`` from the model, as a JSON array of strings (each at most
    ``max_chars`` long, so a local model's output always parses); duplicates dropped.

        >>> rewrite(lk.model(), "how to reset password", n=3)
        ['reset forgotten password', 'change account password steps', 'password recovery']
    """
    _check_k(n, "n")
    schema = {"type": "array", "minItems": n, "maxItems": n,
              "items": {"type": "string", "minLength": 1, "maxLength": max_chars}}
    sampling.setdefault("temperature", 0)
    sampling.setdefault("max_tokens", n * (max_chars + 4) + 4)  # a token per character at worst: never cut short
    queries = model.json(_fill(template, n=n, question=question), schema=schema, **sampling)
    return list(dict.fromkeys(q.strip() for q in queries if q.strip()))


def _fused(name: str, model: Any, kb: Any, question: str, n: int, k: int, mode: str, filter: dict | None,
           include_original: bool, template: str, sampling: dict[str, Any]) -> list[Hit]:
    _check_k(k)
    with _span(name, question, k=k, n=n, mode=mode) as s:
        queries = rewrite(model, question, n, template=template, **sampling)
        if include_original:
            queries = [question] + [q for q in queries if q != question]
        hits = rrf([search(kb, q, k, mode, filter) for q in queries], k)
        _record(s, hits, queries=queries if tracing.record_content() else None)
    return hits


def multi_query(model: Any, kb: Any, question: str, n: int = 3, k: int = 5, *, mode: str = "hybrid",
                filter: dict[str, Any] | None = None, include_original: bool = False,
                template: str = MULTI_QUERY_TEMPLATE, **sampling: Any) -> list[Hit]:
    """Search with ``n`` model-written rewrites of the question and fuse the lists (:func:`rrf`).

    Args:
        model: an llmkit model; it writes the rewrites through ``model.json``.
        kb: a knowledge base (anything with ``search(query, k, mode, filter)``).
        n: rewrites asked for.
        k: hits per query and hits returned.
        mode, filter: passed to ``kb.search``.
        include_original: search the question itself too (that is :func:`rag_fusion`).
        template: the prompt, with ``{n}`` and ``{question}``.
        **sampling: for the rewriting call (``temperature`` defaults to 0).

    Example:
        >>> multi_query(lk.model(), kb, "laptop won't turn on", n=3, k=5)
    """
    return _fused("multi_query", model, kb, question, n, k, mode, filter, include_original, template, sampling)


def rag_fusion(model: Any, kb: Any, question: str, n: int = 4, k: int = 5, *, mode: str = "hybrid",
               filter: dict[str, Any] | None = None, template: str = MULTI_QUERY_TEMPLATE,
               **sampling: Any) -> list[Hit]:
    """RAG-Fusion (Raudaschl, 2023): the question and ``n`` rewrites each searched, the lists
    merged by reciprocal rank fusion. Arguments as :func:`multi_query`.

        >>> rag_fusion(lk.model(), kb, "laptop won't turn on", n=4, k=5)
    """
    return _fused("rag_fusion", model, kb, question, n, k, mode, filter, True, template, sampling)


# --------------------------------------------------------------------------------------------- HyDE

def hyde(model: Any, kb: Any, question: str, k: int = 5, *, filter: dict[str, Any] | None = None,
         with_question: bool = False, template: str = HYDE_TEMPLATE, **sampling: Any) -> list[Hit]:
    """Hypothetical document embeddings (Gao et al., 2022): the model writes a passage that would
    answer the question; dense search runs with that passage's embedding, which sits nearer the
    real answers than the short question does.

    Args:
        with_question: search with the mean of the passage's and the question's embeddings.
        template: the prompt, with ``{question}``.
        **sampling: for the writing call (``temperature`` 0 and ``max_tokens`` 200 by default).

    Example:
        >>> hyde(lk.model(), kb, "What does the warranty cover?", k=3)
    """
    _check_k(k)
    sampling.setdefault("temperature", 0)
    sampling.setdefault("max_tokens", 200)
    with _span("hyde", question, k=k) as s:
        passage = model.chat(_fill(template, question=question), **sampling).text.strip() or question
        vectors = kb.embedder.embed([passage, question] if with_question else [passage])
        unit = [[x / (math.sqrt(sum(y * y for y in v)) or 1.0) for x in v] for v in vectors]
        query = [sum(col) / len(unit) for col in zip(*unit)]
        hits = kb.store.search_dense(query, k, filter)
        _record(s, hits, passage=passage if tracing.record_content() else None)
    return hits


# --------------------------------------------------------------------------------------------- expansion

class _Chunks:
    """Each source's stored chunks, read once per call (``store.chunks(source)``, in stored order)."""

    def __init__(self, kb: Any):
        self.kb, self.cache = kb, {}

    def __call__(self, source: str) -> list[Hit]:
        if source not in self.cache:
            self.cache[source] = self.kb.store.chunks(source)
        return self.cache[source]


def expand_parents(kb: Any, hits: Sequence[Hit]) -> list[Hit]:
    """Replace each child chunk (one with ``metadata["parent_id"]``, as :class:`ParentChildSplitter`
    writes) by its parent chunk, each parent once, at its best child's place and score.
    ``metadata["child_ids"]`` lists the children that matched; other hits pass through.

        >>> expand_parents(kb, kb.search("refund policy", k=10, filter=CHILDREN))
    """
    chunks = _Chunks(kb)
    out: dict[str, Hit] = {}
    with _span("expand_parents", None, hits_in=len(hits)) as s:
        for h in hits:
            pid = h.metadata.get("parent_id")
            parent = next((c for c in chunks(h.source) if c.chunk_id == pid), None) if pid else None
            if parent is None:  # not a child, or its parent is not stored: keep the hit as it is
                out.setdefault(h.chunk_id, h)
                continue
            if pid in out:  # a sibling (or the parent itself) ranked higher: note this child there too
                seen = out[pid]
                out[pid] = replace(seen, metadata={**seen.metadata,
                                                   "child_ids": [*seen.metadata.get("child_ids", []), h.chunk_id]})
                continue
            out[pid] = Hit(parent.text, parent.source, h.score, {**parent.metadata, "child_ids": [h.chunk_id]}, pid)
        hits = list(out.values())
        _record(s, hits)
    return hits


def parent_document(kb: Any, question: str, k: int = 5, *, mode: str = "hybrid", filter: dict[str, Any] | None = None,
                    candidates: int | None = None) -> list[Hit]:
    """Parent-document retrieval: search the small child chunks (precise matches), return their
    large parents (enough context to answer). For a knowledge base ingested with
    :class:`~llmkit.rag.ParentChildSplitter`.

    Args:
        k: parents returned.
        mode, filter: for the child search (``filter`` is combined with :data:`CHILDREN`).
        candidates: children searched (default ``4 * k``: several may share a parent).

    Example:
        >>> kb = KnowledgeBase("docs", splitter=ParentChildSplitter())
        >>> kb.ingest("docs/"); parent_document(kb, "How is the warranty claimed?", k=3)
    """
    _check_k(k)
    _check_k(candidates, "candidates")
    with _span("parent_document", question, k=k, mode=mode) as s:
        children = search(kb, question, candidates or 4 * k, mode, {**(filter or {}), **CHILDREN})
        hits = expand_parents(kb, children)[:k]
        _record(s, hits)
    return hits


def _joined(window: Sequence[Hit]) -> str:
    """Neighbouring chunks as one text: an overlap (the next chunk of the same document starting
    before the previous one ends) is written once; other joins get a space."""
    text, p = "", None
    for c in window:
        m = c.metadata
        if p is not None and _overlaps(p, m):
            text += c.text[p["end"] - m["start"]:]  # chunk.text == source[start:end]: the rest follows on directly
        else:
            text += (" " if text else "") + c.text
        p = m
    return text


def _overlaps(p: dict[str, Any], m: dict[str, Any]) -> bool:
    """Whether chunk ``m`` is the next one of chunk ``p``'s document and starts inside it."""
    if not all(isinstance(x.get(key), int) for x in (p, m) for key in ("chunk_index", "start", "end")):
        return False
    return m["chunk_index"] == p["chunk_index"] + 1 and p["start"] <= m["start"] < p["end"]


def expand_window(kb: Any, hits: Sequence[Hit], w: int = 1) -> list[Hit]:
    """Sentence-window retrieval: each hit's text becomes its chunk with the ``w`` chunks before
    and after it in the same source (stored order, i.e. by chunk index), overlaps written once.
    Match on small chunks (a sentence each: ``SentenceSplitter`` with a small ``chunk_size``),
    read with their surroundings. In a parent/child knowledge base a child's neighbours are
    children. ``metadata["window"]`` lists the chunk ids joined; id and score stay the hit's.

        >>> expand_window(kb, kb.search("refund policy", k=3), w=2)
    """
    if not isinstance(w, int) or w < 0:
        raise ConfigError(f"w={w!r} must be an integer >= 0 (chunks on each side)")
    chunks = _Chunks(kb)
    out = []
    with _span("expand_window", None, w=w, hits_in=len(hits)) as s:
        for h in hits:
            level = [c for c in chunks(h.source) if ("parent_id" in c.metadata) == ("parent_id" in h.metadata)]
            at = next((i for i, c in enumerate(level) if c.chunk_id == h.chunk_id), None)
            if at is None:  # not a stored chunk (already rewritten): nothing to extend
                out.append(h)
                continue
            window = level[max(0, at - w):at + w + 1]
            out.append(replace(h, text=_joined(window), metadata={**h.metadata, "window": [c.chunk_id for c in window]}))
        _record(s, out)
    return out


# --------------------------------------------------------------------------------------------- compression

def _sentences(text: str) -> list[str]:
    return [t for a, b in sentences(text) if (t := text[a:b].strip())]


def compress(model: Any, question: str, hits: Sequence[Hit], *, template: str = COMPRESS_TEMPLATE,
             **sampling: Any) -> list[Hit]:
    """Contextual compression by extraction: for each hit the model lists (as a JSON array of
    sentence numbers) the sentences relevant to the question; the hit keeps only those, in their
    order, and is dropped when none is. One model call per hit; sentences come back verbatim.

    Args:
        template: the prompt, with ``{sentences}`` (numbered ``[1] …``, one a line) and ``{question}``.
        **sampling: for each call (``temperature`` defaults to 0).

    Example:
        >>> compress(lk.model(), "What is the refund period?", kb.search("refund", k=5))
    """
    sampling.setdefault("temperature", 0)
    out = []
    with _span("compress", question, hits_in=len(hits), method="llm") as s:
        for h in hits:
            parts = _sentences(h.text)
            if not parts:
                continue
            schema = {"type": "array", "maxItems": len(parts),
                      "items": {"type": "integer", "minimum": 1, "maximum": len(parts)}}
            numbered = "\n".join(f"[{i}] {t}" for i, t in enumerate(parts, 1))
            keep = set(model.json(_fill(template, sentences=numbered, question=question), schema=schema,
                                  **{"max_tokens": 8 * len(parts) + 8, **sampling}))
            if keep:
                out.append(replace(h, text=" ".join(t for i, t in enumerate(parts, 1) if i in keep)))
        _record(s, out)
    return out


def compress_by_embedding(embedder: Any, question: str, hits: Sequence[Hit], threshold: float = 0.5) -> list[Hit]:
    """Contextual compression without a model call: keep the sentences whose embedding has cosine
    similarity at least ``threshold`` with the question's; drop hits with none. One ``embed`` call.

        >>> compress_by_embedding(kb.embedder, "What is the refund period?", hits, threshold=0.4)
    """
    split = [_sentences(h.text) for h in hits]
    out = []
    with _span("compress", question, hits_in=len(hits), method="embedding", threshold=threshold) as s:
        flat = [t for parts in split for t in parts]
        if flat:
            q, *vecs = embedder.embed([question, *flat])
            norm = lambda v: math.sqrt(sum(x * x for x in v)) or 1.0
            sims = iter([sum(a * b for a, b in zip(q, v)) / (norm(q) * norm(v)) for v in vecs])
            for h, parts in zip(hits, split):
                kept = [t for t in parts if next(sims) >= threshold]
                if kept:
                    out.append(replace(h, text=" ".join(kept)))
        _record(s, out)
    return out
