"""Score a program on a dev set with a metric.

A metric is a plain function ``metric(example, prediction) -> bool | float``. ``exact_match``
compares label fields; ``assertion_metric`` turns any llmkit eval assertion (``icontains``,
``regex``, ``similar``, ``llm-rubric``…) into a metric.

    >>> dev = [Example(question="2 + 2?", answer="4").with_inputs("question"), ...]
    >>> result = evaluate(program, dev, exact_match, threads=4)
    >>> result.score                    # mean metric, 0..1
    >>> result.results[0]               # EvalRow(example, prediction, score, error)
    >>> evaluate(program, dev, assertion_metric("icontains", "{{ answer }}"))
"""
from __future__ import annotations

import contextvars
import re
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .example import Example, Prediction, as_example
from .module import Module

Metric = Callable[[Example, Prediction], Any]


@dataclass
class EvalRow:
    """One example's outcome; ``error`` is set (and ``score`` 0) when the program or metric raised."""

    example: Example
    prediction: Prediction | None
    score: float
    error: str | None = None


@dataclass
class EvaluationResult:
    """``score``: the mean metric over the dev set (0..1); ``results``: one row per example, in order."""

    score: float
    results: list[EvalRow]

    def __float__(self) -> float:
        return self.score

    @property
    def errors(self) -> list[EvalRow]:
        return [r for r in self.results if r.error]


def example_inputs(program: Module, example: Example) -> dict[str, Any]:
    """The inputs to call ``program`` with: the example's marked inputs, else the fields its first
    predictor's signature takes."""
    if example.input_keys is not None:
        return example.inputs()
    preds = program.predictors()
    names = preds[0].signature.input_fields if preds else []
    return {n: example[n] for n in names if n in example}


def score_of(value: Any) -> float:
    return float(value) if value is not None else 0.0


def run_one(program: Module, example: Example, metric: Metric) -> EvalRow:
    try:
        pred = program(**example_inputs(program, example))
    except Exception as e:  # one failing example scores 0; the run goes on
        return EvalRow(example, None, 0.0, f"{type(e).__name__}: {e}")
    try:
        return EvalRow(example, pred, score_of(metric(example, pred)))
    except Exception as e:
        return EvalRow(example, pred, 0.0, f"metric raised {type(e).__name__}: {e}")


def evaluate(program: Module, devset: Iterable[Example | dict], metric: Metric, *, threads: int = 1,
             progress: bool | None = None) -> EvaluationResult:
    """Run ``program`` on every example and score it with ``metric``.

    Args:
        threads: examples run concurrently (each in its own copy of the context, so ``using(m)``
            and other per-run settings carry over).
        progress: a rich progress bar on stderr; None: only when stderr is a terminal.
    """
    devset = [as_example(x) for x in devset]
    show = sys.stderr.isatty() if progress is None else progress
    rows: list[EvalRow | None] = [None] * len(devset)
    total = 0.0

    def work(i: int) -> tuple[int, EvalRow]:
        return i, run_one(program, devset[i], metric)

    bar = _Bar(len(devset)) if show and devset else None
    try:
        if threads <= 1:
            done = (work(i) for i in range(len(devset)))
        else:
            pool = ThreadPoolExecutor(threads)
            done = pool.map(lambda i: contextvars.copy_context().run(work, i), range(len(devset)))
        for i, row in done:
            rows[i] = row
            total += row.score
            if bar:
                bar.advance(total)
    finally:
        if threads > 1:
            pool.shutdown(wait=True)
        if bar:
            bar.close()
    return EvaluationResult(total / len(devset) if devset else 0.0, rows)  # type: ignore[arg-type]


class _Bar:
    def __init__(self, n: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.n, self.count = n, 0
        self.progress = Progress(TextColumn("evaluate"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("score {task.fields[score]:.1%}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=False)
        self.task = self.progress.add_task("evaluate", total=n, score=0.0)
        self.progress.start()

    def advance(self, total: float) -> None:
        self.count += 1
        self.progress.update(self.task, advance=1, score=total / self.count)

    def close(self) -> None:
        self.progress.stop()


# --- metrics ---------------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def normalize(value: Any) -> Any:
    """Text compared loosely (case, surrounding spaces and punctuation, runs of whitespace); other values as is."""
    if not isinstance(value, str):
        return value
    return _SPACE.sub(" ", value.strip().strip(".!?;:,\"'`").strip()).casefold()


def exact_match(example: Example, prediction: Prediction) -> bool:
    """Every label field of ``example`` that the prediction has is equal to it (text: after ``normalize``).

    A number and its text form match (``55`` and ``"55"``); a prediction with none of the label
    fields does not match.
    """
    labels = example.labels() if example.input_keys is not None else example.to_dict()
    shared = [k for k in labels if k in prediction]
    if not shared:
        return False
    for k in shared:
        want, got = labels[k], prediction[k]
        if isinstance(want, str) != isinstance(got, str):
            want, got = str(want), str(got)
        if normalize(want) != normalize(got):
            return False
    return True


def assertion_metric(type: str, value: Any = None, *, field: str = "answer", **kw: Any) -> Metric:
    """A metric from an llmkit eval assertion on one output field; string values are Jinja2
    templates over the example's fields. The metric is the assertion's score when it passes, else 0.

    Example:
        >>> metric = assertion_metric("icontains", "{{ answer }}")
        >>> metric = assertion_metric("similar", "{{ answer }}", threshold=0.8, embedder=HashEmbedder())
    """
    from ..evals.assertions import Assertion
    from ..evals.assertions import evaluate as check
    from ..evals.types import Output

    embedder, judge = kw.pop("embedder", None), kw.pop("judge_model", None)
    a = Assertion.parse({"type": type, "value": value, **kw})

    def metric(example: Example, prediction: Prediction) -> float:
        out = prediction[field]
        text = out if isinstance(out, str) else str(out)
        r = check(a, Output(text=text, parsed=out), example.to_dict(), judge=judge, embedder=embedder)
        return r.score if r.passed else 0.0

    metric.__name__ = f"assert_{type.replace('-', '_')}"
    return metric
