"""RAG: llmkit's KnowledgeBase against LangChain's local stack, same corpus and embedding model, in one run.

The peer is langchain-core's `InMemoryVectorStore` (its default local vector store) fed by
langchain-text-splitters' `RecursiveCharacterTextSplitter` counting MiniLM tokens (254 + [CLS]/[SEP]
= llmkit's 256, overlap 32), through an `Embeddings` adapter over the very SentenceTransformer
object llmkit's `Embedder` holds: one `encode` over the whole list, normalised, returned as lists
(what langchain-huggingface's `HuggingFaceEmbeddings` does). Files are read with `open()` on the
peer side (LangChain's loaders live in langchain-community).

  ingest, MiniLM   the 79 pydoc_data topics (shipped with CPython) cut as in
                   tests/rag/test_pydoc_quality.py (first 4,000 characters; 161 KB, 240 chunks), one
                   .txt file each: read, split, embed with MiniLM, store; two runs a side in ABBA order.
                   Real embeddings. ("model" = the share of that time spent inside the encoder.)
  ingest, 5 MB     those topics + CPython's stdlib .py files (tests excluded) in path order up to
                   --mb MB, as .txt files. The embedder is a seeded-random 384-d one on both sides
                   (MiniLM would need ~10 min a side on 2 cores), so this is the pipeline without
                   the model: reading, splitting with the MiniLM tokenizer, storing.
  recall@5         the questions of tests/data/pydoc_questions.json on the stores of the first
                   MiniLM ingest; a question counts when a relevant topic is among the top 5 chunks.
  latency          at each --sizes count of chunks: texts are the 5 MB run's chunks (~7k, cycled
                   past that), vectors are synthetic, unit(a + 0.5 b + noise) of two real MiniLM
                   chunk vectors a, b; the same texts and vectors go into both stores. Queries are
                   the questions, embedded by MiniLM inside each search (as a user's would be);
                   `dense/vec` times the store alone on precomputed query vectors. The systems
                   take turns query by query, so a change in this shared machine's load hits all.
  ANN recall@10    SQLiteStore(ann=True) against SQLiteStore(ann=False) on the same file, the 50
                   question vectors + 150 fresh synthetic ones; skipped if the store has no `ann`.

Targets (issue): ingest >= 1.5x the peer's chunks/s, query p50 <= the peer's, recall@5 >= the
peer's, ANN recall@10 >= 0.95.

    python benchmarks/rag.py [--mb 5] [--sizes 10000,100000] [--peer-queries 20] [--no-peer]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sqlite3
import statistics
import sysconfig
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = json.loads((ROOT / "tests" / "data" / "pydoc_questions.json").read_text())
CHUNK, OVERLAP, DIMS = 256, 32, 384
K = 5


# --- corpora -------------------------------------------------------------------------------------------

def head(text: str, n: int) -> str:
    """The same cut as tests/rag/test_pydoc_quality.py: the first n characters at a blank line (or line)."""
    if len(text) <= n:
        return text
    cut = text.rfind("\n\n", 0, n)
    if cut < n // 2:
        cut = text.rfind("\n", 0, n)
    return text[:cut]


def pydoc_topics(head_chars: int | None = None) -> dict[str, str]:
    from pydoc_data.topics import topics

    return {k: head(v, head_chars) if head_chars else v for k, v in sorted(topics.items())}


def big_corpus(min_bytes: int) -> dict[str, str]:
    """pydoc topics, then stdlib modules in path order, until min_bytes of UTF-8 text: deterministic per Python."""
    docs = {f"pydoc/{k}": v for k, v in pydoc_topics().items()}
    total = sum(len(v.encode()) for v in docs.values())
    lib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if total >= min_bytes:
            break
        if {"test", "tests", "idle_test", "site-packages", "__pycache__"} & set(rel.parts):
            continue
        docs[f"stdlib/{rel}"] = text = path.read_text(encoding="utf-8", errors="replace")
        total += len(text.encode())
    return docs


def write_folder(docs: dict[str, str], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, text in docs.items():
        (folder / (name.replace("/", "__") + ".txt")).write_text(text, encoding="utf-8")
    return folder


# --- embedders -----------------------------------------------------------------------------------------

def seeded(text: str) -> list[float]:
    """A unit 384-d vector seeded by the text: costs microseconds, so ingest time is the pipeline's."""
    v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIMS).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


class TimedEmbedder:
    """An llmkit embedder that adds up the seconds spent in ``embed``."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        self.name, self.dimensions = inner.name, inner.dimensions

    def embed(self, texts):
        t0 = time.perf_counter()
        vectors = self.inner.embed(texts)
        self.seconds += time.perf_counter() - t0
        return vectors


class SeededEmbedder:
    """llmkit side of the model-free ingest."""

    name, dimensions = "seeded-random-384", DIMS

    def embed(self, texts):
        return [seeded(t) for t in texts]


def langchain_embeddings(model):
    """LangChain `Embeddings` over a SentenceTransformer, plus the seeded and the precomputed variants."""
    from langchain_core.embeddings import Embeddings

    def encode(texts):
        return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True).tolist()

    class MiniLM(Embeddings):
        seconds = 0.0  # time spent embedding documents

        def embed_documents(self, texts):
            t0 = time.perf_counter()
            vectors = encode(texts)
            self.seconds += time.perf_counter() - t0
            return vectors

        def embed_query(self, text):
            return encode([text])[0]

    class Seeded(Embeddings):
        def embed_documents(self, texts):
            return [seeded(t) for t in texts]

        def embed_query(self, text):
            return seeded(text)

    class Precomputed(MiniLM):
        """Documents get the next rows of `self.queue` (synthetic vectors); queries go through MiniLM."""
        queue: np.ndarray

        def embed_documents(self, texts):
            rows, self.queue = self.queue[:len(texts)], self.queue[len(texts):]
            return rows.tolist()

    return MiniLM(), Seeded(), Precomputed()


# --- the two systems -----------------------------------------------------------------------------------

def llmkit_ingest(folder: Path, db: Path, embedder, splitter=None) -> tuple[object, int, float]:
    from llmkit.rag import KnowledgeBase

    kb = KnowledgeBase(db, embedder=embedder, splitter=splitter)
    report = kb.ingest(folder, progress=False)
    return kb, report.chunks, report.seconds


def peer_splitter(tokenizer):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    # LangChain counts tokenizer.tokenize() pieces, without [CLS]/[SEP]; llmkit's 256 includes them
    return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tokenizer, chunk_size=CHUNK - 2,
                                                                     chunk_overlap=OVERLAP)


def peer_ingest(folder: Path, embeddings, splitter) -> tuple[object, int, float]:
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore

    t0 = time.perf_counter()
    docs = [Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": str(p)})
            for p in sorted(folder.iterdir())]
    chunks = splitter.split_documents(docs)
    store = InMemoryVectorStore(embeddings)
    store.add_documents(chunks)
    return store, len(chunks), time.perf_counter() - t0


# --- measurements --------------------------------------------------------------------------------------

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


def interleaved(calls: dict[str, tuple], warm: int = 1) -> dict[str, list[float]]:
    """Milliseconds per call of each ``name: (function, arguments)``, the functions taking turns on
    each argument, so a change in this shared machine's load hits every one alike."""
    for fn, args in calls.values():
        for a in args[:warm]:
            fn(a)
    ms: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(max(len(args) for _, args in calls.values())):
        for name, (fn, args) in calls.items():
            if i < len(args):
                t0 = time.perf_counter()
                fn(args[i])
                ms[name].append((time.perf_counter() - t0) * 1000)
    return ms


def recall_rows(search, questions) -> tuple[float, float]:
    """(recall@5, MRR@10) of a search function question -> ranked chunk sources."""
    rec = mrr = 0.0
    for q in questions:
        sources = search(q["q"])
        rank = next((i for i, s in enumerate(sources[:10], 1) if s in q["relevant"]), None)
        rec += rank is not None and rank <= K
        mrr += 1 / rank if rank else 0.0
    return rec / len(questions), mrr / len(questions)


def synthetic(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """unit(a + 0.5 b + noise) for random rows a, b of the real vectors, float32, in blocks."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for s in range(0, n, 20_000):
        m = min(20_000, n - s)
        v = base[rng.integers(len(base), size=m)] + 0.5 * base[rng.integers(len(base), size=m)]
        v += rng.normal(0, 0.03, size=v.shape).astype(np.float32)
        out[s:s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def stored_vectors(db: Path) -> np.ndarray:
    """The real MiniLM vectors llmkit stored (float32 BLOBs in chunks.embedding, see stores/sqlite.py)."""
    with sqlite3.connect(db) as con:
        return np.stack([np.frombuffer(b, dtype=np.float32) for (b,) in con.execute("SELECT embedding FROM chunks")])


def fill_llmkit(db: Path, texts: list[str], vectors: np.ndarray, start: int, end: int) -> float:
    from llmkit.rag import SQLiteStore
    from llmkit.rag.embedders import NAME
    from llmkit.rag.splitters import Chunk

    t0 = time.perf_counter()
    with SQLiteStore(db, **({"ann": False} if has_ann() else {})) as store:
        store.check_embedder(NAME, DIMS)
        for a in range(start, end, 1000):  # a "document" per 1,000 chunks: one transaction each
            b = min(a + 1000, end)
            chunks = [Chunk(texts[i % len(texts)], {"i": i}, id=f"c{i}") for i in range(a, b)]
            store.replace({"source": f"synthetic/{a // 1000}", "content_hash": str(a)}, chunks, vectors[a:b])
    return time.perf_counter() - t0


def fill_peer(store, texts: list[str], vectors: np.ndarray, start: int, end: int) -> float:
    from langchain_core.documents import Document

    t0 = time.perf_counter()
    store.embedding.queue = vectors[start:end]
    store.add_documents([Document(page_content=texts[i % len(texts)], metadata={"i": i}) for i in range(start, end)],
                        ids=[f"c{i}" for i in range(start, end)])
    return time.perf_counter() - t0


def has_ann() -> bool:
    from llmkit.rag import SQLiteStore

    return "ann" in inspect.signature(SQLiteStore).parameters


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


# --- main ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=5.0, help="MB of text for the model-free ingest and the latency texts")
    ap.add_argument("--sizes", default="10000,100000", help="chunk counts for the latency runs, ascending")
    ap.add_argument("--peer-queries", type=int, default=20,
                    help="questions the peer runs at sizes >= 50k (it converts every stored vector per query)")
    ap.add_argument("--no-peer", action="store_true", help="skip LangChain")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="llmkit-bench-rag-"))
    os.environ["LLMKIT_HOME"] = str(tmp / "home")

    from llmkit.rag import Embedder, KnowledgeBase, SQLiteStore
    from llmkit.rag.splitters import make_splitter

    peer = not args.no_peer
    if peer:
        try:
            from importlib.metadata import version

            import langchain_core  # noqa: F401
            import langchain_text_splitters  # noqa: F401
            peer_name = f"langchain-core {version('langchain-core')}"
        except ImportError:
            print("langchain-core / langchain-text-splitters are not installed: peer skipped")
            peer = False
    start = time.perf_counter()
    embedder = Embedder()
    embedder.embed(["warm up the model"])
    lc_minilm, lc_seeded, lc_pre = langchain_embeddings(embedder.model) if peer else (None, None, None)
    lc_split = peer_splitter(embedder.model.tokenizer) if peer else None
    splitter = make_splitter("recursive", chunk_size=CHUNK, chunk_overlap=OVERLAP, tokens=embedder)  # the default
    questions = QUESTIONS["questions"]

    def out(s: str = ""):
        print(s, flush=True)

    out(f"rag: embedded all-MiniLM-L6-v2 (384-d) for both, chunks of {CHUNK} tokens / {OVERLAP} overlap, "
        f"{os.cpu_count()} CPUs; peer: {peer_name + ' InMemoryVectorStore' if peer else 'none'}")

    # 1. ingest with the real model, on the test's corpus, in ABBA order (this machine's speed drifts)
    heads = QUESTIONS["head_chars"]
    topics = write_folder({f"pydoc/{k}": v for k, v in pydoc_topics(heads).items()}, tmp / "pydoc")
    topic_bytes = sum(p.stat().st_size for p in topics.iterdir())
    timed_embedder = TimedEmbedder(embedder)
    runs: dict[str, list[tuple[int, float, float]]] = {"llmkit": [], "peer": []}  # (chunks, s, s in the model)
    stores = {}
    for i, who in enumerate(["llmkit", "peer", "peer", "llmkit"] if peer else ["llmkit", "llmkit"]):
        if who == "llmkit":
            timed_embedder.seconds = 0.0
            store, n, s = llmkit_ingest(topics, tmp / f"pydoc{i}.db", timed_embedder, splitter)
            runs[who].append((n, s, timed_embedder.seconds))
        else:
            lc_minilm.seconds = 0.0
            store, n, s = peer_ingest(topics, lc_minilm, lc_split)
            runs[who].append((n, s, lc_minilm.seconds))
        if who not in stores:
            stores[who] = store  # the first run's stores answer the questions below
        elif who == "llmkit":
            store.close()
    base = stored_vectors(tmp / "pydoc0.db")

    # 2. model-free ingest of the big corpus
    big = write_folder(big_corpus(int(args.mb * 1e6)), tmp / "big")
    big_bytes = sum(p.stat().st_size for p in big.iterdir())
    kb_big, n, s = llmkit_ingest(big, tmp / "big.db", SeededEmbedder(), splitter)
    seeded_runs = {"llmkit": (n, s)}
    texts = [h.text for h in kb_big.store.chunks()]
    kb_big.close()
    if peer:
        _, n, s = peer_ingest(big, lc_seeded, lc_split)
        seeded_runs["peer"] = (n, s)

    out()
    out(f"ingest: 'MiniLM' = {len(list(topics.iterdir()))} pydoc topics cut to {heads} chars ({topic_bytes / 1e3:.0f} KB), "
        "two runs a side in ABBA order, summed; 'model' = share of that time inside the encoder")
    out(f"{'system':<31}{'corpus':<22}{'chunks':>7}{'s':>8}{'chunks/s':>10}{'KB/s':>8}{'model':>7}")
    names = {"llmkit": "llmkit KnowledgeBase", "peer": "LangChain InMemoryVectorStore"}
    for who, rs in runs.items():
        if rs:
            n, s, m = (sum(r[j] for r in rs) for j in range(3))
            out(f"{names[who]:<31}{'pydoc, MiniLM':<22}{n // len(rs):>7}{s:>8.1f}{n / s:>10.1f}"
                f"{topic_bytes * len(rs) / 1e3 / s:>8.1f}{m / s:>7.0%}")
    for who, (n, s) in seeded_runs.items():
        out(f"{names[who]:<31}{f'{big_bytes / 1e6:.1f} MB, no model':<22}{n:>7}{s:>8.1f}{n / s:>10.1f}"
            f"{big_bytes / 1e3 / s:>8.1f}{'-':>7}")
    if peer:
        same = sorted(h.text for h in stores["llmkit"].store.chunks()) == sorted(d["text"] for d in stores["peer"].store.values())
        out(f"same MiniLM chunk texts on both sides: {'yes' if same else 'no'} (so the same encoder work)")

    # 3. retrieval quality on the same corpus (the first run's stores)
    def topic(source: str) -> str:
        return Path(source).stem.removeprefix("pydoc__")

    qkb = stores["llmkit"]
    quality = {f"llmkit {m}": recall_rows(lambda q, m=m: [topic(h.source) for h in qkb.search(q, k=10, mode=m)],
                                          questions) for m in ("bm25", "dense", "hybrid")}
    if peer:
        quality["LangChain similarity_search"] = recall_rows(
            lambda q: [topic(d.metadata["source"]) for d in stores["peer"].similarity_search(q, k=10)], questions)
    out()
    out(f"retrieval: {len(questions)} questions on the same corpus ({qkb.stats()['chunks']} llmkit chunks)")
    out(f"{'system':<32}{'recall@5':>9}{'MRR@10':>8}")
    for name, (r, m) in quality.items():
        out(f"{name:<32}{r:>9.3f}{m:>8.3f}")
    qkb.close()

    # 4. latency and ANN recall at scale
    qvecs = np.asarray(embedder.embed([q["q"] for q in questions]), dtype=np.float32)
    total = max(sizes)
    vectors = synthetic(base, total, seed=0)
    probe = np.concatenate([qvecs, synthetic(base, 200 - len(qvecs), seed=1)]) if len(qvecs) < 200 else qvecs
    ann = has_ann()
    if ann:
        from llmkit.rag.stores.ann import available as ann_available
        from llmkit.rag.stores.sqlite import ANN_MIN_CHUNKS
    lat: list[tuple] = []
    annrows: list[tuple] = []
    db = tmp / "scale.db"
    pscale = None
    if peer:
        from langchain_core.vectorstores import InMemoryVectorStore

        pscale = InMemoryVectorStore(lc_pre)
    done = 0
    qs = [q["q"] for q in questions]
    for size in sizes:
        build = fill_llmkit(db, texts, vectors, done, size)
        pbuild = fill_peer(pscale, texts, vectors, done, size) if peer else 0.0
        done = size
        kb = KnowledgeBase(db, embedder=embedder, store=SQLiteStore(db))
        t0 = time.perf_counter()
        kb.search(qs[0], k=K, mode="dense")  # loads the matrix, or loads / builds / catches up the ANN index
        first = time.perf_counter() - t0
        how = "ann" if ann and size >= ANN_MIN_CHUNKS and ann_available() else "exact"  # what ann=None picks
        stats_ms = statistics.median(interleaved({"stats": (lambda _, kb=kb: kb.store.stats(), list(range(20)))})["stats"])
        calls = {(f"llmkit ({how})", m): (lambda q, m=m, kb=kb: kb.search(q, k=K, mode=m), qs)
                 for m in ("dense", "bm25", "hybrid")}
        calls[f"llmkit ({how})", "dense/vec"] = (lambda v, kb=kb: kb.store.search_dense(v, K), list(qvecs))
        if peer:
            n = len(qs) if size < 50_000 else args.peer_queries  # the peer takes ~2 s a query at 100k
            calls["LangChain InMemory", "dense"] = (lambda q: pscale.similarity_search(q, k=K), qs[:n])
            calls["LangChain InMemory", "dense/vec"] = (
                lambda v: pscale.similarity_search_by_vector(v.tolist(), k=K), list(qvecs[:n]))
        lat += [(size, who, mode, ms) for (who, mode), ms in interleaved(calls).items()]
        kb.close()
        out()
        out(f"{size:,} chunks: llmkit store written in {build:.1f} s, peer in {pbuild:.1f} s; first llmkit dense "
            f"search {first:.2f} s; KnowledgeBase's per-query stats() call {stats_ms:.2f} ms")
        if ann:
            with SQLiteStore(db, ann=False) as exact, SQLiteStore(db, ann=True) as approx:
                t0 = time.perf_counter()
                approx.search_dense(probe[0], 10)
                build_s = time.perf_counter() - t0
                hits = [len({h.chunk_id for h in exact.search_dense(v, 10)} & {h.chunk_id for h in approx.search_dense(v, 10)})
                        for v in probe]
                ms = interleaved({"exact": (lambda v, st=exact: st.search_dense(v, 10), list(probe)),
                                  "ann": (lambda v, st=approx: st.search_dense(v, 10), list(probe))})
                annrows.append((size, sum(hits) / (10 * len(probe)), build_s, ms["exact"], ms["ann"]))

    out()
    out(f"latency: k={K}, one query at a time; texts real, vectors synthetic (see the docstring); "
        "dense and hybrid include embedding the query with MiniLM")
    out(f"{'chunks':>8}  {'system':<22}{'mode':<11}{'p50 ms':>8}{'p99 ms':>9}{'n':>5}")
    for size, who, mode, ms in lat:
        out(f"{size:>8,}  {who:<22}{mode:<11}{pct(ms, 50):>8.2f}{pct(ms, 99):>9.2f}{len(ms):>5}")
    if ann:
        out()
        out(f"ANN (HNSW) vs exact, k=10, {len(probe)} query vectors ({len(qvecs)} questions + synthetic)")
        out(f"{'chunks':>8}{'recall@10':>11}{'first search s':>16}{'exact p50':>11}{'p99':>8}{'ann p50':>9}{'p99':>8}")
        for size, rec, b, ex, ap in annrows:
            out(f"{size:>8,}{rec:>11.3f}{b:>16.2f}{pct(ex, 50):>11.2f}{pct(ex, 99):>8.2f}{pct(ap, 50):>9.2f}{pct(ap, 99):>8.2f}")
    else:
        out()
        out("ANN recall@10: SQLiteStore has no `ann` parameter in this checkout: skipped")

    # 5. targets
    out()
    if peer:
        rate = {who: sum(r[0] for r in rs) / sum(r[1] for r in rs) for who, rs in runs.items()}
        r = rate["llmkit"] / rate["peer"]
        out(f"ingest chunks/s, MiniLM, llmkit / LangChain = {r:.2f}x  (target >= 1.50)  {verdict(r >= 1.5)}")
        (n1, s1), (n2, s2) = seeded_runs["llmkit"], seeded_runs["peer"]
        out(f"(ingest chunks/s without the model, {big_bytes / 1e6:.1f} MB: llmkit / LangChain = {(n1 / s1) / (n2 / s2):.2f}x)")
        by = {(size, who.split(" (")[0], mode): ms for size, who, mode, ms in lat}
        for size in sizes:
            for mode in ("dense", "dense/vec"):
                r = pct(by[size, "llmkit", mode], 50) / pct(by[size, "LangChain InMemory", mode], 50)
                line = f"query p50 {mode} at {size:,}, llmkit / LangChain = {r:.2f}x  (target <= 1.00)  {verdict(r <= 1)}"
                out(line if mode == "dense" else f"({line.rsplit('  ', 1)[0]})")
        mine, theirs = quality["llmkit hybrid"][0], quality["LangChain similarity_search"][0]
        out(f"recall@5 llmkit hybrid {mine:.3f} vs LangChain {theirs:.3f}  (target >= peer)  {verdict(mine >= theirs)}")
    for size, rec, *_ in annrows:
        out(f"ANN recall@10 at {size:,} = {rec:.3f}  (target >= 0.95)  {verdict(rec >= 0.95)}")
    out(f"(total {time.perf_counter() - start:.0f} s)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
