"""The RAG tab: build a knowledge base from uploaded files (or a folder on the server), search it
three ways, and ask it questions answered with ``[n]`` citations you can open.

Knowledge bases are the ones ``llmkit rag ingest`` builds and ``/v1/kb`` serves
(``$LLMKIT_HOME/kb/<name>.db``), embedded with the server's embedding model, so a KB built here
is searchable over the API and the other way round.

The functions below do the work and return what the components show; ``build(ctx)`` wires them.
"""
from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.errors import LLMKitError

MODES = ("hybrid", "dense", "bm25")
_open: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def kb_names() -> list[str]:
    """The knowledge bases under ``$LLMKIT_HOME/kb``, by name."""
    from ...core.settings import home

    folder = home() / "kb"
    return sorted(p.stem for p in folder.glob("*.db")) if folder.is_dir() else []


def open_kb(served: Any, name: str, create: bool = False) -> Any:
    """The knowledge base ``name``, opened once per server with its embedder; ``create``: may be new."""
    from ...rag.kb import KnowledgeBase, kb_path

    name = (name or "").strip()
    if not name or name.endswith(".db"):  # names only: the UI never picks a file path for the store
        raise LLMKitError(f"knowledge base name {name!r} must be letters, digits, _ . - (no path, no .db)")
    path = kb_path(name)  # ConfigError for anything else
    if not create and not path.is_file():
        raise LLMKitError(f"no knowledge base {name!r}: build it first (Build, above)")
    with _lock:
        key = (id(served), str(path))
        if key not in _open:
            _open[key] = KnowledgeBase(path, embedder=served.embedder())
        return _open[key]


def folder_refused(ctx: Any) -> str | None:
    """Why this server may not read a folder of its host on request, or None if it may.

    Reading host paths for whoever reaches the page is excessive agency (see ``serve/kb_api.py``),
    so it is allowed only behind an API key or on a loopback address."""
    host = str(getattr(ctx.served.config, "host", "127.0.0.1"))
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback or getattr(ctx, "api_key_required", False):
        return None
    return (f"this server listens on {host} without an API key, so it does not read folders of its host; "
            "upload the files instead, or restart it with --api-key (or on 127.0.0.1)")


def ingest(kb: Any, files: list[str] | None, folder: str = "",
           progress: Callable[[float, str], None] = lambda f, d: None) -> str:
    """Add uploaded files and/or a server folder to ``kb``, one file at a time; returns a status line.

    Uploaded files keep their own names as ``source`` (not the upload's temporary path), so
    uploading a file again replaces it. A folder is ingested incrementally (``KnowledgeBase.ingest``).
    """
    from ...rag.loaders import LOADERS, iter_files, load

    files = [f for f in files or [] if f]
    folder = (folder or "").strip()
    if not files and not folder:
        raise LLMKitError("upload files or give a folder first")
    todo: list[tuple[str, Path]] = [("upload", Path(f)) for f in files]
    if folder:
        todo += [("file", p) for p in iter_files(Path(folder).expanduser()) if p.suffix.lower() in LOADERS]
    skipped = [p.name for kind, p in todo if p.suffix.lower() not in LOADERS]
    todo = [(kind, p) for kind, p in todo if p.suffix.lower() in LOADERS]
    chunks = files_done = 0
    for i, (kind, path) in enumerate(todo):
        progress(i / max(len(todo), 1), f"embedding {path.name}")
        if kind == "upload":
            docs = load(path)
            for d in docs:
                d.metadata["source"] = path.name
            chunks += kb.add_documents(docs)
        else:
            chunks += kb.ingest(path).chunks
        files_done += 1
    if folder:  # forget files that vanished from the folder (each one was ingested above)
        kb.ingest(Path(folder).expanduser())
    progress(1.0, "done")
    stats = kb.stats()
    note = f"; skipped (no loader): {', '.join(skipped)}" if skipped else ""
    return (f"Ingested {files_done} file(s), {chunks} new chunk(s) embedded{note}. "
            f"`{Path(kb.name).stem}` now holds {stats.get('documents', '?')} document(s), {stats.get('chunks', '?')} chunk(s).")


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in text.strip().splitlines())


def search(kb: Any, query: str, mode: str = "hybrid", k: int = 5) -> str:
    """The hits as Markdown: rank, score, source, text."""
    if not query.strip():
        raise LLMKitError("write a query first")
    hits = kb.search(query, k=int(k), mode=mode)
    if not hits:
        return "No hits."
    return "\n\n".join(f"**{i}.** score {h.score:.3f} · `{h.source}`\n\n{_quote(h.text)}" for i, h in enumerate(hits, 1))


def citation_label(c: Any) -> str:
    return f"[{c.n}] {Path(c.source).name}"


def show_citation(label: str | None, citations: list[dict]) -> str:
    """The cited chunk for a label picked from the citation list."""
    for c in citations or []:
        if c["label"] == label:
            return f"**[{c['n']}]** source: `{c['source']}`\n\n{_quote(c['text'])}"
    return ""


def ask(model: Any, kb: Any, question: str, mode: str = "hybrid", k: int = 5,
        max_tokens: int = 256) -> tuple[str, list[dict]]:
    """Answer from the KB (``llmkit.rag.answer``); returns the answer Markdown and its citations."""
    from ...rag.answer import answer

    if not question.strip():
        raise LLMKitError("write a question first")
    a = answer(model, kb, question, k=int(k), mode=mode, max_tokens=int(max_tokens))
    cites = [{"label": citation_label(c), "n": c.n, "source": c.source, "text": c.text} for c in a.citations]
    if not a.found:
        return f"{a.text}\n\n*(nothing in the knowledge base answers this)*", cites
    tail = "\n\n**Sources:** " + " ".join(f"`{c['label']}`" for c in cites) if cites else "\n\n*(the answer cites no passage)*"
    return a.text + tail, cites


def build(ctx: Any) -> None:
    """The tab's components and events (called inside a ``gr.Tab`` by ``ui/app.py``)."""
    import gradio as gr

    def error(e: Exception) -> str:
        return f"**Error** ({type(e).__name__}): {e}"

    with gr.Row():
        name = gr.Dropdown(kb_names(), value=None, allow_custom_value=True, label="Knowledge base",
                           info="pick one, or type a new name to build", elem_id="rag-kb")
        refresh = gr.Button("↻", scale=0, min_width=40)
    with gr.Accordion("Build", open=True):
        files = gr.File(file_count="multiple", label="Upload files (.md .txt .pdf .html .docx .json .jsonl .csv)",
                        elem_id="rag-files")
        folder = gr.Textbox(label="…or a folder on the server", placeholder="/srv/docs", elem_id="rag-folder")
        build_btn = gr.Button("Build knowledge base", variant="primary", elem_id="rag-build")
        build_status = gr.Markdown(elem_id="rag-build-status")
    with gr.Row():
        mode = gr.Radio(list(MODES), value="hybrid", label="Search mode", elem_id="rag-mode")
        k = gr.Slider(1, 20, value=4, step=1, label="k (passages)", elem_id="rag-k")
    with gr.Tab("Search"):
        query = gr.Textbox(label="Query", elem_id="rag-query")
        search_btn = gr.Button("Search", elem_id="rag-search")
        hits = gr.Markdown(elem_id="rag-hits")
    with gr.Tab("Ask"):
        question = gr.Textbox(label="Question", elem_id="rag-question")
        ask_btn = gr.Button("Ask", variant="primary", elem_id="rag-ask")
        answer_md = gr.Markdown(elem_id="rag-answer")
        picked = gr.Radio([], label="Citations: pick one to see the passage", elem_id="rag-citations")
        cited = gr.Markdown(elem_id="rag-cited")
        citations = gr.State([])

    def do_build(kb_name, paths, path, key, progress=gr.Progress()):  # noqa: B008  (Gradio's way to ask for a bar)
        ctx.check_key(key)
        try:
            if path and path.strip() and (why := folder_refused(ctx)):
                raise LLMKitError(why)
            kb = open_kb(ctx.served, kb_name, create=True)
            status = ingest(kb, paths, path, lambda f, d: progress(f, desc=d))
        except LLMKitError as e:
            return error(e), gr.update()
        return status, gr.update(choices=kb_names(), value=kb_name.strip())

    def do_search(kb_name, q, m, n, key):
        ctx.check_key(key)
        try:
            return search(open_kb(ctx.served, kb_name), q, m, n)
        except LLMKitError as e:
            return error(e)

    def do_ask(kb_name, q, m, n, key):
        ctx.check_key(key)
        try:
            text, cites = ask(ctx.model(None), open_kb(ctx.served, kb_name), q, m, n)
        except LLMKitError as e:
            return error(e), gr.update(choices=[], value=None), "", []
        first = cites[0]["label"] if cites else None
        return text, gr.update(choices=[c["label"] for c in cites], value=first), show_citation(first, cites), cites

    key = ctx.key if ctx.key is not None else gr.State("")
    def listed():
        return gr.update(choices=kb_names())

    refresh.click(listed, None, name, queue=False)
    ctx.on_load.append((listed, None, name))  # KBs made by `llmkit rag ingest` since the page was built
    build_btn.click(do_build, [name, files, folder, key], [build_status, name])
    search_btn.click(do_search, [name, query, mode, k, key], hits)
    query.submit(do_search, [name, query, mode, k, key], hits)
    ask_btn.click(do_ask, [name, question, mode, k, key], [answer_md, picked, cited, citations])
    question.submit(do_ask, [name, question, mode, k, key], [answer_md, picked, cited, citations])
    picked.change(show_citation, [picked, citations], cited, queue=False)
