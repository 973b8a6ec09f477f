"""serve/ui/rag.py: build a knowledge base from files, search it, ask it with citations — the
functions, then (issue #10) a real browser on a real server: upload a file, build a tiny knowledge
base, ask, and open the cited passage."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from browser import Live, open_tab, open_ui, screenshot
from hash_embedder import HashEmbedder

from llmkit.core.errors import LLMKitError
from llmkit.models.scripted import ScriptedModel
from llmkit.serve.ui.rag import (
    ask,
    folder_refused,
    ingest,
    kb_names,
    open_kb,
    search,
    show_citation,
)

FILES = {"france.md": "Paris is the capital of France. The Seine flows through Paris.",
         "japan.md": "Tokyo is the capital of Japan. Mount Fuji is west of Tokyo."}
REPLY = "Paris is the capital of France [1]. Tokyo is the capital of Japan [2]."


def write(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (folder / name).write_text(text)
    return [str(folder / name) for name in FILES]


@pytest.fixture
def served():
    emb = HashEmbedder()
    return SimpleNamespace(embedder=lambda: emb, config=SimpleNamespace(host="127.0.0.1"))


def test_uploads_keep_their_names_and_search_finds_the_right_chunk(served, tmp_path):
    kb = open_kb(served, "atlas", create=True)
    status = ingest(kb, write(tmp_path / "upload-xyz"))
    assert "Ingested 2 file(s)" in status and "2 document(s)" in status and kb_names() == ["atlas"]
    assert sorted(kb.sources()) == ["france.md", "japan.md"]  # not the upload's temporary path
    for mode in ("dense", "bm25", "hybrid"):
        shown = search(kb, "Mount Fuji Japan", mode, 1)
        assert "`japan.md`" in shown and "Mount Fuji" in shown and "france" not in shown
    ingest(kb, write(tmp_path / "again"))  # the same names again: replaced, not doubled
    assert kb.stats()["documents"] == 2 and open_kb(served, "atlas") is kb


def test_progress_is_reported_per_file_and_folders_are_ingested(served, tmp_path):
    seen = []
    kb = open_kb(served, "docs", create=True)
    write(tmp_path / "docs")
    (tmp_path / "docs" / "skip.xyz").write_text("no loader")
    status = ingest(kb, None, str(tmp_path / "docs"), lambda f, d: seen.append((f, d)))
    assert [f for f, _ in seen] == [0.0, 0.5, 1.0] and seen[0][1] == "embedding france.md"
    assert "Ingested 2 file(s)" in status and kb.stats()["documents"] == 2
    assert all(Path(s).is_absolute() for s in kb.sources())  # server files keep their paths


def test_ask_maps_citations_to_passages_and_shows_the_one_picked(served, tmp_path):
    kb = open_kb(served, "atlas", create=True)
    ingest(kb, write(tmp_path))
    model = ScriptedModel([REPLY])
    text, cites = ask(model, kb, "What are the capitals of France and Japan?", "hybrid", 2)
    assert text.startswith(REPLY) and [c["n"] for c in cites] == [1, 2]
    for c in cites:  # each label opens the passage it names, with its source
        shown = show_citation(c["label"], cites)
        assert FILES[c["source"]] in shown and f"`{c['source']}`" in shown and c["label"].startswith(f"[{c['n']}] ")
    assert "Paris is the capital" in model.prompts[0]  # the passages reached the model
    assert show_citation("[9] nowhere", cites) == ""


def test_errors_name_what_to_do(served, tmp_path):
    with pytest.raises(LLMKitError, match="no knowledge base 'nope': build it first"):
        open_kb(served, "nope")
    for bad in ("../etc", "x.db", ""):
        with pytest.raises(LLMKitError):
            open_kb(served, bad, create=True)
    with pytest.raises(LLMKitError, match="upload files or give a folder"):
        ingest(open_kb(served, "empty", create=True), [], "")
    public = SimpleNamespace(served=SimpleNamespace(config=SimpleNamespace(host="0.0.0.0")), api_key_required=False)
    assert "--api-key" in folder_refused(public)
    assert folder_refused(SimpleNamespace(served=public.served, api_key_required=True)) is None
    assert folder_refused(SimpleNamespace(served=served, api_key_required=False)) is None


def test_browser_upload_build_ask_and_open_a_citation(page, shots, tmp_path):
    """Issue #10: build a tiny knowledge base from an uploaded file and get an answer with a citation."""
    from playwright.sync_api import expect

    paths = write(tmp_path / "files")
    model = ScriptedModel(lambda msgs, tools: REPLY if "France" in msgs[-1].content else "Not found in the documents.",
                          repeat=True)
    with Live(model, embedder=HashEmbedder(), ui=True, shutdown_timeout=1) as srv:
        open_ui(page, srv.url, "RAG")
        kb = page.locator("#rag-kb input")
        kb.fill("atlas")
        kb.press("Enter")
        page.locator("#rag-files input[type=file]").set_input_files(paths)
        expect(page.locator("#rag-files tr")).to_have_count(2)  # both uploaded
        page.locator("#rag-build").click()
        expect(page.locator("#rag-build-status")).to_contain_text("Ingested 2 file(s)", timeout=60_000)
        screenshot(page, shots, "rag-built")

        open_tab(page, "Search")
        page.locator("#rag-query textarea").fill("Mount Fuji")
        page.locator("#rag-search").click()
        expect(page.locator("#rag-hits")).to_contain_text("japan.md")

        open_tab(page, "Ask")
        page.locator("#rag-question textarea").fill("What are the capitals of France and Japan?")
        page.locator("#rag-ask").click()
        expect(page.locator("#rag-answer")).to_contain_text("Paris is the capital of France [1]", timeout=60_000)
        labels = page.locator("#rag-citations label")
        labels.nth(1).wait_for()
        assert labels.count() == 2
        for i in range(2):  # picking each citation shows its passage and source
            label = labels.nth(i).inner_text().strip()
            labels.nth(i).click()
            source = label.split("] ", 1)[1]
            cited = page.locator("#rag-cited")
            expect(cited).to_contain_text(FILES[source].split(".")[0])
            assert f"[{i + 1}]" in label and source in cited.inner_text()
        screenshot(page, shots, "rag-answer")
    assert "Tokyo is the capital of Japan" in model.prompts[-1]  # the uploaded text was the context
