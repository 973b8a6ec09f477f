"""The default knowledge-base store: one SQLite file holding documents, chunks, their vectors and
an FTS5 index for BM25.

Tables::

    documents(source PK, content_hash, mtime, title, metadata JSON)
    chunks(n INTEGER PK, id UNIQUE, source FK -> documents ON DELETE CASCADE, idx, text, metadata JSON,
           embedding BLOB float32)
    chunks_fts  FTS5 over chunks.text (external content, kept in step by triggers)
    meta(key PK, value)   embedder name and dimensions, so vectors from two models never mix;
                          ``generation``, moved by every write; ``next_n``, the next chunk row id
    generations(generation PK, token)   a random token per recent generation (the last 10,000)

``n`` is an integer alias of the rowid, which FTS5 needs to stay stable (a plain rowid may change
on VACUUM); ``id`` is the splitter's stable chunk id. New chunks take ``n`` from ``next_n``, so a
row id is never reused, even after the highest rows are deleted: an id names one vector forever.

Vectors live in the same file as everything else, so a document's replacement (delete its old
chunks, insert the new ones, update its row) is one transaction: a crash mid-way leaves the old
state, never half of each.

Dense search is exact cosine over all stored vectors with numpy (the matrix is loaded on first use
and cached until the next write, by this or another connection), or, from ``ANN_MIN_CHUNKS``
chunks on (or always, with ``ann=True``), an HNSW index (``ann.py``, hnswlib) in ``<path>.ann``.
The index is derived from the database, never the other way round: every write transaction adds
one to ``generation`` and records a random token for the new generation, inside that transaction;
the index file records the generation and token it reflects. Before a search the index is brought
up to the database's generation by diffing row ids (remove the ids the database no longer has, add
the ones it gained: ~0.3 s per thousand added on 2 cores, 0.1 s for a re-ingested 100-chunk file)
when the database's history holds the index's (generation, token), i.e. the index is an earlier
state of this very database; otherwise (file missing, damaged, ahead of the database, or from a
history the database does not share, like a restored backup that has since handed out the same
row ids to other chunks) it is rebuilt. A crash between a commit and the index save therefore
costs a catch-up, never a deleted chunk served or a committed one missed. The file is rewritten
atomically after a rebuild, after enough changes, and on ``close()``.

Dense search with a metadata filter, when the index is in use: a filter matching at most
``FILTER_EXACT_ROWS`` rows is ranked exactly over those rows (so selective filters return exactly
what exact search would); a broader one takes the index's top ``4 k``, keeps the rows that pass
the filter, widens 4x while fewer than ``k`` pass, and after ``FILTER_ROUNDS`` widenings ranks all
matching rows exactly.

Example:
    >>> store = SQLiteStore("kb.db")
    >>> store.search_bm25("reset password", k=3, filter={"format": {"$in": ["markdown", "text"]}})
"""
from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.errors import ConfigError
from ...core.sqlite_tx import immediate
from . import ann as _ann
from .base import Hit, as_vectors

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
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
CREATE TABLE IF NOT EXISTS generations(generation INTEGER PRIMARY KEY, token TEXT NOT NULL);
"""
HISTORY = 10_000  # generations whose token is kept: an index further behind is rebuilt

# From benchmarks/ann.py (2 shared cores, 384-d, one query thread): exact numpy search takes
# 0.4 ms at 10k chunks and 13 ms at 100k, and reloads its whole matrix after every write; the HNSW
# index answers in ~0.1 ms (0.3 ms through this store) at both sizes with recall@10 >= 0.97, but
# building it costs 0.15-0.5 ms a chunk (9 s at 20k, 52 s at 100k). At 20k chunks exact search is
# still a few ms, less than embedding the query, and the one-off build stays under ~10 s; above,
# exact grows linearly while the index does not, so from there on the index pays for itself.
ANN_MIN_CHUNKS = 20_000  # ann=None: exact below this many chunks, the ANN index from here on
FILTER_EXACT_ROWS = 4_096  # a filter matching at most this many rows is ranked exactly: its scan brings their vectors
FILTER_ROUNDS = 3  # widenings (x4 each) of the oversampled ANN search before falling back to exact
SAVE_EVERY = 0.1  # rewrite the index file once unsaved changes reach this share of it (and on close)

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
        ann: dense search through the HNSW index in ``<path>.ann``: None = from ``ANN_MIN_CHUNKS``
            chunks on, if hnswlib is installed (exact otherwise); True = always (ConfigError
            without hnswlib); False = exact numpy only.

    Example:
        >>> store = SQLiteStore("notes.db")
        >>> store.stats()
        {'documents': 3, 'chunks': 12, 'dimensions': 384, 'embedder': 'all-MiniLM-L6-v2', ...}
    """

    def __init__(self, path: str | Path, *, ann: bool | None = None):
        if ann not in (None, True, False):
            raise ConfigError(f"ann={ann!r} must be None (automatic), True or False")
        if ann and not _ann.available():
            raise ConfigError(f"ann=True needs the hnswlib package: {_ann.INSTALL}")
        self.path = str(path)
        self.ann = ann
        self.ann_path = None if self.path == ":memory:" else self.path + ".ann"
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
        self._index: _ann.ANNIndex | None = None  # in step with the database once _synced() returns it
        self._unsaved = 0  # changes applied to _index since its file was written
        self._saved: int | None = None  # the generation the index file holds, as far as we know
        self._auto: tuple[int, bool] | None = None  # ann=None: (generation, use the index?)
        # one connection may serve several threads: writes and index syncs take turns
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            if self._index is not None and self._index.generation != self._saved:
                self._save_index()
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:  # an RLock: the matrix cache is reset before another thread can read it
            try:
                with immediate(self.db, self._lock) as db:
                    yield db
            finally:
                self._cache = None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One snapshot for several reads (WAL readers see the last commit before their first read)."""
        with self._lock:
            if self.db.in_transaction:
                yield self.db
                return
            self.db.execute("BEGIN")
            try:
                yield self.db
            finally:
                self.db.execute("COMMIT")  # ends the read; nothing to write

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        """Mark a change to the chunks, inside the writing transaction (the ANN index compares it)."""
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        g = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        db.execute("INSERT OR REPLACE INTO generations VALUES (?, ?)", (g, secrets.token_hex(8)))
        db.execute("DELETE FROM generations WHERE generation <= ?", (g - HISTORY,))

    def generation(self) -> int:
        """How many chunk-changing transactions the database has committed (0 for a new one)."""
        return int(self.get_meta("generation") or 0)

    def _token(self, generation: int) -> str | None:
        row = self.db.execute("SELECT token FROM generations WHERE generation = ?", (generation,)).fetchone()
        return row[0] if row else None

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
        source = document["source"]
        vectors = as_vectors(source, chunks, embeddings, self.get_meta("dimensions"))
        with self._tx() as db:
            db.execute("DELETE FROM chunks WHERE source = ?", (source,))
            db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                       (source, document["content_hash"], document.get("mtime"), document.get("title"),
                        _dumps(document.get("metadata", {}))))
            # max() with the table keeps databases written before next_n existed safe
            n0 = db.execute("SELECT max(coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_n'), 1), "
                            "coalesce((SELECT max(n) FROM chunks), 0) + 1)").fetchone()[0]
            for i, (c, v) in enumerate(zip(chunks, vectors)):
                db.execute("INSERT INTO chunks(n, id, source, idx, text, metadata, embedding) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (n0 + i, c.id, source, i, c.text, _dumps(c.metadata),
                                                            v.tobytes()))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('next_n', ?)", (str(n0 + len(chunks)),))
            self._bump(db)

    def delete_source(self, source: str) -> int:
        """Forget a document and its chunks; returns how many chunks went."""
        with self._tx() as db:
            n = db.execute("SELECT count(*) FROM chunks WHERE source = ?", (source,)).fetchone()[0]
            db.execute("DELETE FROM documents WHERE source = ?", (source,))  # chunks follow by cascade
            if n:
                self._bump(db)
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
            ids, mat = self._vectors(None)
            self._cache = (version, ids, _ann.unit(mat))
        return self._cache[1], self._cache[2]

    def _vectors(self, ids: Sequence[int] | None, where: str = "", params: Sequence[Any] = ()
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Row ids and raw vectors: of every chunk (``ids=None``, optionally ``where`` a condition), or of these rows."""
        dims = int(self.get_meta("dimensions") or 0)  # the blobs' own length if the store never recorded it
        if ids is None:
            rows = self.db.execute(f"SELECT n, embedding FROM chunks WHERE {where or '1'} ORDER BY n",
                                   list(params)).fetchall()
        else:
            ids, rows = [int(i) for i in ids], []
            for a in range(0, len(ids), 900):  # under SQLite's oldest limit of 999 parameters
                part = ids[a:a + 900]
                rows += self.db.execute(f"SELECT n, embedding FROM chunks WHERE n IN ({', '.join('?' * len(part))})",
                                        part).fetchall()
        return _stack(rows, dims)

    @staticmethod
    def _query(vector: Sequence[float], dims: int) -> np.ndarray:
        q = np.asarray(vector, dtype=np.float32)
        if q.shape != (dims,):
            raise ConfigError(f"query vector has shape {q.shape}; the store holds {dims}-d vectors")
        return q / (np.linalg.norm(q) or 1.0)  # not unit(): its row-wise norm rounds differently from this

    def search_dense(self, vector: Sequence[float], k: int = 5, filter: dict[str, Any] | None = None) -> list[Hit]:
        """Chunks ranked by cosine similarity to ``vector``: exact, or through the ANN index (see
        the module docstring for when, and for how filters combine with it)."""
        if self._use_index():
            return self._search_index(vector, k, filter)
        ids, mat = self._matrix()
        if not len(ids):
            return []
        scores = mat @ self._query(vector, mat.shape[1])
        if filter:
            cond, params = filter_sql(filter)
            allowed = [r[0] for r in self.db.execute(f"SELECT n FROM chunks WHERE {cond}", params)]
            scores = np.where(np.isin(ids, allowed), scores, -np.inf)
        return self._hits(_top(ids, scores, k))

    # ------------------------------------------------------------------ the ANN index

    def _use_index(self) -> bool:
        if self.ann is not None:
            return self.ann
        generation = self.generation()
        if self._auto is None or self._auto[0] != generation:
            chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
            self._auto = (generation, chunks >= ANN_MIN_CHUNKS and _ann.available())
        return self._auto[1]

    def _search_index(self, vector: Sequence[float], k: int, filter: dict[str, Any] | None) -> list[Hit]:
        with self._read():  # the sync, the filter and the rows all see one snapshot
            index = self._synced()
            if not len(index):
                return []
            q = self._query(vector, index.dims)
            cond, params = filter_sql(filter)
            try:
                if not filter:
                    ids, scores = index.search(q, k)
                    return self._hits(list(zip(ids.tolist(), scores.tolist())))
                rows, cursor = [], self.db.execute(f"SELECT n, embedding FROM chunks WHERE {cond}", params)
                for row in cursor:  # one pass: the vectors of a selective filter's rows, or stop early
                    rows.append(row)
                    if len(rows) > FILTER_EXACT_ROWS:
                        break
                cursor.close()
                if len(rows) <= FILTER_EXACT_ROWS:  # selective: exact over the matching rows
                    ids, mat = _stack(rows, index.dims)
                    return self._hits(_top(ids, _ann.unit(mat) @ q, k))
                for round in range(FILTER_ROUNDS + 1):  # broad: oversample, keep what passes
                    ids, scores = index.search(q, k * 4 ** (round + 1))
                    ok = self._passing(ids.tolist(), cond, params)
                    kept = [(i, s) for i, s in zip(ids.tolist(), scores.tolist()) if i in ok][:k]
                    if len(kept) == k:
                        return self._hits(kept)
            except RuntimeError:
                pass  # hnswlib found fewer live neighbours than asked (many deletions): exact below
            ids, mat = self._vectors(None, cond, params)  # rank every matching row exactly
            return self._hits(_top(ids, _ann.unit(mat) @ q, k))

    def _passing(self, ids: list[int], cond: str, params: list[Any]) -> set[int]:
        """Which of these rows pass a filter condition (primary-key lookups, not a table scan)."""
        ok: set[int] = set()
        for a in range(0, len(ids), 900):
            part = ids[a:a + 900]
            ok.update(r[0] for r in self.db.execute(
                f"SELECT n FROM chunks WHERE n IN ({', '.join('?' * len(part))}) AND {cond}", [*part, *params]))
        return ok

    def _synced(self) -> _ann.ANNIndex:
        """The ANN index at the database's generation: loaded from its file, caught up, or rebuilt.

        Call inside ``_read()``. Catching up diffs row ids, which is exact because ids are never
        reused; an index ahead of the database (a restored backup) or unreadable is rebuilt.
        """
        generation = self.generation()
        index = self._index
        if index is not None and index.generation == generation:
            return index
        self._index = None  # if anything below fails, the next search starts from the file again
        if index is None and self.ann_path and Path(self.ann_path).exists():
            try:
                index = _ann.ANNIndex.load(self.ann_path)
                self._saved, self._unsaved = index.generation, 0
            except (OSError, ValueError):
                index = None  # damaged or foreign: rebuilt below, then overwritten
        dims = int(self.get_meta("dimensions") or 0)
        if index is not None and (index.generation > generation or index.token != self._token(index.generation)
                                  or (dims and index.dims != dims)):
            index = None  # not an earlier state of this database: its ids may name other vectors
        if index is not None:
            db_ids = np.fromiter((r[0] for r in self.db.execute("SELECT n FROM chunks")), dtype=np.int64)
            have = index.ids()
            gone = np.setdiff1d(have, db_ids, assume_unique=True)
            new = np.setdiff1d(db_ids, have, assume_unique=True)
            # adding costs about what building does, per vector; many tombstones slow the graph down
            if len(new) > len(db_ids) // 2 or len(index.deleted) + len(gone) > len(db_ids):
                index = None
            else:
                index.remove(gone)
                index.add(*self._vectors(new))
                index.generation, index.token = generation, self._token(generation)
                self._unsaved += len(gone) + len(new)
        rebuilt = index is None
        if rebuilt:
            ids, mat = self._vectors(None)
            index = _ann.ANNIndex.build(ids, mat, generation) if len(ids) else _ann.ANNIndex(dims or 1, generation)
            index.token = self._token(generation)
        self._index = index
        if rebuilt or self._unsaved >= max(1, SAVE_EVERY * len(index)):
            self._save_index()
        return index

    def _save_index(self) -> None:
        if self._index is None or not self.ann_path:
            return
        try:
            self._index.save(self.ann_path)
            self._saved, self._unsaved = self._index.generation, 0
        except OSError:
            pass  # a read-only folder: the index lives in memory and is caught up again next time


def _stack(rows: list[tuple[int, bytes]], dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(rowid, float32 blob) rows as an id array and a matrix (``dims`` 0: the blobs' own length)."""
    dims = dims or (len(rows[0][1]) // 4 if rows else 0)
    mat = np.frombuffer(b"".join(b for _, b in rows), dtype=np.float32).reshape(len(rows), dims)
    return np.array([n for n, _ in rows], dtype=np.int64), mat


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best (rowid, score) pairs, best first; -inf scores (filtered out) never."""
    if not len(ids):
        return []
    k = min(k, len(ids))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]
