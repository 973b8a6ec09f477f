"""``llmkit rag`` (knowledge bases) and ``llmkit sql`` (questions to a database).

Knowledge bases live at ``$LLMKIT_HOME/kb/<name>.db`` (or pass a path ending in ``.db``), or with
``--store`` in PostgreSQL or Milvus (``ingest``, ``search`` and ``ask``; ``ls`` and ``rm`` are local).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

rag_app = typer.Typer(help="Knowledge bases: ingest files, search them, ask questions with citations.",
                      no_args_is_help=True)
sql_app = typer.Typer(help="Ask a database in plain words (read-only, one SELECT, row limit, timeout).",
                      no_args_is_help=True)

KB = typer.Option(..., "--kb", help="knowledge base name (under $LLMKIT_HOME/kb) or a .db path")
STORE = typer.Option(None, "--store", help="where the knowledge base lives instead of $LLMKIT_HOME/kb: "
                     "postgresql://user@host/db, milvus:///path.db, http://host:19530 or a .db path")


@rag_app.command("ingest")
def ingest(path: str = typer.Argument(..., help="a file, a folder or a glob"), kb: str = KB,
           glob: str = typer.Option("**/*", "--glob", help="files to take under a folder"),
           exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="glob to skip (repeatable)"),
           store: Optional[str] = STORE):
    """Add new files, re-embed changed ones, drop removed ones (never a duplicate)."""
    from ..rag import KnowledgeBase

    with KnowledgeBase(kb, store=store) as base:
        report = base.ingest(path, glob=glob, exclude=exclude)
        print(report)


@rag_app.command("search")
def search(query: str = typer.Argument(...), kb: str = KB,
           mode: str = typer.Option("hybrid", "--mode", help="dense, bm25 or hybrid"),
           k: int = typer.Option(5, "-k", min=1, help="how many hits"),
           as_json: bool = typer.Option(False, "--json", help="a JSON list of {text, source, score, metadata, chunk_id}"),
           store: Optional[str] = STORE):
    """The chunks that best match a query."""
    from ..rag import KnowledgeBase

    with KnowledgeBase(kb if store else _existing(kb), store=store) as base:
        hits = base.search(query, k=k, mode=mode)
    if as_json:
        print(json.dumps([{"text": h.text, "source": h.source, "score": h.score, "metadata": h.metadata,
                           "chunk_id": h.chunk_id} for h in hits], ensure_ascii=False, indent=1, default=str))
        return
    for i, h in enumerate(hits, 1):
        print(f"[{i}] {h.score:.4f}  {h.source}\n    {' '.join(h.text.split())[:300]}")


@rag_app.command("ask")
def ask(question: str = typer.Argument(...), kb: str = KB,
        model: str = typer.Option("", "--model", "-m", help="model spec (default: embedded)"),
        k: int = typer.Option(5, "-k", min=1, help="passages given to the model"),
        store: Optional[str] = STORE):
    """Answer from the knowledge base, citing passages as [n]."""
    import llmkit as lk

    from ..rag import KnowledgeBase
    from ..rag.answer import answer

    with KnowledgeBase(kb if store else _existing(kb), store=store) as base:
        result = answer(lk.model(model), base, question, k=k)
    print(result.text)
    for c in result.citations:
        print(f"[{c.n}] {c.source} ({c.chunk_id})")


@rag_app.command("ls")
def ls():
    """Knowledge bases under $LLMKIT_HOME/kb, with their size."""
    from ..core.settings import home
    from ..rag import KnowledgeBase

    for path in sorted((home() / "kb").glob("*.db")):
        with KnowledgeBase(path) as base:
            stats = base.stats()
        print(f"{path.stem}\t{stats.get('documents', '?')} documents\t{stats.get('chunks', '?')} chunks")


@rag_app.command("rm")
def rm(name: str = typer.Argument(..., help="knowledge base name")):
    """Delete a knowledge base."""
    path = _existing(name)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    print(f"removed {path}")


@sql_app.command("ask")
def sql_ask(question: str = typer.Argument(...),
            db: str = typer.Option(..., "--db", help="sqlite:///path.db, duckdb:///path or postgresql://…"),
            model: str = typer.Option("", "--model", "-m", help="model spec (default: embedded)"),
            limit: int = typer.Option(100, "--limit", min=1, help="most rows returned")):
    """Turn a question into one read-only SELECT, run it, print the SQL and the rows."""
    import llmkit as lk

    from ..rag import sql

    result = sql.ask(lk.model(model), sql.Database(db), question, row_limit=limit)
    print(result.sql)
    print("\t".join(result.columns))
    for row in result.rows:
        print("\t".join(str(v) for v in row))
    if result.truncated:
        print(f"(first {limit} rows)")


def _existing(name: str) -> Path:
    from ..core.errors import ConfigError
    from ..rag.kb import kb_path

    path = kb_path(name)
    if not path.is_file():
        raise ConfigError(f"no knowledge base {name!r} at {path}; create it with: llmkit rag ingest PATH --kb {name}")
    return path
