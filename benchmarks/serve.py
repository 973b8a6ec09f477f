"""Serving throughput and latency: `llmkit serve` against llama.cpp's own servers, in one run (issue 3).

Each server is started as a subprocess on the embedded SmolLM2-135M-Instruct GGUF with 2 threads,
fed the same streaming `POST /v1/completions` requests (a pre-rendered chat prompt, greedy,
128 new tokens) by asyncio + httpx clients at concurrency 1, 4 and 16, then stopped:

  llama-server            llama.cpp's C++ server, 16 slots, continuous batching  — the real peer
  llama_cpp.server        llama-cpp-python's server; serialises requests          — the Python baseline
  llmkit                  `llmkit serve`, llmkit's continuous-batching engine

Reported per server and concurrency: aggregate tokens/s (all tokens / wall time of the level) and
p50/p99 time-to-first-token (first streamed chunk with text). In the same run, llama.cpp's
prompt-processing rate (a 512-token prefill through llama-cpp-python) gives the compute ceiling
for batched decoding on this CPU. Targets (issue 3), printed with OK/MISS:
  llmkit c16 tokens/s ≥ 1.0× llama-server and ≥ 0.8× the prefill ceiling
  llmkit TTFT p50 ≤ llama-server's (at every concurrency measured)
  llmkit c1 tokens/s ≥ 0.95× llama-server
Second part: prompt-lookup speculation in `llmkit serve` (`--speculative ngram` vs `off`) on an
input-grounded task (repeat / lightly edit a given paragraph), greedy, one request at a time:
≥ 1.5× decode tokens/s (after the first token: the prefill costs both modes the same) with
identical output; the end-to-end ratio is printed beside it.

Every request is asked for exactly --tokens tokens: the body carries `ignore_eos` (llama-server,
vLLM) and `min_tokens` (llama_cpp.server, vLLM). A server that ignores both may stop early, so
tokens/s always uses the tokens actually streamed (the `usage` of the last chunk when a server sends
it, else one token per text chunk) and the table shows the min-max tokens per request.

llama-server is built once outside the repo by benchmarks/build_llama_server.sh (called here when
the binary is missing; ~11 min on 2 cores), which also installs llama_cpp.server's extra
dependencies into the same cache (they are not llmkit dependencies).

    python benchmarks/serve.py                                   # everything, ~12 min here (quiet machine)
    python benchmarks/serve.py --requests 16 --concurrency 1,16 --only llama-server,llmkit
    python benchmarks/serve.py --speculative                     # only the speculation part
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("LLMKIT_BENCH_CACHE", Path.home() / ".cache" / "llmkit-bench"))
SERVERS = ("llama-server", "llama_cpp.server", "llmkit")
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # the template's default
TOPICS = ["a dragon who learns to bake bread", "a lighthouse keeper and a lost whale", "a robot that collects stamps",
          "two rival chess clubs in a small town", "a city built on the back of a turtle",
          "a girl who can talk to rivers", "the last train across the desert", "a cat elected mayor"]
PARAGRAPHS = [  # input-grounded task: the answer is (almost) a copy of the input, what prompt lookup exploits
    ("The river rose quickly after three days of rain. By the morning of the fourth day, the bridge near the mill "
    "was under water, and the farmers on the east bank could not reach the market. The mayor sent two boats to "
    "carry bread, milk and medicine across, and the school stayed closed until the water went down."),
    ("Our team moved the build servers to a new data centre last weekend. The move took eleven hours instead of the "
    "planned six, because two racks arrived without power cables. All services were back by Sunday evening, and no "
    "customer data was lost. Next time we will check every crate before the trucks leave."),
    ("Bake the bread at two hundred degrees for thirty minutes, then turn the loaf over and bake it for ten more "
    "minutes. Let it cool on a rack for at least an hour before you cut it, or the inside will be sticky. Keep it "
    "in a paper bag, not in plastic, so the crust stays crisp."),
    ("The museum opens at nine in the morning and closes at six in the evening, every day except Monday. Tickets "
    "cost twelve euros for adults and five for children. The new exhibition about ancient ships is on the second "
    "floor, and guided tours start every hour from the main hall."),
]
EDITS = ["Repeat the following paragraph exactly, word for word.",
         "Copy the following paragraph, but replace every number word with digits. Change nothing else."]


# --- prompts ---------------------------------------------------------------------------------------

class Prompts:
    """Renders chat prompts with the GGUF's own template and counts tokens with its vocab.

    Requests go to `/v1/completions` with the rendered text, so all three servers read exactly the
    same tokens (no server-side template differences).
    """

    def __init__(self, gguf: Path):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.vocab = Llama(str(gguf), vocab_only=True, verbose=False)
        meta = self.vocab.metadata
        eos, bos = (self.vocab.detokenize([t], special=True).decode()
                    for t in (self.vocab.token_eos(), self.vocab.token_bos()))
        self._fmt = Jinja2ChatFormatter(meta["tokenizer.chat_template"], eos_token=eos, bos_token=bos)

    def chat(self, user: str) -> str:
        return self._fmt(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]).prompt

    def count(self, text: str) -> int:
        return len(self.vocab.tokenize(text.encode(), add_bos=False, special=True))


def story_prompts(p: Prompts, n: int, level: int) -> list[str]:
    """n distinct long-story prompts; `level` shifts them so no level replays an earlier level's prompts."""
    return [p.chat(f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}. Part {level * n + i + 1}.")
            for i in range(n)]


def grounded_prompts(p: Prompts) -> list[str]:
    return [p.chat(f"{edit}\n\n{para}") for para in PARAGRAPHS for edit in EDITS]


# --- the prompt-processing ceiling -------------------------------------------------------------------

def prefill_ceiling(gguf: Path, threads: int, n: int = 512, repeats: int = 3) -> float:
    """Tokens/s of one n-token prefill through llama-cpp-python (median of repeats).

    A prefill is one big batched matmul per layer: the most tokens/s this CPU gets out of llama.cpp,
    so batched decoding of many sequences can approach it but not pass it.
    """
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_ctx=n + 64, n_batch=n, n_ubatch=n, n_threads=threads, n_threads_batch=threads,
                verbose=False)
    text = " ".join(PARAGRAPHS) * 8
    tokens = llm.tokenize(text.encode())[:n]
    assert len(tokens) == n, "the sample text is too short for the prefill"
    rates = []
    for i in range(repeats + 1):  # the first is a warm-up (page faults, thread start)
        llm.reset()  # n_past = 0: Llama.eval drops the old KV cells and prefills from scratch
        t0 = time.perf_counter()
        llm.eval(tokens)
        if i:
            rates.append(n / (time.perf_counter() - t0))
    del llm
    return statistics.median(rates)


# --- servers -----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.cache
def llama_server_binary() -> Path:
    """The binary built by build_llama_server.sh, which builds it first when missing (once, ~11 min here)."""
    out = subprocess.run(["bash", str(HERE / "build_llama_server.sh")], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHON": sys.executable}, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def llmkit_flags() -> set[str]:
    """The flags `llmkit serve --help` lists, or an empty set when there is no `serve` command yet."""
    exe = Path(sys.executable).parent / "llmkit"
    out = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, check=False,
                         env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    if out.returncode != 0:
        return set()
    return {w.strip(",.[]()") for w in out.stdout.split() if w.startswith("--")}


def server_argv(name: str, port: int, gguf: Path, threads: int, slots: int, slot_ctx: int,
                speculative: str | None = None, flags: set[str] = frozenset()) -> tuple[list[str], dict]:
    """Command line and extra environment that start `name` on 127.0.0.1:port."""
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if name == "llama-server":
        # -c is split evenly across the -np slots; continuous batching is llama-server's default.
        return [str(llama_server_binary()), "-m", str(gguf), "-np", str(slots), "-c", str(slots * slot_ctx),
                "-t", str(threads), "-tb", str(threads), "--no-webui", *host], {}
    if name == "llama_cpp.server":
        # n_threads defaults to cpu_count // 2 there, so both thread counts are set. Its extra
        # dependencies (sse-starlette, starlette-context, pydantic-settings) live in the bench cache.
        deps = CACHE / "llama-cpp-server-deps"
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(deps), os.environ.get("PYTHONPATH")]))}
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads", str(threads),
                "--n_threads_batch", str(threads), "--n_ctx", str(max(2048, slot_ctx)),
                "--interrupt_requests", "False", *host], env
    argv = [str(Path(sys.executable).parent / "llmkit"), "serve", *host]
    # Passed only when `llmkit serve --help` lists them, so the script runs against older builds too.
    for flag, value in (("--max-concurrency", slots), ("--threads", threads)):
        if flag in flags:
            argv += [flag, str(value)]
    if speculative is not None:
        argv += ["--speculative", speculative]
    return argv, {}


@contextlib.contextmanager
def running(name: str, argv: list[str], env: dict, port: int, timeout: float = 180.0):
    """Start a server, wait until it answers, yield its base URL, stop it (SIGTERM, then SIGKILL)."""
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a full, unread pipe would stall the server
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                start_new_session=True)  # own process group: a Ctrl-C here reaches us, not it
        try:
            deadline = time.monotonic() + timeout
            while not ready(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = "".join(log.readlines()[-15:])
                    why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready in {timeout} s"
                    raise RuntimeError(f"{name} {why}: {' '.join(argv)}\n{tail}")
                time.sleep(0.5)
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # graceful: uvicorn and llama-server both exit on it
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def ready(url: str) -> bool:
    """/health answers 200 (llama-server says 503 while loading); servers without it: /v1/models."""
    try:
        r = httpx.get(url + "/health", timeout=2)
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return httpx.get(url + "/v1/models", timeout=2).status_code == 200
    except httpx.HTTPError:
        pass
    return False


# --- clients -----------------------------------------------------------------------------------------

@dataclass
class Result:
    ttft: float         # seconds from sending the request to the first chunk with text
    tokens: int         # tokens generated (usage when the server sends it, else text chunks)
    text: str
    end: float          # perf_counter at the last byte
    decode_s: float     # seconds from the first text chunk to the last byte: decoding alone, no prefill
    from_usage: bool = False


@dataclass
class Level:
    concurrency: int
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return sum(r.tokens for r in self.results) / self.wall

    def ttft(self, q: float) -> float:
        """Nearest-rank percentile of TTFT in seconds (p99 of 64 requests is the slowest one)."""
        xs = sorted(r.ttft for r in self.results)
        return xs[max(0, math.ceil(q * len(xs)) - 1)]


class BodyRejected(Exception):
    pass


async def complete(client: httpx.AsyncClient, url: str, body: dict) -> Result:
    """One streaming /v1/completions request, timed from send to first text and to the end."""
    t0 = time.perf_counter()
    first, chunks, parts, usage = None, 0, [], None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code >= 400:
            raise BodyRejected(f"HTTP {r.status_code}: {(await r.aread()).decode()[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"stream error: {event['error']}")
            text = "".join(c.get("text") or "" for c in event.get("choices") or [])
            if text:
                first = first or time.perf_counter()
                chunks += 1
                parts.append(text)
            usage = event.get("usage") or usage
    end = time.perf_counter()
    first = first or end
    if usage and usage.get("completion_tokens"):
        return Result(first - t0, usage["completion_tokens"], "".join(parts), end, end - first, True)
    return Result(first - t0, chunks, "".join(parts), end, end - first)


async def run_level(url: str, prompts: list[str], concurrency: int, body: dict) -> Level:
    """All prompts through `concurrency` client tasks pulling from one queue (a closed loop)."""
    queue: asyncio.Queue = asyncio.Queue()
    for i, p in enumerate(prompts):
        queue.put_nowait((i, p))
    level = Level(concurrency, [None] * len(prompts))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits) as client:
        async def worker():
            while not queue.empty():
                i, p = queue.get_nowait()
                level.results[i] = await complete(client, url, {**body, "prompt": p})

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        level.wall = time.perf_counter() - t0
    return level


async def accepted_body(url: str, body: dict, prompt: str) -> tuple[dict, list[str]]:
    """Warm the server up with a short request; drop the optional fields a server rejects (4xx).

    The first body is the full one; each next one leaves out more of the fields not every
    OpenAI-compatible server knows. Returns the body that worked and the fields left out.
    """
    optional = [(), ("min_tokens",), ("ignore_eos",), ("min_tokens", "ignore_eos"),
                ("min_tokens", "ignore_eos", "stream_options")]
    errors = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(None)) as client:
        for drop in optional:
            if any(k not in body for k in drop):
                continue
            trial = {k: v for k, v in body.items() if k not in drop}
            try:
                short = {"max_tokens": 8} | ({"min_tokens": 8} if "min_tokens" in trial else {})  # min <= max
                await complete(client, url, {**trial, "prompt": prompt, **short})
                return trial, list(drop)
            except BodyRejected as e:
                errors.append(str(e))
    raise RuntimeError("the server rejects every form of the benchmark request:\n" + "\n".join(errors))


def served_model(url: str) -> str:
    """The model id the server lists first in /v1/models (each names the same GGUF differently)."""
    return httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"]


def base_body(model: str, tokens: int, force_length: bool) -> dict:
    body = {"model": model, "max_tokens": tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
    if force_length:  # make every request produce `tokens` tokens, each server by its own field
        body |= {"ignore_eos": True, "min_tokens": tokens}
    return body


# --- the two parts -----------------------------------------------------------------------------------

def bench_throughput(name, args, gguf, p: Prompts, flags) -> tuple[list[Level], list[str]]:
    levels = [story_prompts(p, args.requests, k) for k in range(len(args.concurrency))]
    slot_ctx = 256 * math.ceil((max(p.count(x) for lv in levels for x in lv) + args.tokens + 16) / 256)
    port = free_port()
    argv, env = server_argv(name, port, gguf, args.threads, max(args.concurrency), slot_ctx, flags=flags)
    notes = []
    with running(name, argv, env, port) as url:
        body = base_body(served_model(url), args.tokens, force_length=True)
        body, dropped = asyncio.run(accepted_body(url, body, p.chat("Hello!")))
        if dropped:
            notes.append(f"{name} rejected {', '.join(dropped)}; sent without")
        out = []
        for c, prompts in zip(args.concurrency, levels):
            out.append(asyncio.run(run_level(url, prompts, c, body)))
            print(f"  {name:<18} c={c:<3} {out[-1].tokens_per_s:7.1f} tok/s  {out[-1].wall:6.1f} s", flush=True)
    if not all(r.from_usage for lv in out for r in lv.results):
        notes.append(f"{name} sends no usage in the stream: tokens counted as text chunks (one token each)")
    return out, notes


def bench_speculative(args, gguf, p: Prompts, flags) -> dict:
    """Same grounded prompts, greedy, one at a time, through `llmkit serve` with speculation off, then on."""
    prompts = grounded_prompts(p)
    slot_ctx = 256 * math.ceil((max(p.count(x) for x in prompts) + args.tokens + 16) / 256)
    runs = {}
    for mode in ("off", "ngram"):
        port = free_port()
        argv, env = server_argv("llmkit", port, gguf, args.threads, 1, slot_ctx, speculative=mode, flags=flags)
        with running(f"llmkit-spec-{mode}", argv, env, port) as url:
            body = base_body(served_model(url), args.tokens, force_length=False)  # the copy ends where it ends
            body, _ = asyncio.run(accepted_body(url, body, prompts[0]))
            runs[mode] = asyncio.run(run_level(url, prompts, 1, body))
    texts = {m: [r.text for r in lv.results] for m, lv in runs.items()}
    out = {"identical": texts["off"] == texts["ngram"], "n": len(prompts),
           "differ": [(i, a, b) for i, (a, b) in enumerate(zip(texts["off"], texts["ngram"])) if a != b]}
    for mode, lv in runs.items():
        # Tokens counted with the vocab: a server that streams several accepted draft tokens in one
        # chunk and sends no usage would otherwise be under-counted.
        n = sum(p.count(t) for t in texts[mode])
        # Speculation changes decoding only; the prefill (the paragraph) costs both modes the same,
        # so the target is on decode tokens/s: tokens after the first / time after the first.
        out[mode] = {"tokens": n, "e2e": n / lv.wall,
                     "decode": (n - len(lv.results)) / sum(r.decode_s for r in lv.results)}
    return out


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def report_throughput(rows: dict[str, list[Level]], ceiling: float, notes: list[str], args, model: str):
    print(f"\nserve: {model}, {args.requests} requests x {args.tokens} new tokens per level, greedy, "
          f"{args.threads} threads, streaming /v1/completions")
    print(f"prompt-processing ceiling (llama.cpp, 512-token prefill): {ceiling:.1f} tok/s")
    print(f"{'server':<18}{'conc':>5}{'tokens/s':>10}{'TTFT p50 ms':>13}{'TTFT p99 ms':>13}{'tokens/req':>12}")
    for name, levels in rows.items():
        for lv in levels:
            counts = [r.tokens for r in lv.results]
            span = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
            print(f"{name:<18}{lv.concurrency:>5}{lv.tokens_per_s:>10.1f}{lv.ttft(0.5) * 1000:>13.0f}"
                  f"{lv.ttft(0.99) * 1000:>13.0f}{span:>12}")
    for note in notes:
        print(f"note: {note}")

    by = {name: {lv.concurrency: lv for lv in levels} for name, levels in rows.items()}
    top, one = max(args.concurrency), min(args.concurrency)  # 16 and 1 in the run
    if "llmkit" in by and "llama-server" in by:
        mine, peer = by["llmkit"], by["llama-server"]
        r = mine[top].tokens_per_s / peer[top].tokens_per_s
        print(f"llmkit / llama-server tokens/s at c={top} = {r:.2f}x  (target >= 1.00)  {verdict(r >= 1.0)}")
        r = mine[top].tokens_per_s / ceiling
        print(f"llmkit c={top} tokens/s / prefill ceiling = {r:.2f}x  (target >= 0.80)  {verdict(r >= 0.8)}")
        for c in args.concurrency:
            r = mine[c].ttft(0.5) / peer[c].ttft(0.5)
            print(f"llmkit / llama-server TTFT p50 at c={c} = {r:.2f}x  (target <= 1.00)  {verdict(r <= 1.0)}")
        r = mine[one].tokens_per_s / peer[one].tokens_per_s
        print(f"llmkit / llama-server tokens/s at c={one} = {r:.2f}x  (target >= 0.95)  {verdict(r >= 0.95)}")
    else:
        print("llmkit or llama-server not measured: targets not checked")
    if "llama-server" in by:  # context for the ceiling target: how close the C++ peer itself gets
        r = by["llama-server"][top].tokens_per_s / ceiling
        print(f"(reference: llama-server c={top} tokens/s / prefill ceiling = {r:.2f}x)")


def report_speculation(spec: dict, args):
    print(f"\nspeculation: llmkit serve, {spec['n']} grounded requests (repeat / edit a paragraph), greedy, "
          f"concurrency 1, up to {args.tokens} new tokens each")
    print(f"{'--speculative':<16}{'tokens':>8}{'decode tok/s':>14}{'end-to-end tok/s':>18}")
    for mode in ("off", "ngram"):
        m = spec[mode]
        print(f"{mode:<16}{m['tokens']:>8}{m['decode']:>14.1f}{m['e2e']:>18.1f}")
    r = spec["ngram"]["decode"] / spec["off"]["decode"]
    print(f"ngram / off decode tokens/s = {r:.2f}x  (target >= 1.50)  {verdict(r >= 1.5)}")
    r = spec["ngram"]["e2e"] / spec["off"]["e2e"]
    print(f"(end-to-end, prefill included: {r:.2f}x)")
    same = "yes" if spec["identical"] else f"no ({len(spec['differ'])} of {spec['n']} differ)"
    print(f"identical greedy output: {same}  {verdict(spec['identical'])}")
    for i, off, on in spec["differ"][:3]:  # where they part, to start the hunt
        k = next((j for j, (x, y) in enumerate(zip(off, on)) if x != y), min(len(off), len(on)))
        print(f"  request {i} parts at char {k}: off {off[max(0, k - 30):k + 30]!r}")
        print(f"  {' ' * len(f'request {i} parts at char {k}:')} on  {on[max(0, k - 30):k + 30]!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per request")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16],
                    help="comma-separated client concurrency levels; the largest sets the server slots")
    ap.add_argument("--only", type=lambda s: s.split(","), default=list(SERVERS),
                    help=f"comma-separated subset of {','.join(SERVERS)}")
    ap.add_argument("--speculative", action="store_true", help="run only the speculation part (llmkit)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for every server")
    args = ap.parse_args()
    unknown = set(args.only) - set(SERVERS)
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(SERVERS)}")

    from llmkit.models import embedded_gguf

    gguf = embedded_gguf()
    p = Prompts(gguf)
    flags = llmkit_flags() if "llmkit" in args.only else set()
    if "llmkit" in args.only and not flags:
        print("llmkit: `llmkit serve` does not exist yet (`llmkit serve --help` fails); skipping llmkit")

    rows, notes, ceiling = {}, [], None
    if not args.speculative:
        ceiling = prefill_ceiling(gguf, args.threads)  # before any server runs, so nothing competes for the cores
        for name in args.only:
            if name == "llmkit" and not flags:
                continue
            rows[name], extra = bench_throughput(name, args, gguf, p, flags)
            notes += extra

    spec = None
    if "llmkit" in args.only and flags:
        if "--speculative" in flags:
            spec = bench_speculative(args, gguf, p, flags)
        else:
            print("llmkit: `llmkit serve` has no --speculative flag yet; skipping the speculation part")

    if rows:
        report_throughput(rows, ceiling, notes, args, gguf.name)
    if spec:
        report_speculation(spec, args)

if __name__ == "__main__":
    main()
