"""The Evals tab: its work without a browser (run a suite on the served model, no second copy
loaded; save the run and its report; list saved runs; compare two), then the same in a real
browser on the embedded model: upload a suite, run it, read the report, download it, compare."""
from __future__ import annotations

import html
import re

import httpx
import pytest

from llmkit.models.scripted import ScriptedModel
from llmkit.serve import ServeConfig
from llmkit.serve.app import Served
from llmkit.serve.ui import evals
from llmkit.serve.ui.context import UIContext

SUITE = """
description: capitals
prompts: ["{{question}}"]
models: [smol]
tests:
  - description: France
    vars: {question: "Capital of France?"}
    assert: [{type: icontains, value: paris}]
  - description: Italy
    vars: {question: "Capital of Italy?"}
    assert: [{type: icontains, value: rome}]
"""


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "capitals.yaml"
    path.write_text(SUITE)
    return path


def served_ctx(answers: dict[str, str]) -> UIContext:
    model = ScriptedModel(lambda msgs, tools: answers[msgs[-1].content], repeat=True, name="smol")
    return UIContext(served=Served(model, ServeConfig()))


def test_run_uses_the_served_model_saves_the_run_and_reports_progress(suite_file, llmkit_home):
    ctx = served_ctx({"Capital of France?": "Paris.", "Capital of Italy?": "Milan."})
    seen = []
    run, page = evals.run(ctx, str(suite_file), on_progress=lambda d, t: seen.append((d, t)), cache=False)
    assert [r.passed for r in sorted(run.rows, key=lambda r: r.case)] == [True, False]
    assert len(ctx.served.model.calls) == 2                   # the served instance answered
    assert sorted(seen) == [(1, 2), (2, 2)]
    assert (llmkit_home / "evals" / "runs" / f"{run.id}.json").exists()
    assert page.exists() and "Milan." in page.read_text()
    frame = evals.iframe(page.read_text())
    assert frame.startswith('<iframe sandbox=""') and "<table" not in frame   # escaped into srcdoc
    assert "Milan." in html.unescape(frame)


def test_compare_lists_regressions_and_improvements(suite_file):
    before, _ = evals.run(served_ctx({"Capital of France?": "Paris", "Capital of Italy?": "Milan"}), str(suite_file),
                          cache=False)
    after, _ = evals.run(served_ctx({"Capital of France?": "Lyon", "Capital of Italy?": "Rome"}), str(suite_file),
                         cache=False)
    ids = [i for _, i in evals.saved_runs()]
    assert set(ids) == {before.id, after.id}
    text = evals.compare_markdown(before.id, after.id)
    regressions, improvements = text.split("### Improvements")
    assert "France" in regressions and "Italy" not in regressions.split("### Regressions")[1]
    assert "Italy" in improvements and "France" not in improvements
    assert "| smol | 50% | 50% |" in text


def test_the_quickstart_suite_is_offered_first():
    files = evals.suite_files()
    assert files and files[0].endswith("examples/evals/quickstart.yaml")


BROWSER_SUITE = """
description: capitals in the browser
prompts:
  - messages:
      - {role: system, content: "Answer with one word."}
      - {role: user, content: "{{question}}"}
models: [local]
sampling: {temperature: 0, max_tokens: 12}
tests:
  - description: France
    vars: {question: "What is the capital of France?"}
    assert: [{type: icontains, value: %s}]
  - description: Italy
    vars: {question: "What is the capital of Italy?"}
    assert: [{type: icontains, value: rome}]
"""


@pytest.mark.integration
def test_browser_runs_an_uploaded_suite_shows_its_report_and_compares_two_runs(ui_live, page, shots, tmp_path,
                                                                                llmkit_home):
    from browser import open_ui, screenshot
    from playwright.sync_api import expect

    summary = page.locator("#evals-summary")
    runs = []
    open_ui(page, ui_live.url, "Evals")
    for n, want in enumerate(("paris", "london")):  # the second run's France case cannot pass
        suite = tmp_path / f"capitals-{n}.yaml"
        suite.write_text(BROWSER_SUITE % want)
        if n:
            page.locator("#evals-upload button[aria-label=Clear]").click()  # the first upload
        page.locator("#evals-upload input[type=file]").set_input_files(str(suite))
        expect(page.locator("#evals-upload")).to_contain_text(f"capitals-{n}")
        page.locator("#evals-cache input").uncheck()
        page.locator("#evals-run").click()
        if runs:  # the last run's summary stays up until the new one replaces it
            expect(summary).not_to_contain_text(runs[-1], timeout=120_000)
        expect(summary).to_contain_text("saved", timeout=120_000)
        text = summary.inner_text()
        runs.append(text.rsplit("run ", 1)[1].split()[0])
        # The report is the run's own page, in a sandboxed frame, and a file to download.
        report = page.frame_locator("#evals-report iframe")
        expect(report.get_by_text("capitals in the browser").first).to_be_visible()
        assert (llmkit_home / "evals" / "reports" / f"{runs[-1]}.html").exists()
        assert (llmkit_home / "evals" / "runs" / f"{runs[-1]}.json").exists()
        link = page.locator("#evals-download a").first
        expect(link).to_have_attribute("href", re.compile(re.escape(f"{runs[-1]}.html") + "$"))
        served = httpx.get(link.get_attribute("href"), timeout=30).raise_for_status().text
        assert served == (llmkit_home / "evals" / "reports" / f"{runs[-1]}.html").read_text()
        if n == 0:
            assert "PASS" in text and "2/2 answers passed" in text and "2 model calls" in text, text
            screenshot(page, shots, "evals-report")
    assert "FAIL" in text and "1/2 answers passed" in text, text

    # The run just made is "after", the one before it "before": Compare names the regression.
    page.locator("#evals-compare").click()
    changes = page.locator("#evals-changes")
    expect(changes).to_contain_text("Regressions (1)")
    assert runs[0] in changes.inner_text() and runs[1] in changes.inner_text()
    regressions, improvements = changes.inner_text().split("Improvements (0)")
    assert "France" in regressions and "Italy" not in regressions
    screenshot(page, shots, "evals-compare")
