"""rag/answer.py: retrieve, prompt with numbered passages, map [n] citations back to chunks.

A hashing bag-of-words embedder (as in test_kb.py) and a scripted model keep these fast and
exact; one integration test runs the embedded model.
"""
import json

import pytest

from llmkit.core import tracing
from llmkit.core.errors import ConfigError
from llmkit.core.types import Completion
from llmkit.models.base import Model
from llmkit.rag import (ANSWER_TEMPLATE, NOT_FOUND_TEXT, Document, KnowledgeBase, answer, make_splitter, mmr,
                        mmr_hits, reorder_lost_in_the_middle)
from llmkit.rag.stores import Hit

from hash_embedder import HashEmbedder


class Scripted(Model):
    """Replies from a list; records the prompts it was sent."""

    provider = "scripted"
    supported = frozenset({"temperature", "max_tokens"})

    def __init__(self, *replies):
        super().__init__("scripted")
        self.replies, self.sent, self.sampling = list(replies), [], []

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        self.sent.append(messages[-1].content)
        self.sampling.append(s)
        return Completion(text=self.replies.pop(0), finish_reason="stop")


FACTS = {
    "mem:france": "Paris is the capital of France, on the Seine.",
    "mem:germany": "Berlin is the capital of Germany, on the Spree.",
    "mem:italy": "Rome is the capital of Italy, on the Tiber.",
    "mem:cooking": "Boil pasta in salted water for nine minutes.",
}


@pytest.fixture
def kb(tmp_path):
    splitter = make_splitter("recursive", chunk_size=200, chunk_overlap=0, tokens=len)  # one chunk per fact
    with KnowledgeBase(tmp_path / "kb.db", embedder=HashEmbedder(), splitter=splitter) as kb:
        kb.add_documents([Document(t, {"source": s, "topic": "cooking" if "pasta" in t else "geo"})
                          for s, t in FACTS.items()])
        yield kb


@pytest.fixture
def empty_kb(tmp_path):
    with KnowledgeBase(tmp_path / "empty.db", embedder=HashEmbedder()) as kb:
        yield kb


def test_citation_maps_to_the_cited_chunk(kb):
    m = Scripted("Paris is the capital [1].")
    a = answer(m, kb, "What is the capital of France?", k=3, mode="dense", reorder=False)
    assert a.found and a.text == "Paris is the capital [1]."
    [c] = a.citations
    france = next(ch for ch in kb.store.chunks() if ch.text == FACTS["mem:france"])
    assert (c.n, c.chunk_id, c.source, c.text) == (1, france.chunk_id, "mem:france", FACTS["mem:france"])
    assert a.hits[0].chunk_id == france.chunk_id and len(a.hits) == 3
    assert m.sampling[0].temperature == 0  # the default


def test_out_of_range_markers_are_ignored_and_lists_are_read(kb):
    m = Scripted("Rome [9]. Berlin and Paris [2, 1]. Again [1]. Zero [0].")
    a = answer(m, kb, "capital cities", k=3, mode="dense")
    assert [c.n for c in a.citations] == [2, 1]  # first mention order, each once
    assert [c.chunk_id for c in a.citations] == [a.hits[1].chunk_id, a.hits[0].chunk_id]


def test_prompt_has_numbered_passages_and_question(kb):
    m = Scripted("ok [1]")
    q = "What is the capital of Germany?"
    a = answer(m, kb, q, k=2, mode="dense", max_tokens=50)
    [prompt] = m.sent
    for i, h in enumerate(a.hits, 1):
        assert f"[{i}] ({h.source}) {h.text}" in prompt
    assert q in prompt and NOT_FOUND_TEXT in prompt and "only" in prompt
    assert prompt.startswith(ANSWER_TEMPLATE.split("{")[0])
    assert m.sampling[0].max_tokens == 50


@pytest.mark.parametrize("how", ["empty", "filter", "min_score"])
def test_nothing_retrieved_never_calls_the_model(kb, empty_kb, how):
    m = Scripted("should not be used")
    if how == "empty":
        a = answer(m, empty_kb, "capital of France?")
    elif how == "filter":
        a = answer(m, kb, "capital of France?", filter={"topic": "astronomy"})
    else:
        a = answer(m, kb, "capital of France?", mode="dense", min_score=1.01)  # cosines never exceed 1
    assert (a.found, a.text, a.citations, a.hits) == (False, NOT_FOUND_TEXT, [], [])
    assert m.sent == []


def test_filter_restricts_the_passages(kb):
    m = Scripted("Boil it [1].")
    a = answer(m, kb, "capital of France?", filter={"topic": "cooking"})
    assert [h.source for h in a.hits] == ["mem:cooking"] and a.citations[0].source == "mem:cooking"


def test_not_found_reply_sets_found_false(kb):
    m = Scripted("not found in the documents")  # case and full stop do not matter
    a = answer(m, kb, "Who wrote Hamlet?", mode="dense")
    assert a.found is False and a.citations == [] and len(m.sent) == 1


def test_custom_template_is_used(kb):
    m = Scripted("Paris [1]")
    answer(m, kb, "capital of France?", k=1, template="Q={question}\nCTX={context}\nElse say {not_found}")
    [prompt] = m.sent
    assert prompt.startswith("Q=capital of France?\nCTX=[1] (mem:france) Paris") and "Answer the question" not in prompt
    with pytest.raises(ConfigError, match="placeholder"):
        answer(Scripted("x"), kb, "capital of France?", template="{passages} {question}")


def test_reorder_puts_best_at_both_ends(kb):
    assert reorder_lost_in_the_middle([1, 2, 3, 4, 5]) == [1, 3, 5, 4, 2]
    assert reorder_lost_in_the_middle([1, 2, 3, 4]) == [1, 3, 4, 2]
    assert reorder_lost_in_the_middle([]) == []
    ranked = kb.search("capital of France", k=4, mode="dense")
    a = answer(Scripted("x"), kb, "capital of France", k=4, mode="dense")  # reorder=True by default
    assert [h.chunk_id for h in a.hits] == [ranked[i].chunk_id for i in (0, 2, 3, 1)]


def test_mmr_prefers_diverse_over_near_duplicate():
    query = [1.0, 0.0, 0.0]
    vecs = [[0.9, 0.44, 0.0], [0.88, 0.47, 0.0], [0.8, -0.2, 0.57]]  # best, its near-twin (cos 0.9995), a different angle
    assert mmr(query, vecs, k=2) == [0, 2]
    assert mmr(query, vecs, k=2, lambda_=1.0) == [0, 1]  # pure relevance keeps the twin
    assert mmr(query, vecs, k=5) == [0, 2, 1]
    with pytest.raises(ConfigError, match="lambda_"):
        mmr(query, vecs, k=2, lambda_=1.5)


def test_mmr_hits_embeds_and_drops_the_duplicate():
    emb = HashEmbedder()
    hits = [Hit(t, f"s{i}", 1.0, {}, f"c{i}") for i, t in enumerate(
        ["paris capital france", "paris capital france city", "france wine regions"])]
    assert [h.chunk_id for h in mmr_hits(emb, "paris france", hits, k=2, lambda_=0.3)] == ["c0", "c2"]
    assert mmr_hits(emb, "q", [], k=2) == []


def test_retrieve_and_answer_spans_wrap_the_model_call(kb):
    answer(Scripted("Paris [1]."), kb, "capital of France?", k=2, mode="dense")
    spans = {s["name"]: s for s in tracing.TraceStore().list()}
    retrieve, gen, call = spans["rag.retrieve"], spans["rag.answer"], spans["chat scripted"]
    for s in (retrieve, gen):
        assert s["attributes"]["llmkit.rag.question"] == "capital of France?"
        assert (s["attributes"]["llmkit.rag.k"], s["attributes"]["llmkit.rag.mode"]) == (2, "dense")
        assert len(s["attributes"]["llmkit.rag.hit_ids"]) == 2
    assert gen["attributes"]["llmkit.rag.found"] is True and json.loads(gen["attributes"]["llmkit.rag.cited"]) == [1]
    assert call["parent_id"] == gen["span_id"]


@pytest.mark.integration
def test_embedded_model_answers_from_a_tiny_kb(kb, embedded):
    a = answer(embedded, kb, "What is the capital of France?", k=2, max_tokens=40)
    assert isinstance(a.text, str) and a.text.strip()
    assert isinstance(a.found, bool) and len(a.hits) == 2
    assert all(1 <= c.n <= 2 for c in a.citations)
