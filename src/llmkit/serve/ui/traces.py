"""The Traces tab: recent model calls from the trace store, and one call in full.

The table lists model-call spans (those with ``gen_ai.operation.name``), newest first, filtered by
model name, status and minimum latency. Selecting a row (or typing a span id) shows the whole
call: model, status, latency and tokens, the messages sent, the output, every attribute, and the
trace's other spans as a tree (the server span above the call, retrievals or tools beside it).

The pure functions (``calls``, ``rows``, ``detail_html``) hold the logic; ``build`` only wires
them to Gradio components, so tests can check them without a browser.
"""
from __future__ import annotations

import json
import time
from html import escape
from typing import Any

from ...core.tracing import TraceStore

SCAN = 2000           # newest spans read per refresh; the filters apply to these
SHOW = 200            # rows shown at most
COLUMNS = ["time", "span", "model", "operation", "status", "latency ms", "tokens in", "tokens out"]
STATUSES = ["any", "OK", "ERROR"]


def calls(store: TraceStore, model: str = "", status: str = "any", min_latency_ms: float = 0,
          limit: int = SHOW) -> list[dict[str, Any]]:
    """Model-call spans, newest first, that match every filter.

    Args:
        model: a substring of the requested or responding model's name (case-insensitive); "" = any.
        status: "OK", "ERROR" or "any". A span whose status was never set (UNSET) counts as OK:
            OpenTelemetry leaves successful spans UNSET unless code marks them.
        min_latency_ms: only calls that took at least this long.

    Example:
        >>> calls(TraceStore(), model="smol", status="ERROR", min_latency_ms=500)
    """
    out = []
    want = model.strip().lower()
    for s in store.list(limit=SCAN):
        a = s["attributes"]
        if "gen_ai.operation.name" not in a:
            continue  # server spans, retrievals, tools: shown as a call's relatives, not as rows
        names = f"{a.get('gen_ai.request.model', '')} {a.get('gen_ai.response.model', '')}".lower()
        if want and want not in names:
            continue
        if status != "any" and _status(s) != status:
            continue
        if s["duration_ms"] < (min_latency_ms or 0):
            continue
        out.append(s)
        if len(out) >= limit:
            break
    return out


def _status(span: dict[str, Any]) -> str:
    return "ERROR" if span["status"] == "ERROR" else "OK"


def rows(spans: list[dict[str, Any]]) -> list[list[Any]]:
    """The table's rows, in ``COLUMNS`` order."""
    out = []
    for s in spans:
        a = s["attributes"]
        out.append([time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["start_ns"] / 1e9)), s["span_id"],
                    a.get("gen_ai.request.model", ""), a.get("gen_ai.operation.name", ""), _status(s),
                    round(s["duration_ms"], 1), a.get("gen_ai.usage.input_tokens", ""),
                    a.get("gen_ai.usage.output_tokens", "")])
    return out


def _json(value: Any) -> Any:
    """Attributes holding lists of dicts were stored as JSON strings (tracing.clean): decode them."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _messages(msgs: Any) -> str:
    msgs = _json(msgs)
    if isinstance(msgs, str):
        return f"<pre>{escape(msgs)}</pre>"
    if not isinstance(msgs, list):
        return "<p class='lk-meta'>(not recorded: LLMKIT_TRACE_CONTENT=0?)</p>"
    parts = []
    for m in msgs:
        if not isinstance(m, dict):
            parts.append(f"<pre>{escape(str(m))}</pre>")
            continue
        content = m.get("content", "")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, indent=1)
        extra = f"<pre>{escape(json.dumps(m['tool_calls'], ensure_ascii=False, indent=1))}</pre>" if m.get("tool_calls") else ""
        parts.append(f"<div class='lk-msg'><b>{escape(str(m.get('role', '?')))}</b><pre>{escape(text)}</pre>{extra}</div>")
    return "".join(parts)


def _tree(spans: list[dict[str, Any]], selected: str) -> str:
    """Every span of the trace, indented under its parent, the selected one in bold."""
    children: dict[str | None, list[dict]] = {}
    ids = {s["span_id"] for s in spans}
    for s in spans:  # a parent outside this trace's rows (another process's span) counts as a root
        children.setdefault(s["parent_id"] if s["parent_id"] in ids else None, []).append(s)
    lines = []

    def walk(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            name = escape(s["name"])
            name = f"<b>{name}</b>" if s["span_id"] == selected else name
            err = f" — {escape(s['error'] or '')}" if s["status"] == "ERROR" else ""
            lines.append(f"<li style='margin-left:{depth * 18}px'>{name} <span class='lk-meta'>"
                         f"{s['duration_ms']:.1f} ms · {_status(s)} · {s['span_id']}{err}</span></li>")
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return f"<ul class='lk-tree'>{''.join(lines)}</ul>"


def detail_html(spans: list[dict[str, Any]], span_id: str) -> str:
    """The whole call ``span_id`` (a prefix will do) out of its trace's ``spans`` (``TraceStore.get``)."""
    s = next((x for x in spans if x["span_id"].startswith(span_id)), None) if span_id else None
    if s is None:
        return f"<p>No span {escape(span_id or '')!s} in the trace store.</p>" if span_id else \
            "<p class='lk-meta'>Select a call in the table.</p>"
    a = s["attributes"]
    head = (f"<h3>{escape(s['name'])}</h3><p class='lk-meta'>span {s['span_id']} · trace {s['trace_id']} · "
            f"<b>{_status(s)}</b> · {s['duration_ms']:.1f} ms · tokens {a.get('gen_ai.usage.input_tokens', '?')} in, "
            f"{a.get('gen_ai.usage.output_tokens', '?')} out · "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s['start_ns'] / 1e9))}</p>")
    error = f"<h4>Error</h4><pre class='lk-err'>{escape(s['error'] or '')}</pre>" if s["status"] == "ERROR" else ""
    prompt = a.get("gen_ai.input.messages", a.get("llmkit.prompt"))
    shown = {"gen_ai.input.messages", "llmkit.prompt", "gen_ai.output.messages"}
    attrs = "".join(f"<tr><td>{escape(k)}</td><td><pre>{escape(_fmt(v))}</pre></td></tr>"
                    for k, v in sorted(a.items()) if k not in shown)
    events = "".join(f"<li>{escape(e['name'])}: <pre>{escape(json.dumps(e['attributes'], default=str)[:4000])}</pre></li>"
                     for e in s["events"])
    return (f"<div class='lk-trace'>{head}{error}<h4>Messages</h4>{_messages(prompt)}"
            f"<h4>Output</h4>{_messages(a.get('gen_ai.output.messages'))}"
            f"<h4>Spans in this trace</h4>{_tree(spans, s['span_id'])}"
            f"<h4>Attributes</h4><table class='lk-attrs'>{attrs}</table>"
            + (f"<h4>Events</h4><ul>{events}</ul>" if events else "") + "</div>")


def _fmt(v: Any) -> str:
    v = _json(v)
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, indent=1, default=str)


CSS = """
.lk-trace pre{white-space:pre-wrap;margin:2px 0;font:12px/1.4 ui-monospace,monospace}
.lk-meta{color:#5a6372;font-size:12px}.lk-msg{margin:6px 0}.lk-err{color:#b3261e}
.lk-attrs td{vertical-align:top;padding:2px 8px;border-bottom:1px solid #e5e7eb}.lk-tree{list-style:none;padding-left:0}
"""


def build(ctx: Any) -> None:
    """The tab's components; ``app.py`` calls this inside ``gr.Tab("Traces")``."""
    import gradio as gr

    key = ctx.key if ctx.key is not None else gr.State("")  # the header's key box (UIContext)

    # Traces hold every prompt and answer: with a server key, only those who know it see them.
    def list_calls(m: str = "", st: str = "any", lat: float | None = 0, key: str | None = None) -> list[list[Any]]:
        ctx.check_key(key)
        # A fresh TraceStore each time: it resolves $LLMKIT_HOME then (tests change it).
        return rows(calls(TraceStore(), m or "", st or "any", float(lat or 0)))

    def open_span(sid: str, key: str | None) -> str:
        ctx.check_key(key)
        sid = (sid or "").strip()
        return _page(detail_html(TraceStore().get(sid), sid) if sid else "")

    def pick(key: str | None, evt: gr.SelectData):
        sid = str(evt.row_value[1]) if evt.row_value else ""  # the row's "span" column
        return sid, open_span(sid, key)

    # Gradio finds the event argument by its annotation, which `from __future__ import annotations`
    # turned into a string naming this function's local `gr`: give it the class itself.
    pick.__annotations__["evt"] = gr.SelectData

    with gr.Row():
        model = gr.Textbox(label="model contains", placeholder="e.g. SmolLM2", scale=2, elem_id="traces-model")
        status = gr.Dropdown(STATUSES, value="any", label="status", scale=1, elem_id="traces-status")
        latency = gr.Number(0, label="min latency (ms)", minimum=0, scale=1, elem_id="traces-latency")
        refresh = gr.Button("Refresh", scale=1, elem_id="traces-refresh")
    table = gr.Dataframe(value=[], headers=COLUMNS, interactive=False, wrap=True,
                         label="recent calls (newest first)", elem_id="traces-table")
    if not ctx.api_key_required:  # listed at every page load (unqueued); with a key, Refresh asks for it
        ctx.on_load.append((list_calls, None, table))
    with gr.Row():
        span_id = gr.Textbox(label="span id (or select a row)", scale=3, elem_id="traces-span")
        show = gr.Button("Show", scale=1, elem_id="traces-show")
    detail = gr.HTML(_page(""), elem_id="traces-detail")

    filters = [model, status, latency, key]
    for trigger in (refresh.click, model.submit, status.change, latency.submit):
        trigger(list_calls, filters, [table], queue=False)
    table.select(pick, [key], [span_id, detail], queue=False)
    show.click(open_span, [span_id, key], [detail], queue=False)
    span_id.submit(open_span, [span_id, key], [detail], queue=False)


def _page(body: str) -> str:
    return f"<style>{CSS}</style>" + (body or "<p class='lk-meta'>Select a call in the table.</p>")
