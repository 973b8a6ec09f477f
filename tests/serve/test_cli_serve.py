"""``llmkit serve`` as a user runs it: flags generated from ServeConfig, a gateway to a scripted
upstream, the key from LLMKIT_API_KEY, and a clean exit on Ctrl-C."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from conftest import completion
from loopback import Loopback, Reply


def llmkit(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "llmkit", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, **kw)


def test_serve_flags_come_from_serve_config():
    from llmkit.serve import ServeConfig

    r = llmkit("serve", "--help")
    assert r.returncode == 0
    for name in ServeConfig.model_fields:
        assert "--" + name.replace("_", "-") in r.stdout
    assert "(default: 8000)" in r.stdout and "-m" in r.stdout


def test_bad_serve_flag_is_one_line_exit_2():
    r = llmkit("serve", "--max-concurrency", "0")
    assert r.returncode == 2 and r.stderr.strip() == "error: max_concurrency=0 is invalid: Input should be greater than or equal to 1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_a_gateway_with_the_key_from_the_environment():
    with Loopback(lambda req: Reply(200, completion("from upstream"))) as up:
        port = free_port()
        env = {**os.environ, "OPENAI_BASE_URL": up.url + "/v1", "OPENAI_API_KEY": "sk-upstream-key",
               "LLMKIT_API_KEY": "sk-clients-key"}
        p = subprocess.Popen([sys.executable, "-m", "llmkit", "serve", "-m", "openai:gpt-x", "--port", str(port),
                              "--model-name", "gw"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert p.poll() is None and time.monotonic() < deadline, "llmkit serve did not come up"
                try:
                    if httpx.get(url + "/health").json() == {"status": "ok", "model": "gw"}:
                        break
                except httpx.ConnectError:
                    time.sleep(0.2)
            ask = lambda **h: httpx.post(url + "/v1/chat/completions", headers=h,
                                         json={"model": "gw", "messages": [{"role": "user", "content": "hi"}]})
            assert ask().status_code == 401
            r = ask(authorization="Bearer sk-clients-key")
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "from upstream"
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
    assert p.returncode in (0, 130), err
    assert f"at http://127.0.0.1:{port}" in err and "key required" in err
    assert "Traceback" not in err
    assert up.requests[0].headers["authorization"] == "Bearer sk-upstream-key"
