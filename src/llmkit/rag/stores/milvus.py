"""A knowledge-base store on Milvus: a Milvus server (``http://host:19530``) or a local milvus-lite
folder (a path ending in ``.db``), with the methods of ``SQLiteStore``.

Collections, two per knowledge base (``namespace``)::

    llmkit_<ns>_chunks  pk = "<generation>:<chunk id>", id, source, idx, gen, text (analyzed),
                        metadata JSON, dense FLOAT_VECTOR(d) (HNSW, COSINE),
                        sparse SPARSE_FLOAT_VECTOR filled by Milvus's BM25 function from text
    llmkit_<ns>_docs    key = "doc:<source>" or "meta:<name>", kind, gen, hidden, doc JSON
                        (+ a 2-d placeholder vector: Milvus refuses a collection without one)

Keyword search is Milvus's own full-text search (``FunctionType.BM25`` into a sparse field, metric
``BM25``, k1=1.2 and b=0.75 as SQLite's FTS5), supported by Milvus >= 2.5 and milvus-lite 3.2.
It is Okapi BM25 with Lucene's IDF, ``log(1 + (N - df + .5) / (df + .5))``; Milvus keeps corpus
statistics per segment, so scores differ from SQLite's by a little once data spans segments, and
rows deleted but not yet compacted may still count in them. milvus-lite reports BM25 distances
negated; hits carry the positive score either way.

Milvus has no transactions, so ``replace`` writes generations. Each call draws a new generation id
and (1) lists it in the document row's ``hidden`` set, (2) inserts the new chunks under it, (3)
points the document row at it and moves the old generation to ``hidden`` (one upsert: the commit),
(4) deletes this source's chunks of every other generation and (5) empties ``hidden``. Every read
excludes hidden generations. So a reader, or a crash at any step, sees the whole old document
(before 3) or the whole new one (from 3 on), never a mix; a failed replace leaves stray rows that
take space until the next replace or delete of that source removes them. The guarantee needs one
writer per source at a time (two concurrent replaces of one source may delete each other's rows).

Values in filters and sources in deletes are written into Milvus expressions as escaped string
literals (milvus-lite 3.2 has no expression templates; pymilvus's ``get(ids=...)`` does not escape
quotes, so it is never used here).

Example:
    >>> store = MilvusStore("kb/milvus.db", namespace="handbook")      # milvus-lite, no server
    >>> store.search_bm25("reset password", k=3, filter={"format": {"$in": ["markdown", "text"]}})
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.errors import ConfigError
from .base import Hit, as_vectors
from .pgvector import NAMESPACE, filter_terms
from .sqlite import _OPS, _dumps

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

MAX_TEXT = 65535   # bytes in a Milvus VARCHAR
MAX_ID = 900       # chunk ids: the primary key is "<32-hex generation>:<id>" in a VARCHAR(1024)
QUERY_WINDOW = 16384  # Milvus's largest query result; bigger reads go through query_iterator
BATCH = 500        # rows per insert: 500 x 64 KB stays under gRPC's message limit
_CHUNK_FIELDS = ["id", "source", "text", "metadata"]


def _lit(value: Any) -> str:
    """A Python scalar as a Milvus expression literal; strings escaped for both Milvus's grammar
    and milvus-lite's (which knows only these escapes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"filter value {value!r} is not a finite number")
        return repr(value)
    s = str(value)
    for raw, esc in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        s = s.replace(raw, esc)
    return f'"{s}"'


def milvus_filter(filter: dict[str, Any] | None, field: str = "metadata") -> str:
    """A metadata filter (``filter_sql``'s rules) as a Milvus boolean expression over a JSON field.

    A missing key or a JSON null matches no condition (not even ``$ne`` / ``$nin``) and ``None`` in
    a condition matches nothing, as in SQLite. ``$in`` / ``$nin`` become ``==`` / ``!=`` chains
    because Milvus's ``in`` takes a field, not a JSON path.

    Example:
        >>> milvus_filter({"record.author": "Ada", "page": {"$gte": 2}})
        '(metadata["record"]["author"] == "Ada") and (metadata["page"] >= 2)'
    """
    parts = []
    for path, op, value in filter_terms(filter):
        e = field + "".join(f"[{_lit(k)}]" for k in path)
        if op in ("$in", "$nin"):
            values = [v for v in value if v is not None]
            if not values or (op == "$nin" and len(values) < len(value)):
                parts.append("false")  # SQL: x IN (NULL) and x NOT IN (..., NULL) are never true
            elif op == "$in":
                parts.append("(" + " or ".join(f"{e} == {_lit(v)}" for v in values) + ")")
            else:
                parts.append(f"(exists {e} and " + " and ".join(f"{e} != {_lit(v)}" for v in values) + ")")
        elif value is None:
            parts.append("false")
        elif op == "$ne":
            parts.append(f"(exists {e} and {e} != {_lit(value)})")
        else:
            parts.append(f"({e} {'==' if op == '$eq' else _OPS[op]} {_lit(value)})")
    return " and ".join(parts)


def _both(*exprs: str) -> str:
    return " and ".join(f"({x})" for x in exprs if x)


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ConfigError("MilvusStore needs pymilvus: pip install 'llmkit[milvus]'") from None
    return pymilvus


class MilvusStore:
    """Documents, chunks, dense vectors and BM25 full-text search in Milvus.

    Args:
        uri: ``http://host:19530`` (or ``https://``) for a Milvus server, or a local path ending in
            ``.db`` for milvus-lite (a folder; needs ``pip install milvus-lite``).
        namespace: the knowledge base's name; its collections are ``llmkit_<namespace>_*``
            (characters Milvus refuses in names become ``_`` plus a short hash).
        token: ``"user:password"`` or an API key, for servers with authentication.
        timeout: seconds to wait for the server.

    Raises:
        ConfigError: pymilvus or milvus-lite missing, a bad URI, or a server that cannot be reached.

    Example:
        >>> with MilvusStore("http://127.0.0.1:19530", namespace="notes") as store:
        ...     store.search_dense(vector, k=5, filter={"lang": "en"})
    """

    def __init__(self, uri: str, *, namespace: str = "default", token: str = "", timeout: float = 10.0):
        pymilvus = _pymilvus()
        local = isinstance(uri, str) and "://" not in uri and uri.endswith(".db")
        if not local and not (isinstance(uri, str) and re.match(r"https?://[^/\s]+", uri)):
            raise ConfigError(f"{uri!r} is not a Milvus address; expected http://host:19530, https://host:19530 "
                              "or a milvus-lite path ending in .db")
        if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace):
            raise ConfigError(f"namespace {namespace!r} is not a knowledge-base name (letters, digits, _ . -, "
                              "at most 40 characters)")
        if local:
            if importlib.util.find_spec("milvus_lite") is None:
                raise ConfigError(f"{uri!r} is a milvus-lite path, which needs milvus-lite: pip install milvus-lite")
            uri = str(Path(uri).expanduser().resolve())
            if Path(uri).is_file():
                raise ConfigError(f"{uri} is a file (a SQLite knowledge base?); milvus-lite keeps a folder at its path")
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        self.uri, self.namespace, self._dt = uri, namespace, pymilvus.DataType
        safe = re.sub(r"[^A-Za-z0-9_]", "_", namespace)
        if safe != namespace:  # "a-b" and "a.b" must not share "a_b"
            safe += "_" + hashlib.sha1(namespace.encode()).hexdigest()[:8]
        self._chunks, self._docs = f"llmkit_{safe}_chunks", f"llmkit_{safe}_docs"
        # milvus-lite's in-process gRPC server keeps gRPC's ping policy (one ping per 5 min without
        # data) while pymilvus pings every 10 s: the server answers GOAWAY too_many_pings and later
        # calls fail "server unavailable". A loopback server needs no keepalive, so turn it off.
        quiet = {"grpc_options": {"grpc.keepalive_time_ms": 2**31 - 1}} if local else {}
        self.client = None
        try:
            self.client = pymilvus.MilvusClient(uri=uri, token=token, timeout=timeout, **quiet)
            self._ensure_docs()
            self._has_chunks = self.client.has_collection(self._chunks)
            if self._has_chunks:
                self.client.load_collection(self._chunks)  # a server may have released it
        except pymilvus.MilvusException as e:
            if self.client is not None:
                self.client.close()
            raise ConfigError(f"cannot use Milvus at {uri}: {getattr(e, 'message', e)}; expected "
                              "a running server at http://host:19530 or a milvus-lite path ending in .db") from None

    # ------------------------------------------------------------------ collections

    def _create(self, name: str, schema, index) -> None:
        try:
            self.client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        except Exception:
            if not self.client.has_collection(name):  # not another process creating it at the same moment
                raise

    def _ensure_docs(self) -> None:
        if self.client.has_collection(self._docs):
            self.client.load_collection(self._docs)
            return
        dt, s = self._dt, self.client.create_schema(auto_id=False)
        s.add_field("key", dt.VARCHAR, is_primary=True, max_length=65535)
        s.add_field("kind", dt.VARCHAR, max_length=8)
        s.add_field("gen", dt.VARCHAR, max_length=64)
        s.add_field("hidden", dt.VARCHAR, max_length=65535)
        s.add_field("doc", dt.JSON)
        s.add_field("_v", dt.FLOAT_VECTOR, dim=2)
        index = self.client.prepare_index_params()
        index.add_index(field_name="_v", index_type="FLAT", metric_type="L2")
        self._create(self._docs, s, index)

    def _chunks_exist(self) -> bool:
        """Whether the chunks collection exists (another store object may have created it since)."""
        if not self._has_chunks:
            self._has_chunks = self.client.has_collection(self._chunks)
        return self._has_chunks

    def _ensure_chunks(self, dims: int) -> None:
        if self._chunks_exist():
            return
        pymilvus, dt = _pymilvus(), self._dt
        s = self.client.create_schema(auto_id=False)
        s.add_field("pk", dt.VARCHAR, is_primary=True, max_length=1024)
        s.add_field("id", dt.VARCHAR, max_length=1024)
        s.add_field("source", dt.VARCHAR, max_length=65535)
        s.add_field("idx", dt.INT64)
        s.add_field("gen", dt.VARCHAR, max_length=64)
        s.add_field("text", dt.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True, analyzer_params={"type": "standard"})
        s.add_field("metadata", dt.JSON)
        s.add_field("dense", dt.FLOAT_VECTOR, dim=dims)
        s.add_field("sparse", dt.SPARSE_FLOAT_VECTOR)
        s.add_function(pymilvus.Function(name="bm25", function_type=pymilvus.FunctionType.BM25,
                                         input_field_names=["text"], output_field_names=["sparse"]))
        index = self.client.prepare_index_params()
        index.add_index(field_name="dense", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"bm25_k1": 1.2, "bm25_b": 0.75})
        self._create(self._chunks, s, index)
        self._has_chunks = True

    def _rows(self, collection: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row matching ``expr``; past Milvus's query window through an iterator."""
        rows = self.client.query(collection, filter=expr, output_fields=fields, limit=QUERY_WINDOW)
        if len(rows) < QUERY_WINDOW:
            return list(rows)
        rows, it = [], self.client.query_iterator(collection, batch_size=1000, filter=expr, output_fields=fields)
        while batch := it.next():
            rows += batch
        it.close()
        return rows

    def _count(self, collection: str, expr: str) -> int:
        return int(self.client.query(collection, filter=expr, output_fields=["count(*)"])[0]["count(*)"])

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        rows = self.client.query(self._docs, filter=f"key == {_lit('meta:' + key)}", output_fields=["doc"])
        return rows[0]["doc"]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self.client.upsert(self._docs, [{"key": f"meta:{key}", "kind": "meta", "gen": "", "hidden": "",
                                         "doc": {"value": value}, "_v": [0.0, 0.0]}])

    def check_embedder(self, name: str, dimensions: int) -> None:
        """Record the embedder on first use (creating the chunks collection at its width); refuse a
        different one later (its vectors would not compare)."""
        stored_name, stored_dims = self.get_meta("embedder"), self.get_meta("dimensions")
        if stored_dims is None:
            self._ensure_chunks(int(dimensions))
            self._set_meta("embedder", name)
            self._set_meta("dimensions", str(int(dimensions)))
        elif (stored_name, int(stored_dims)) != (name, int(dimensions)):
            raise ConfigError(f"{self.uri} namespace {self.namespace!r} was built with embedder {stored_name!r} "
                              f"({stored_dims}-d), not {name!r} ({dimensions}-d); use that embedder or a new "
                              "knowledge base")

    # ------------------------------------------------------------------ writes

    def _doc_row(self, source: str) -> dict[str, Any] | None:
        rows = self.client.query(self._docs, filter=f"key == {_lit('doc:' + source)}",
                                 output_fields=["gen", "hidden", "doc"])
        return rows[0] if rows else None

    def _put_doc(self, source: str, gen: str, hidden: set[str], doc: dict[str, Any]) -> None:
        self.client.upsert(self._docs, [{"key": f"doc:{source}", "kind": "doc", "gen": gen,
                                         "hidden": " ".join(sorted(hidden)), "doc": doc, "_v": [0.0, 0.0]}])

    def replace(self, document: dict[str, Any], chunks: Sequence[Any], embeddings: Sequence[Sequence[float]]) -> None:
        """Replace everything stored for ``document["source"]`` with these chunks; readers see the old
        document or the new one, never a mix (see the module doc for the exact guarantee).

        Args:
            document: ``source``, ``content_hash`` and optionally ``mtime``, ``title``, ``metadata``.
            chunks: objects with ``.id``, ``.text`` and ``.metadata`` (``splitters.Chunk``), ids unique.
            embeddings: one vector per chunk, all of the store's dimensions.
        """
        source = document["source"]
        dims = self.get_meta("dimensions")
        if chunks and dims is None:
            raise ConfigError(f"{self.uri} namespace {self.namespace!r} has no embedder yet; call "
                              "check_embedder(name, dimensions) before storing vectors")
        gen = uuid.uuid4().hex
        rows = []
        for i, (c, v) in enumerate(zip(chunks, as_vectors(source, chunks, embeddings, dims))):
            if isinstance(c.text, str) and len(c.text.encode()) > MAX_TEXT or len(str(c.id)) > MAX_ID:
                raise ConfigError(f"chunk {c.id!r} of {source!r}: Milvus holds texts up to {MAX_TEXT} bytes and "
                                  f"ids up to {MAX_ID} characters; use a smaller chunk_size")
            rows.append({"pk": f"{gen}:{c.id}", "id": c.id, "source": source, "idx": i, "gen": gen, "text": c.text,
                         "metadata": json.loads(_dumps(c.metadata)), "dense": v.tolist()})
        doc = json.loads(_dumps({"content_hash": document["content_hash"], "mtime": document.get("mtime"),
                                 "title": document.get("title"), "metadata": document.get("metadata", {})}))
        old = self._doc_row(source)
        old_hidden = set(old["hidden"].split()) if old else set()
        old_gen = old["gen"] if old else ""
        self._put_doc(source, old_gen, old_hidden | {gen}, old["doc"] if old else doc)  # 1. announce, hidden
        for a in range(0, len(rows), BATCH):
            self.client.insert(self._chunks, rows[a:a + BATCH])  # 2. write the new generation
        stale = old_hidden | ({old_gen} if old_gen else set())
        self._put_doc(source, gen, stale, doc)  # 3. commit: the new generation is the document
        if stale and self._chunks_exist():
            self.client.delete(self._chunks, filter=f"source == {_lit(source)} and gen != {_lit(gen)}")  # 4. sweep
        if stale:
            self._put_doc(source, gen, set(), doc)  # 5. nothing left to hide

    def delete_source(self, source: str) -> int:
        """Forget a document and its chunks; returns how many chunks went."""
        old = self._doc_row(source)
        if old is None:
            return 0
        n = self._count(self._chunks, f"source == {_lit(source)} and gen == {_lit(old['gen'])}") \
            if old["gen"] and self._chunks_exist() else 0
        gens = (set(old["hidden"].split()) | {old["gen"]}) - {""}
        self._put_doc(source, "", gens, old["doc"])  # invisible first, so a crash below leaves no half document
        if self._chunks_exist():
            self.client.delete(self._chunks, filter=f"source == {_lit(source)}")
        self.client.delete(self._docs, filter=f"key == {_lit('doc:' + source)}")
        return n

    # ------------------------------------------------------------------ reads

    def _visible(self) -> str:
        """An expression excluding chunks of hidden generations ('' when there are none)."""
        rows = self.client.query(self._docs, filter='kind == "doc" and hidden != ""', output_fields=["hidden"],
                                 limit=QUERY_WINDOW)
        gens = sorted({g for r in rows for g in r["hidden"].split()})
        return f"not (gen in [{', '.join(_lit(g) for g in gens)}])" if gens else ""

    def documents(self) -> dict[str, dict[str, Any]]:
        """``{source: {content_hash, mtime, title, metadata}}`` for every stored document."""
        rows = self._rows(self._docs, 'kind == "doc" and gen != ""', ["key", "doc"])
        return {r["key"][len("doc:"):]: r["doc"] for r in rows}

    def sources(self) -> list[str]:
        return sorted(self.documents())

    def stats(self) -> dict[str, Any]:
        """Counts, what built the store, and (for milvus-lite) the folder's size."""
        docs = self._count(self._docs, 'kind == "doc" and gen != ""')
        chunks = self._count(self._chunks, self._visible()) if self._chunks_exist() else 0
        dims = self.get_meta("dimensions")
        folder = Path(self.uri)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else None
        return {"documents": docs, "chunks": chunks, "dimensions": int(dims) if dims else None,
                "embedder": self.get_meta("embedder"), "path": self.uri, "namespace": self.namespace, "bytes": size}

    def chunks(self, source: str | None = None) -> list[Hit]:
        """Stored chunks (of one source, or all) in order, as hits with score 0."""
        if not self._chunks_exist():
            return []
        expr = _both(self._visible(), f"source == {_lit(source)}" if source else "")
        rows = sorted(self._rows(self._chunks, expr, [*_CHUNK_FIELDS, "idx"]), key=lambda r: (r["source"], r["idx"]))
        return [Hit(r["text"], r["source"], 0.0, r["metadata"], r["id"]) for r in rows]

    def _search(self, data: list, field: str, metric: str, k: int, filter: dict[str, Any] | None,
                params: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
        where = milvus_filter(filter)  # first: a bad filter is an error even on an empty store
        if not self._chunks_exist():
            return []
        res = self.client.search(self._chunks, data=data, anns_field=field, limit=min(k, QUERY_WINDOW),
                                 filter=_both(self._visible(), where), output_fields=_CHUNK_FIELDS,
                                 search_params={"metric_type": metric, "params": params})
        return [(h["entity"], float(h["distance"])) for h in res[0]]

    def search_bm25(self, query: str, k: int = 5, filter: dict[str, Any] | None = None) -> list[Hit]:
        """Chunks ranked by Milvus's BM25 (k1=1.2, b=0.75) over the query's words, any of them matching."""
        words = re.findall(r"[^\W_]+", query.lower())  # the words SQLite's tokenizer would see
        if not words:
            return []
        found = self._search([" ".join(words)], "sparse", "BM25", k, filter, {})
        hits = [Hit(e["text"], e["source"], abs(d), e["metadata"], e["id"]) for e, d in found if d]
        return sorted(hits, key=lambda h: -h.score)  # abs(): milvus-lite negates BM25 distances, a server does not

    def search_dense(self, vector: Sequence[float], k: int = 5, filter: dict[str, Any] | None = None) -> list[Hit]:
        """Chunks ranked by cosine similarity to ``vector`` (HNSW, ``ef`` raised to ``k``)."""
        dims = self.get_meta("dimensions")
        q = np.asarray(vector, dtype=np.float32)
        if dims is not None and q.shape != (int(dims),):
            raise ConfigError(f"query vector has shape {q.shape}; the store holds {dims}-d vectors")
        found = self._search([q.tolist()], "dense", "COSINE", k, filter, {"ef": max(64, k)})
        return [Hit(e["text"], e["source"], d, e["metadata"], e["id"]) for e, d in found]
