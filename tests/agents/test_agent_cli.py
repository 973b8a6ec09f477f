"""`llmkit agent run`: steps on stderr as they happen, the answer on stdout, one-line errors."""
import json
import subprocess
import sys

from typer.testing import CliRunner

import llmkit as lk
from llmkit.cli.main import app
from llmkit.models.scripted import ScriptedModel


def scripted(monkeypatch, replies):
    model = ScriptedModel(replies)
    monkeypatch.setattr(lk, "model", lambda spec="", **kw: model)  # the CLI's wiring, not a provider
    return model


def test_runs_the_task_with_builtin_tools(monkeypatch):
    m = scripted(monkeypatch, [{"name": "calculator", "arguments": {"expression": "17 * 23"}}, "It is 391."])
    r = CliRunner().invoke(app, ["agent", "run", "What is 17 * 23?", "--tools", "calculator", "--temperature", "0"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("It is 391.")
    assert 'calculator({"expression": "17 * 23"}) = 391' in r.stderr
    assert m.calls[0][1].temperature == 0 and [t.name for t in m.calls[0][2]] == ["calculator"]


def test_json_output_and_a_run_that_hits_its_budget(monkeypatch):
    scripted(monkeypatch, [{"name": "calculator", "arguments": {"expression": "1+1"}}] * 2)
    r = CliRunner().invoke(app, ["agent", "run", "loop", "--max-steps", "2", "--json"])
    out = json.loads(r.stdout)
    assert out["stopped"] == "max_steps" and [s["kind"] for s in out["steps"]][:2] == ["model", "tool"]


def test_bad_input_is_one_line_and_exit_2():
    p = subprocess.run([sys.executable, "-m", "llmkit", "agent", "run", "x", "--tools", "calculator,teleport"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "teleport" in p.stderr
