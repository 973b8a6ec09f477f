"""One suite for every knowledge-base store: SQLite (a temp file), PgVectorStore (a real PostgreSQL
16 + pgvector from the ``pgserver`` package) and MilvusStore (a milvus-lite folder).

Each test runs on all three; a backend whose server cannot start is skipped with the reason.
Vectors come from the hashing bag-of-words embedder, so expected rankings are computed exactly.
"""
import itertools
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hash_embedder import HashEmbedder

from llmkit.core.errors import ConfigError
from llmkit.rag.kb import KnowledgeBase
from llmkit.rag.loaders import Document
from llmkit.rag.splitters import Chunk, make_splitter
from llmkit.rag.stores import STORE_FORMS, SQLiteStore, make_store

BACKENDS = ["sqlite", "pgvector", "milvus"]
_names = (f"t{i}" for i in itertools.count())  # one namespace per store: tests share a server, never tables


@pytest.fixture(scope="session")
def pg_url():
    pgserver = pytest.importorskip("pgserver", reason="pgserver not installed: pip install pgserver")
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'llmkit[pgvector]'")
    folder = tempfile.mkdtemp(prefix="llmkit-pg-")  # short: the server's unix socket lives here (107-byte limit)
    try:
        server = pgserver.get_server(folder, cleanup_mode="stop")
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    except Exception as e:  # noqa: BLE001 -- any failure to start means "no PostgreSQL here", said in the skip
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pgserver could not start PostgreSQL with pgvector: {e}")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def milvus_path(tmp_path_factory):
    pytest.importorskip("pymilvus", reason="pymilvus not installed: pip install 'llmkit[milvus]'")
    pytest.importorskip("milvus_lite", reason="milvus-lite not installed: pip install milvus-lite")
    from llmkit.rag.stores import MilvusStore

    path = str(tmp_path_factory.mktemp("milvus") / "milvus.db")
    try:
        MilvusStore(path, namespace="probe").close()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"milvus-lite could not start: {e}")
    return path


@pytest.fixture(params=BACKENDS)
def spec(request, tmp_path):
    """A store spec string for ``make_store`` / ``KnowledgeBase(store=...)`` on each backend."""
    if request.param == "pgvector":
        return request.getfixturevalue("pg_url")
    if request.param == "milvus":
        return "milvus:///" + request.getfixturevalue("milvus_path")  # an absolute path: milvus:////tmp/…/milvus.db
    return str(tmp_path)  # a folder: each name gets its own <name>.db


@pytest.fixture
def new_store(spec):
    """Opens fresh, empty stores of the backend under test; closes them after the test."""
    opened = []

    def new():
        opened.append(make_store(spec, next(_names)))
        return opened[-1]

    yield new
    for s in opened:
        s.close()


@pytest.fixture
def store(new_store):
    s = new_store()
    s.check_embedder(HashEmbedder.name, HashEmbedder.dimensions)
    return s


def put(store, source, texts, meta=None, content_hash="h"):
    """Store one document whose chunks are ``texts`` (vectors from the hash embedder)."""
    chunks = [Chunk(t, {"source": source, **(meta or {})}) for t in texts]
    store.replace({"source": source, "content_hash": content_hash, "metadata": meta or {}, "title": source},
                  chunks, HashEmbedder().embed(texts) if texts else [])


CORPUS = {f"doc{i}": f"Paragraph number {i} talks about topic {w} and nothing else." for i, w in enumerate(
    ["apples", "bridges", "comets", "dolphins", "engines", "forests", "glaciers", "harbors"])}


# ---------------------------------------------------------------------------- writes and reads

def test_replace_twice_then_delete_keeps_exact_counts(store):
    put(store, "a", ["alpha one", "alpha two", "alpha three"], content_hash="h1")
    put(store, "a", ["alpha one", "alpha two", "alpha three"], content_hash="h1")  # the same again: no duplicates
    assert store.stats()["documents"] == 1 and store.stats()["chunks"] == 3
    put(store, "a", ["alpha new", "alpha newer"], {"year": 2024}, content_hash="h2")
    put(store, "b", ["beta only"], content_hash="hb")
    stats = store.stats()
    assert (stats["documents"], stats["chunks"], stats["dimensions"], stats["embedder"]) == (2, 3, 64, "hash-bow-64")
    assert store.get_meta("embedder") == "hash-bow-64" and store.get_meta("nothing") is None
    assert store.sources() == ["a", "b"]
    docs = store.documents()
    assert docs["a"] == {"content_hash": "h2", "mtime": None, "title": "a", "metadata": {"year": 2024}}
    assert [c.text for c in store.chunks("a")] == ["alpha new", "alpha newer"]  # in the splitter's order
    chunks = store.chunks()
    assert [(c.source, c.text) for c in chunks] == [("a", "alpha new"), ("a", "alpha newer"), ("b", "beta only")]
    assert len({c.chunk_id for c in chunks}) == 3 and chunks[0].metadata == {"source": "a", "year": 2024}
    assert [h.text for h in store.search_bm25("alpha", k=10)] != [] and store.search_bm25("three", k=10) == []

    assert store.delete_source("a") == 2
    assert store.delete_source("a") == 0 and store.delete_source("never-stored") == 0
    assert store.sources() == ["b"] and store.stats()["chunks"] == 1 and list(store.documents()) == ["b"]
    assert store.search_bm25("alpha", k=10) == [] and [h.source for h in store.search_dense(
        HashEmbedder().embed(["alpha new"])[0], k=10)] == ["b"]
    put(store, "empty", [])  # a document without chunks (an empty file) is still remembered
    assert store.sources() == ["b", "empty"] and store.stats()["chunks"] == 1


def test_failed_replace_keeps_the_old_document_whole(store):
    put(store, "s", ["old first", "old second"], content_hash="h1")
    bad = [Chunk("new first", {}), Chunk("new second", {}), Chunk("new third", {})]
    bad[1].text = None  # fails after the old rows are gone (SQL) or the new generation is announced (Milvus)
    with pytest.raises(Exception):  # noqa: B017 -- IntegrityError, NotNullViolation or DataNotMatchException
        store.replace({"source": "s", "content_hash": "h2"}, bad, HashEmbedder().embed(["a", "b", "c"]))
    with pytest.raises(ConfigError, match="64-d"):
        store.replace({"source": "s", "content_hash": "h3"}, bad[:1], [[1.0, 0.0]])
    assert store.documents()["s"]["content_hash"] == "h1" and store.stats()["chunks"] == 2
    assert [c.text for c in store.chunks("s")] == ["old first", "old second"]
    assert store.search_bm25("new", k=5) == [] and len(store.search_bm25("old", k=5)) == 2
    put(store, "s", ["fresh"], content_hash="h4")  # the next replace succeeds and leaves exactly its chunks
    assert [c.text for c in store.chunks()] == ["fresh"] and store.stats()["chunks"] == 1


def test_check_embedder_refuses_another_embedder(new_store):
    s = new_store()
    s.check_embedder("emb-a", 4)
    s.check_embedder("emb-a", 4)  # the same one again is fine
    with pytest.raises(ConfigError, match=r"'emb-a' \(4-d\), not 'emb-b' \(4-d\)"):
        s.check_embedder("emb-b", 4)
    with pytest.raises(ConfigError, match=r"not 'emb-a' \(8-d\)"):
        s.check_embedder("emb-a", 8)
    with pytest.raises(ConfigError, match="4-d"):
        s.replace({"source": "x", "content_hash": "h"}, [Chunk("text", {})], [[1.0, 0.0, 0.0]])
    with pytest.raises(ConfigError, match="1 chunks but 0 embeddings"):
        s.replace({"source": "x", "content_hash": "h"}, [Chunk("text", {})], [])


# ---------------------------------------------------------------------------- search

def test_dense_order_matches_exact_cosine(store):
    for source, text in CORPUS.items():
        put(store, source, [text])
    texts = list(CORPUS.values())
    mat = np.array(HashEmbedder().embed(texts))
    for query in ["topic apples", "comets and glaciers", "paragraph number 5"]:
        q = np.array(HashEmbedder().embed([query])[0])
        exact = mat @ q / (np.linalg.norm(mat, axis=1) * np.linalg.norm(q))
        by_text = dict(zip(texts, exact))
        hits = store.search_dense(q.tolist(), k=5)
        assert len(hits) == 5
        assert [h.score for h in hits] == pytest.approx(sorted(exact, reverse=True)[:5], abs=1e-5)
        assert all(h.score == pytest.approx(by_text[h.text], abs=1e-5) for h in hits)  # ties may swap, scores not
        best = {t for t, v in by_text.items() if v == pytest.approx(exact.max(), abs=1e-6)}
        assert hits[0].text in best  # "comets and glaciers" ties two paragraphs: either may come first
    assert len(store.search_dense(q.tolist(), k=50)) == len(CORPUS)
    with pytest.raises(ConfigError, match="64-d"):
        store.search_dense([1.0, 0.0], k=3)


def test_keyword_search_ranks_the_rare_word_first(store):
    for source, text in CORPUS.items():
        put(store, source, [text])
    put(store, "rare", ["The quokka is a small marsupial with topic apples."])
    hits = store.search_bm25("topic quokka", k=3)
    assert hits[0].source == "rare" and "quokka" in hits[0].text
    assert all(h.score > 0 for h in hits) and hits[0].score > hits[1].score
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.source for h in store.search_bm25("dolphins", k=5)} == {"doc3"}  # only chunks holding a query word
    assert store.search_bm25("zzz-not-there", k=5) == [] and store.search_bm25("  ", k=5) == []
    assert [h.source for h in store.search_bm25("QUOKKA!", k=5)] == ["rare"]  # case and punctuation ignored


FILTER_DOCS = [  # year, lang, draft, nested record.author / record.pages
    (2020, "en", False, "ada", 3), (2021, "fr", False, "grace", 10), (2022, "de", False, "ada", 7),
    (2023, "en", False, "linus", 1), (2024, "fr", True, "grace", 12), (2025, "de", False, None, None)]


FILTER_CASES = [  # filter -> the years it must select, exactly
    ({"lang": "fr"}, [2021, 2024]),
    ({"lang": {"$eq": "de"}}, [2022, 2025]),
    ({"draft": True}, [2024]),
    ({"year": {"$ne": 2020}, "draft": False}, [2021, 2022, 2023, 2025]),
    ({"year": {"$gt": 2022}}, [2023, 2024, 2025]),
    ({"year": {"$gte": 2022, "$lt": 2025}}, [2022, 2023, 2024]),
    ({"year": {"$lte": 2021}}, [2020, 2021]),
    ({"lang": {"$gt": "en"}}, [2021, 2024]),  # strings compare byte-wise
    ({"lang": {"$in": ["en", "de"]}}, [2020, 2022, 2023, 2025]),
    ({"lang": {"$nin": ["en", "de"]}}, [2021, 2024]),
    ({"record.author": "ada"}, [2020, 2022]),
    ({"record.pages": {"$gte": 7}}, [2021, 2022, 2024]),
    ({"record.author": {"$ne": "ada"}}, [2021, 2023, 2024]),  # a missing key matches no condition, not even $ne
    ({"record.author": {"$nin": ["ada"]}}, [2021, 2023, 2024]),
    ({"record.author": {"$in": ["grace", "linus"]}, "year": {"$lt": 2024}}, [2021, 2023]),
    ({"lang": "xx"}, []),
    ({"missing.key": 1}, []),
]


def test_filters_select_exactly(store):
    for i, (year, lang, draft, author, pages) in enumerate(FILTER_DOCS):
        record = {"author": author, "pages": pages} if author else {}
        put(store, f"r{i}", [f"report {i} about revenue and costs"],
            {"year": year, "lang": lang, "draft": draft, "record": record})
    q = HashEmbedder().embed(["revenue"])[0]
    for filter, years in FILTER_CASES:
        bm25 = sorted(h.metadata["year"] for h in store.search_bm25("revenue", k=10, filter=filter))
        dense = sorted(h.metadata["year"] for h in store.search_dense(q, k=10, filter=filter))
        assert (bm25, dense) == (years, years), filter


def test_bad_filters_are_refused(store):
    put(store, "r", ["report about revenue"], {"lang": "en"})
    q = HashEmbedder().embed(["revenue"])[0]
    for search in (lambda f: store.search_bm25("revenue", k=3, filter=f), lambda f: store.search_dense(q, 3, f)):
        with pytest.raises(ConfigError, match=r"unknown operator '\$regex'"):
            search({"lang": {"$regex": "e.*"}})
        with pytest.raises(ConfigError, match="non-empty list"):
            search({"lang": {"$in": "en"}})
        with pytest.raises(ConfigError, match="not a metadata key"):
            search({"x') OR 1=1 --": 1})
        with pytest.raises(ConfigError, match="not a metadata key"):
            search({'x"] or true or metadata["y': 1})
        assert search({"lang": 'en" or true or "'}) == []  # a value is data, never expression text


# ---------------------------------------------------------------------------- through KnowledgeBase

def test_knowledge_base_on_each_store(spec, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fruit.md").write_text("# Fruit\n\nApples and pears grow in the orchard.\n\nPlums ripen in August.\n")
    (docs / "animals.txt").write_text("The quokka is a small marsupial from Rottnest Island.\n")
    (docs / "ships.txt").write_text("Harbors shelter ships from storms.\n")
    splitter = make_splitter("recursive", chunk_size=60, chunk_overlap=0, tokens=len)
    with KnowledgeBase(next(_names), embedder=HashEmbedder(), splitter=splitter, store=spec) as kb:
        r = kb.ingest(docs)
        assert (r.added, r.chunks) == (3, 4) and kb.stats()["documents"] == 3 and kb.stats()["chunks"] == 4
        for mode in ("hybrid", "dense", "bm25"):
            assert kb.search("quokka marsupial", k=2, mode=mode)[0].source.endswith("animals.txt")
        assert kb.search("orchard apples", k=1)[0].source.endswith("fruit.md")
        assert kb.ingest(docs).unchanged == 3
        (docs / "ships.txt").unlink()
        (docs / "animals.txt").write_text("Wombats dig burrows.\n")
        r = kb.ingest(docs)
        assert (r.added, r.updated, r.deleted, r.unchanged) == (0, 1, 1, 1) and kb.stats()["chunks"] == 3
        assert kb.search("quokka", mode="bm25") == [] and kb.search("wombats", k=1)[0].source.endswith("animals.txt")
        assert kb.search("apples", filter={"format": "markdown"})[0].source.endswith("fruit.md")


# ---------------------------------------------------------------------------- Milvus without transactions

@pytest.mark.parametrize("fail_at", ["insert", "commit", "sweep"])
def test_milvus_crash_at_each_step_shows_one_whole_version(milvus_path, fail_at):
    from llmkit.rag.stores import MilvusStore

    store = MilvusStore(milvus_path, namespace=next(_names))
    store.check_embedder(HashEmbedder.name, HashEmbedder.dimensions)
    put(store, "s", ["old first", "old second"], content_hash="h1")
    client, calls = store.client, {"upsert": 0}
    real_upsert, real_insert, real_delete = client.upsert, client.insert, client.delete

    def upsert(*a, **kw):
        calls["upsert"] += 1
        if fail_at == "commit" and calls["upsert"] == 2:  # step 3: the commit upsert
            raise RuntimeError("crash")
        return real_upsert(*a, **kw)

    def crash(*a, **kw):
        raise RuntimeError("crash")

    client.upsert = upsert
    client.insert = crash if fail_at == "insert" else real_insert
    client.delete = crash if fail_at == "sweep" else real_delete
    with pytest.raises(RuntimeError):
        put(store, "s", ["new first", "new second", "new third"], content_hash="h2")
    client.upsert, client.insert, client.delete = real_upsert, real_insert, real_delete

    expect = ["new first", "new second", "new third"] if fail_at == "sweep" else ["old first", "old second"]
    assert [c.text for c in store.chunks()] == expect and store.stats()["chunks"] == len(expect)
    assert store.documents()["s"]["content_hash"] == ("h2" if fail_at == "sweep" else "h1")
    assert {h.text for h in store.search_bm25("old new", k=10)} == set(expect)
    assert {h.text for h in store.search_dense(HashEmbedder().embed(["new first"])[0], k=10)} == set(expect)
    put(store, "s", ["final"], content_hash="h3")  # the next replace sweeps every stray row
    assert [c.text for c in store.chunks()] == ["final"]
    assert store._count(store._chunks, "") == 1 and store._rows(store._docs, 'hidden != ""', ["key"]) == []
    assert store.delete_source("s") == 1 and store._count(store._chunks, "") == 0
    store.close()


def test_milvus_reads_past_the_query_window(milvus_path, monkeypatch):
    from llmkit.rag.stores import MilvusStore, milvus

    with MilvusStore(milvus_path, namespace=next(_names)) as store:
        store.check_embedder(HashEmbedder.name, HashEmbedder.dimensions)
        for source, text in CORPUS.items():
            put(store, source, [text])
        monkeypatch.setattr(milvus, "QUERY_WINDOW", 3)  # reads of more rows go through query_iterator
        assert sorted(store.documents()) == store.sources() == sorted(CORPUS)
        assert [c.text for c in store.chunks()] == list(CORPUS.values()) and store.stats()["chunks"] == len(CORPUS)


# ---------------------------------------------------------------------------- specs and errors

def test_make_store_specs(tmp_path):
    for spec, path in [(str(tmp_path / "a.db"), tmp_path / "a.db"), (f"sqlite:///{tmp_path}/b.db", tmp_path / "b.db"),
                       (str(tmp_path), tmp_path / "notes.db")]:  # a folder holds <name>.db
        with make_store(spec, "notes") as s:
            assert isinstance(s, SQLiteStore) and s.path == str(path)
    for bad in ["ftp://host/x", "redis://localhost:6379", ""]:
        with pytest.raises(ConfigError, match="postgresql://") as e:
            make_store(bad, "x")
        assert all(form in str(e.value) for form in STORE_FORMS)
    with pytest.raises(ConfigError, match="names no Milvus host"):
        make_store("milvus://", "x")


def test_bad_addresses_say_what_is_accepted():
    pytest.importorskip("psycopg")
    pytest.importorskip("pymilvus")
    from llmkit.rag.stores import MilvusStore, PgVectorStore

    with pytest.raises(ConfigError, match=r"cannot connect to PostgreSQL at postgresql://127.0.0.1:1/x.*expected"):
        PgVectorStore("postgresql://127.0.0.1:1/x")
    with pytest.raises(ConfigError, match=r"x:\*\*\*@") as e:
        PgVectorStore("postgresql://x:secret@[bad/db")
    assert "secret" not in str(e.value)
    with pytest.raises(ConfigError, match="not a PostgreSQL address"):
        PgVectorStore("mysql://a/b")
    with pytest.raises(ConfigError, match="namespace '../x'"):
        PgVectorStore("postgresql://127.0.0.1:1/x", namespace="../x")
    with pytest.raises(ConfigError, match="not a Milvus address.*http://host:19530"):
        MilvusStore("ftp://x")
    with pytest.raises(ConfigError, match="cannot use Milvus at http://127.0.0.1:1.*expected"):
        MilvusStore("http://127.0.0.1:1", timeout=1)


def test_missing_pgvector_extension_is_a_config_error(pg_url):
    import psycopg
    from psycopg.conninfo import make_conninfo

    from llmkit.rag.stores import PgVectorStore

    with psycopg.connect(pg_url, autocommit=True) as db:  # a database whose owner may not create extensions
        db.execute("DROP DATABASE IF EXISTS llmkit_noext")
        db.execute("DROP ROLE IF EXISTS llmkit_plain")
        db.execute("CREATE ROLE llmkit_plain LOGIN")
        db.execute("CREATE DATABASE llmkit_noext OWNER llmkit_plain")
    with pytest.raises(ConfigError, match="pgvector extension is not available.*permission denied.*CREATE EXTENSION"):
        PgVectorStore(make_conninfo(pg_url, user="llmkit_plain", dbname="llmkit_noext"))


def test_store_backends_stay_optional_imports():
    code = ("import sys, llmkit, llmkit.rag, llmkit.rag.stores as s; assert s.SQLiteStore; "
            "print(sorted(m for m in ('psycopg', 'pymilvus', 'milvus_lite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_sqlite_store_is_still_the_default(tmp_path):
    with KnowledgeBase(tmp_path / "d.db", embedder=HashEmbedder()) as kb:
        assert isinstance(kb.store, SQLiteStore)
        kb.add_documents([Document("hello world", {"source": "m"})])
        assert kb.search("hello", k=1)[0].source == "m"
