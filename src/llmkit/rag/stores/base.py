"""What every knowledge-base store returns: a ``Hit``.

A store (``sqlite.py`` today; ``pgvector.py`` later) has the same method names —
``replace``, ``delete_source``, ``documents``, ``sources``, ``search_dense``, ``search_bm25``,
``stats`` — so ``KnowledgeBase`` works with either.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...core.errors import ConfigError


@dataclass
class Hit:
    """One retrieved chunk.

    Attributes:
        text: the chunk's text.
        source: the file (resolved path) the chunk came from.
        score: higher is better; cosine for dense, positive BM25 for bm25, the fused score for hybrid.
        metadata: the chunk's metadata (the document's, plus ``chunk_index``, ``start``/``end``…).
        chunk_id: the chunk's stable id.
    """

    text: str
    source: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk_id: str = ""


def as_vectors(source: str, chunks: Sequence[Any], embeddings: Sequence[Sequence[float]], dims: Any) -> list[np.ndarray]:
    """The embeddings of ``source``'s chunks as float32 arrays, checked before anything is written:
    one per chunk, each of the store's ``dims`` (None: the store has none yet, any length goes)."""
    if len(chunks) != len(embeddings):
        raise ConfigError(f"{len(chunks)} chunks but {len(embeddings)} embeddings for {source!r}")
    out = []
    for c, vec in zip(chunks, embeddings):
        v = np.asarray(vec, dtype=np.float32)
        if dims is not None and v.shape != (int(dims),):
            raise ConfigError(f"chunk {c.id!r} of {source!r} has a {v.shape} vector, the store holds {dims}-d")
        out.append(v)
    return out
