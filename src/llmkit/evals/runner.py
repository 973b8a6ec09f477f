"""Run a suite: every model × prompt × case (× repeat), concurrently, cached, then assert.

Example:
    >>> from llmkit.evals import load_suite, run_suite
    >>> result = run_suite(load_suite("examples/evals/quickstart.yaml"))
    >>> result.passed, result.pass_rate()

Calls run on a thread pool (``Suite.concurrency`` in all, and each model's own ``concurrency``
and ``rps`` limits); a call that fails with a rate limit, an overloaded server or a 5xx is
retried with backoff, and one that still fails is recorded as an error that fails every
assertion of its case — a failure is never skipped and never a NaN. Each run is saved as JSON
under ``$LLMKIT_HOME/evals/runs/`` (written atomically) for ``llmkit eval report`` and ``compare``.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, LLMKitError, OverloadedError, ProviderError, RateLimitError
from ..core.files import atomic_write
from ..core.settings import home
from .assertions import evaluate, score_case
from .cache import Cache, key
from .suite import Case, ModelEntry, Prompt, Suite
from .types import Output, Result

RETRIES = 3  # attempts after the first, for rate limits, overload and 5xx


@dataclass
class Row:
    """One model's answer to one case under one prompt (one repeat), with its verdicts."""

    case: int
    description: str
    model: str
    prompt: str
    repeat: int
    vars: dict[str, Any]
    output: Output
    results: list[Result]
    passed: bool
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """A suite's results: ``rows``, plus what ran and how long it took."""

    id: str
    suite: str
    description: str
    models: list[str]
    prompts: list[str]
    started: float
    seconds: float
    rows: list[Row]
    calls: int = 0          # model calls made (cache misses)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def pass_rate(self, model: str | None = None) -> float:
        rows = [r for r in self.rows if model is None or r.model == model]
        return sum(r.passed for r in rows) / len(rows) if rows else 0.0

    def case_rates(self) -> dict[tuple[int, str, str], float]:
        """Pass rate of each (case, model, prompt) over its repeats: below 1 and above 0 is flaky."""
        groups: dict[tuple[int, str, str], list[bool]] = {}
        for r in self.rows:
            groups.setdefault((r.case, r.model, r.prompt), []).append(r.passed)
        return {k: sum(v) / len(v) for k, v in groups.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path | None = None) -> Path:
        path = Path(path) if path else runs_dir() / f"{self.id}.json"
        # atomic: a crash leaves the old file or the new one, never half of one
        return atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1, default=str))


def runs_dir() -> Path:
    return home() / "evals" / "runs"


def load_run(ref: str | Path) -> Run:
    """A saved run by path, by id, or by a unique id prefix (``latest`` for the newest)."""
    path = Path(ref)
    if not path.is_file():
        runs = sorted(runs_dir().glob("*.json"), key=lambda p: p.stat().st_mtime)
        hits = runs[-1:] if ref == "latest" else [p for p in runs if p.stem.startswith(str(ref))]
        if len(hits) != 1:
            raise ConfigError(f"no single saved run matches {str(ref)!r} ({len(hits)} do); runs live in {runs_dir()}")
        path = hits[0]
    try:
        data = json.loads(path.read_text())
        rows = [Row(**{**r, "output": Output(**r["output"]), "results": [Result(**x) for x in r["results"]]})
                for r in data.pop("rows")]
        return Run(**data, rows=rows)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{path} is not a saved eval run: {e}") from None


class _Limiter:
    """At most ``concurrency`` calls in flight and ``rps`` starts per second, for one model."""

    def __init__(self, concurrency: int | None, rps: float | None):
        self.sem = threading.Semaphore(concurrency) if concurrency else None
        self.interval = 1 / rps if rps else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def __enter__(self):
        if self.sem:
            self.sem.acquire()
        if self.interval:
            with self.lock:
                now = time.monotonic()
                start = max(now, self.next)
                self.next = start + self.interval
            time.sleep(max(0.0, start - now))
        return self

    def __exit__(self, *exc):
        if self.sem:
            self.sem.release()


def run_suite(suite: Suite, *, models: list[str] | None = None, repeat: int = 1, filter: str | None = None,
              concurrency: int | None = None, cache: bool = True, progress: bool = True,
              loaded: dict[str, Any] | None = None) -> Run:
    """Run ``suite`` and return its :class:`Run` (not yet saved: call ``.save()``).

    Args:
        models: model specs replacing the suite's own.
        repeat: answers per case (sampled calls use seed + i); pass rates show flakiness.
        filter: a regex over case descriptions and vars; only matching cases run.
        cache: read and write the call cache (off: every call goes to the model).
        loaded: already-loaded models by spec (tests and the server share one).
    """
    import llmkit as lk

    if not isinstance(repeat, int) or repeat < 1:
        raise ConfigError(f"repeat={repeat!r} must be a positive integer")
    entries = [ModelEntry(spec=m) for m in models] if models else suite.models
    cases = list(enumerate(suite.cases))
    if filter:
        try:
            pattern = re.compile(filter)
        except re.error as e:
            raise ConfigError(f"--filter {filter!r} is not a valid regex: {e}") from None
        cases = [(i, c) for i, c in cases if pattern.search(f"{c.description or ''} {json.dumps(c.vars)}")]
        if not cases:
            raise ConfigError(f"--filter {filter!r} matches no case")
    loaded = dict(loaded or {})
    instances = {}
    for e in entries:
        if e.spec not in loaded:
            loaded[e.spec] = lk.model(e.spec, **e.options)
        instances[e.name] = loaded[e.spec]
    judge_spec = suite.judge or "local"
    judge = loaded.get(judge_spec) if judge_spec in loaded else None
    limiters = {e.name: _Limiter(e.concurrency, e.rps) for e in entries}
    by_provider = {p: _Limiter(lim.concurrency, lim.rps) for p, lim in suite.rate_limits.items()}
    unlimited = _Limiter(None, None)
    store = Cache() if cache else None
    prompts = suite.prompts
    jobs = [(e, pi, i, c, r) for e in entries for pi in range(len(prompts)) for i, c in cases for r in range(repeat)]
    counter = {"calls": 0}
    lock = threading.Lock()

    def judge_model():
        nonlocal judge
        with lock:
            if judge is None:
                judge = loaded.get(judge_spec) or lk.model(judge_spec)
        return judge

    def one(job) -> Row:
        e, pi, i, c, r = job
        p = prompts[pi]
        messages = _render(p, c, suite)
        sampling = {**suite.sampling, **c.sampling}
        if repeat > 1 and sampling.get("temperature", 1) != 0 and "seed" not in c.sampling:
            sampling["seed"] = suite.seed + r
        k = key(e.spec, e.options, [m.model_dump() for m in messages], sampling, c.schema_, r)
        out = store.get(k) if store is not None else None
        if out is None:
            with by_provider.get(_provider(e.spec), unlimited), limiters[e.name]:
                out = _call(instances[e.name], messages, sampling, c.schema_)
            if not out.error:
                with lock:
                    counter["calls"] += 1
            if store is not None:
                store.put(k, e.spec, out)
        if e.price is not None and not out.error:  # from today's prices, cached answer or not
            out.cost = (out.input_tokens * e.price[0] + out.output_tokens * e.price[1]) / 1e6
        judged = judge_model() if any(a.type.removeprefix("not-") == "llm-rubric" and not a.judge
                                     for a in c.assert_) else None
        results = [evaluate(a, out, c.vars, judge=judged) for a in c.assert_]
        passed, score = score_case(results, c.threshold)
        return Row(case=i, description=c.description or _describe(c), model=e.name, prompt=_prompt_id(p, pi),
                   repeat=r, vars=c.vars, output=out, results=results, passed=passed, score=score, metadata=c.metadata)

    t0, started = time.perf_counter(), time.time()
    rows = _map(one, jobs, concurrency or suite.concurrency, progress)
    if store is not None:
        store.close()
    return Run(id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], suite=str(suite.path or ""),
               description=suite.description, models=[e.name for e in entries],
               prompts=[_prompt_id(p, i) for i, p in enumerate(prompts)], started=started,
               seconds=time.perf_counter() - t0, rows=rows, calls=counter["calls"])


def _map(fn, jobs: list, workers: int, progress: bool) -> list:
    """``fn`` over ``jobs`` on a thread pool, in order, with a progress bar on a terminal."""
    import sys

    show = progress and sys.stderr.isatty()
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, j) for j in jobs]
        if not show:
            return [f.result() for f in futures]
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        out = []
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=True) as bar:
            task = bar.add_task("cases", total=len(futures))
            for f in futures:
                out.append(f.result())
                bar.advance(task)
        return out


def _call(model, messages, sampling: dict[str, Any], schema: dict | None) -> Output:
    """One model call, retried on rate limits, overload and 5xx; an error becomes ``Output.error``."""
    from ..structured import JSONSchema

    delay = 1.0
    for attempt in range(RETRIES + 1):
        t0 = time.perf_counter()
        try:
            if schema is not None:
                c = model.chat(messages, constraint=JSONSchema(schema), instructions=True, **sampling)
            else:
                c = model.chat(messages, **sampling)
            return Output(text=c.text, latency_ms=(time.perf_counter() - t0) * 1000, input_tokens=c.usage.input_tokens,
                          output_tokens=c.usage.output_tokens, parsed=c.parsed)
        except (RateLimitError, OverloadedError) as e:
            last, wait = e, getattr(e, "retry_after", None) or delay
        except ProviderError as e:
            if e.status is None or e.status < 500:
                return Output(text="", error=f"{type(e).__name__}: {e}")
            last, wait = e, delay
        except LLMKitError as e:
            return Output(text=getattr(e, "text", ""), error=f"{type(e).__name__}: {e}")
        if attempt == RETRIES:
            return Output(text="", error=f"gave up after {RETRIES + 1} attempts: {type(last).__name__}: {last}")
        time.sleep(wait)
        delay *= 2


def _render(p: Prompt, c: Case, suite: Suite):
    """The messages of prompt ``p`` for case ``c`` (a missing variable names itself)."""
    import jinja2

    import llmkit as lk

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)

    def render(text: str) -> str:
        try:
            return env.from_string(text).render(**c.vars)
        except jinja2.UndefinedError as e:
            raise ConfigError(f"{suite.path}: case {c.description or c.vars!r}: the prompt uses {e.message}; "
                              f"the case's vars are {sorted(c.vars)}") from None
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"{suite.path}: prompt template error at line {e.lineno}: {e.message}") from None

    if p.template is not None:
        return [lk.user(render(p.template))]
    return [lk.core.Message(role=m["role"], content=render(m.get("content", ""))) for m in p.messages]


def _provider(spec: str) -> str:
    return spec.split(":", 1)[0] if ":" in spec else (spec or "local")


def _prompt_id(p: Prompt, i: int) -> str:
    if p.id:
        return p.id
    text = p.template if p.template is not None else (p.messages[-1].get("content", "") if p.messages else "")
    return f"p{i}: {text[:40]}"


def _describe(c: Case) -> str:
    return ", ".join(f"{k}={v}" for k, v in c.vars.items())[:80] or "(no vars)"
