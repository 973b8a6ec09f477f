"""The Evals tab's work without a browser: run a suite on the served model (no second copy loaded),
save the run and its report, list saved runs, and compare two of them."""
from __future__ import annotations

import html

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
