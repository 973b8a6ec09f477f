"""Helpers for the web UI's browser tests: Debian's chromium driven by Playwright, a live
server with the UI, screenshots.

Fixtures (in ``tests/ui/conftest.py``): ``browser`` (session), ``page`` (one fresh page per test),
``ui_live`` (one server on the embedded model, no key), ``shots`` (where screenshots go).
Playwright's own browser download cannot work offline, so chromium comes from the system.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("LLMKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000  # a first page load builds every tab's components on a shared 2-core machine


def _serve_conftest() -> Any:
    """tests/serve/conftest.py under its own module name (``conftest`` is taken by several)."""
    path = Path(__file__).parents[1] / "serve" / "conftest.py"
    spec = importlib.util.spec_from_file_location("llmkit_serve_live", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Live = _serve_conftest().Live  # a real uvicorn server on 127.0.0.1, as `llmkit serve` builds it


def launch(playwright: Any) -> Any:
    """Chromium from the system, or a skip that says what is missing."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or set LLMKIT_CHROMIUM)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def open_ui(page: Any, url: str, tab: str | None = None) -> None:
    """Load the UI and wait until Gradio has rendered it; then open ``tab`` (its title) if given."""
    page.goto(url + "/")
    page.locator("#lk-header").wait_for(state="visible")
    if tab:
        open_tab(page, tab)


def open_tab(page: Any, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()


def screenshot(page: Any, shots: Path, name: str) -> Path:
    """Save a full-page PNG under ``shots`` (a test artifact) and return its path."""
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
