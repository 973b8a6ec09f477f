"""rag/embedders.py CachedEmbedder: vectors cached by content hash, per embedder."""
from llmkit.rag import Document, KnowledgeBase
from llmkit.rag.embedders import CachedEmbedder

from hash_embedder import HashEmbedder


class Counting(HashEmbedder):
    def __init__(self, name="hash-bow-64"):
        super().__init__()
        self.name, self.texts = name, []

    def embed(self, texts):
        self.texts += list(texts)
        return super().embed(texts)


def test_only_unseen_texts_reach_the_embedder_and_vectors_are_identical(tmp_path):
    inner = Counting()
    e = CachedEmbedder(inner, tmp_path / "cache.db")
    first = e.embed(["alpha beta", "gamma", "alpha beta"])
    assert inner.texts == ["alpha beta", "gamma"] and first[0] == first[2]
    again = CachedEmbedder(Counting(), tmp_path / "cache.db")  # a new process: the cache is on disk
    assert again.embed(["gamma", "delta"]) == [first[1], HashEmbedder().embed(["delta"])[0]]
    assert again.inner.texts == ["delta"] and (again.hits, again.misses) == (1, 1)
    other = CachedEmbedder(Counting("another-model"), tmp_path / "cache.db")
    other.embed(["gamma"])
    assert other.inner.texts == ["gamma"]  # a different embedder never reads these vectors
    assert e.dimensions == 64 and e.name == "hash-bow-64"


def test_a_changed_file_re_embeds_only_its_changed_chunks(tmp_path):
    inner = Counting()
    kb = KnowledgeBase(tmp_path / "kb.db", embedder=CachedEmbedder(inner, tmp_path / "cache.db"))
    docs = [Document(f"Paragraph {i} about topic {i}.", {"source": "notes"}) for i in range(3)]
    kb.add_documents(docs)
    inner.texts.clear()
    docs[1] = Document("Paragraph 1 rewritten entirely.", {"source": "notes"})
    kb.add_documents(docs)
    assert inner.texts and all("rewritten" in t for t in inner.texts)
    assert kb.search("rewritten", k=1, mode="dense")[0].text.startswith("Paragraph 1 rewritten")
