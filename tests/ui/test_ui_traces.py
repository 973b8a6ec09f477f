"""The Traces tab: the filters on their own, then "open a trace" in a real browser.

The browser test runs the whole server (API and UI on one uvicorn app, 127.0.0.1), makes a chat
call through ``/v1/chat/completions`` so a trace exists, opens the Traces tab, clicks the call's
row and reads the prompt, the answer and the server span above it. Screenshots are kept under the
test's tmp dir.
"""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from llmkit.core.tracing import TraceStore
from llmkit.models.scripted import ScriptedModel, ScriptExhausted
from llmkit.serve.ui import traces

def test_calls_filter_by_model_status_and_latency():
    fast = ScriptedModel(["ok"], name="fast-model")
    slow = ScriptedModel([lambda msgs, tools: time.sleep(0.05) or "slow answer"], name="slow-model")
    fast.chat("one")
    slow.chat("two")
    with pytest.raises(ScriptExhausted):
        fast.chat("three: the script is exhausted, so this call is an ERROR span")
    store = TraceStore()

    assert [s["attributes"]["gen_ai.request.model"] for s in traces.calls(store)] == \
        ["fast-model", "slow-model", "fast-model"]                        # newest first
    assert {s["attributes"]["gen_ai.request.model"] for s in traces.calls(store, model="SLOW")} == {"slow-model"}
    errors = traces.calls(store, status="ERROR")
    assert len(errors) == 1 and "exhausted" in errors[0]["error"]
    assert len(traces.calls(store, status="OK")) == 2
    assert [s["attributes"]["gen_ai.request.model"] for s in traces.calls(store, min_latency_ms=40)] == ["slow-model"]

    row = traces.rows(traces.calls(store, model="slow"))[0]
    assert row[traces.COLUMNS.index("model")] == "slow-model" and row[traces.COLUMNS.index("status")] == "OK"
    assert row[traces.COLUMNS.index("latency ms")] >= 40


def test_detail_shows_messages_output_attributes_and_the_error():
    m = ScriptedModel(["Paris."], name="geo")
    m.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of <France>?"}],
           temperature=0)
    with pytest.raises(ScriptExhausted):
        m.chat("again")
    ok, err = traces.calls(TraceStore(), status="OK")[0], traces.calls(TraceStore(), status="ERROR")[0]

    page = traces.detail_html(TraceStore().get(ok["span_id"]), ok["span_id"])
    assert "Be brief." in page and "Capital of &lt;France&gt;?" in page   # escaped, not injected
    assert "Paris." in page and "gen_ai.request.temperature" in page
    assert "Error" not in page
    bad = traces.detail_html(TraceStore().get(err["span_id"][:8]), err["span_id"][:8])  # a prefix will do
    assert "<h4>Error</h4>" in bad and "ScriptExhausted" in bad
    assert "No span" in traces.detail_html([], "feedbeef")


# --- the browser -----------------------------------------------------------------------------------

class _Server:
    """The real app (API + UI) on a free port of 127.0.0.1, in a background thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def test_open_a_trace_in_the_browser(page, shots):
    from llmkit.serve import ServeConfig, create_app

    model = ScriptedModel(lambda msgs, tools: "The capital of France is Paris.", repeat=True, name="scripted-geo")
    app = create_app(model, ServeConfig())
    with _Server(app) as live:
        r = httpx.post(live.url + "/v1/chat/completions", timeout=30, json={
            "model": "scripted-geo", "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert r.status_code == 200, r.text
        call = traces.calls(TraceStore(), model="scripted-geo")[0]   # the model call's span

        page.goto(live.url + "/")
        page.get_by_role("tab", name="Traces").click()
        table = page.locator("#traces-table")
        cell = table.get_by_text(call["span_id"]).locator("visible=true").first  # Gradio keeps hidden copies
        cell.wait_for()
        page.screenshot(path=str(shots / "traces-table.png"), full_page=True)

        cell.click()
        detail = page.locator("#traces-detail")
        detail.get_by_text("The capital of France is Paris.").first.wait_for()
        text = detail.inner_text()
        page.screenshot(path=str(shots / "trace-open.png"), full_page=True)
        assert "What is the capital of France?" in text                       # the messages sent
        assert "POST /v1/chat/completions" in text                            # the server span above the call
        assert "gen_ai.usage.output_tokens" in text and call["trace_id"] in text
        assert page.locator("#traces-span textarea, #traces-span input").first.input_value() == call["span_id"]

        # A filter that matches nothing empties the table.
        page.locator("#traces-model textarea, #traces-model input").first.fill("no-such-model")
        page.locator("#traces-refresh").click()
        table.get_by_text(call["span_id"]).locator("visible=true").first.wait_for(state="detached")
    assert (shots / "trace-open.png").stat().st_size > 0
