"""Fixtures for the web UI tests (the helpers live in ``browser.py``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import TIMEOUT_MS, Live, launch


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the session; skipped with the reason when it cannot run."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("gradio", reason="the web UI needs gradio (pip install 'llmkit[ui]')")
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page (own cookies and storage) per test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def ui_live(embedded):
    """One server with the web UI on the embedded model (no key), shared by the UI tests."""
    pytest.importorskip("gradio", reason="the web UI needs gradio (pip install 'llmkit[ui]')")
    with Live(embedded, ui=True, shutdown_timeout=2) as server:  # open pages' event streams would hold shutdown 30 s
        yield server


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: $LLMKIT_UI_SCREENSHOTS, else a folder under pytest's tmp dir."""
    where = os.environ.get("LLMKIT_UI_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
