"""The Evals tab: run a suite and read its report; compare two saved runs.

Run: pick a suite from ``examples/evals/`` (``quickstart.yaml`` first) or upload a YAML file
(self-contained: ``file:`` case lists are looked up beside the upload, where there are none),
optionally replace its models, and run it. The run is saved under ``$LLMKIT_HOME/evals/runs/``
like ``llmkit eval run`` does, and its HTML report (``llmkit.evals.report.html``) is shown inline
in a sandboxed iframe and saved beside it for download.

Compare: two saved runs, the cases that regressed and improved (``report.compare``).

Models the suite names are loaded through ``ctx.model(spec)``, so the served model is reused
rather than loaded twice.
"""
from __future__ import annotations

import threading
import time
from html import escape
from pathlib import Path
from typing import Any

from ...core.errors import LLMKitError

REPO = Path(__file__).resolve().parents[4]     # src/llmkit/serve/ui/evals.py → the checkout
DEFAULT = "quickstart.yaml"


def suite_files() -> list[str]:
    """Suites in ``./examples/evals`` and the checkout's ``examples/evals``, quickstart first."""
    seen: dict[str, str] = {}
    for folder in (Path.cwd() / "examples" / "evals", REPO / "examples" / "evals"):
        for p in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
            seen.setdefault(p.name, str(p))
    return sorted(seen.values(), key=lambda p: (Path(p).name != DEFAULT, Path(p).name))


def saved_runs() -> list[tuple[str, str]]:
    """``(label, id)`` of every saved run, newest first, for a dropdown."""
    import json

    from ...evals.runner import runs_dir

    out = []
    for p in sorted(runs_dir().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            head = json.loads(p.read_text())
            rows = head.get("rows", [])
            passed = sum(bool(r.get("passed")) for r in rows)
            label = f"{p.stem} · {head.get('description') or Path(head.get('suite', '')).name} · {passed}/{len(rows)} passed"
        except (OSError, ValueError):
            continue  # a half-written or foreign file: not a run to offer
        out.append((label, p.stem))
    return out


class _Counted:
    """A model that counts finished ``chat`` calls (the runner has no progress hook; this is one)."""

    def __init__(self, model: Any, tick: Any):
        self._model, self._tick = model, tick

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._model.chat(*args, **kwargs)
        finally:
            self._tick()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def run(ctx: Any, path: str, models: str = "", repeat: int = 1, cache: bool = True,
        on_progress: Any = None) -> tuple[Any, Path]:
    """Run the suite at ``path`` and save it; returns ``(run, report_path)``.

    Args:
        models: comma-separated specs replacing the suite's models ("" keeps them).
        on_progress: called as ``on_progress(done, total)`` after each model call.
    """
    from ...evals import report
    from ...evals.runner import run_suite, runs_dir
    from ...evals.suite import load

    suite = load(path)
    specs = [s.strip() for s in models.split(",") if s.strip()] or [e.spec for e in suite.models]
    total = len(specs) * len(suite.prompts) * len(suite.cases) * repeat
    done = [0]
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            done[0] += 1
            if on_progress:
                on_progress(done[0], total)

    loaded = {s: _Counted(ctx.model(s), tick) for s in dict.fromkeys(specs)}
    judged = any(a.type.removeprefix("not-") == "llm-rubric" and not a.judge for c in suite.cases for a in c.assert_)
    judge = suite.judge or "local"
    if judged and judge not in loaded:  # else the runner would load its own copy of the judge
        loaded[judge] = ctx.model(judge)
    result = run_suite(suite, models=specs if models.strip() else None, repeat=repeat, cache=cache,
                       progress=False, loaded=loaded)
    result.save()
    page = runs_dir().parent / "reports" / f"{result.id}.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(report.html(result))
    return result, page


def iframe(page: str, height: int = 720) -> str:
    """The report inside a sandboxed iframe: its CSS styles only itself, and it runs no script."""
    return (f'<iframe sandbox="" srcdoc="{escape(page, quote=True)}" title="eval report" '
            f'style="width:100%;height:{height}px;border:1px solid #dde1e8;border-radius:6px"></iframe>')


def compare_markdown(a_ref: str, b_ref: str) -> str:
    """The comparison of two saved runs as Markdown: pass rates, then regressions and improvements."""
    from ...evals.report import compare
    from ...evals.runner import load_run

    a, b = load_run(a_ref), load_run(b_ref)
    worse, better = compare(a, b)
    lines = [f"**before** `{a.id}` ({a.suite or a.description}) → **after** `{b.id}` ({b.suite or b.description})", "",
             "| model | pass rate before | after |", "|---|---|---|"]
    for m in dict.fromkeys(a.models + b.models):
        ra = f"{a.pass_rate(m):.0%}" if m in a.models else "—"
        rb = f"{b.pass_rate(m):.0%}" if m in b.models else "—"
        lines.append(f"| {_cell(m)} | {ra} | {rb} |")
    for title, changes in ((f"Regressions ({len(worse)})", worse), (f"Improvements ({len(better)})", better)):
        lines += ["", f"### {title}"]
        if not changes:
            lines.append("none")
            continue
        lines += ["| case | model | prompt | before | after |", "|---|---|---|---|---|"]
        lines += [f"| {c.case}: {_cell(c.description)} | {_cell(c.model)} | {_cell(c.prompt)} | {c.before:.0%} | {c.after:.0%} |"
                  for c in changes]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def build(ctx: Any) -> None:
    """The tab's components; ``app.py`` calls this inside ``gr.Tab("Evals")``."""
    import gradio as gr

    key = ctx.key if ctx.key is not None else gr.State("")  # the header's key box (UIContext)

    files = suite_files()
    gr.Markdown("### Run a suite")
    with gr.Row():
        suite = gr.Dropdown(files, value=files[0] if files else None, allow_custom_value=True, scale=3,
                            label="suite file", info="a path on the server, or upload one", elem_id="evals-suite")
        upload = gr.File(label="or upload a YAML suite", file_types=[".yaml", ".yml"], type="filepath", scale=2,
                         elem_id="evals-upload")
    with gr.Row():
        models = gr.Textbox(label="models (optional)", placeholder="comma-separated specs; empty: the suite's own",
                            scale=3, elem_id="evals-models")
        repeat = gr.Number(1, label="repeat", minimum=1, maximum=20, precision=0, scale=1, elem_id="evals-repeat")
        cache = gr.Checkbox(True, label="use the call cache", scale=1, elem_id="evals-cache")
        start = gr.Button("Run", variant="primary", scale=1, elem_id="evals-run")
    summary = gr.Markdown("", elem_id="evals-summary")
    page = gr.HTML("", elem_id="evals-report")
    download = gr.File(label="report (HTML)", interactive=False, elem_id="evals-download")
    runs = saved_runs()

    gr.Markdown("### Compare two saved runs")
    with gr.Row():
        before = gr.Dropdown(runs, value=runs[1][1] if len(runs) > 1 else None, label="before", scale=3,
                             elem_id="evals-before")
        after = gr.Dropdown(runs, value=runs[0][1] if runs else None, label="after", scale=3, elem_id="evals-after")
        reload = gr.Button("Reload runs", scale=1, elem_id="evals-reload")
        diff = gr.Button("Compare", scale=1, elem_id="evals-compare")
    changes = gr.Markdown("", elem_id="evals-changes")

    def runs_update():
        runs = saved_runs()
        first = runs[1][1] if len(runs) > 1 else None
        return (gr.update(choices=runs, value=first), gr.update(choices=runs, value=runs[0][1] if runs else None))

    def go(path: str, uploaded: str | None, specs: str, n: float | None, use_cache: bool, key: str | None,
           progress=gr.Progress()):  # noqa: B008 (Gradio injects the tracker through this default)
        ctx.check_key(key)
        target = uploaded or path
        if not target:
            raise gr.Error("Pick a suite file or upload one.")
        progress(0, desc="loading the suite")
        t0 = time.perf_counter()
        try:
            result, report_path = run(ctx, target, specs or "", int(n or 1), bool(use_cache),
                                      on_progress=lambda d, t: progress((d, t), desc="model calls", unit="calls"))
        except LLMKitError as e:
            raise gr.Error(f"{type(e).__name__}: {e}") from None
        passed = sum(r.passed for r in result.rows)
        text = (f"**{'PASS' if result.passed else 'FAIL'}** · {passed}/{len(result.rows)} answers passed · "
                f"{result.calls} model calls ({len(result.rows) - result.calls} cached or failed) · "
                f"{time.perf_counter() - t0:.1f} s · run `{result.id}` saved")
        return (text, iframe(report_path.read_text()), str(report_path), *runs_update())

    start.click(go, [suite, upload, models, repeat, cache, key], [summary, page, download, before, after])
    reload.click(runs_update, None, [before, after], queue=False)

    def do_compare(a: str | None, b: str | None, key: str | None) -> str:
        ctx.check_key(key)
        if not a or not b:
            raise gr.Error("Pick two saved runs (Reload runs lists them).")
        try:
            return compare_markdown(a, b)
        except LLMKitError as e:
            raise gr.Error(str(e)) from None

    diff.click(do_compare, [before, after, key], [changes], queue=False)
