"""Knowledge bases over HTTP: ``GET /v1/kb``, ``POST /v1/kb/{name}/search``, ``POST /v1/kb/{name}/ask``.

The knowledge bases are the ones ``llmkit rag ingest`` builds under ``$LLMKIT_HOME/kb``; the
server embeds queries with its embedding model (the one ``/v1/embeddings`` serves) and answers
with its chat model, citations included. Ingestion stays on the command line: a server that
reads arbitrary paths of its host on request would be excessive agency.

    curl -s 127.0.0.1:8000/v1/kb/handbook/search -d '{"query": "vacation days", "k": 3, "mode": "hybrid"}'
    curl -s 127.0.0.1:8000/v1/kb/handbook/ask -d '{"question": "How many vacation days do I get?"}'
"""
from __future__ import annotations

import threading
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ConfigError
from .errors import APIError

router = APIRouter()
_open: dict[str, Any] = {}
_lock = threading.Lock()


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="the question or keywords")
    k: int = Field(5, ge=1, le=100, description="how many hits")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    filter: dict[str, Any] | None = Field(None, description="metadata conditions, e.g. {\"page\": {\"$gte\": 2}}")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=50, description="passages given to the model")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    filter: dict[str, Any] | None = None
    max_tokens: int | None = Field(256, ge=1)
    temperature: float | None = Field(0.0, ge=0, le=2)


def _hit(h: Any) -> dict[str, Any]:
    return {"text": h.text, "source": h.source, "score": h.score, "metadata": h.metadata, "chunk_id": h.chunk_id}


def _kb(served: Any, name: str) -> Any:
    """The knowledge base called ``name`` (opened once, with the server's embedder); 404 if none."""
    from ..rag.kb import KnowledgeBase, kb_path

    try:
        path = kb_path(name)
    except ConfigError as e:
        raise APIError(400, str(e), param="name") from None
    if name.endswith(".db") or not path.is_file():  # names only: a request never picks a file path
        raise APIError(404, f"no knowledge base {name!r}; GET /v1/kb lists them, `llmkit rag ingest PATH --kb {name}` "
                            "creates one", code="kb_not_found")
    with _lock:
        key = f"{id(served)}:{path}"
        if key not in _open:
            _open[key] = KnowledgeBase(path, embedder=served.embedder())
        return _open[key]


@router.get("/v1/kb")
async def list_kbs(request: Request) -> dict[str, Any]:
    from ..core.settings import home

    folder = home() / "kb"
    names = sorted(p.stem for p in folder.glob("*.db")) if folder.is_dir() else []
    return {"object": "list", "data": [{"id": n, "object": "knowledge_base"} for n in names]}


@router.post("/v1/kb/{name}/search")
async def search(name: str, body: SearchRequest, request: Request) -> dict[str, Any]:
    served = request.app.state.served
    kb = await served.runner.side(_kb, served, name)
    try:
        hits = await served.runner.side(lambda: kb.search(body.query, k=body.k, mode=body.mode, filter=body.filter))
    except ConfigError as e:  # a bad filter key or operator
        raise APIError(400, str(e), param="filter") from None
    return {"object": "list", "kb": name, "data": [_hit(h) for h in hits]}


@router.post("/v1/kb/{name}/ask")
async def ask(name: str, body: AskRequest, request: Request) -> dict[str, Any]:
    from ..rag.answer import answer

    served = request.app.state.served
    kb = await served.runner.side(_kb, served, name)
    sampling = {k: v for k, v in (("max_tokens", body.max_tokens), ("temperature", body.temperature)) if v is not None}
    await served.admission.acquire()  # a model call: it takes a generation slot like any chat request
    try:
        a = await served.runner.thread(lambda: answer(served.model, kb, body.question, k=body.k, mode=body.mode,
                                                      filter=body.filter, **sampling))
    except ConfigError as e:
        raise APIError(400, str(e)) from None
    finally:
        served.admission.release()
    return {"object": "kb.answer", "kb": name, "model": served.name, "answer": a.text, "found": a.found,
            "citations": [{"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "text": c.text} for c in a.citations],
            "hits": [_hit(h) for h in a.hits]}
