"""The default knowledge-base store: one SQLite file holding documents, chunks, their vectors and
an FTS5 index for BM25.

Tables::

    documents(source PK, content_hash, mtime, title, metadata JSON)
    chunks(n INTEGER PK, id UNIQUE, source FK -> documents ON DELETE CASCADE, idx, text, metadata JSON,
           embedding BLOB float32)
    chunks_fts  FTS5 over chunks.text (external content, kept in step by triggers)
    meta(key PK, value)   embedder name and dimensions, so vectors from two models never mix

``n`` is an integer alias of the rowid, which FTS5 needs to stay stable (a plain rowid may change
on VACUUM); ``id`` is the splitter's stable chunk id.

Vectors live in the same file as everything else, so a document's replacement (delete its old
chunks, insert the new ones, update its row) is one transaction: a crash mid-way leaves the old
state, never half of each. Dense search is exact cosine over all stored vectors with numpy (the
matrix is loaded on first use and cached until the next write, by this or another connection).
That is fine to a few hundred thousand chunks; an ANN index (HNSW) beside the file can come later.

Example:
    >>> store = SQLiteStore("kb.db")
    >>> store.search_bm25("reset password", k=3, filter={"format": {"$in": ["markdown", "text"]}})
"""
from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.errors import ConfigError
from .base import Hit

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS documents(
    source TEXT PRIMARY KEY, content_hash TEXT NOT NULL, mtime REAL, title TEXT, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    n INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL REFERENCES documents(source) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    embedding BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='n');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.n, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.n, old.text);
END;
"""

_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_KEY = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


def filter_sql(filter: dict[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """A metadata filter as a SQL condition over a JSON column, and its parameters.

    Keys are metadata keys (dotted for nested ones: ``"record.author"``); several keys must all
    match. A value is matched for equality, or is a dict of operators: ``$eq $ne $gt $gte $lt
    $lte`` and ``$in`` / ``$nin`` (a list).

    Example:
        >>> filter_sql({"format": "pdf", "page": {"$gte": 2, "$lt": 5}, "lang": {"$in": ["en", "fr"]}})
    """
    if not filter:
        return "1", []
    if not isinstance(filter, dict):
        raise ConfigError(f"filter={filter!r} must be a dict such as {{'format': 'pdf', 'page': {{'$gte': 2}}}}")
    parts, params = [], []
    for key, cond in filter.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ConfigError(f"filter key {key!r} is not a metadata key (letters, digits, _ and -, dotted for nesting)")
        path = "$." + ".".join(f'"{k}"' for k in key.split("."))
        expr = f"json_extract({column}, '{path}')"
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        if not ops:
            raise ConfigError(f"filter on {key!r} has no condition")
        for op, value in ops.items():
            if op in ("$in", "$nin"):
                if not isinstance(value, (list, tuple, set)) or not value:
                    raise ConfigError(f"filter {key!r}: {op} takes a non-empty list, not {value!r}")
                neg = "NOT " if op == "$nin" else ""
                parts.append(f"{expr} {neg}IN ({', '.join('?' * len(value))})")
                params += [_scalar(key, v) for v in value]
            elif op in _OPS:
                parts.append(f"{expr} {_OPS[op]} ?")
                params.append(_scalar(key, value))
            else:
                raise ConfigError(f"filter {key!r}: unknown operator {op!r}; accepted: {', '.join([*_OPS, '$in', '$nin'])}")
    return " AND ".join(parts), params


def _scalar(key: str, value: Any) -> Any:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"filter {key!r}: {value!r} is not a string, number, boolean or None")
    return value


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)  # a stray Path or date must not stop an ingest


class SQLiteStore:
    """Documents, chunks, vectors and BM25 in one SQLite file.

    Args:
        path: the database file (created with its folder if missing); ``":memory:"`` for a throwaway.

    Example:
        >>> store = SQLiteStore("notes.db")
        >>> store.stats()
        {'documents': 3, 'chunks': 12, 'dimensions': 384, 'embedder': 'all-MiniLM-L6-v2', ...}
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are opened explicitly in _tx(), never implicitly
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode = WAL")  # readers never block the writer; crash-safe
            self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(_SCHEMA)
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None  # (data_version, rowids, unit vectors)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._cache = None

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def check_embedder(self, name: str, dimensions: int) -> None:
        """Record the embedder on first use; refuse a different one later (its vectors would not compare)."""
        stored_name, stored_dims = self.get_meta("embedder"), self.get_meta("dimensions")
        if stored_dims is None:
            with self._tx() as db:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               [("embedder", name), ("dimensions", str(dimensions))])
        elif (stored_name, int(stored_dims)) != (name, dimensions):
            raise ConfigError(f"{self.path} was built with embedder {stored_name!r} ({stored_dims}-d), not "
                              f"{name!r} ({dimensions}-d); use that embedder or a new knowledge base")

    # ------------------------------------------------------------------ writes

    def replace(self, document: dict[str, Any], chunks: Sequence[Any], embeddings: Sequence[Sequence[float]]) -> None:
        """Replace everything stored for ``document["source"]`` with these chunks, in one transaction.

        Args:
            document: ``source``, ``content_hash`` and optionally ``mtime``, ``title``, ``metadata``.
            chunks: objects with ``.id``, ``.text`` and ``.metadata`` (``splitters.Chunk``), ids unique.
            embeddings: one vector per chunk, all of the store's dimensions.
        """
        if len(chunks) != len(embeddings):
            raise ConfigError(f"{len(chunks)} chunks but {len(embeddings)} embeddings for {document.get('source')!r}")
        dims = self.get_meta("dimensions")
        source = document["source"]
        with self._tx() as db:
            db.execute("DELETE FROM chunks WHERE source = ?", (source,))
            db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                       (source, document["content_hash"], document.get("mtime"), document.get("title"),
                        _dumps(document.get("metadata", {}))))
            for i, (c, vec) in enumerate(zip(chunks, embeddings)):
                v = np.asarray(vec, dtype=np.float32)
                if dims is not None and v.shape != (int(dims),):
                    raise ConfigError(f"chunk {c.id!r} of {source!r} has a {v.shape} vector, the store holds {dims}-d")
                db.execute("INSERT INTO chunks(id, source, idx, text, metadata, embedding) VALUES (?, ?, ?, ?, ?, ?)",
                           (c.id, source, i, c.text, _dumps(c.metadata), v.tobytes()))

    def delete_source(self, source: str) -> int:
        """Forget a document and its chunks; returns how many chunks went."""
        with self._tx() as db:
            n = db.execute("SELECT count(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
            db.execute("DELETE FROM documents WHERE source = ?", (source,))  # chunks follow by cascade
        return n

    # ------------------------------------------------------------------ reads

    def documents(self) -> dict[str, dict[str, Any]]:
        """``{source: {content_hash, mtime, title, metadata}}`` for every stored document."""
        rows = self.db.execute("SELECT source, content_hash, mtime, title, metadata FROM documents")
        return {s: {"content_hash": h, "mtime": m, "title": t, "metadata": json.loads(md)} for s, h, m, t, md in rows}

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT source FROM documents ORDER BY source")]

    def stats(self) -> dict[str, Any]:
        """Counts and what built the store."""
        docs = self.db.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        dims = self.get_meta("dimensions")
        size = Path(self.path).stat().st_size if self.path != ":memory:" and Path(self.path).exists() else 0
        return {"documents": docs, "chunks": chunks, "dimensions": int(dims) if dims else None,
                "embedder": self.get_meta("embedder"), "path": self.path, "bytes": size}

    def chunks(self, source: str | None = None) -> list[Hit]:
        """Stored chunks (of one source, or all) in order, as hits with score 0."""
        where, params = ("WHERE source = ?", [source]) if source else ("", [])
        rows = self.db.execute(f"SELECT id, source, text, metadata FROM chunks {where} ORDER BY source, idx", params)
        return [Hit(t, s, 0.0, json.loads(md), i) for i, s, t, md in rows]

    def _hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        """Rows for (rowid, score) pairs, in the given order."""
        if not scored:
            return []
        marks = ", ".join("?" * len(scored))
        rows = {n: (i, s, t, md) for n, i, s, t, md in
                self.db.execute(f"SELECT n, id, source, text, metadata FROM chunks WHERE n IN ({marks})",
                                [n for n, _ in scored])}
        return [Hit(rows[n][2], rows[n][1], float(score), json.loads(rows[n][3]), rows[n][0]) for n, score in scored]

    def search_bm25(self, query: str, k: int = 5, filter: dict[str, Any] | None = None) -> list[Hit]:
        """Chunks ranked by FTS5's BM25 (k1=1.2, b=0.75) over the query's words, any of them matching.

        SQLite's ``bm25()`` is lower-is-better and negative; the hit's score is its negation, so
        higher is better like everywhere else.
        """
        words = re.findall(r"[^\W_]+", query.lower())  # FTS5's unicode61 tokenizer splits on the same characters
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        cond, params = filter_sql(filter, "c.metadata")
        rows = self.db.execute(
            f"SELECT c.n, bm25(chunks_fts) AS s FROM chunks_fts JOIN chunks c ON c.n = chunks_fts.rowid "
            f"WHERE chunks_fts MATCH ? AND {cond} ORDER BY s LIMIT ?", [match, *params, k]).fetchall()
        return self._hits([(n, -s) for n, s in rows])

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Rowids and unit-length vectors of every chunk, reloaded when the database changed."""
        version = self.db.execute("PRAGMA data_version").fetchone()[0]  # moves when another connection commits
        if self._cache is None or self._cache[0] != version:
            rows = self.db.execute("SELECT n, embedding FROM chunks ORDER BY n").fetchall()
            ids = np.array([n for n, _ in rows], dtype=np.int64)
            dims = int(self.get_meta("dimensions") or 0)
            mat = (np.stack([np.frombuffer(b, dtype=np.float32) for _, b in rows]) if rows
                   else np.zeros((0, dims), dtype=np.float32))
            norms = np.linalg.norm(mat, axis=1, keepdims=True)
            self._cache = (version, ids, mat / np.where(norms == 0, 1, norms))
        return self._cache[1], self._cache[2]

    def search_dense(self, vector: Sequence[float], k: int = 5, filter: dict[str, Any] | None = None) -> list[Hit]:
        """Chunks ranked by exact cosine similarity to ``vector``; a filter masks rows before ranking."""
        ids, mat = self._matrix()
        if not len(ids):
            return []
        q = np.asarray(vector, dtype=np.float32)
        if q.shape != (mat.shape[1],):
            raise ConfigError(f"query vector has shape {q.shape}; the store holds {mat.shape[1]}-d vectors")
        scores = mat @ (q / (np.linalg.norm(q) or 1.0))
        if filter:
            cond, params = filter_sql(filter)
            allowed = [r[0] for r in self.db.execute(f"SELECT n FROM chunks WHERE {cond}", params)]
            scores = np.where(np.isin(ids, allowed), scores, -np.inf)
        k = min(k, len(ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return self._hits([(int(ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])])
