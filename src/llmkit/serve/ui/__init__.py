"""The web UI: a Gradio playground for every capability, mounted at ``/`` on the API's own app.

One module per tab (``chat.py``, ``structured.py``, ``rag.py``, ``agents.py``, ``evals.py``,
``arena.py``, ``traces.py``), each exposing ``build(ctx: UIContext)``; ``app.py`` puts them on
one page; ``context.py`` holds what they share. Gradio is optional (``pip install 'llmkit[ui]'``)
and imported only here, when the server starts.

Example:
    >>> app = create_app(lk.model(), ServeConfig())      # mounts the UI when gradio is installed
    >>> app = create_app(lk.model(), ServeConfig(ui=False))  # the API alone
"""
from __future__ import annotations

import logging
from typing import Any

__all__ = ["mount_ui"]

log = logging.getLogger("llmkit.serve")


def mount_ui(app: Any, served: Any) -> bool:
    """Mount the UI at ``/`` on ``app`` (a FastAPI app whose API routes are already added, so
    they keep precedence). Returns False, after one log line, when gradio is not installed."""
    try:
        import gradio as gr
    except ImportError:
        log.warning("llmkit serve: the web UI needs gradio (pip install 'llmkit[ui]'); serving the API only")
        return False
    from .app import CSS, build_ui, theme

    blocks = build_ui(served)
    # Gradio runs one event of a kind at a time unless told otherwise; let as many UI
    # generations run as the API allows (each runs in its own worker thread).
    blocks.queue(default_concurrency_limit=served.config.max_concurrency)
    gr.mount_gradio_app(app, blocks, path="/", theme=theme(), css=CSS, ssr_mode=False, mcp_server=False,
                        pwa=False, enable_monitoring=False, show_error=True)
    return True
