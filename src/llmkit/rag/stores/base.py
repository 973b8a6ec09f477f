"""What every knowledge-base store returns: a ``Hit``.

A store (``sqlite.py`` today; ``pgvector.py`` later) has the same method names —
``replace``, ``delete_source``, ``documents``, ``sources``, ``search_dense``, ``search_bm25``,
``stats`` — so ``KnowledgeBase`` works with either.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
