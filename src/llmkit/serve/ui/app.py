"""``build_ui(served)``: the web UI's page — a header (the served model, the key box when the
server needs a key) and one tab per capability, each built by its own module's ``build(ctx)``.

A tab whose module or optional dependency is missing shows a notice saying what to install;
the other tabs and the API work as before.
"""
from __future__ import annotations

import importlib
import logging

import gradio as gr

from .context import UIContext

log = logging.getLogger("llmkit.serve")

# (tab title, module in this package, what to install if its dependencies are missing)
TABS = [
    ("Chat", "chat", ""),
    ("Structured", "structured", ""),
    ("RAG", "rag", "pip install 'llmkit[hf]' (sentence-transformers for the embedded embedder)"),
    ("Agents", "agents", ""),
    ("Evals", "evals", ""),
    ("Arena", "arena", ""),
    ("Traces", "traces", "pip install 'llmkit[otlp]' for exporting; traces are read from $LLMKIT_HOME/traces.db"),
]

CSS = """
.lk-tok { border-radius: 3px; white-space: pre-wrap; }
.lk-text { line-height: 1.9; font-family: ui-monospace, monospace; }
table.lk-logprobs { font-size: 0.85em; border-collapse: collapse; }
table.lk-logprobs td, table.lk-logprobs th { padding: 1px 6px; border-bottom: 1px solid #8883; }
"""


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts: the page loads nothing from the internet."""
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_ui(served) -> gr.Blocks:
    """The page for ``served`` (``llmkit.serve.app.Served``); mount it with :func:`llmkit.serve.ui.mount_ui`.

    Example:
        >>> blocks = build_ui(app.state.served)
        >>> gr.mount_gradio_app(app, blocks, path="/")
    """
    required = served.config.api_key is not None
    m = served.model
    with gr.Blocks(title=f"llmkit · {served.name}", analytics_enabled=False) as blocks:
        with gr.Row(equal_height=True):
            gr.Markdown(f"## llmkit\nserving **`{served.name}`** ({m.provider}:{m.name}) · the API is at "
                        f"`/v1` (OpenAI) and `/v1/messages` (Anthropic)", elem_id="lk-header")
            key = gr.Textbox(label="API key", type="password", visible=required, elem_id="lk-key", scale=0,
                             min_width=260, placeholder="this server requires its key",
                             info="kept in this browser; sent with each action, never shown")
        ctx = UIContext(served=served, api_key_required=required, key=key, blocks=blocks)
        if required:  # remember the key across reloads, in this browser only
            saved = gr.BrowserState("", storage_key="llmkit-api-key")
            key.change(lambda k: k, key, saved, queue=False, show_progress="hidden")
            blocks.load(lambda k: k, saved, key, queue=False, show_progress="hidden")
        with gr.Tabs():
            for title, module, install in TABS:
                with gr.Tab(title, id=module, elem_id=f"lk-tab-{module}"):
                    _build_tab(ctx, title, module, install)
        for fn, inputs, outputs in ctx.on_load:
            blocks.load(fn, inputs, outputs, queue=False, show_progress="hidden")
    return blocks


def _build_tab(ctx: UIContext, title: str, module: str, install: str) -> None:
    name = f"{__package__}.{module}"
    try:
        mod = importlib.import_module(name)
        mod.build(ctx)
    except ModuleNotFoundError as e:
        if e.name == name:
            gr.Markdown(f"**{title}** is not part of this install yet (no `{name}` module).")
        else:
            gr.Markdown(f"**{title}** needs the package `{e.name}`, which is not installed. {install}".rstrip())
    except ImportError as e:
        gr.Markdown(f"**{title}** cannot start: {e}. {install}".rstrip())
    except Exception as e:  # a broken tab must not take the page (or the API) down with it
        log.exception("llmkit ui: the %s tab failed to build", title)
        gr.Markdown(f"**{title}** failed to build: `{type(e).__name__}: {e}` (details in the server log).")
