"""KnowledgeBase and SQLiteStore: incremental ingest, BM25 (checked against bm25s), dense, hybrid
fusion, metadata filters, and a crash mid-write leaving the old state.

Most tests use a hashing bag-of-words embedder so they run in milliseconds; one integration
test uses the embedded MiniLM.
"""
import sqlite3

import pytest

from llmkit.core.errors import ConfigError
from llmkit.rag.kb import RRF_K, IngestReport, KnowledgeBase, fuse, kb_path
from llmkit.rag.loaders import Document
from llmkit.rag.splitters import Chunk, make_splitter
from llmkit.rag.stores import Hit, SQLiteStore

from hash_embedder import WORDS, HashEmbedder


class ScriptedEmbedder:
    """Vectors chosen by the test: the first key found in a text decides its vector."""

    name = "scripted"
    dimensions = 3

    def __init__(self, table):
        self.table = table

    def embed(self, texts):
        return [next((v for key, v in self.table.items() if key in t), [0.0, 0.0, 1.0]) for t in texts]


def paragraphs(*texts):
    return "\n\n".join(texts) + "\n"


P = [f"Paragraph number {i} talks about topic {w}." for i, w in enumerate(
    ["apples", "bridges", "comets", "dolphins", "engines", "forests", "glaciers", "harbors", "islands", "jungles"])]


@pytest.fixture
def splitter():
    # character sizes: every paragraph above (37-40 chars) is one chunk, two never fit together
    return make_splitter("recursive", chunk_size=60, chunk_overlap=0, tokens=len)


@pytest.fixture
def kb(tmp_path, splitter):
    with KnowledgeBase(tmp_path / "test.db", embedder=HashEmbedder(), splitter=splitter) as kb:
        yield kb


def write_corpus(folder):
    folder.mkdir(exist_ok=True)
    (folder / "a.md").write_text(paragraphs(P[0], P[1], P[2]))
    (folder / "b.txt").write_text(paragraphs(P[3], P[4]))
    (folder / "c.txt").write_text(paragraphs(P[5]))
    (folder / "skip.xyz").write_text("no loader for this suffix")


def assert_no_duplicates(kb):
    chunks = kb.store.chunks()
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    assert len({c.text for c in chunks}) == len(chunks)
    return chunks


def test_ingest_is_incremental(kb, tmp_path):
    docs = tmp_path / "docs"
    write_corpus(docs)
    r = kb.ingest(docs)
    assert (r.added, r.updated, r.deleted, r.unchanged, r.chunks) == (3, 0, 0, 0, 6)
    assert kb.stats()["documents"] == 3 and kb.stats()["chunks"] == 6
    assert kb.sources() == sorted(str((docs / n).resolve()) for n in ["a.md", "b.txt", "c.txt"])

    calls = kb.embedder.calls
    r = kb.ingest(docs)
    assert (r.added, r.updated, r.deleted, r.unchanged, r.chunks) == (0, 0, 0, 3, 0)
    assert kb.embedder.calls == calls  # nothing re-embedded
    assert kb.stats()["chunks"] == 6

    (docs / "a.md").write_text(paragraphs(P[0], P[1], P[2], P[6]))  # one paragraph more
    (docs / "d.txt").write_text(paragraphs(P[7], P[8]))
    (docs / "c.txt").unlink()
    r = kb.ingest(docs)
    assert (r.added, r.updated, r.deleted, r.unchanged, r.chunks) == (1, 1, 1, 1, 6)
    assert kb.stats()["documents"] == 3 and kb.stats()["chunks"] == 4 + 2 + 2
    chunks = assert_no_duplicates(kb)
    assert sorted(c.text for c in chunks) == sorted(P[i] for i in [0, 1, 2, 6, 3, 4, 7, 8])
    assert kb.search("forests", mode="bm25") == []  # c.txt's chunk left the FTS index too


def test_ingest_single_file_and_glob_scopes(kb, tmp_path):
    docs = tmp_path / "docs"
    write_corpus(docs)
    assert kb.ingest(docs / "a.md").added == 1
    r = kb.ingest(str(docs / "*.txt"))
    assert (r.added, r.unchanged) == (2, 0)
    (docs / "b.txt").unlink()
    r = kb.ingest(docs / "c.txt")  # a single file deletes nothing
    assert (r.unchanged, r.deleted) == (1, 0)
    r = kb.ingest(str(docs / "*.txt"))  # a glob deletes what vanished under its fixed prefix
    assert (r.deleted, r.unchanged) == (1, 1)
    assert kb.stats()["chunks"] == 3 + 1
    assert "deleted 1" in str(r) and isinstance(r, IngestReport)


def test_kb_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    assert kb_path("notes") == tmp_path / "home" / "kb" / "notes.db"
    assert kb_path(tmp_path / "x.db") == tmp_path / "x.db"
    with pytest.raises(ConfigError, match="neither a name"):
        kb_path("../escape")
    kb = KnowledgeBase("notes", embedder=HashEmbedder())
    kb.add_documents([Document("hello world", {"source": "mem:1"})])
    kb.close()
    assert (tmp_path / "home" / "kb" / "notes.db").is_file()


def test_bm25_ranks_rare_term_first(kb, tmp_path):
    docs = tmp_path / "docs"
    write_corpus(docs)
    (docs / "rare.txt").write_text("The quokka is a small marsupial with topic apples.\n")
    kb.ingest(docs)
    hits = kb.search("topic quokka", k=3, mode="bm25")
    assert hits[0].source.endswith("rare.txt") and "quokka" in hits[0].text
    assert all(h.score > 0 for h in hits) and hits[0].score > hits[1].score
    assert kb.search("zzz-not-there", mode="bm25") == [] and kb.search("  ", mode="bm25") == []


def test_bm25_agrees_with_bm25s(tmp_path):
    bm25s = pytest.importorskip("bm25s", reason="bm25s not installed: pip install bm25s")
    corpus = ["the cat sat on the mat with another cat",
              "dogs and cats living together in one house",
              "a cat is a small domesticated carnivorous mammal",
              "the stock market fell sharply on monday",
              "monday meetings are about the market and the cat food budget",
              "rain is expected over the weekend in the north",
              "weekend plans include hiking camping and a long walk in the rain"]
    kb = KnowledgeBase(tmp_path / "b.db", embedder=HashEmbedder(), splitter=make_splitter("recursive", tokens=len))
    kb.add_documents([Document(t, {"source": f"mem:{i}"}) for i, t in enumerate(corpus)])
    assert kb.stats()["chunks"] == len(corpus)  # one chunk per text, so chunk statistics = document statistics
    query = "cat market monday"
    ours = kb.search(query, k=len(corpus), mode="bm25")

    ref = bm25s.BM25(method="robertson", k1=1.2, b=0.75)  # FTS5's bm25(): Robertson IDF, k1=1.2, b=0.75
    ref.index([WORDS.findall(t.lower()) for t in corpus], show_progress=False)
    scores = ref.get_scores(WORDS.findall(query))
    expected = sorted((i for i in range(len(corpus)) if scores[i] > 0), key=lambda i: -scores[i])
    assert [h.source for h in ours] == [f"mem:{i}" for i in expected]
    # bm25s's "robertson" leaves out the constant (k1 + 1) factor of the term-frequency part
    assert [h.score for h in ours] == pytest.approx([2.2 * float(scores[i]) for i in expected], rel=1e-4)
    kb.close()


def test_hybrid_is_reciprocal_rank_fusion(tmp_path, splitter):
    texts = {"alpha": "alpha text about felines and their whiskers",
             "beta": "beta text: the word zebra appears here zebra zebra",
             "gamma": "gamma text mentions zebra once"}
    emb = ScriptedEmbedder({"alpha": [1.0, 0.0, 0.0], "gamma": [0.8, 0.6, 0.0], "beta": [0.0, 1.0, 0.0],
                            "zebra": [1.0, 0.05, 0.0]})  # the query "zebra" points at alpha, then gamma
    with KnowledgeBase(tmp_path / "h.db", embedder=emb, splitter=splitter) as kb:
        kb.add_documents([Document(t, {"source": s}) for s, t in texts.items()])
        dense = kb.search("zebra", k=3, mode="dense")
        bm25 = kb.search("zebra", k=3, mode="bm25")
        assert [h.source for h in dense] == ["alpha", "gamma", "beta"]
        assert [h.source for h in bm25] == ["beta", "gamma"]  # alpha lacks the word
        rrf = {s: 0.0 for s in texts}
        for ranking in (dense, bm25):
            for rank, h in enumerate(ranking, 1):
                rrf[h.source] += 1 / (RRF_K + rank)
        hybrid = kb.search("zebra", k=3, fusion="rrf")
        assert [h.source for h in hybrid] == sorted(rrf, key=lambda s: -rrf[s]) == ["beta", "gamma", "alpha"]
        assert [h.score for h in hybrid] == pytest.approx([rrf["beta"], rrf["gamma"], rrf["alpha"]])
        # weighted: all on dense gives the dense order back, all on bm25 the bm25 order
        assert [h.source for h in kb.search("zebra", k=3, weights=(1.0, 0.0))][:1] == ["alpha"]
        assert [h.source for h in kb.search("zebra", k=2, weights=(0.0, 1.0))][:1] == ["beta"]


def test_weighted_fusion_min_max():
    dense = [Hit("a", "a", 0.9, {}, "a"), Hit("b", "b", 0.5, {}, "b"), Hit("c", "c", 0.1, {}, "c")]
    bm25 = [Hit("c", "c", 8.0, {}, "c"), Hit("b", "b", 4.0, {}, "b")]
    out = fuse(dense, bm25, 3, weights=(0.5, 0.5))
    # a: 0.5*1 + 0 ; b: 0.5*0.5 + 0.5*0 ; c: 0.5*0 + 0.5*1
    assert {h.chunk_id: round(h.score, 6) for h in out} == {"a": 0.5, "b": 0.25, "c": 0.5}
    assert [h.chunk_id for h in out] == ["a", "c", "b"]


def test_metadata_filters(kb):
    kb.add_documents([Document(f"report {i} about revenue and costs", {"source": f"mem:{i}", "year": 2020 + i,
                                                                        "lang": ["en", "fr", "de"][i % 3],
                                                                        "draft": i == 4})
                      for i in range(6)])

    def years(filter, mode):
        return sorted(h.metadata["year"] for h in kb.search("revenue", k=10, mode=mode, filter=filter))

    for mode in ("bm25", "dense", "hybrid"):
        assert years(None, mode) == [2020, 2021, 2022, 2023, 2024, 2025]
        assert years({"lang": "fr"}, mode) == [2021, 2024]
        assert years({"lang": {"$in": ["en", "de"]}}, mode) == [2020, 2022, 2023, 2025]
        assert years({"lang": {"$nin": ["en", "de"]}}, mode) == [2021, 2024]
        assert years({"year": {"$gte": 2022, "$lt": 2025}}, mode) == [2022, 2023, 2024]
        assert years({"year": {"$gt": 2022}, "lang": "en"}, mode) == [2023]
        assert years({"draft": True}, mode) == [2024]
        assert years({"year": {"$ne": 2020}, "draft": False}, mode) == [2021, 2022, 2023, 2025]
        assert years({"lang": "xx"}, mode) == []
    with pytest.raises(ConfigError, match=r"unknown operator '\$regex'"):
        kb.search("revenue", filter={"lang": {"$regex": "e.*"}})
    with pytest.raises(ConfigError, match="non-empty list"):
        kb.search("revenue", filter={"lang": {"$in": "en"}})
    with pytest.raises(ConfigError, match="not a metadata key"):
        kb.search("revenue", filter={"x') OR 1=1 --": 1})


def test_crash_mid_replace_keeps_old_chunks(tmp_path):
    path = tmp_path / "crash.db"
    store = SQLiteStore(path)
    store.check_embedder("e", 2)
    old = [Chunk("old first", {"source": "s"}), Chunk("old second", {"source": "s"})]
    store.replace({"source": "s", "content_hash": "h1"}, old, [[1, 0], [0, 1]])
    bad = [Chunk("new first", {"source": "s"}), Chunk("new second", {"source": "s"})]
    bad[1].text = None  # violates NOT NULL after the old rows are gone and the first new one is in
    with pytest.raises(sqlite3.IntegrityError):
        store.replace({"source": "s", "content_hash": "h2"}, bad, [[1, 0], [0, 1]])
    with pytest.raises(ConfigError, match="2-d"):  # a wrong-sized vector fails the same way
        store.replace({"source": "s", "content_hash": "h3"}, bad[:1] + old[:1], [[1, 0], [1, 0, 0]])
    store.close()

    store = SQLiteStore(path)  # reopened: consistent, old state whole
    assert store.stats()["documents"] == 1 and store.stats()["chunks"] == 2
    assert store.documents()["s"]["content_hash"] == "h1"
    assert [c.text for c in store.chunks("s")] == ["old first", "old second"]
    assert [h.text for h in store.search_bm25("old", k=5)] == ["old first", "old second"]
    assert store.search_bm25("new", k=5) == []  # the FTS index rolled back with the rows
    assert [h.text for h in store.search_dense([0, 1], k=1)] == ["old second"]
    store.close()


def test_crash_mid_ingest_then_resume(tmp_path, splitter):
    docs = tmp_path / "docs"
    write_corpus(docs)

    class Flaky(HashEmbedder):
        def embed(self, texts):
            if any("dolphins" in t for t in texts):
                raise RuntimeError("embedding server died")
            return super().embed(texts)

    with KnowledgeBase(tmp_path / "k.db", embedder=Flaky(), splitter=splitter) as kb:
        with pytest.raises(RuntimeError):
            kb.ingest(docs, batch_size=1)
        assert kb.stats()["documents"] == 1 and kb.stats()["chunks"] == 3  # a.md whole, nothing of b.txt
    with KnowledgeBase(tmp_path / "k.db", embedder=HashEmbedder(), splitter=splitter) as kb:
        r = kb.ingest(docs)
        assert (r.added, r.unchanged, kb.stats()["chunks"]) == (2, 1, 6)
        assert_no_duplicates(kb)


def test_dense_cache_sees_other_connections(tmp_path, splitter):
    a = KnowledgeBase(tmp_path / "s.db", embedder=HashEmbedder(), splitter=splitter)
    b = KnowledgeBase(tmp_path / "s.db", embedder=HashEmbedder(), splitter=splitter)
    a.add_documents([Document("apples and pears", {"source": "x"})])
    assert [h.source for h in b.search("apples", mode="dense")] == ["x"]
    a.add_documents([Document("apples only", {"source": "y"})])
    assert {h.source for h in b.search("apples", mode="dense")} == {"x", "y"}
    a.close(), b.close()


def test_errors_name_the_bad_value(kb, tmp_path):
    with pytest.raises(ConfigError, match="unknown search mode 'fuzzy'"):
        kb.search("x", mode="fuzzy")
    with pytest.raises(ConfigError, match="k=0"):
        kb.search("x", k=0)
    kb.add_documents([Document("some text", {"source": "x"})])
    other = KnowledgeBase(kb.store.path, embedder=ScriptedEmbedder({}))
    with pytest.raises(ConfigError, match="hash-bow-64"):
        other.add_documents([Document("more", {"source": "y"})])
    other.close()
    assert kb.search("nothing matches this", mode="bm25") == []
    assert KnowledgeBase(tmp_path / "empty.db", embedder=HashEmbedder()).search("x") == []


@pytest.mark.integration
def test_minilm_finds_a_paraphrase(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "password.md").write_text("# Account help\n\nTo reset your password, open Settings, choose Security "
                                      "and click 'Forgot password'. A link arrives by e-mail.\n")
    (docs / "vacation.md").write_text("# Leave\n\nEmployees get 25 days of paid vacation per year; "
                                      "unused days carry over until March.\n")
    (docs / "kitchen.md").write_text("# Office kitchen\n\nPlease clean the coffee machine on Fridays and "
                                     "label your food in the fridge.\n")
    with KnowledgeBase(tmp_path / "mini.db") as kb:
        r = kb.ingest(docs)
        assert r.added == 3 and kb.stats()["dimensions"] == 384 and kb.stats()["embedder"] == "all-MiniLM-L6-v2"
        hits = kb.search("I forgot my login credentials, how do I get back in?", k=3, mode="dense")
        assert hits[0].source.endswith("password.md") and hits[0].score > hits[1].score
        assert kb.search("how many holidays do staff have", k=1)[0].source.endswith("vacation.md")
        assert kb.ingest(docs).unchanged == 3
