"""Knowledge-base stores, one file per backend, all with the same methods (``replace``,
``delete_source``, ``documents``, ``sources``, ``stats``, ``chunks``, ``search_dense``,
``search_bm25``, ``check_embedder``, ``get_meta``, ``close``):

    sqlite.py    SQLiteStore    one file, FTS5 BM25, exact cosine or an HNSW file beside it (the default)
    pgvector.py  PgVectorStore  PostgreSQL + pgvector: HNSW, full-text search (ts_rank_cd)
    milvus.py    MilvusStore    Milvus server or milvus-lite: HNSW, built-in BM25

``PgVectorStore`` and ``MilvusStore`` load on first use, so psycopg and pymilvus stay optional.

    >>> store = make_store("postgresql://me@127.0.0.1/kb", "handbook")
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from .base import Hit
from .sqlite import SQLiteStore, filter_sql

__all__ = ["STORE_FORMS", "Hit", "MilvusStore", "PgVectorStore", "SQLiteStore", "filter_sql", "make_store"]

STORE_FORMS = ("a file path (kb.db) or sqlite:///relative.db, sqlite:////absolute.db",
               "postgresql://user:pass@host:5432/db",
               "milvus:///relative.db, milvus:////absolute.db (milvus-lite), http(s)://host:19530 or milvus://host:19530")


def __getattr__(name: str) -> Any:
    if name == "PgVectorStore":
        from .pgvector import PgVectorStore

        return PgVectorStore
    if name == "MilvusStore":
        from .milvus import MilvusStore

        return MilvusStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_store(spec: str, name: str) -> Any:
    """The store a spec string names, holding the knowledge base ``name``.

    Args:
        spec: one of
            ``kb.db`` or any path without ``://`` (an existing folder gets ``<name>.db`` inside),
            ``sqlite:///relative.db`` / ``sqlite:////absolute.db``,
            ``postgresql://user:pass@host:5432/db`` (or ``postgres://``): tables ``llmkit_<name>_*``,
            ``milvus:///relative.db`` / ``milvus:////absolute.db``: a milvus-lite folder,
            ``http://host:19530``, ``https://host:19530`` or ``milvus://host:19530``: a Milvus server.
        name: the knowledge base's name (for a path such as ``notes.db``, its stem); the namespace
            of its tables or collections in a shared server. SQLite files hold one base and ignore it.

    Example:
        >>> make_store("milvus:///kb/milvus.db", "handbook")     # MilvusStore on milvus-lite
        >>> make_store("postgresql://postgres@127.0.0.1/postgres", "handbook")
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"store {spec!r} is empty; accepted: {'; '.join(STORE_FORMS)}")
    scheme, sep, rest = spec.partition("://")
    namespace = Path(name).stem if str(name).endswith(".db") or "/" in str(name) else str(name)
    if not sep:
        path = Path(spec).expanduser()
        return SQLiteStore(path / f"{namespace}.db" if path.is_dir() else path)
    scheme = scheme.lower()
    if scheme == "sqlite":
        return SQLiteStore(rest.removeprefix("/"))  # sqlite:///rel.db, sqlite:////abs.db
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from .pgvector import PgVectorStore

        return PgVectorStore(spec, namespace=namespace)
    if scheme in ("milvus", "http", "https"):
        from .milvus import MilvusStore

        if scheme == "milvus" and rest.startswith("/"):
            return MilvusStore(rest.removeprefix("/"), namespace=namespace)
        if scheme == "milvus" and not re.match(r"[^/\s]+", rest):
            raise ConfigError(f"store {spec!r} names no Milvus host or .db path; accepted: {STORE_FORMS[2]}")
        return MilvusStore(spec if scheme != "milvus" else f"http://{rest}", namespace=namespace)
    raise ConfigError(f"unknown store {spec!r}; accepted: {'; '.join(STORE_FORMS)}")
