"""The MCP server tests/agents/test_mcp.py talks to: a few ``@lk.tool`` functions and a tiny
knowledge base (hash embedder, so no model loads), served by ``llmkit.agents.mcp.serve``.

    python tests/agents/mcp_fixture_server.py KB.db DOCS_DIR                   # stdio
    python tests/agents/mcp_fixture_server.py KB.db DOCS_DIR --http PORT       # http://127.0.0.1:PORT/mcp
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/hash_embedder.py

from hash_embedder import HashEmbedder

import llmkit as lk
from llmkit.agents.mcp import serve
from llmkit.rag import KnowledgeBase


class Point(BaseModel):
    x: float
    y: float


@lk.tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first addend.
        b: the second addend.
    """
    return a + b


@lk.tool
def distance(p: Point, q: Point) -> float:
    """Euclidean distance between two points."""
    return ((p.x - q.x) ** 2 + (p.y - q.y) ** 2) ** 0.5


@lk.tool
def fail(message: str) -> str:
    """Always raises, with this message."""
    raise ValueError(message)


@lk.tool
def whoami() -> dict:
    """This server's process id."""
    return {"pid": os.getpid()}


TOOLS = [add, distance, fail, whoami]  # for `llmkit mcp serve --tools mcp_fixture_server:TOOLS`


if __name__ == "__main__":
    kb_path, docs = sys.argv[1], sys.argv[2]
    kb = KnowledgeBase(kb_path, embedder=HashEmbedder())
    kb.ingest(docs, progress=False)
    http = "--http" in sys.argv
    serve(tools=TOOLS, kbs=[kb], name="llmkit-test",
          transport="http" if http else "stdio", port=int(sys.argv[sys.argv.index("--http") + 1]) if http else 8000)
