"""A knowledge base survives SIGKILL in the middle of an ingest: it opens consistent (every
document whole or absent, the FTS index in step with the chunks) and a re-run completes it."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from llmkit.rag import KnowledgeBase

from hash_embedder import HashEmbedder

TESTS = Path(__file__).resolve().parents[1]

INGEST = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from hash_embedder import HashEmbedder
    from llmkit.rag import KnowledgeBase

    class Slow(HashEmbedder):
        def embed(self, texts):
            time.sleep(0.05)          # slow enough to be killed part-way
            return super().embed(texts)

    kb = KnowledgeBase({db!r}, embedder=Slow())
    print("start", flush=True)
    kb.ingest({folder!r}, batch_size=4, progress=False)
    print("done", flush=True)
""")


def write_corpus(folder: Path, n: int = 40) -> None:
    folder.mkdir()
    for i in range(n):
        body = "\n\n".join(f"File {i} paragraph {j}: " + " ".join(f"word{i}_{j}_{w}" for w in range(60)) for j in range(6))
        (folder / f"doc{i:02}.md").write_text(body)


def check_consistent(db: Path, folder: Path) -> int:
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')") is not None  # raises if out of step
    con.close()
    reference = KnowledgeBase(folder.parent / "reference.db", embedder=HashEmbedder())
    with KnowledgeBase(db, embedder=HashEmbedder()) as kb:
        docs = kb.store.documents()
        for source in docs:  # every stored document is complete: exactly the chunks a clean ingest makes
            want = reference._chunks(source, _load(source))
            got = kb.store.chunks(source)
            assert [c.text for c in got] == [c.text for c in want], source
        for source in docs:  # and findable through the FTS index by its own words
            hits = kb.search(f"word{int(Path(source).stem[3:])}_0_0", k=1, mode="bm25")
            assert hits and hits[0].source == source, source
        return len(docs)


def _load(source: str):
    from llmkit.rag.loaders import load

    return list(load(source))


def test_sigkill_mid_ingest_leaves_a_consistent_kb_and_a_rerun_completes(tmp_path):
    folder, db = tmp_path / "corpus", tmp_path / "kb.db"
    write_corpus(folder)
    script = INGEST.format(tests=str(TESTS), db=str(db), folder=str(folder))
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "start"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once some, but not all, documents are committed
        if db.exists():
            con = sqlite3.connect(db, timeout=5)
            try:
                n = con.execute("SELECT count(*) FROM documents").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            con.close()
            if n >= 3:
                break
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL
    partial = check_consistent(db, folder)
    assert 3 <= partial < 40, partial

    with KnowledgeBase(db, embedder=HashEmbedder()) as kb:
        report = kb.ingest(folder, progress=False)
        assert report.added == 40 - partial and report.unchanged == partial and report.deleted == 0
        n_chunks = kb.stats()["chunks"]
    assert check_consistent(db, folder) == 40
    with KnowledgeBase(db, embedder=HashEmbedder()) as kb:  # a third run changes nothing, duplicates nothing
        assert kb.ingest(folder, progress=False).unchanged == 40 and kb.stats()["chunks"] == n_chunks
