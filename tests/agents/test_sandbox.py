"""agents/sandbox.py: normal code runs; network, writes outside, processes, memory and time are
stopped. Each escape is tried twice where it can be: with the audit hook (a clear refusal), and with
the hook off, to show the kernel layer beneath also holds (skipped where this machine lacks it).

Run with ``-s`` to see the layers in force here."""
import os
import socket
import sys
import threading
import time

import pytest

from llmkit.agents.sandbox import LAYERS, isolation, run_python
from llmkit.core.errors import ConfigError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox's layers are Linux's")


def kernel_layer(*names):
    """Skip unless one of the named kernel layers is in force on this machine."""
    here = isolation()
    if not any(n in here for n in names):
        pytest.skip(f"none of {names} is available here (layers: {here})")


def test_layers_here(capsys):
    layers = isolation()
    with capsys.disabled():
        print(f"\nsandbox layers here (uid {os.geteuid()}): {', '.join(layers)}")
    assert {"rlimits", "audit"} <= set(layers) <= set(LAYERS)


def test_normal_code_runs_prints_imports_and_writes_in_its_directory():
    code = """
import asyncio, collections, datetime, decimal, json, math, os, re, sqlite3, statistics
from concurrent.futures import ThreadPoolExecutor
print(json.dumps({"fact": math.factorial(20), "mean": statistics.mean([1, 2, 3, 4])}))
print(asyncio.run(asyncio.sleep(0, "async ok")))
print(sum(ThreadPoolExecutor(4).map(abs, [-1, -2, -3])))
with open("notes.txt", "w") as f:
    f.write("kept in the sandbox")
print(open("notes.txt").read(), os.listdir("."))
print(sqlite3.connect(":memory:").execute("select 2 + 3").fetchone()[0])
print("cwd", os.getcwd())
"""
    r = run_python(code, timeout=10)
    assert r.ok, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == '{"fact": 2432902008176640000, "mean": 2.5}'
    assert lines[1:5] == ["async ok", "6", "kept in the sandbox ['notes.txt']", "5"]
    workdir = lines[5].removeprefix("cwd ")
    assert not os.path.exists(workdir)  # the temporary directory is gone afterwards


def test_errors_and_exit_codes_come_back():
    r = run_python("print('before')\n1 / 0")
    assert (r.exit_code, r.reason, r.stdout) == (1, None, "before\n")
    assert 'File "main.py", line 2' in r.stderr and "ZeroDivisionError" in r.stderr
    assert "sandbox.py" not in r.stderr  # the sandbox's own frames are not shown
    assert run_python("import sys; sys.exit(3)").exit_code == 3
    assert "SyntaxError" in run_python("def (").stderr


def test_environment_has_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-456")
    r = run_python("import os; print(dict(os.environ))")
    assert r.ok
    assert "secret" not in r.stdout
    assert set(eval(r.stdout)) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"}


@pytest.fixture
def server():
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    s.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = s.accept()
            except OSError:
                continue
            accepted.append(conn.recv(100))
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1], accepted
    stop.set()
    t.join()
    s.close()


def test_host_can_reach_the_server(server):
    port, accepted = server
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"from the host")
    time.sleep(0.3)
    assert accepted == [b"from the host"]  # so a silent server below means the sandbox was stopped


@pytest.mark.parametrize("audit", [True, False], ids=["audit-hook", "kernel-only"])
def test_socket_to_a_loopback_server_fails_and_is_reported(server, audit):
    if not audit:
        kernel_layer("seccomp", "netns", "landlock-net")
    port, accepted = server
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\nprint('sent')"
    r = run_python(code, timeout=10, audit=audit)
    time.sleep(0.3)
    assert accepted == []
    assert r.exit_code == 1 and "sent" not in r.stdout
    if audit:
        assert r.reason == "forbidden"
        assert "network access" in r.violations[0] and "network access" in r.stderr
    else:
        assert "Error" in r.stderr  # PermissionError or OSError (unreachable), from the kernel


@pytest.mark.parametrize("audit", [True, False], ids=["audit-hook", "kernel-only"])
def test_writes_outside_its_directory_are_refused(tmp_path, audit):
    if not audit:
        kernel_layer("landlock")
    targets = [tmp_path / f"escape{i}.txt" for i in range(4)]
    (tmp_path / "victim.txt").write_text("keep me")
    code = f"""
import os, pathlib
attempts = [
    lambda: open({str(targets[0])!r}, "w").write("x"),
    lambda: pathlib.Path({str(targets[1])!r}).write_text("x"),
    lambda: os.close(os.open({str(targets[2])!r}, os.O_CREAT | os.O_WRONLY)),
    lambda: (os.symlink({str(tmp_path)!r}, "out"), open("out/escape3.txt", "w").write("x")),
    lambda: os.remove({str(tmp_path / "victim.txt")!r}),
    lambda: os.rename({str(tmp_path / "victim.txt")!r}, "stolen.txt"),
]
for attempt in attempts:
    try:
        attempt()
        print("escaped")
    except OSError as e:
        print("refused", type(e).__name__)
"""
    r = run_python(code, audit=audit)
    assert r.stdout.count("refused") == 6 and "escaped" not in r.stdout, r.stdout + r.stderr
    assert not any(t.exists() for t in targets)
    assert (tmp_path / "victim.txt").read_text() == "keep me"
    if audit:
        assert r.reason == "forbidden" and "outside the sandbox" in r.violations[0]


@pytest.mark.parametrize("audit", [True, False], ids=["audit-hook", "kernel-only"])
def test_reads_outside_are_refused(tmp_path, audit):
    if not audit:
        kernel_layer("landlock")
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    r = run_python(f"print(open({str(secret)!r}).read())", audit=audit)
    assert r.exit_code == 1 and "the host's secret" not in r.stdout
    assert "PermissionError" in r.stderr


def test_fork_bomb_is_stopped_and_the_host_is_unharmed():
    start = time.monotonic()
    r = run_python("import os\nwhile True:\n    os.fork()", timeout=5, max_processes=16)
    assert r.reason == "forbidden" and "os.fork" in r.violations[0]
    assert time.monotonic() - start < 4
    for code in ("import subprocess; subprocess.run(['true'])", "import os; os.system('true')",
                 "import multiprocessing as m; p = m.Process(target=print); p.start(); p.join()"):
        refused = run_python(code, timeout=5)
        assert refused.reason == "forbidden" and "processes" in refused.violations[0], code
    assert os.system("true") == 0  # the host still starts processes


def test_fork_bomb_without_the_audit_hook_meets_the_kernel_layers():
    kernel_layer("seccomp", "nproc")  # without either, only the timeout would stop it: not tried
    code = "import os\nfor _ in range(6):\n    os.fork()\nprint('forked')"  # at most 64 processes, bounded
    start = time.monotonic()
    r = run_python(code, timeout=5, max_processes=16, audit=False)
    assert time.monotonic() - start < 5
    assert "Errno" in r.stderr  # a fork failed: EPERM from seccomp or EAGAIN from RLIMIT_NPROC
    if "seccomp" in isolation():
        assert "forked" not in r.stdout


@pytest.mark.parametrize("code", ["x = bytearray(10 * 2**30)",                       # 10 GB at once
                                  "x = []\nwhile True:\n    x.append(bytearray(2**24))"])  # 16 MB at a time
def test_memory_limit_stops_big_allocations(code):
    r = run_python(code, memory_mb=128, timeout=10)
    assert r.reason == "memory" and r.exit_code == 1
    assert "128 MB" in r.message and "MemoryError" in r.stderr


def test_infinite_loop_times_out():
    start = time.monotonic()
    r = run_python("while True:\n    pass", timeout=1.5)
    assert r.reason == "timeout" and r.exit_code == -9
    assert "1.5 s" in r.message
    assert 1.4 < time.monotonic() - start < 5


def test_output_is_truncated():
    r = run_python("print('x' * 1_000_000)", max_output=1000)
    assert r.ok and r.truncated
    assert r.stdout.startswith("x" * 1000) and "more characters not shown" in r.stdout
    assert len(r.stdout) < 1100


@pytest.mark.parametrize("code, what", [
    ("import ctypes", "importing ctypes"),
    ("import gc; gc.get_objects()", "gc.get_objects"),
    ("import sys; sys.settrace(lambda *a: None)", "sys.settrace"),
    ("import resource; resource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "resource.setrlimit"),
    ("import os; os.kill(1, 0)", "os.kill"),
])
def test_interpreter_escape_hatches_are_refused(code, what):
    r = run_python(code)
    assert r.reason == "forbidden" and what in r.violations[0], r.stderr


def test_require_refuses_to_run_without_a_layer():
    missing = [name for name in LAYERS if name not in isolation()]
    if not missing:
        pytest.skip("every layer is available here")
    r = run_python("print('ran')", require=[missing[0]])
    assert r.reason == "refused" and missing[0] in r.message
    assert "ran" not in r.stdout
    with pytest.raises(ConfigError, match="unknown sandbox layer"):
        run_python("pass", require=["firewall"])


# --- the audit hook on its own, called in this process (not installed: it is only a function) ------

@pytest.fixture
def hook(tmp_path):
    from llmkit.agents.sandbox import _make_audit_hook

    root = tmp_path / "work"
    root.mkdir()
    r, w = os.pipe()
    yield _make_audit_hook(str(root), ["/usr"], w), root
    os.close(r)
    os.close(w)


def test_hook_and_helpers_hold_nothing_rebindable(hook):
    """No closures and no global or builtin lookups: rebinding os.path, builtins or module globals
    cannot change a decision, and a leaked frame offers nothing to rebind."""
    import dis
    import types

    fn, _ = hook
    functions = [fn] + [d for d in fn.__defaults__ if isinstance(d, types.FunctionType)]
    assert len(functions) >= 8
    for f in functions:
        assert f.__closure__ is None, f.__name__
        loads = {i.opname for i in dis.get_instructions(f)} & {"LOAD_GLOBAL", "LOAD_DEREF", "LOAD_NAME", "LOAD_CLASSDEREF"}
        assert not loads, f"{f.__name__} uses {loads}"
        for default in f.__defaults__ or ():
            assert not isinstance(default, (dict, set)), f"{f.__name__} has a mutable default {default!r}"


def test_hook_decisions(hook):
    fn, root = hook
    write = os.O_WRONLY | os.O_CREAT
    allowed = [("open", (str(root / "a.txt"), "w", write)), ("open", ("/usr/lib/x.py", "r", os.O_RDONLY)),
               ("os.remove", (str(root / "a.txt"), -1)), ("socket.__new__", (None, 1, 1, 0)),
               ("import", ("json", None, None, None, None)), ("os.kill", (os.getpid(), 0))]
    refused = [("open", ("/etc/passwd", "r", os.O_RDONLY)), ("open", ("/usr/evil", "w", write)),
               ("open", ("../x", "w", write)), ("open", ("/usr", None, os.O_RDONLY)),
               ("os.remove", ("/usr/bin/true", -1)), ("os.rename", (str(root / "a"), "/tmp/a", None, None)),
               ("os.symlink", ("/etc", str(root / "etc"), None)), ("socket.__new__", (None, 2, 1, 0)),
               ("socket.connect", (None, ("127.0.0.1", 80))), ("os.system", (b"ls",)), ("os.fork", ()),
               ("import", ("ctypes", None, None, None, None)), ("ctypes.dlopen", ("libc.so.6",)),
               ("gc.get_objects", ()), ("os.kill", (1, 9)), ("object.__setattr__", (fn, "__defaults__", ())),
               ("sqlite3.connect", ("/tmp/x.db",))]
    for event, args in allowed:
        fn(event, args)
    for event, args in refused:
        with pytest.raises(PermissionError, match="sandbox: .* is not allowed"):
            fn(event, args)
