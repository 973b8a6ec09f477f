"""A knowledge-base store on PostgreSQL with the pgvector extension: the methods of ``SQLiteStore``
for a server you already run, many writers and corpora past what fits in memory.

Tables, one set per knowledge base (``namespace``), in the connection's default schema::

    llmkit_<ns>_meta(key PK, value)                 embedder name and dimensions
    llmkit_<ns>_documents(source PK, content_hash, mtime, title, metadata JSONB)
    llmkit_<ns>_chunks(n BIGSERIAL PK, id UNIQUE, source FK -> documents ON DELETE CASCADE, idx, text,
                       metadata JSONB, embedding vector(d), tsv tsvector GENERATED from text)
    indexes: HNSW (vector_cosine_ops) on embedding, GIN on tsv, btree on source

A document's replacement is one transaction, as in SQLite. Dense search is ``ORDER BY embedding
<=> query`` over the HNSW index (approximate; ``hnsw.ef_search`` is raised to ``k``); when the
index returns fewer than ``k`` rows (a selective filter drops its candidates) the query is re-run
as an exact scan, so a filter never hides rows that match it.

Keyword search (``search_bm25``, named for the shared interface) is PostgreSQL full-text search,
**not Okapi BM25**: the ``simple`` text-search configuration (lower-cased words, no stemming, no
stop words, as SQLite's unicode61 tokenizer) and ``ts_rank_cd`` (cover density: how often and how
close together the query words occur, divided by ``1 + log(length)``). It has no inverse document
frequency, so a rare word weighs no more than a common one, and its scores are on another scale
than SQLite's. It does rank a chunk holding more of the query's words above one holding fewer.

Example:
    >>> store = PgVectorStore("postgresql://me@127.0.0.1:5432/kb", namespace="handbook")
    >>> store.search_dense(vector, k=3, filter={"format": {"$in": ["markdown", "text"]}})
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.errors import ConfigError
from .base import Hit, as_vectors
from .sqlite import _KEY, _OPS, _dumps, _scalar

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}")  # a knowledge-base name; 40 chars keeps identifiers < 63
HNSW_MAX_DIMS = 2000  # pgvector's HNSW limit for the vector type; wider vectors are searched exactly

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS {meta}(key text PRIMARY KEY, value text)",
    ("CREATE TABLE IF NOT EXISTS {documents}(source text PRIMARY KEY, content_hash text NOT NULL, "
     "mtime double precision, title text, metadata jsonb NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS {chunks}(n bigserial PRIMARY KEY, id text NOT NULL UNIQUE, "
     "source text NOT NULL REFERENCES {documents}(source) ON DELETE CASCADE, idx integer NOT NULL, "
     "text text NOT NULL, metadata jsonb NOT NULL, embedding vector NOT NULL, "
     "tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED)"),
    "CREATE INDEX IF NOT EXISTS {chunks_source} ON {chunks}(source)",
    "CREATE INDEX IF NOT EXISTS {chunks_tsv} ON {chunks} USING gin(tsv)",
]


def filter_terms(filter: dict[str, Any] | None) -> list[tuple[list[str], str, Any]]:
    """Check a metadata filter by the rules of ``sqlite.filter_sql`` and list its conditions.

    Returns:
        ``(key path, operator, value)`` triples, e.g. ``(["record", "author"], "$eq", "Ada")``;
        ``$in`` / ``$nin`` carry a list. ``milvus.py`` builds its expressions from the same list.

    Example:
        >>> filter_terms({"page": {"$gte": 2}, "lang": "en"})
        [(['page'], '$gte', 2), (['lang'], '$eq', 'en')]
    """
    if not filter:
        return []
    if not isinstance(filter, dict):
        raise ConfigError(f"filter={filter!r} must be a dict such as {{'format': 'pdf', 'page': {{'$gte': 2}}}}")
    terms = []
    for key, cond in filter.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ConfigError(f"filter key {key!r} is not a metadata key (letters, digits, _ and -, dotted for nesting)")
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        if not ops:
            raise ConfigError(f"filter on {key!r} has no condition")
        for op, value in ops.items():
            if op in ("$in", "$nin"):
                if not isinstance(value, (list, tuple, set)) or not value:
                    raise ConfigError(f"filter {key!r}: {op} takes a non-empty list, not {value!r}")
                terms.append((key.split("."), op, [_scalar(key, v) for v in value]))
            elif op in _OPS:
                terms.append((key.split("."), op, _scalar(key, value)))
            else:
                raise ConfigError(f"filter {key!r}: unknown operator {op!r}; accepted: {', '.join([*_OPS, '$in', '$nin'])}")
    return terms


def pg_filter(filter: dict[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """A metadata filter as a condition over a JSONB column, every value a bound parameter.

    Same meaning as ``filter_sql``: a missing key or a JSON null matches no condition (not even
    ``$ne`` / ``$nin``), ``None`` in a condition matches nothing. Ranges compare a value only with
    values of its own JSON type (strings byte-wise, like SQLite); SQLite also lets ``1`` equal ``true``.

    Example:
        >>> cond, params = pg_filter({"lang": {"$in": ["en", "fr"]}})
        >>> db.execute(f"SELECT source FROM chunks WHERE {cond}", params)
    """
    parts, params = [], []
    for path, op, value in filter_terms(filter):
        expr = f"NULLIF({column} #> %s::text[], 'null'::jsonb)"  # JSON null reads as missing, as json_extract does
        if op in ("$in", "$nin"):
            values = [v for v in value if v is not None]
            if not values or (op == "$nin" and len(values) < len(value)):
                parts.append("FALSE")  # SQL: x IN (NULL) and x NOT IN (..., NULL) are never true
                continue
            parts.append(f"{'NOT ' if op == '$nin' else ''}({expr} = ANY(%s::jsonb[]))")
            params += [path, [json.dumps(v) for v in values]]
        elif value is None:
            parts.append("FALSE")
        elif op in ("$eq", "$ne"):
            parts.append(f"({expr} {_OPS[op]} %s::jsonb)")
            params += [path, json.dumps(value)]
        elif isinstance(value, str):
            parts.append(f"(jsonb_typeof({expr}) = 'string' AND ({column} #>> %s::text[]) COLLATE \"C\" {_OPS[op]} %s)")
            params += [path, path, value]
        else:
            parts.append(f"(jsonb_typeof({expr}) = jsonb_typeof(%s::jsonb) AND {expr} {_OPS[op]} %s::jsonb)")
            params += [path, json.dumps(value), path, json.dumps(value)]
    return (" AND ".join(parts) or "TRUE"), params


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise ConfigError("PgVectorStore needs psycopg: pip install 'llmkit[pgvector]'") from None
    return psycopg


def _mask(url: str) -> str:
    """The URL without its password, fit for an error message."""
    return re.sub(r"password=\S+", "password=***", re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url))


def _vector(v: np.ndarray) -> str:
    return "[" + ",".join(repr(x) for x in v.tolist()) + "]"  # pgvector's text form; repr keeps every float32 bit


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class PgVectorStore:
    """Documents, chunks, vectors (HNSW) and full-text search in PostgreSQL + pgvector.

    Args:
        url: ``postgresql://user:pass@host:5432/db`` (``postgres://`` and ``postgresql+psycopg://``
            too) or a libpq conninfo string such as ``"host=/tmp dbname=kb"``.
        namespace: the knowledge base's name; its tables are ``llmkit_<namespace>_*``, so one
            database holds many knowledge bases.

    Raises:
        ConfigError: psycopg missing, a bad URL, an unreachable server, or no pgvector extension.

    Example:
        >>> with PgVectorStore("postgresql://postgres@127.0.0.1/postgres", namespace="notes") as store:
        ...     store.stats()
        {'documents': 3, 'chunks': 12, 'dimensions': 384, 'embedder': 'all-MiniLM-L6-v2', ...}
    """

    def __init__(self, url: str, *, namespace: str = "default"):
        psycopg = _psycopg()
        if not isinstance(url, str) or not url.strip() or ("://" in url and not url.startswith(
                ("postgresql://", "postgres://", "postgresql+psycopg://"))):
            raise ConfigError(f"{url!r} is not a PostgreSQL address; expected postgresql://user:pass@host:5432/db "
                              "or a conninfo string such as 'host=127.0.0.1 dbname=kb'")
        if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
            raise ConfigError(f"namespace {namespace!r} is not a knowledge-base name (letters, digits, _ . -, "
                              "at most 40 characters)")
        self.url, self.namespace = _mask(url), namespace
        self._sql, self._error = psycopg.sql, psycopg.Error
        names = ("meta", "documents", "chunks", "chunks_source", "chunks_tsv", "chunks_hnsw")
        self._names = {k: f"llmkit_{namespace}_{k}" for k in names}
        self._ids = {k: psycopg.sql.Identifier(v) for k, v in self._names.items()}
        extra = {} if "connect_timeout" in url else {"connect_timeout": 10}
        try:
            self.db = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, **extra)
        except psycopg.Error as e:
            raise ConfigError(f"cannot connect to PostgreSQL at {self.url}: {_mask(_first_line(e))}; expected "
                              "postgresql://user:pass@host:5432/db (or a conninfo string) of a running server") from None
        try:
            self._setup(psycopg)
        except BaseException:
            self.db.close()
            raise

    def _setup(self, psycopg) -> None:
        if not self.db.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
            try:
                self.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as e:
                raise ConfigError(f"the pgvector extension is not available in {self.url}: {_first_line(e)}; install "
                                  "pgvector on the server (https://github.com/pgvector/pgvector) and run CREATE "
                                  "EXTENSION vector as a superuser") from None
        with self.db.transaction():
            self._lock()  # two processes creating the same tables at once would collide in pg_type
            for stmt in _SCHEMA:
                self.db.execute(self._q(stmt))

    def _q(self, text: str, **more: Any):
        """A statement with this namespace's table names filled in (as quoted identifiers)."""
        return self._sql.SQL(text).format(**self._ids, **more)

    def _lock(self) -> None:
        self.db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._names["meta"],))

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute(self._q("SELECT value FROM {meta} WHERE key = %s"), (key,)).fetchone()
        return row[0] if row else None

    def check_embedder(self, name: str, dimensions: int) -> None:
        """Record the embedder on first use (typing the vector column and building the HNSW index);
        refuse a different one later (its vectors would not compare)."""
        stored_name, stored_dims = self.get_meta("embedder"), self.get_meta("dimensions")
        if stored_dims is None:
            with self.db.transaction():
                self._lock()
                if self.get_meta("dimensions") is None:  # another process may have won the lock first
                    self._record_embedder(name, int(dimensions))
            stored_name, stored_dims = self.get_meta("embedder"), self.get_meta("dimensions")
        if (stored_name, int(stored_dims)) != (name, int(dimensions)):
            raise ConfigError(f"{self.url} namespace {self.namespace!r} was built with embedder {stored_name!r} "
                              f"({stored_dims}-d), not {name!r} ({dimensions}-d); use that embedder or a new "
                              "knowledge base")

    def _record_embedder(self, name: str, dims: int) -> None:
        with self.db.cursor() as cur:
            cur.executemany(self._q("INSERT INTO {meta} VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = "
                                    "EXCLUDED.value"), [("embedder", name), ("dimensions", str(dims))])
        try:  # HNSW needs a fixed width; rows stored before any embedder was recorded must already have it
            self.db.execute(self._q("ALTER TABLE {chunks} ALTER COLUMN embedding TYPE vector({d})",
                                    d=self._sql.Literal(dims)))
        except self._error as e:
            raise ConfigError(f"{self.url} namespace {self.namespace!r} holds vectors that are not {dims}-d: "
                              f"{_first_line(e)}") from None
        if dims <= HNSW_MAX_DIMS:
            self.db.execute(self._q("CREATE INDEX IF NOT EXISTS {chunks_hnsw} ON {chunks} "
                                    "USING hnsw (embedding vector_cosine_ops)"))

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
        rows = [(c.id, source, i, c.text, _dumps(c.metadata), _vector(v))
                for i, (c, v) in enumerate(zip(chunks, vectors))]
        with self.db.transaction():
            self.db.execute(self._q("DELETE FROM {chunks} WHERE source = %s"), (source,))
            self.db.execute(self._q(
                "INSERT INTO {documents} VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (source) DO UPDATE SET "
                "content_hash = EXCLUDED.content_hash, mtime = EXCLUDED.mtime, title = EXCLUDED.title, "
                "metadata = EXCLUDED.metadata"),
                (source, document["content_hash"], document.get("mtime"), document.get("title"),
                 _dumps(document.get("metadata", {}))))
            with self.db.cursor() as cur:
                cur.executemany(self._q("INSERT INTO {chunks}(id, source, idx, text, metadata, embedding) "
                                        "VALUES (%s, %s, %s, %s, %s::jsonb, %s::vector)"), rows)

    def delete_source(self, source: str) -> int:
        """Forget a document and its chunks; returns how many chunks went."""
        with self.db.transaction():
            n = self.db.execute(self._q("SELECT count(*) FROM {chunks} WHERE source = %s"), (source,)).fetchone()[0]
            self.db.execute(self._q("DELETE FROM {documents} WHERE source = %s"), (source,))  # chunks: cascade
        return n

    # ------------------------------------------------------------------ reads

    def documents(self) -> dict[str, dict[str, Any]]:
        """``{source: {content_hash, mtime, title, metadata}}`` for every stored document."""
        rows = self.db.execute(self._q("SELECT source, content_hash, mtime, title, metadata FROM {documents}"))
        return {s: {"content_hash": h, "mtime": m, "title": t, "metadata": md} for s, h, m, t, md in rows}

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.execute(self._q('SELECT source FROM {documents} ORDER BY source COLLATE "C"'))]

    def stats(self) -> dict[str, Any]:
        """Counts, what built the store, and the tables' size on disk (with indexes)."""
        docs = self.db.execute(self._q("SELECT count(*) FROM {documents}")).fetchone()[0]
        chunks = self.db.execute(self._q("SELECT count(*) FROM {chunks}")).fetchone()[0]
        size = self.db.execute("SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0) FROM unnest(%s::text[]) t",
                               ([f'"{self._names[k]}"' for k in ("meta", "documents", "chunks")],)).fetchone()[0]
        dims = self.get_meta("dimensions")
        return {"documents": docs, "chunks": chunks, "dimensions": int(dims) if dims else None,
                "embedder": self.get_meta("embedder"), "path": self.url, "namespace": self.namespace,
                "bytes": int(size)}

    def chunks(self, source: str | None = None) -> list[Hit]:
        """Stored chunks (of one source, or all) in order, as hits with score 0."""
        where, params = ("WHERE source = %s", [source]) if source else ("", [])
        rows = self.db.execute(self._q(f'SELECT id, source, text, metadata FROM {{chunks}} {where} '
                                       'ORDER BY source COLLATE "C", idx'), params)
        return [Hit(t, s, 0.0, md, i) for i, s, t, md in rows]

    def search_bm25(self, query: str, k: int = 5, filter: dict[str, Any] | None = None) -> list[Hit]:
        """Chunks holding any of the query's words, ranked by PostgreSQL's ``ts_rank_cd`` (normalised by
        ``1 + log(length)``): term frequency and proximity, no IDF, so not Okapi BM25 (see the module doc)."""
        words = re.findall(r"[^\W_]+", query.lower())  # letters and digits only: nothing tsquery could parse as syntax
        if not words:
            return []
        cond, params = pg_filter(filter, "c.metadata")
        rows = self.db.execute(self._q(
            f"SELECT c.id, c.source, c.text, c.metadata, ts_rank_cd(c.tsv, q, 1) AS s "
            f"FROM {{chunks}} c, to_tsquery('simple', %s) q WHERE c.tsv @@ q AND {cond} ORDER BY s DESC, c.n LIMIT %s"),
            [" | ".join(dict.fromkeys(words)), *params, k]).fetchall()
        return [Hit(t, s, float(score), md, i) for i, s, t, md, score in rows]

    def search_dense(self, vector: Sequence[float], k: int = 5, filter: dict[str, Any] | None = None) -> list[Hit]:
        """Chunks ranked by cosine similarity to ``vector`` (HNSW; exact when the index comes up short)."""
        dims = self.get_meta("dimensions")
        q = np.asarray(vector, dtype=np.float32)
        if dims is not None and q.shape != (int(dims),):
            raise ConfigError(f"query vector has shape {q.shape}; the store holds {dims}-d vectors")
        cond, params = pg_filter(filter, "c.metadata")
        # ORDER BY the distance alone (no tie-breaker): a second sort key would bypass the HNSW index
        stmt = self._q(f"SELECT c.id, c.source, c.text, c.metadata, 1 - (c.embedding <=> %s::vector) AS s "
                       f"FROM {{chunks}} c WHERE {cond} ORDER BY c.embedding <=> %s::vector LIMIT %s")
        args = [_vector(q), *params, _vector(q), k]
        with self.db.transaction():  # set_config(..., true) lasts until the end of this transaction
            self.db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(max(40, k), 1000)),))
            rows = self.db.execute(stmt, args).fetchall()
        if len(rows) < k:  # HNSW filters after its candidate list: a selective filter can leave too few
            with self.db.transaction():
                self.db.execute("SELECT set_config('enable_indexscan', 'off', true)")
                rows = self.db.execute(stmt, args).fetchall()
        return [Hit(t, s, float(score), md, i) for i, s, t, md, score in rows]
