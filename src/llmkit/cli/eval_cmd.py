"""``llmkit eval``: run suites, write reports, compare runs.

Exit codes of ``eval run``: 0 every case passed, 1 some failed, 2 a usage error (bad suite file,
unknown model, bad flag) — so CI can gate on prompts the way it gates on code.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

eval_app = typer.Typer(help="Evaluate prompts and models: suites, reports, comparisons.", no_args_is_help=True)


@eval_app.command("run")
def run(suite: Path = typer.Argument(..., help="suite YAML file"),
        model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="model spec replacing the suite's (repeatable)"),
        repeat: int = typer.Option(1, "--repeat", min=1, help="answers per case: pass rates show flaky cases"),
        filter: Optional[str] = typer.Option(None, "--filter", help="regex over case descriptions and vars"),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", "-j", min=1, help="calls in flight"),
        no_cache: bool = typer.Option(False, "--no-cache", help="call the models even when the cache has the answer"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="also write the run as JSON here"),
        html_out: Optional[Path] = typer.Option(None, "--html", help="also write the HTML report here")):
    """Run a suite; print pass rates and failures. Exit 0 if every case passes, 1 if some fail."""
    from ..evals import load_suite, report, run_suite

    s = load_suite(suite)
    result = run_suite(s, models=model or None, repeat=repeat, filter=filter, concurrency=concurrency,
                       cache=not no_cache)
    saved = result.save()
    if json_out:
        result.save(json_out)
    if html_out:
        html_out.write_text(report.html(result))
    _summary(result, saved)
    sys.exit(0 if result.passed else 1)


@eval_app.command("report")
def report_cmd(run: str = typer.Argument("latest", help="run id (or prefix), a run JSON file, or 'latest'"),
               out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default: beside the run)")):
    """Write one self-contained HTML page for a run."""
    from ..evals import load_run, report

    r = load_run(run)
    path = out or Path(r.save()).with_suffix(".html")
    path.write_text(report.html(r))
    print(path)


@eval_app.command("compare")
def compare_cmd(a: str = typer.Argument(..., help="the earlier run"), b: str = typer.Argument(..., help="the later run")):
    """Regressions (passed before, fail now) and improvements between two runs. Exit 1 on a regression."""
    from rich.console import Console
    from rich.markup import escape as esc

    from ..evals import load_run, report

    ra, rb = load_run(a), load_run(b)
    worse, better = report.compare(ra, rb)
    con = Console()
    con.print(f"{ra.id} → {rb.id}: pass rate {ra.pass_rate():.0%} → {rb.pass_rate():.0%}")
    for title, changes, colour in (("regressions", worse, "red"), ("improvements", better, "green")):
        con.print(f"[{colour}]{len(changes)} {title}[/{colour}]")
        for c in changes:
            con.print(esc(f"  case {c.case} [{c.model}] {c.description} ({c.prompt}): {c.before:.0%} → {c.after:.0%}"),
                      highlight=False)
    sys.exit(1 if worse else 0)


@eval_app.command("task")
def task_cmd(task: str = typer.Argument(..., help="a shipped task name (llmkit eval tasks) or a task YAML file"),
             model: str = typer.Option("hf:smollm2", "--model", "-m", help="model spec (log-likelihood tasks need hf:)"),
             limit: Optional[int] = typer.Option(None, "--limit", min=1, help="first N documents"),
             fewshot: Optional[int] = typer.Option(None, "--fewshot", min=0, help="few-shot examples (default: the task's)"),
             seed: int = typer.Option(0, "--seed", help="few-shot sampling and bootstrap seed"),
             json_out: Optional[Path] = typer.Option(None, "--json", help="write metrics and per-document records here")):
    """Run a benchmark task (lm-evaluation-harness style): metrics with bootstrap standard errors."""
    import json
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    import llmkit as lk

    from ..evals import harness

    result = harness.run_task(lk.model(model), task, limit=limit, num_fewshot=fewshot, seed=seed)
    table = Table("metric", "value", "± stderr")
    for name, value in result.metrics.items():
        err = result.stderr.get(name)
        table.add_row(name, f"{value:.4f}", f"{err:.4f}" if err is not None else "")
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps(asdict(result), indent=1, default=str))


@eval_app.command("tasks")
def tasks_cmd():
    """The benchmark tasks that ship with llmkit."""
    from ..evals import harness

    for name in harness.list_tasks():
        print(name)


def _summary(result, saved: Path) -> None:
    from rich.console import Console
    from rich.markup import escape as esc
    from rich.table import Table

    con = Console()
    table = Table("model", "passed", "pass rate", "mean score", "mean latency ms")
    for m in result.models:
        rows = [r for r in result.rows if r.model == m]
        table.add_row(m, f"{sum(r.passed for r in rows)}/{len(rows)}", f"{result.pass_rate(m):.0%}",
                      f"{sum(r.score for r in rows) / len(rows):.2f}",
                      f"{sum(r.output.latency_ms for r in rows) / len(rows):.0f}")
    con.print(table)
    failed = [r for r in result.rows if not r.passed]
    for r in failed[:20]:
        why = "; ".join(f"{x.type}: {x.reason}" for x in r.results if not x.passed) or r.output.error or ""
        con.print(f"[red]FAIL[/red] case {r.case} {esc(f'[{r.model}] {r.description}: {why}')}", highlight=False)
    if len(failed) > 20:
        con.print(f"… and {len(failed) - 20} more failures")
    flaky = {k: v for k, v in result.case_rates().items() if 0 < v < 1}
    for (case, model, prompt), rate in flaky.items():
        con.print(f"[yellow]FLAKY[/yellow] case {case} {esc(f'[{model}]')} passes {rate:.0%} of repeats")
    con.print(f"{len(result.rows)} answers, {result.calls} model calls, {result.seconds:.1f} s · saved {saved}",
              highlight=False)
