"""The llmkit command: one-shot and REPL chat, generate, models; one-line errors with exit code 2."""
import json
import os
import subprocess
import sys

import pytest


def llmkit(*args, stdin=None, env=None, **kw):
    e = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "llmkit", *args], input=stdin, capture_output=True, text=True,
                          env=e, timeout=120, **kw)


@pytest.mark.integration
def test_one_shot_chat():
    r = llmkit("chat", "--system", "Be brief.", "What is the capital of France?", "--temperature", "0", "--max-tokens", "24")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


@pytest.mark.integration
def test_chat_reads_stdin_and_generate_continues_raw_text():
    r = llmkit("chat", "--system", "Be brief.", "--temperature", "0", "--max-tokens", "24", stdin="What is the capital of France?")
    assert r.returncode == 0 and "Paris" in r.stdout
    g = llmkit("generate", "1, 2, 3, 4,", "--temperature", "0", "--max-tokens", "6", "--stop", " 7")
    assert g.returncode == 0 and g.stdout.startswith(" 5, 6,") and " 7" not in g.stdout


@pytest.mark.integration
def test_repl_keeps_the_conversation():
    import pty

    master, slave = pty.openpty()  # a terminal on stdin starts the REPL
    p = subprocess.Popen([sys.executable, "-m", "llmkit", "chat", "-s", "Be brief.", "--temperature", "0",
                          "--max-tokens", "16"], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    os.write(master, b"What is the capital of France?\n/reset\n/exit\n")
    out, err = p.communicate(timeout=120)
    os.close(master)
    assert p.returncode == 0, err
    assert "Paris" in out and "/reset clears" in err


@pytest.mark.integration
def test_constrained_one_shot(tmp_path):
    schema = tmp_path / "city.json"
    schema.write_text('{"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}')
    r = llmkit("chat", "Capital of France?", "--schema", str(schema), "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == {"city"}
    r = llmkit("chat", "Is fire hot?", "--choice", "yes", "--choice", "no", "--temperature", "0")
    assert r.returncode == 0 and r.stdout.strip() in ("yes", "no")


@pytest.mark.parametrize("args, env, needle", [
    (["chat", "-m", "nosuch:model", "hi"], {}, "unknown provider 'nosuch'"),
    (["chat", "-m", "anthropic:claude-x", "hi"], {"ANTHROPIC_API_KEY": ""}, "ANTHROPIC_API_KEY"),
    (["chat", "--temperature", "-1", "hi"], {}, "temperature=-1.0 is invalid"),
    (["chat", "--top-p", "1.5", "hi"], {}, "top_p=1.5 is invalid"),
    (["chat", "--no-such-flag", "hi"], {}, "No such option: --no-such-flag"),
    (["chat", "-m", "hf:/does/not/exist", "hi"], {}, "/does/not/exist"),
    (["trace", "show", "ffffffff"], {}, "no trace or span matches 'ffffffff'"),
    (["chat", "x", "--regex", "(ab"], {}, "unclosed group"),
    (["chat", "x", "--schema", "/no/such.json"], {}, "cannot read '/no/such.json'"),
    (["chat", "x", "--json", "--choice", "a"], {}, "not --json and --choice"),
    (["chat", "x", "--grammar", __file__], {}, "grammar cannot be enforced"),
])
def test_errors_are_one_line_exit_2(args, env, needle):
    r = llmkit(*args, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in r.stderr


def test_models_lists_every_backend():
    r = llmkit("models", env={"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": ""})
    assert r.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") >= 4}
    for provider in ("local", "hf", "openai", "anthropic", "gemini", "cohere", "ollama", "vllm", "openrouter"):
        assert provider in rows
    assert "yes" in rows["openai"] and "no" in rows["anthropic"] and "ANTHROPIC_API_KEY" in rows["anthropic"]
