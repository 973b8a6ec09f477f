"""`llmkit rag` and `llmkit sql` end to end: real files, the embedded MiniLM, one-line errors."""
import json
import os
import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def llmkit(*args, home):
    env = {**os.environ, "COLUMNS": "200", "LLMKIT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "llmkit", *args], capture_output=True, text=True, timeout=300, env=env)


def test_ingest_search_ls_rm(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "install.md").write_text("# Install\n\nRun pip install llmkit to install the toolkit.\n")
    (docs / "password.txt").write_text("To reset a forgotten password, open settings and choose reset.\n")
    home = tmp_path / "home"
    r = llmkit("rag", "ingest", str(docs), "--kb", "notes", home=home)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("added 2, updated 0, deleted 0, unchanged 0")
    again = llmkit("rag", "ingest", str(docs), "--kb", "notes", home=home)
    assert again.stdout.startswith("added 0, updated 0, deleted 0, unchanged 2")
    hits = json.loads(llmkit("rag", "search", "I forgot my login credentials", "--kb", "notes", "--json", "-k", "2",
                             "--mode", "dense", home=home).stdout)
    assert [set(h) for h in hits] == [{"text", "source", "score", "metadata", "chunk_id"}] * 2
    assert hits[0]["source"].endswith("password.txt") and hits[0]["score"] >= hits[1]["score"]
    assert "notes\t2 documents" in llmkit("rag", "ls", home=home).stdout
    assert llmkit("rag", "rm", "notes", home=home).returncode == 0
    missing = llmkit("rag", "search", "x", "--kb", "notes", home=home)
    assert missing.returncode == 2 and "no knowledge base 'notes'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_sql_ask_answers_or_refuses_clearly(tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        c.executemany("INSERT INTO users (name) VALUES (?)", [("Ada",), ("Grace",)])
    r = llmkit("sql", "ask", "How many users are there?", "--db", f"sqlite:///{db}", home=tmp_path / "home")
    if r.returncode == 0:
        assert r.stdout.lower().lstrip().startswith(("select", "with"))
    else:  # the 135M model may write SQL the guard or the database refuses: one clear line
        assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM users").fetchone()[0] == 2   # nothing was written
