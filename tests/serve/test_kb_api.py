"""serve/kb_api.py: /v1/kb, /v1/kb/{name}/search and /ask over real HTTP on 127.0.0.1."""
import httpx
import pytest

from llmkit.models.scripted import ScriptedModel
from llmkit.rag import Document, KnowledgeBase
from llmkit.core.settings import home

from conftest import Live
from hash_embedder import HashEmbedder

FACTS = {"mem:france": ("Paris is the capital of France, on the Seine.", "europe"),
         "mem:japan": ("Tokyo is the capital of Japan, on Honshu.", "asia"),
         "mem:italy": ("Rome is the capital of Italy, on the Tiber.", "europe")}


@pytest.fixture
def server():
    emb = HashEmbedder()
    with KnowledgeBase("atlas", embedder=emb) as kb:  # $LLMKIT_HOME/kb/atlas.db, as `llmkit rag ingest` makes it
        kb.add_documents([Document(text, {"source": src, "region": region}) for src, (text, region) in FACTS.items()])
    model = ScriptedModel(lambda msgs, tools: "Paris [1]." if "France" in msgs[-1].content else "not found in the documents",
                          repeat=True)
    with Live(model, embedder=emb) as live:
        yield live, model


def test_lists_searches_and_filters(server):
    live, _ = server
    assert httpx.get(live.url + "/v1/kb").json()["data"] == [{"id": "atlas", "object": "knowledge_base"}]
    r = httpx.post(live.url + "/v1/kb/atlas/search", json={"query": "capital of Japan", "k": 2, "mode": "dense"})
    assert r.status_code == 200 and r.json()["data"][0]["source"] == "mem:japan"
    assert set(r.json()["data"][0]) == {"text", "source", "score", "metadata", "chunk_id"}
    r = httpx.post(live.url + "/v1/kb/atlas/search", json={"query": "capital", "k": 5, "mode": "bm25",
                                                           "filter": {"region": "europe"}})
    assert sorted(h["source"] for h in r.json()["data"]) == ["mem:france", "mem:italy"]


def test_ask_answers_with_citations_mapped_to_chunks(server):
    live, model = server
    r = httpx.post(live.url + "/v1/kb/atlas/ask", json={"question": "What is the capital of France?", "k": 2}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["answer"] == "Paris [1]." and body["found"] is True
    assert body["citations"][0]["n"] == 1 and body["citations"][0]["source"] == body["hits"][0]["source"]
    assert "Paris is the capital of France" in model.prompts[-1]  # the passages reached the model


def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(server):
    live, _ = server
    r = httpx.post(live.url + "/v1/kb/nope/search", json={"query": "x"})
    assert r.status_code == 404 and "no knowledge base 'nope'" in r.json()["error"]["message"]
    r = httpx.post(live.url + "/v1/kb/atlas/search", json={"query": "x", "mode": "fuzzy"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "mode"
    r = httpx.post(live.url + "/v1/kb/atlas/search", json={"query": "x", "filter": {"region": {"$like": "e%"}}})
    assert r.status_code == 400 and "$like" in r.json()["error"]["message"]
    r = httpx.post(live.url + "/v1/kb/..%2Fetc/search", json={"query": "x"})
    assert r.status_code in (400, 404)
    assert (home() / "kb" / "atlas.db").is_file()
    r = httpx.post(live.url + "/v1/kb/atlas/search", json={"query": "capital of Italy", "k": 1, "mode": "dense"})
    assert r.status_code == 200 and r.json()["data"][0]["source"] == "mem:italy"


def test_openai_embedder_reads_a_servers_embeddings_endpoint(server):
    from llmkit.rag.embedders import OpenAIEmbedder

    live, _ = server
    e = OpenAIEmbedder("hash-bow-64", base_url=live.url + "/v1", batch_size=2)
    texts = ["Paris is in France", "Tokyo is in Japan", "Rome is in Italy"]
    assert e.dimensions == 64
    got, want = e.embed(texts), HashEmbedder().embed(texts)  # three texts in two requests, order kept
    assert all(abs(a - b) < 1e-6 for g, w in zip(got, want) for a, b in zip(g, w))
    with pytest.raises(Exception, match="answered 404"):
        OpenAIEmbedder("other-model", base_url=live.url + "/v1").embed(["x"])
