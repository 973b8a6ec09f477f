"""SQLiteStore's ANN index (stores/ann.py, hnswlib): recall against exact search, deleted chunks
never served and new ones found, stale or damaged index files caught up from the database,
filtered search exact when the filter is selective, and ann=False the unchanged exact path.

Vectors are seeded clusters (topic centres plus noise), written straight through
``SQLiteStore.replace``; the exact answers come from an ``ann=False`` store on the same file.
"""
import sqlite3

import numpy as np
import pytest

from llmkit.core.errors import ConfigError
from llmkit.rag.splitters import Chunk
from llmkit.rag.stores import SQLiteStore
from llmkit.rag.stores import ann as ann_mod
from llmkit.rag.stores import sqlite as sqlite_mod

pytest.importorskip("hnswlib")
ANNIndex = ann_mod.ANNIndex


def clusters(n, dims, seed, topics=40):
    """Unit vectors around ``topics`` random centres, shaped like sentence embeddings (as in
    benchmarks/ann.py): the noise has the centre's norm and variances falling as 1/i, so a
    vector's cosine to its centre is ~0.7 and the data are not uniformly spread over all dims."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    scales = 1 / np.sqrt(np.arange(1, dims + 1))
    noise = rng.standard_normal((n, dims)) * (scales / np.linalg.norm(scales))
    x = centres[rng.integers(0, topics, n)] + noise @ np.linalg.qr(rng.standard_normal((dims, dims)))[0]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def put(store, source, vectors, **meta):
    """One document with a chunk per vector; chunk ids are ``source#i``."""
    chunks = [Chunk(f"{source} part {i}", {"source": source, "i": i, **meta}, id=f"{source}#{i}")
              for i in range(len(vectors))]
    store.replace({"source": source, "content_hash": f"h-{source}"}, chunks, [list(map(float, v)) for v in vectors])


def fill(store, x, per_doc=10):
    """Documents d0, d1, ... of ``per_doc`` vectors; metadata ``doc`` (its number) and ``group`` (doc % 10)."""
    store.check_embedder("test", x.shape[1])
    for d in range(0, len(x), per_doc):
        put(store, f"d{d // per_doc}", x[d:d + per_doc], doc=d // per_doc, group=(d // per_doc) % 10)


def ids(hits):
    return [h.chunk_id for h in hits]


def db_rows(store):
    return {r[0] for r in store.db.execute("SELECT n FROM chunks")}


def assert_in_step(store):
    """The in-memory index holds exactly the database's rows, at its generation."""
    assert store._index is not None
    assert store._index.generation == store.generation()
    assert store._index.token == store._token(store.generation())
    assert set(store._index.ids().tolist()) == db_rows(store)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "kb.db"


def test_recall_at_10_against_exact(path):
    x = clusters(3100, 384, seed=0, topics=300)  # ~10 per topic: a query's neighbours span several topics
    x, queries = x[:3000], x[3000:]  # fresh draws from the same topics, not copies of stored rows
    queries = np.concatenate([queries, x[:50] + 0.05 * clusters(50, 384, seed=2)])  # and near stored rows
    with SQLiteStore(path, ann=False) as exact:
        fill(exact, x, per_doc=100)
    with SQLiteStore(path, ann=True) as ann, SQLiteStore(path, ann=False) as exact:
        found = [ann.search_dense(q, k=10) for q in queries]
        truth = [exact.search_dense(q, k=10) for q in queries]
        recall = np.mean([len(set(ids(f)) & set(ids(t))) / 10 for f, t in zip(found, truth)])
        assert recall >= 0.95, recall
        assert all(len(f) == 10 for f in found)
        # the scores are real cosines: an ANN hit that exact search also found scores the same
        both = [(h.score, e.score) for f, t in zip(found, truth) for h in f for e in t if e.chunk_id == h.chunk_id]
        assert len(both) >= 0.95 * 10 * len(queries)
        np.testing.assert_allclose(*zip(*both), atol=1e-5)
        assert all(f[0].score >= f[-1].score for f in found)
    assert path.with_name("kb.db.ann").exists()


def test_replace_and_delete_never_serve_old_chunks(path):
    x = clusters(600, 32, seed=3)
    with SQLiteStore(path, ann=True) as store:
        fill(store, x)
        assert store.search_dense(x[0], k=1)[0].chunk_id == "d0#0"  # builds the index
        new = clusters(10, 32, seed=4)
        put(store, "d0", new)  # d0 re-ingested: new chunks (same chunk ids, new row ids) replace the old
        store.delete_source("d1")
        for v in x[10:20]:  # d1 is gone, even for a query that is exactly one of its vectors
            assert not any(c.startswith("d1#") for c in ids(store.search_dense(v, k=30)))
        for i, v in enumerate(new):  # every new chunk is found by its own vector
            top = store.search_dense(v, k=1)[0]
            assert top.chunk_id == f"d0#{i}" and top.score == pytest.approx(1.0, abs=1e-5)
        # d0's old vectors are gone: a score of 1 for one of them would be a stale vector served
        assert all(store.search_dense(v, k=1)[0].score < 0.999 for v in x[:10])
        assert_in_step(store)
        assert len(store._index) == 590


def test_row_ids_are_never_reused(path):
    """Deleting the newest rows and adding others must not give a new chunk an old row id (an index
    caught up by diffing ids would keep the old vector under it)."""
    x = clusters(40, 16, seed=5)
    with SQLiteStore(path, ann=True) as store:
        fill(store, x)
        store.search_dense(x[0], k=1)  # index saved with rows 1..40
        last = max(db_rows(store))
    with SQLiteStore(path, ann=False) as other:  # another process, no index: deletes the newest, adds one
        other.delete_source("d3")
        put(other, "fresh", clusters(10, 16, seed=6))
        fresh = [r[0] for r in other.db.execute("SELECT n FROM chunks WHERE source = 'fresh'")]
        assert min(fresh) == last + 1  # not d3's freed 31..40
    with SQLiteStore(path, ann=True) as store:
        for v in x[30:40]:  # d3's old vectors: their ids are gone, nothing may answer with score 1
            assert store.search_dense(v, k=1)[0].score < 0.999
        assert_in_step(store)


def test_other_writer_is_seen_by_an_open_index(path):
    x = clusters(300, 16, seed=7)
    a = SQLiteStore(path, ann=True)
    fill(a, x)
    a.search_dense(x[0], k=3)
    b = SQLiteStore(path, ann=True)  # a second store (another process) on the same file
    extra = clusters(5, 16, seed=8)
    put(b, "from-b", extra)
    b.delete_source("d0")
    assert a.search_dense(extra[2], k=1)[0].chunk_id == "from-b#2"  # a catches up from the database
    assert all(not h.chunk_id.startswith("d0#") for h in a.search_dense(x[0], k=20))
    assert_in_step(a)
    a.close(), b.close()


def no_rebuild(*args, **kwargs):
    raise AssertionError("the index should have been caught up, not rebuilt")


def test_crash_between_commit_and_index_save_is_caught_up(path, monkeypatch):
    x = clusters(400, 16, seed=9)
    store = SQLiteStore(path, ann=True)
    fill(store, x)
    store.search_dense(x[0], k=1)  # built and saved
    saved = ANNIndex.load(path.with_name("kb.db.ann")).generation
    put(store, "late", clusters(3, 16, seed=10))  # committed, the index file not rewritten yet
    store.delete_source("d5")
    store.db.close()  # the process dies: no close(), no save
    assert ANNIndex.load(path.with_name("kb.db.ann")).generation == saved
    monkeypatch.setattr(ANNIndex, "build", no_rebuild)  # the file is an earlier state: diff, do not rebuild
    with SQLiteStore(path, ann=True) as store:
        assert store.generation() == saved + 2
        assert store.search_dense(clusters(3, 16, seed=10)[1], k=1)[0].chunk_id == "late#1"
        assert all(not h.chunk_id.startswith("d5#") for h in store.search_dense(x[50], k=20))
        assert_in_step(store)
    assert ANNIndex.load(path.with_name("kb.db.ann")).generation == saved + 2  # close() wrote the catch-up


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage", "other dims"])
def test_missing_or_damaged_index_file_is_rebuilt(path, damage):
    x = clusters(300, 16, seed=11)
    with SQLiteStore(path, ann=True) as store:
        fill(store, x)
        store.search_dense(x[0], k=1)
    file = path.with_name("kb.db.ann")
    data = file.read_bytes()
    if damage == "delete":
        file.unlink()
    elif damage == "truncate":
        file.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        file.write_bytes(b"not an index at all" * 100)
    else:
        ix = ANNIndex.build([1, 2], np.eye(2, 8, dtype=np.float32), generation=ANNIndex.load(file).generation)
        ix.save(file)
    with SQLiteStore(path, ann=True) as store:
        assert store.search_dense(x[7], k=1)[0].chunk_id == "d0#7"
        assert_in_step(store)
    assert len(ANNIndex.load(file)) == 300  # rewritten whole


def test_generation_rolled_back_either_way(path, monkeypatch):
    x = clusters(200, 16, seed=12)
    with SQLiteStore(path, ann=True) as store:
        fill(store, x)
        store.search_dense(x[0], k=1)
        generation = store.generation()
    file = path.with_name("kb.db.ann")
    # the file claims an older state of this database than it holds: caught up by diffing
    ix = ANNIndex.load(file)
    with SQLiteStore(path, ann=False) as store:
        ix.generation, ix.token = generation - 5, store._token(generation - 5)
    ix.save(file)
    with monkeypatch.context() as m, SQLiteStore(path, ann=True) as store:
        m.setattr(ANNIndex, "build", no_rebuild)
        assert store.search_dense(x[3], k=1)[0].chunk_id == "d0#3"
        assert_in_step(store)
    assert ANNIndex.load(file).generation == generation
    # the same with a token this database never issued: not its history, rebuilt
    ix.token = "0123456789abcdef"
    ix.save(file)
    with SQLiteStore(path, ann=True) as store:
        assert store.search_dense(x[3], k=1)[0].chunk_id == "d0#3"
        assert_in_step(store)
    # the database went back (a restored backup, other rows): the file is ahead of it and rebuilt
    with SQLiteStore(path, ann=False) as other:
        other.delete_source("d2")
        other.db.execute("UPDATE meta SET value = '1' WHERE key = 'generation'")
    with SQLiteStore(path, ann=True) as store:
        assert all(not h.chunk_id.startswith("d2#") for h in store.search_dense(x[25], k=20))
        assert_in_step(store)
        assert store._index.generation == 1


def test_restored_backup_with_reused_row_ids_is_rebuilt(path):
    """A database restored from a backup behind a newer index file: the restored one hands out
    row ids the index already holds under other vectors, so diffing ids would serve stale vectors."""
    backup = path.with_name("backup.db")
    x, later, other = clusters(50, 16, seed=21), clusters(20, 16, seed=22), clusters(10, 16, seed=23)
    with SQLiteStore(path, ann=True) as store:
        fill(store, x)
        store.search_dense(x[0], k=1)
    backup.write_bytes(path.read_bytes())  # close() checkpointed the WAL: the .db file is whole
    with SQLiteStore(path, ann=True) as store:
        put(store, "later", later)
        store.search_dense(x[0], k=1)  # the index file now holds rows 51..70 with `later`
    path.write_bytes(backup.read_bytes())  # restored: rows 1..50, generation 5
    with SQLiteStore(path, ann=False) as restored:
        put(restored, "other", other)  # rows 51..60 again, other vectors, generation 6 like the file's
    with SQLiteStore(path, ann=True) as store:
        for i, v in enumerate(other):
            top = store.search_dense(v, k=1)[0]
            assert top.chunk_id == f"other#{i}" and top.score == pytest.approx(1.0, abs=1e-5)
        assert all(store.search_dense(v, k=1)[0].score < 0.999 for v in later)
        assert_in_step(store)


def test_failed_write_leaves_index_and_database_as_they_were(path):
    x = clusters(100, 8, seed=13)
    with SQLiteStore(path, ann=True) as store:
        fill(store, x)
        before = ids(store.search_dense(x[0], k=5))
        generation = store.generation()
        bad = [Chunk("ok", {"source": "d0"}, id="new#0"), Chunk("x", {"source": "d0"}, id="new#1")]
        bad[1].text = None  # NOT NULL fails after the old rows are deleted inside the transaction
        with pytest.raises(sqlite3.IntegrityError):
            store.replace({"source": "d0", "content_hash": "h2"}, bad, [list(x[0]), list(x[1])])
        assert store.generation() == generation  # rolled back with everything else
        assert ids(store.search_dense(x[0], k=5)) == before
        assert_in_step(store)


@pytest.fixture
def filtered(path, monkeypatch):
    """2,000 vectors in 200 documents; filters matching at most 50 rows count as selective here."""
    monkeypatch.setattr(sqlite_mod, "FILTER_EXACT_ROWS", 50)
    x = clusters(2000, 32, seed=14)
    with SQLiteStore(path, ann=False) as store:
        fill(store, x)
    ann, exact = SQLiteStore(path, ann=True), SQLiteStore(path, ann=False)
    yield x, ann, exact
    ann.close(), exact.close()


@pytest.mark.parametrize("filter", [{"doc": 17}, {"doc": {"$in": [3, 99, 150]}}, {"doc": {"$gte": 195}},
                                    {"doc": {"$lt": 5}, "i": {"$ne": 0}}, {"doc": -1}])
def test_selective_filter_equals_exact(filtered, filter, monkeypatch):
    x, ann, exact = filtered
    ann.search_dense(x[0], k=1)  # the index is built and in use ...

    def no_index(*args):
        raise AssertionError("a selective filter must be ranked exactly, not through the index")

    monkeypatch.setattr(ANNIndex, "search", no_index)  # ... but a selective filter never asks it
    for q in clusters(20, 32, seed=15):
        got, want = ann.search_dense(q, k=10, filter=filter), exact.search_dense(q, k=10, filter=filter)
        assert ids(got) == ids(want)
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-6)


def test_broad_filter_keeps_only_matching_rows(filtered):
    _, ann, exact = filtered
    overlap = []
    for q in clusters(20, 32, seed=16):
        for filter in ({"group": {"$in": [1, 2, 3]}}, {"group": 7}):  # 600 and 200 rows: oversampled ANN
            got, want = ann.search_dense(q, k=10, filter=filter), exact.search_dense(q, k=10, filter=filter)
            assert len(got) == 10 and all(ann_ok(h, filter) for h in got)
            overlap.append(len(set(ids(got)) & set(ids(want))) / 10)
    assert np.mean(overlap) >= 0.95


def ann_ok(hit, filter):
    g = hit.metadata["group"]
    return g in filter["group"]["$in"] if isinstance(filter["group"], dict) else g == filter["group"]


def test_filter_far_from_the_query_falls_back_to_exact(filtered, monkeypatch):
    """The 60 rows matching the filter (too many to count as selective) all point away from the
    query: the oversampled ANN round finds none of them, and the exact fallback must rank them."""
    x, ann, exact = filtered
    monkeypatch.setattr(sqlite_mod, "FILTER_ROUNDS", 0)  # one round of 4 k candidates
    q = x[0]
    put(ann, "far", -(q + 0.3 * clusters(60, 32, seed=20)), far=True)
    got, want = ann.search_dense(q, k=10, filter={"far": True}), exact.search_dense(q, k=10, filter={"far": True})
    assert len(got) == 10 and ids(got) == ids(want)
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-6)


def test_ann_false_is_the_exact_path(path, monkeypatch):
    x = clusters(500, 16, seed=17)
    with SQLiteStore(path, ann=False) as store:
        fill(store, x)
        rows = store.db.execute("SELECT n, id, embedding FROM chunks ORDER BY n").fetchall()
        mat = np.stack([np.frombuffer(b, dtype=np.float32) for _, _, b in rows])
        mat = mat / np.linalg.norm(mat, axis=1, keepdims=True)
        for q in clusters(10, 16, seed=18):
            scores = mat @ (q / np.linalg.norm(q))
            order = np.argsort(-scores, kind="stable")[:7]
            hits = store.search_dense(q, k=7)
            assert ids(hits) == [rows[i][1] for i in order]
            assert [h.score for h in hits] == [float(scores[i]) for i in order]
            # filtered: the same ranking restricted to group 4 (documents d4, d14, d24, ...)
            g4 = [i for i in np.argsort(-scores, kind="stable") if int(rows[i][1][1:].split("#")[0]) % 10 == 4]
            assert ids(store.search_dense(q, k=7, filter={"group": 4})) == [rows[i][1] for i in g4[:7]]
    assert not path.with_name("kb.db.ann").exists()  # never built, never written
    # ann=None below the threshold: the same exact answers, no index
    with SQLiteStore(path) as auto, SQLiteStore(path, ann=False) as exact:
        q = x[3]
        assert ids(auto.search_dense(q, k=5)) == ids(exact.search_dense(q, k=5))
        assert auto._index is None
    monkeypatch.setattr(sqlite_mod, "ANN_MIN_CHUNKS", 400)  # ... and above it, the index
    with SQLiteStore(path) as auto:
        assert auto.search_dense(x[3], k=1)[0].chunk_id == "d0#3"
        assert_in_step(auto)
    assert path.with_name("kb.db.ann").exists()


def test_without_hnswlib(path, monkeypatch):
    monkeypatch.setattr(ann_mod, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'llmkit\[ann\]'"):
        SQLiteStore(path, ann=True)
    monkeypatch.setattr(sqlite_mod, "ANN_MIN_CHUNKS", 1)
    with SQLiteStore(path) as store:  # ann=None: silently exact
        fill(store, clusters(20, 8, seed=19))
        assert store.search_dense(store_vector(store, "d1#2"), k=1)[0].chunk_id == "d1#2"
        assert store._index is None
    with pytest.raises(ConfigError, match="ann='yes'"):
        SQLiteStore(path, ann="yes")
    monkeypatch.setitem(__import__("sys").modules, "hnswlib", None)  # the import itself fails
    with pytest.raises(ImportError, match=r"pip install 'llmkit\[ann\]'"):
        ANNIndex(8)


def store_vector(store, chunk_id):
    return np.frombuffer(store.db.execute("SELECT embedding FROM chunks WHERE id = ?", (chunk_id,)).fetchone()[0],
                         dtype=np.float32)
