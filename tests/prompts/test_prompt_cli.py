"""`llmkit prompt ls | show | run`: in process with typer's CliRunner (a scripted model), and in a
subprocess for the real entry point's one-line errors and exit code 2."""
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import llmkit
from llmkit.cli.main import app
from llmkit.models.scripted import ScriptedModel


@pytest.fixture
def lib(tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "greet.yaml").write_text(
        "description: Greet someone.\nsampling: {temperature: 0, max_tokens: 20}\nvariables: {tone: warm}\n"
        "messages:\n  - {role: system, content: 'Be {{ tone }}.'}\n  - {role: user, content: 'Greet {{ name }}.'}\n")
    (folder / "story.jinja").write_text("---\ndescription: A story.\n---\nuser:\nTell a story about {{ topic }}.\n")
    return folder


def llmkit_cli(*args, home):
    env = {**os.environ, "COLUMNS": "200", "LLMKIT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "llmkit", *args], capture_output=True, text=True, timeout=120, env=env)


def test_ls_and_show(lib):
    r = CliRunner().invoke(app, ["prompt", "ls", "--dir", str(lib)])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["greet\tname\tGreet someone.", "story\ttopic\tA story."]
    r = CliRunner().invoke(app, ["prompt", "show", "greet", "--dir", str(lib), "--var", "name=Ada", "--var", "tone=formal"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "--- system ---\nBe formal.\n\n--- user ---\nGreet Ada.\n"


def test_show_reads_a_variable_from_a_file(lib, tmp_path):
    (tmp_path / "topic.txt").write_text("a lighthouse")
    r = CliRunner().invoke(app, ["prompt", "show", str(lib / "story.jinja"), "--var", f"topic=@{tmp_path / 'topic.txt'}"])
    assert r.exit_code == 0, r.output
    assert "Tell a story about a lighthouse." in r.stdout


def test_run_sends_the_rendered_prompt(lib, monkeypatch):
    m = ScriptedModel(["Good day, Ada."])
    specs = []
    monkeypatch.setattr(llmkit, "model", lambda spec="", **kw: specs.append(spec) or m)
    r = CliRunner().invoke(app, ["prompt", "run", "greet", "--dir", str(lib), "--var", "name=Ada", "-m", "scripted",
                                 "--max-tokens", "5"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "Good day, Ada.\n" and specs == ["scripted"]
    msgs, s, _ = m.calls[0]
    assert [(x.role, x.content) for x in msgs] == [("system", "Be warm."), ("user", "Greet Ada.")]
    assert s.temperature == 0 and s.max_tokens == 5               # the flag overrides the prompt's sampling


def test_errors_are_one_line_and_exit_2(lib, tmp_path):
    home = tmp_path / "home"
    ok = llmkit_cli("prompt", "show", "greet", "--dir", str(lib), "--var", "name=Ada", home=home)
    assert ok.returncode == 0 and ok.stdout.startswith("--- system ---\nBe warm.")
    for args, message in [
        (["prompt", "show", "greet", "--dir", str(lib)], "needs the variable 'name'"),
        (["prompt", "run", "greet", "--dir", str(lib)], "needs the variable 'name'"),   # before any model loads
        (["prompt", "show", "nope", "--dir", str(lib)], "no prompt named 'nope'"),
        (["prompt", "show", "greet", "--dir", str(lib), "--var", "name"], "--var 'name' must be KEY=VALUE"),
        (["prompt", "ls", "--dir", str(tmp_path / "missing")], "does not exist"),
    ]:
        r = llmkit_cli(*args, home=home)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (lib / "broken.yaml").write_text("messages:\n  - role: user\n    content: '{{ x'\n")
    r = llmkit_cli("prompt", "ls", "--dir", str(lib), home=home)
    assert r.returncode == 2 and "greet\tname" in r.stdout          # the good prompts are still listed
    assert r.stderr.startswith(f"error: {lib / 'broken.yaml'}:3:") and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_run_on_the_embedded_model(lib, tmp_path):
    r = llmkit_cli("prompt", "run", "greet", "--dir", str(lib), "--var", "name=Ada", "--max-tokens", "8",
                   home=tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()                                        # greedy (the prompt's temperature 0), non-empty
