"""rag/retrievers.py: multi-query, RAG-Fusion, HyDE, parent-document and window expansion,
contextual compression. A scripted model and a hashing bag-of-words embedder keep them exact."""
import pytest

from llmkit.core import tracing
from llmkit.core.errors import ConfigError
from llmkit.models.scripted import ScriptedModel
from llmkit.rag import Document, KnowledgeBase, answer, fuse, make_splitter
from llmkit.rag.retrievers import (CHILDREN, HYDE_TEMPLATE, MULTI_QUERY_TEMPLATE, compress, compress_by_embedding,
                                   expand_parents, expand_window, hyde, multi_query, parent_document, rag_fusion,
                                   rewrite, rrf)
from llmkit.rag.splitters import ParentChildSplitter, RecursiveSplitter, SentenceSplitter
from llmkit.rag.stores import Hit

from hash_embedder import HashEmbedder

FACTS = {
    "mem:france": "Paris is the capital of France, on the Seine.",
    "mem:germany": "Berlin is the capital of Germany, on the Spree.",
    "mem:italy": "Rome is the capital of Italy, on the Tiber.",
    "mem:cooking": "Boil pasta in salted water for nine minutes.",
    "mem:car": "Automobile engines need fresh lubricant every 8000 kilometres.",
    "mem:rivers": "Which river flows fastest? Rivers flow through valleys and plains.",
}


def make_kb(path, splitter, docs):
    kb = KnowledgeBase(path, embedder=HashEmbedder(), splitter=splitter)
    kb.add_documents([Document(t, {"source": s}) for s, t in docs.items()])
    return kb


@pytest.fixture
def kb(tmp_path):
    with make_kb(tmp_path / "kb.db", make_splitter("recursive", chunk_size=200, chunk_overlap=0, tokens=len),
                 FACTS) as kb:  # one chunk per fact
        yield kb


def h(cid):
    return Hit(f"text {cid}", "s", 0.0, {}, cid)


# ------------------------------------------------------------------ fusion

def test_rrf_matches_hand_computed_scores_and_kb_fuse():
    a, b, c, d = h("a"), h("b"), h("c"), h("d")
    out = rrf([[a, b, c], [b, c, d], [c]], k=3)
    assert [x.chunk_id for x in out] == ["c", "b", "a"]
    assert [x.score for x in out] == pytest.approx([1 / 63 + 1 / 62 + 1 / 61, 1 / 61 + 1 / 62, 1 / 61])
    assert [x.chunk_id for x in rrf([[a, b], [b, a]])] == ["a", "b"]  # a tie keeps first appearance
    assert rrf([[a], [b]], weights=[1, 3])[0].chunk_id == "b"
    dense, bm25 = [a, b, c], [d, c]  # the two-list case is exactly kb.fuse
    assert [(x.chunk_id, x.score) for x in rrf([dense, bm25], k=4)] == \
        [(x.chunk_id, x.score) for x in fuse(dense, bm25, k=4)]
    with pytest.raises(ConfigError, match="weights"):
        rrf([[a], [b]], weights=[1])


def test_multi_query_finds_a_document_only_a_rewrite_reaches(kb):
    q = "How often should I change the oil in my vehicle?"
    assert "mem:car" not in [x.source for x in kb.search(q, k=6, mode="bm25")]  # no shared word
    m = ScriptedModel('["automobile lubricant interval", "engine oil change schedule"]')
    hits = multi_query(m, kb, q, n=2, k=3, mode="bm25")
    assert hits[0].source == "mem:car"
    [prompt] = m.prompts
    assert prompt.startswith(MULTI_QUERY_TEMPLATE.format(n=2, question=q))
    assert '"maxLength": 200' in prompt and '"maxItems": 2' in prompt  # the bounded schema was asked for
    assert m.calls[0][1].temperature == 0


def test_rewrite_drops_duplicates_and_rejects_a_bad_template():
    m = ScriptedModel('["paris capital", " paris capital ", "french capital"]')
    assert rewrite(m, "capital of France?", n=3) == ["paris capital", "french capital"]
    with pytest.raises(ConfigError, match="placeholder"):
        rewrite(ScriptedModel("[]"), "q", template="{query}")


def test_rag_fusion_is_rrf_over_the_question_and_its_rewrites(kb):
    q = "capital city on a river"
    rewrites = ["Paris Seine France", "Rome Tiber Italy", "pasta water"]
    m = ScriptedModel(str(rewrites).replace("'", '"'))
    hits = rag_fusion(m, kb, q, n=3, k=4, mode="dense")
    lists = [kb.search(x, k=4, mode="dense") for x in [q, *rewrites]]
    by_hand: dict[str, float] = {}
    for lst in lists:
        for rank, x in enumerate(lst, 1):
            by_hand[x.chunk_id] = by_hand.get(x.chunk_id, 0.0) + 1 / (60 + rank)
    assert [x.chunk_id for x in hits] == sorted(by_hand, key=lambda c: -by_hand[c])[:4]
    assert [x.score for x in hits] == pytest.approx(sorted(by_hand.values(), reverse=True)[:4])


def test_rag_fusion_traces_each_step(kb):
    rag_fusion(ScriptedModel('["Paris France", "Rome Italy"]'), kb, "capitals", n=2, k=2, mode="dense")
    spans = tracing.TraceStore().list(limit=50)
    [top] = [s for s in spans if s["name"] == "rag.rag_fusion"]
    searches = [s for s in spans if s["name"] == "rag.search"]
    [call] = [s for s in spans if s["name"] == "chat scripted"]
    assert len(searches) == 3 and all(s["parent_id"] == top["span_id"] for s in searches)
    assert call["parent_id"] == top["span_id"]
    assert top["attributes"]["llmkit.rag.queries"] == ["capitals", "Paris France", "Rome Italy"]
    assert len(top["attributes"]["llmkit.rag.hit_ids"]) == 2


# ------------------------------------------------------------------ HyDE

def test_hyde_searches_with_the_hypothetical_passage(kb):
    q = "Which river flows through the French capital?"
    assert kb.search(q, k=1, mode="dense")[0].source == "mem:rivers"  # the question alone misleads
    m = ScriptedModel("The Seine flows through Paris, the capital of France.")
    hits = hyde(m, kb, q, k=2)
    assert hits[0].source == "mem:france"
    assert m.prompts == [HYDE_TEMPLATE.format(question=q)]
    assert (m.calls[0][1].temperature, m.calls[0][1].max_tokens) == (0, 200)


def test_hyde_with_question_searches_the_mean_embedding(kb):
    q, passage = "Which river flows through the French capital?", "Berlin Spree Germany"
    hits = hyde(ScriptedModel(passage), kb, q, k=6, with_question=True, template="Write: {question}")
    a, b = kb.embedder.embed([passage, q])
    expected = kb.store.search_dense([(x + y) / 2 for x, y in zip(a, b)], 6)
    assert [(x.chunk_id, x.score) for x in hits] == [(x.chunk_id, pytest.approx(x.score)) for x in expected]
    assert hits != hyde(ScriptedModel(passage), kb, q, k=6)  # the passage alone ranks differently


# ------------------------------------------------------------------ parent documents

CATS = "Cats purr when they are content. Cats sleep for most of the day. A cat grooms its fur often."
SHIPS = "Ships cross the ocean with cargo. A ship needs a captain and a crew. Harbours shelter ships."


@pytest.fixture
def pc_kb(tmp_path):
    splitter = ParentChildSplitter(RecursiveSplitter(120, 0, tokens=len), SentenceSplitter(40, 0, tokens=len))
    with make_kb(tmp_path / "pc.db", splitter, {"mem:animals": f"{CATS}\n\n{SHIPS}"}) as kb:
        yield kb


def test_parent_document_returns_the_parent_once(pc_kb):
    stored = pc_kb.store.chunks()
    parents = {c.text: c for c in stored if "parent_id" not in c.metadata}
    assert set(parents) == {CATS, SHIPS} and len(stored) == 8  # 2 parents, 6 one-sentence children
    hits = parent_document(pc_kb, "cats purr sleep", k=2, mode="bm25")
    assert [x.text for x in hits] == [CATS]  # both matching children share it: it comes once
    assert hits[0].chunk_id == parents[CATS].chunk_id
    kids = {c.chunk_id: c.text for c in stored if c.metadata.get("parent_id") == parents[CATS].chunk_id}
    assert set(hits[0].metadata["child_ids"]) <= set(kids) and len(hits[0].metadata["child_ids"]) == 2


def test_expand_parents_dedupes_a_parent_hit_directly_and_through_a_child(pc_kb):
    raw = pc_kb.search("ship captain crew", k=8, mode="bm25")  # no CHILDREN filter: the parent matches too
    assert sum("parent_id" in x.metadata for x in raw) >= 1 and any(x.text == SHIPS for x in raw)
    out = expand_parents(pc_kb, raw)
    assert [x.text for x in out].count(SHIPS) == 1 and len({x.chunk_id for x in out}) == len(out)
    assert all("parent_id" not in x.metadata for x in out)
    assert all("parent_id" in x.metadata for x in pc_kb.search("ship", k=8, mode="bm25", filter=CHILDREN))


def test_answer_takes_a_retrieval_strategy(pc_kb):
    m = ScriptedModel("They purr [1].")
    a = answer(m, pc_kb, "Do cats purr?", k=1, retrieve=lambda q, k: parent_document(pc_kb, q, k=k, mode="bm25"))
    assert [x.text for x in a.hits] == [CATS] and a.citations[0].text == CATS
    assert CATS in m.prompts[0]
    with pytest.raises(ConfigError, match="filter"):
        answer(m, pc_kb, "q", retrieve=lambda q, k: [], filter={"x": 1})


# ------------------------------------------------------------------ sentence windows

STORY = "Alpha opens the story. Bravo follows next. Charlie sits in the middle. Delta comes after. Echo ends it all."


@pytest.fixture
def story_kb(tmp_path):
    with make_kb(tmp_path / "story.db", SentenceSplitter(30, 0, tokens=len), {"mem:story": STORY}) as kb:
        yield kb


def test_window_adds_the_neighbours_in_order(story_kb):
    assert len(story_kb.store.chunks()) == 5  # a sentence per chunk
    [hit] = story_kb.search("Charlie middle", k=1, mode="bm25")
    [one] = expand_window(story_kb, [hit], w=1)
    assert one.text == "Bravo follows next. Charlie sits in the middle. Delta comes after."
    assert (one.chunk_id, one.score) == (hit.chunk_id, hit.score) and one.metadata["window"][1] == hit.chunk_id
    assert expand_window(story_kb, [hit], w=2)[0].text == STORY
    assert expand_window(story_kb, [hit], w=0)[0].text == hit.text
    [first] = story_kb.search("Alpha", k=1, mode="bm25")
    assert expand_window(story_kb, [first], w=1)[0].text == "Alpha opens the story. Bravo follows next."
    with pytest.raises(ConfigError, match="w="):
        expand_window(story_kb, [hit], w=-1)


def test_window_writes_overlapping_chunks_once(tmp_path):
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
    with make_kb(tmp_path / "o.db", RecursiveSplitter(30, 12, tokens=len), {"mem:n": text}) as kb:
        chunks = kb.store.chunks()
        prev, mid, nxt = chunks[1:4]
        assert nxt.metadata["start"] < mid.metadata["end"]  # the chunks do overlap
        [out] = expand_window(kb, [mid], w=1)
        assert out.text == text[prev.metadata["start"]:nxt.metadata["end"]]


# ------------------------------------------------------------------ compression

PASSAGE = "Paris is the capital of France. Pasta boils in nine minutes. The Seine flows through Paris."


def test_compress_keeps_the_sentences_the_model_picks_and_drops_empty_hits():
    hits = [Hit(PASSAGE, "a", 0.9, {}, "c1"), Hit("Bake bread at high heat. Knead it first.", "b", 0.5, {}, "c2")]
    m = ScriptedModel(["[1, 3]", "[]"])
    out = compress(m, "What is the capital of France?", hits)
    assert [(x.chunk_id, x.text, x.score) for x in out] == \
        [("c1", "Paris is the capital of France. The Seine flows through Paris.", 0.9)]
    assert "[1] Paris is the capital of France.\n[2] Pasta boils in nine minutes.\n[3] The Seine" in m.prompts[0]
    assert '"maximum": 3' in m.prompts[0] and '"maximum": 2' in m.prompts[1]


def test_compress_by_embedding_needs_no_model():
    hits = [Hit(PASSAGE, "a", 0.9, {}, "c1"), Hit("Bake bread at high heat.", "b", 0.5, {}, "c2")]
    out = compress_by_embedding(HashEmbedder(), "What is the capital of France?", hits, threshold=0.5)
    assert [(x.chunk_id, x.text) for x in out] == [("c1", "Paris is the capital of France.")]
    assert len(compress_by_embedding(HashEmbedder(), "capital of France", hits, threshold=0.0)[0].text) == len(PASSAGE)
