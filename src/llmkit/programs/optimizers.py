"""Optimisers that choose demonstrations, scored against a metric (DSPy's teleprompters).

- ``LabeledFewShot``: k training examples as demos, as they are.
- ``BootstrapFewShot``: run a teacher program on the training set; keep the traces whose output
  passes the metric as demos of each predictor (the program's own intermediate steps included).
- ``BootstrapFewShotWithRandomSearch``: many bootstrapped demo sets (shuffled, of random size)
  plus zero-shot and labeled-only, each scored on a validation set; the best program wins.
- ``KNNFewShot``: demos chosen per input by embedding similarity to the training examples.

Instruction search (COPRO) is in ``copro.py``. Every optimiser returns a new program and leaves
the one it was given unchanged.

    >>> opt = BootstrapFewShot(metric=exact_match, max_bootstrapped_demos=4)
    >>> compiled = opt.compile(Predict("question -> answer", model=m), trainset=train)
    >>> evaluate(compiled, dev, exact_match).score
    >>> compiled.save("qa.json")
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError
from . import module as ctx
from .evaluate import Metric, evaluate, example_inputs, score_of
from .example import Example, as_example
from .module import Module
from .predict import render_value


def passes(score: Any, threshold: float | None) -> bool:
    return score_of(score) >= threshold if threshold is not None else bool(score)


class LabeledFewShot:
    """Give every predictor ``k`` training examples as demos (sampled with ``seed``, or the first k)."""

    def __init__(self, k: int = 16, *, sample: bool = True, seed: int = 0):
        self.k, self.sample, self.seed = k, sample, seed

    def compile(self, student: Module, trainset: list[Example | dict]) -> Module:
        program = student.reset_copy()
        train = [as_example(x) for x in trainset]
        for p in program.predictors():
            p.demos = random.Random(self.seed).sample(train, min(self.k, len(train))) if self.sample else train[:self.k]
        return program


class BootstrapFewShot:
    """Demos from a teacher's successful runs.

    Args:
        metric: ``metric(example, prediction) -> bool | float``; a run is kept when it passes.
        metric_threshold: pass mark for a float metric (None: any truthy score passes).
        max_bootstrapped_demos: demos from teacher traces, per predictor.
        max_labeled_demos: total demos per predictor; the rest are training examples as they are.
        max_rounds: passes over the training set; rounds after the first sample at temperature 1.
        max_errors: teacher runs that may raise before compile gives up.
        teacher_model: run the teacher on this model (a stronger one, say) instead of its own.
        seed: for the order of the labeled demos.
    """

    def __init__(self, metric: Metric, *, metric_threshold: float | None = None, max_bootstrapped_demos: int = 4,
                 max_labeled_demos: int = 16, max_rounds: int = 1, max_errors: int = 10, teacher_model: Any = None,
                 seed: int = 0):
        self.metric, self.metric_threshold = metric, metric_threshold
        self.max_bootstrapped_demos, self.max_labeled_demos = max_bootstrapped_demos, max_labeled_demos
        self.max_rounds, self.max_errors, self.teacher_model, self.seed = max_rounds, max_errors, teacher_model, seed
        self.traces: list[tuple[Example, bool]] = []  # (example, passed) of every teacher run, for inspection

    def compile(self, student: Module, trainset: list[Example | dict], *, teacher: Module | None = None) -> Module:
        train = [as_example(x) for x in trainset]
        program = student.reset_copy()
        teacher = teacher.deepcopy() if teacher is not None else student.deepcopy()
        if self.max_labeled_demos and not any(p.demos for p in teacher.predictors()):
            teacher = LabeledFewShot(self.max_labeled_demos, seed=self.seed).compile(teacher, train)
        if self.teacher_model is not None:
            teacher.set_model(self.teacher_model)
        names = {id(p): name for name, p in teacher.named_predictors()}
        mine = dict(program.named_predictors())
        if set(names.values()) != set(mine):
            raise ConfigError(f"the teacher's predictors {sorted(names.values())} differ from the student's "
                              f"{sorted(mine)}; a teacher must have the student's structure")
        demos: dict[str, list[Example]] = {name: [] for name in mine}
        used: set[int] = set()
        self.traces, errors = [], 0
        for round_ in range(self.max_rounds):
            for i, ex in enumerate(train):
                if min((len(d) for d in demos.values()), default=0) >= self.max_bootstrapped_demos:
                    break
                if i in used:
                    continue
                try:
                    ok = self._bootstrap_one(teacher, names, ex, round_, demos)
                except Exception:
                    errors += 1
                    if errors >= self.max_errors:
                        raise
                    continue
                if ok:
                    used.add(i)
        rest = [ex for i, ex in enumerate(train) if i not in used]
        random.Random(self.seed).shuffle(rest)
        for name, p in mine.items():
            boot = demos[name][:self.max_bootstrapped_demos]
            p.demos = boot + rest[:max(0, self.max_labeled_demos - len(boot))]
        return program

    def _bootstrap_one(self, teacher: Module, names: dict[int, str], ex: Example, round_: int,
                       demos: dict[str, list[Example]]) -> bool:
        # the example must not be its own demonstration: the teacher would just copy it
        hide = {id(p): [d for d in p.demos if d != ex] for p in teacher.predictors()}
        temperature = {"temperature": 1.0} if round_ else {}
        with ctx.demo_overrides(hide), ctx.sampling_overrides(**temperature), ctx.tracing_predictors() as trace:
            pred = teacher(**example_inputs(teacher, ex))
        ok = passes(self.metric(ex, pred), self.metric_threshold)
        self.traces.append((ex, ok))
        if ok:
            for p, inputs, out in trace:
                if id(p) in names:
                    demos[names[id(p)]].append(Example(**inputs, **out.to_dict()))
        return ok


@dataclass
class Candidate:
    """One program random search tried: how it was made, and its validation score."""

    label: str
    score: float
    program: Module


class BootstrapFewShotWithRandomSearch:
    """Random search over bootstrapped demo sets, scored on ``valset`` (default: the training set).

    The candidates are: zero-shot, labeled demos only, BootstrapFewShot in training-set order, then
    ``num_candidate_programs`` runs on shuffled training sets with a random number of demos
    (1..``max_bootstrapped_demos``). Ties go to the earlier candidate. ``candidates`` keeps them all.
    """

    def __init__(self, metric: Metric, *, num_candidate_programs: int = 8, max_bootstrapped_demos: int = 4,
                 max_labeled_demos: int = 16, max_rounds: int = 1, metric_threshold: float | None = None,
                 teacher_model: Any = None, threads: int = 1, seed: int = 0):
        self.metric, self.num_candidate_programs = metric, num_candidate_programs
        self.max_bootstrapped_demos, self.max_labeled_demos = max_bootstrapped_demos, max_labeled_demos
        self.max_rounds, self.metric_threshold, self.teacher_model = max_rounds, metric_threshold, teacher_model
        self.threads, self.seed = threads, seed
        self.candidates: list[Candidate] = []

    def _bootstrap(self, n_demos: int, seed: int) -> BootstrapFewShot:
        return BootstrapFewShot(self.metric, metric_threshold=self.metric_threshold, max_bootstrapped_demos=n_demos,
                                max_labeled_demos=self.max_labeled_demos, max_rounds=self.max_rounds,
                                teacher_model=self.teacher_model, seed=seed)

    def compile(self, student: Module, trainset: list[Example | dict], *, valset: list[Example | dict] | None = None,
                teacher: Module | None = None) -> Module:
        train = [as_example(x) for x in trainset]
        val = [as_example(x) for x in valset] if valset is not None else train
        self.candidates = []
        for s in range(-3, self.num_candidate_programs):
            if s == -3:
                label, program = "zero-shot", student.reset_copy()
            elif s == -2:
                label = f"labeled ({self.max_labeled_demos})"
                program = LabeledFewShot(self.max_labeled_demos, seed=self.seed).compile(student, train)
            elif s == -1:
                label = "bootstrap (training-set order)"
                boot = self._bootstrap(self.max_bootstrapped_demos, self.seed)
                program = boot.compile(student, train, teacher=teacher)
            else:
                rng = random.Random(self.seed + s)
                shuffled = list(train)
                rng.shuffle(shuffled)
                size = rng.randint(1, max(1, self.max_bootstrapped_demos))
                label = f"bootstrap (shuffle {s}, {size} demos)"
                program = self._bootstrap(size, self.seed + s).compile(student, shuffled, teacher=teacher)
            score = evaluate(program, val, self.metric, threads=self.threads, progress=False).score
            self.candidates.append(Candidate(label, score, program))
        return max(self.candidates, key=lambda c: c.score).program  # max keeps the first of equal scores


class KNNFewShot:
    """Demos chosen per input: the ``k`` training examples whose inputs embed closest to this input's.

    Args:
        k: demos per call.
        trainset: the pool (examples with inputs marked, or fields matching the call's inputs).
        embedder: anything with ``embed(list[str]) -> list[list[float]]`` (``llmkit.rag`` embedders).

    Example:
        >>> knn = KNNFewShot(k=3, trainset=train, embedder=MiniLM())
        >>> program = knn.compile(Predict("question -> answer", model=m))
    """

    def __init__(self, k: int, trainset: list[Example | dict], embedder: Any):
        if k < 1:
            raise ConfigError(f"k={k} must be at least 1")
        self.k, self.trainset, self.embedder = k, [as_example(x) for x in trainset], embedder

    def compile(self, student: Module) -> KNNProgram:
        return KNNProgram(student.reset_copy(), self.trainset, self.embedder, self.k)


def input_text(values: dict[str, Any]) -> str:
    """What KNNFewShot embeds for an example or a call: its input fields, one ``name: value`` line each."""
    return "\n".join(f"{k}: {render_value(v)}" for k, v in values.items())


class KNNProgram(Module):
    """The program KNNFewShot compiles: ``program`` run with the nearest training examples as demos."""

    def __init__(self, program: Module, trainset: list[Example], embedder: Any, k: int):
        self.program, self.trainset, self.embedder, self.k = program, trainset, embedder, k
        self._vectors: Any = None
        self.last_demos: list[Example] = []

    def nearest(self, inputs: dict[str, Any]) -> list[Example]:
        import numpy as np

        def keys(ex: Example) -> dict[str, Any]:
            return ex.inputs() if ex.input_keys is not None else {n: ex[n] for n in inputs if n in ex}

        if self._vectors is None:
            v = np.asarray(self.embedder.embed([input_text(keys(ex)) for ex in self.trainset]), dtype=float)
            self._vectors = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        q = np.asarray(self.embedder.embed([input_text(inputs)])[0], dtype=float)
        sims = self._vectors @ (q / max(float(np.linalg.norm(q)), 1e-12))
        order = np.argsort(-sims, kind="stable")[:self.k]
        return [self.trainset[i] for i in order]

    def forward(self, **inputs: Any) -> Any:
        demos = self.nearest(inputs)
        self.last_demos = demos
        with ctx.demo_overrides({id(p): demos for p in self.program.predictors()}):
            return self.program(**inputs)
