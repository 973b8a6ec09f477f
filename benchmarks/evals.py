"""Eval throughput: llmkit's suite runner at concurrency 1 vs 16, its cached re-run, and inspect-ai as the peer, in one run.

A generated suite of --cases cases (one prompt, one model, an `icontains` assertion each) runs
against a loopback OpenAI-compatible server in this process that answers every
`POST /v1/chat/completions` after --delay seconds (a model with fixed latency and no compute, so
the wall time is the runner's scheduling, not the model). The fake model knows every item's code
except every fifth one, so 80% of the cases pass: each runner must grade them the same way.

  llmkit      c=1, cache off   the serial baseline (~cases x delay)
  llmkit      c=16, cache off  target: >= 10x faster than c=1 (16x is the ideal)
  llmkit      c=16, cold       cache on and empty (a temporary LLMKIT_HOME), fills it
  llmkit      c=16, re-run     the same suite again: every answer from the cache, 0 requests
  inspect-ai  c=1 and c=16     the same prompts and targets through `inspect_ai.eval()` with its
                               OpenAI provider, `generate()` and the `includes()` scorer,
                               `max_connections` = c, no display, logs in the temporary dir

Wall times are measured around the whole call (`run_suite`, `eval()`), so each tool's per-run
setup counts; both get one small warm-up run first so imports and first connections do not.

    python benchmarks/evals.py [--cases 200] [--delay 0.05] [--no-peer]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROMPT = "What is the code of item {n}? Answer in one sentence."


# --- the fake model ----------------------------------------------------------------------------------

def code(n: int) -> str:
    return f"C{n:04d}"


def answer(prompt: str) -> str:
    """Knows every item's code except every fifth one's (so 20% of the cases fail)."""
    m = re.search(r"item (\d+)", prompt)
    n = int(m.group(1)) if m else 0
    return "I do not know." if n % 5 == 0 else f"The code of item {n} is {code(n)}."


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # 16 clients connect at once: the default listen backlog of 5 drops SYNs (1 s retry)


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 that answers chat completions after `delay` seconds."""

    def __init__(self, delay: float):
        self.requests = 0
        self.in_flight = self.peak = 0  # requests being answered now / at most since the last reset
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real provider: clients reuse connections
            disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK adds ~40 ms

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                with lock:
                    outer.requests += 1
                    outer.in_flight += 1
                    outer.peak = max(outer.peak, outer.in_flight)
                time.sleep(delay)
                with lock:
                    outer.in_flight -= 1
                content = body["messages"][-1]["content"]
                if isinstance(content, list):  # content parts (inspect-ai may send them)
                    content = " ".join(p.get("text", "") for p in content)
                self._send(200, {
                    "id": f"chatcmpl-{outer.requests}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer(content)}}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# --- the suite -----------------------------------------------------------------------------------------

def write_suite(root: Path, url: str, ns: list[int]) -> Path:
    """`suite.yaml` + `cases.jsonl` under `root`: one case per item, `icontains` its code."""
    (root / "cases.jsonl").write_text("".join(
        json.dumps({"description": f"item {n}", "vars": {"n": n},
                    "assert": [{"type": "icontains", "value": code(n).lower()}]}) + "\n" for n in ns))
    path = root / "suite.yaml"
    path.write_text(f"""description: item codes
prompts:
  - "{PROMPT.format(n='{{n}}')}"
models:
  - spec: openai:fake
    label: fake
    options: {{base_url: "{url}/v1", api_key: sk-test, max_retries: 0}}
sampling: {{temperature: 0, max_tokens: 16}}
tests:
  - file: cases.jsonl
""")
    return path


# --- the runners ---------------------------------------------------------------------------------------

def run_llmkit(srv: FakeServer, suite, concurrency: int, cache: bool) -> dict:
    from llmkit.evals import run_suite

    before, srv.peak = srv.requests, 0
    t0 = time.perf_counter()
    run = run_suite(suite, concurrency=concurrency, cache=cache, progress=False)
    wall = time.perf_counter() - t0
    return {"wall": wall, "requests": srv.requests - before, "peak": srv.peak, "passed": sum(r.passed for r in run.rows),
            "n": len(run.rows), "errors": sum(bool(r.output.error) for r in run.rows), "calls": run.calls}


def run_inspect(srv: FakeServer, ns: list[int], concurrency: int, log_dir: Path) -> dict:
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    task = Task(dataset=[Sample(input=PROMPT.format(n=n), target=code(n).lower(), id=n) for n in ns],
                solver=generate(), scorer=includes())
    before, srv.peak = srv.requests, 0
    t0 = time.perf_counter()
    log, = inspect_eval(task, model="openai/fake", model_base_url=srv.url + "/v1",
                        model_args={"responses_api": False},  # the loopback speaks chat completions only
                        max_connections=concurrency, display="none", log_dir=str(log_dir),
                        temperature=0, max_tokens=16, max_retries=0)
    wall = time.perf_counter() - t0
    if log.status != "success":
        raise RuntimeError(f"inspect-ai eval ended {log.status}: {log.error.message if log.error else '?'}")
    scores = [s.scores["includes"].value for s in log.samples]
    return {"wall": wall, "requests": srv.requests - before, "peak": srv.peak, "passed": sum(v == "C" for v in scores),
            "n": len(scores), "errors": sum(s.error is not None for s in log.samples)}


def inspect_version() -> str | None:
    try:
        from importlib.metadata import version

        import inspect_ai  # noqa: F401
        return version("inspect-ai")
    except ImportError:
        return None


# --- report --------------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200, help="cases in the generated suite")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds the fake server takes per answer")
    ap.add_argument("--concurrency", type=int, default=16, help="the parallel level compared with 1")
    ap.add_argument("--no-peer", action="store_true", help="skip inspect-ai")
    args = ap.parse_args()
    c = args.concurrency

    tmp = Path(tempfile.mkdtemp(prefix="llmkit-bench-evals-"))
    os.environ["LLMKIT_HOME"] = str(tmp / "home")  # an empty cache; never the user's ~/.llmkit
    os.environ["OPENAI_API_KEY"] = "sk-test"       # inspect-ai's provider wants one; it goes only to the loopback
    version = None if args.no_peer else inspect_version()

    from llmkit.evals import load_suite

    ns = list(range(1, args.cases + 1))
    rows = []
    with FakeServer(args.delay) as srv:
        (tmp / "suite").mkdir()
        suite = load_suite(write_suite(tmp / "suite", srv.url, ns))
        (tmp / "warm").mkdir()
        warm = load_suite(write_suite(tmp / "warm", srv.url, [10_001, 10_002]))  # items outside the suite
        run_llmkit(srv, warm, 2, cache=False)
        rows.append(("llmkit", 1, "off", run_llmkit(srv, suite, 1, cache=False)))
        rows.append(("llmkit", c, "off", run_llmkit(srv, suite, c, cache=False)))
        rows.append(("llmkit", c, "cold", run_llmkit(srv, suite, c, cache=True)))
        rows.append(("llmkit", c, "re-run", run_llmkit(srv, suite, c, cache=True)))
        if version:
            run_inspect(srv, [10_001, 10_002], 2, tmp / "inspect-logs")
            for conc in (1, c):
                rows.append((f"inspect-ai {version}", conc, "-", run_inspect(srv, ns, conc, tmp / "inspect-logs")))

    print(f"evals: {args.cases} cases x 1 prompt x 1 model, loopback OpenAI-compatible server answering "
          f"after {args.delay * 1000:.0f} ms, {os.cpu_count()} CPUs")
    print(f"{'runner':<20}{'conc':>5}{'cache':>8}{'wall s':>9}{'requests':>10}{'peak':>6}{'passed':>10}{'errors':>8}{'cases/s':>9}")
    for name, conc, cache, r in rows:
        print(f"{name:<20}{conc:>5}{cache:>8}{r['wall']:>9.2f}{r['requests']:>10}{r['peak']:>6}{r['passed']:>6}/{r['n']:<3}"
              f"{r['errors']:>8}{r['n'] / r['wall']:>9.0f}")
    print(f"{'(ideal: cases x delay / conc)':<33}{args.cases * args.delay:>9.2f}  at c=1, "
          f"{args.cases * args.delay / c:.2f} at c={c}")

    by = {(n, conc, cache): r for n, conc, cache, r in rows}
    serial, par, cold, cached = (by[("llmkit", 1, "off")], by[("llmkit", c, "off")],
                                 by[("llmkit", c, "cold")], by[("llmkit", c, "re-run")])
    s = serial["wall"] / par["wall"]
    print(f"llmkit c={c} / c=1 speedup = {s:.1f}x  (target >= 10, ideal {c})  {verdict(s >= 10)}")
    print(f"llmkit cached re-run: {cached['wall']:.2f} s, {cached['requests']} requests "
          f"({cached['wall'] / cold['wall'] * 100:.0f}% of the cold run's {cold['wall']:.2f} s)  "
          f"{verdict(cached['requests'] == 0 and cached['passed'] == cold['passed'])}")
    same = len({r["passed"] for *_, r in rows}) == 1
    print(f"every run grades the same: {'yes' if same else 'no'} "
          f"({', '.join(sorted({str(r['passed']) for *_, r in rows}))} passed)  {verdict(same)}")
    if version:
        peer = {conc: by[(f"inspect-ai {version}", conc, "-")] for conc in (1, c)}
        for conc, mine in ((1, serial), (c, par)):
            print(f"llmkit / inspect-ai wall at c={conc} = {mine['wall'] / peer[conc]['wall']:.2f}x  (below 1: llmkit faster)")
        print(f"(inspect-ai c={c} / c=1 speedup = {peer[1]['wall'] / peer[c]['wall']:.1f}x)")
    elif not args.no_peer:
        print("inspect-ai is not installed (pip install -e '.[bench]'): peer skipped")
    shutil.rmtree(tmp, ignore_errors=True)  # the suite, the cache, inspect-ai's logs


if __name__ == "__main__":
    main()
