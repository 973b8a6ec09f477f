"""Retrieval-augmented generation. So far: :class:`Embedder` (the embedded all-MiniLM-L6-v2).

Heavy libraries (sentence-transformers, torch) load only when an embedder is made.
"""
from .embedders import Embedder, embedded_minilm

__all__ = ["Embedder", "embedded_minilm"]
