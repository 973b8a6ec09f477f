"""How the web UI sits on the API's app: at /, beside /v1, behind the same key, optional."""
from __future__ import annotations

import logging
import sys

import httpx
import pytest
from browser import Live, open_ui, screenshot

pytestmark = pytest.mark.integration
gr = pytest.importorskip("gradio", reason="the web UI needs gradio (pip install 'llmkit[ui]')")


def test_the_key_guards_the_api_not_the_page(embedded):
    with Live(embedded, key="s3cret", ui=True) as live:
        assert live.app.state.ui
        page = httpx.get(live.url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert httpx.get(live.url + "/gradio_api/info").status_code == 200  # the page's own calls check the key per action
        for path in ("/v1/models", "/metrics", "/openapi.json", "/docs", "/v1/nothing-here"):
            assert httpx.get(live.url + path).status_code == 401, path
        assert httpx.post(live.url + "/v1/chat/completions", json={"messages": []}).status_code == 401
        ok = httpx.get(live.url + "/v1/models", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["data"][0]["id"] == live.app.state.served.name
        assert "s3cret" not in page.text


def test_check_key(embedded):
    from llmkit.serve import ServeConfig
    from llmkit.serve.app import Served
    from llmkit.serve.ui.context import UIContext

    ctx = UIContext(Served(embedded, ServeConfig(api_key="s3cret")), api_key_required=True)
    ctx.check_key("s3cret")
    for wrong in ("", None, "s3cre", "S3CRET"):
        with pytest.raises(gr.Error):
            ctx.check_key(wrong)
    UIContext(Served(embedded, ServeConfig(api_key=None))).check_key(None)  # an open server asks nothing
    assert ctx.model() is embedded and ctx.model(ctx.served.name) is embedded
    assert ctx.model_choices()[0] == ctx.served.name
    with pytest.raises(gr.Error, match="nosuchprovider"):
        ctx.model("nosuchprovider:x")


def test_ui_off_and_gradio_missing_serve_the_api_alone(embedded, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    from llmkit.serve import ServeConfig, create_app

    off = TestClient(create_app(embedded, ServeConfig(ui=False, api_key=None)))
    assert off.get("/").status_code == 404 and off.get("/health").status_code == 200
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    with caplog.at_level(logging.WARNING, logger="llmkit.serve"):
        app = create_app(embedded, ServeConfig(api_key=None))
    assert not app.state.ui
    assert [r.getMessage() for r in caplog.records if "gradio" in r.getMessage()] == [
        "llmkit serve: the web UI needs gradio (pip install 'llmkit[ui]'); serving the API only"]
    client = TestClient(app)
    assert client.get("/").status_code == 404 and client.get("/v1/models").status_code == 200


def test_keyed_server_ui_asks_for_the_key_then_answers(embedded, page, shots):
    with Live(embedded, key="s3cret", ui=True, shutdown_timeout=2) as live:  # the open page's event stream would hold it 30 s
        open_ui(page, live.url)
        key = page.locator("#lk-key input")
        assert key.get_attribute("type") == "password"
        page.locator("#lk-max_tokens input[type=number]").fill("4")
        page.locator("#lk-max_tokens input[type=number]").press("Enter")
        page.locator("#lk-message textarea").fill("Hi")
        page.locator("#lk-send").click()
        page.get_by_text("This server requires an API key").first.wait_for()
        assert page.locator("#lk-chatbot [data-testid=bot]").count() == 0
        screenshot(page, shots, "key-required")
        key.fill("s3cret")
        key.press("Tab")
        page.locator("#lk-send").click()
        page.locator("#lk-stats", has_text="finish:").wait_for(timeout=60_000)
        assert page.locator("#lk-chatbot [data-testid=bot]").count() == 1
        page.reload()  # the key is remembered in this browser
        page.locator("#lk-header").wait_for()
        page.wait_for_function("document.querySelector('#lk-key input').value === 's3cret'")
