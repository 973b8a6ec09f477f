"""``COPRO``: instruction proposal and search (coordinate ascent over each predictor's instructions).

For each predictor in turn, a proposer (itself a ``Predict``, so ``copro.proposer.inspect()``
shows its prompts) writes ``breadth`` variants of the instructions; each is scored on the
training set with the metric; for ``depth`` rounds the proposer sees the instructions tried so
far with their scores and proposes better ones. The best instructions are kept (the original
wins ties), then the next predictor is tuned with that one fixed.

    >>> copro = COPRO(metric=exact_match, breadth=4, depth=2)
    >>> tuned = copro.compile(program, trainset=train)
    >>> tuned.predictors()[0].instructions, copro.results[:3]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import module as ctx
from .evaluate import Metric, evaluate
from .example import Example, as_example
from .module import Module
from .predict import Predict
from .signatures import InputField, OutputField, Signature

PROPOSE_INSTRUCTIONS = """You improve the instructions a language model is given for one step of a program.
Read the current instructions and the step's fields, then propose {breadth} different, clearer and more \
specific instructions for the same step. Each may add a strategy that helps the model get the outputs right."""
REFINE_INSTRUCTIONS = """You improve the instructions a language model is given for one step of a program.
Below are instructions already tried, each with its score on a training set (higher is better). Propose \
{breadth} new instructions, different from all of them, that are likely to score higher."""


class _Propose(Signature):
    current_instructions: str = InputField(desc="the step's instructions now")
    fields: str = InputField(desc="the step's input and output fields")
    proposed_instructions: list[str] = OutputField(desc="the new instructions, one per item")


class _Refine(Signature):
    fields: str = InputField(desc="the step's input and output fields")
    attempts: str = InputField(desc="instructions tried so far, each with its score, worst first")
    proposed_instructions: list[str] = OutputField(desc="the new instructions, one per item")


@dataclass
class Trial:
    """One instruction COPRO scored: for which predictor, in which round (0: the original)."""

    predictor: str
    instructions: str
    score: float
    round: int


class COPRO:
    """Search over instructions with a proposer model.

    Args:
        metric: ``metric(example, prediction) -> bool | float``.
        breadth: instructions proposed per round.
        depth: proposal rounds (after the first, proposals see the scores so far).
        prompt_model: the proposer's model (default: the predictor's own model).
        init_temperature: the proposer's sampling temperature.
        threads: examples scored concurrently.
    """

    def __init__(self, metric: Metric, *, breadth: int = 4, depth: int = 2, prompt_model: Any = None,
                 init_temperature: float = 1.0, threads: int = 1):
        self.metric, self.breadth, self.depth, self.threads = metric, breadth, depth, threads
        self.proposer = Predict(_Propose.with_instructions(PROPOSE_INSTRUCTIONS.format(breadth=breadth)),
                                model=prompt_model, temperature=init_temperature)
        self.refiner = Predict(_Refine.with_instructions(REFINE_INSTRUCTIONS.format(breadth=breadth)),
                               model=prompt_model, temperature=init_temperature)
        self.results: list[Trial] = []

    def compile(self, student: Module, trainset: list[Example | dict]) -> Module:
        train = [as_example(x) for x in trainset]
        program = student.deepcopy()
        self.results = []
        for name, p in program.named_predictors():
            tried = self._search(program, name, p, train)
            p.instructions = max(tried, key=lambda t: tried[t])  # dicts keep order: the original wins ties
        return program

    def _search(self, program: Module, name: str, p: Predict, train: list[Example]) -> dict[str, float]:
        """Every instruction tried for predictor ``p`` (the others fixed), with its score."""
        tried: dict[str, float] = {}

        def score(text: str, round_: int) -> None:
            if text in tried:
                return
            p.instructions = text
            tried[text] = evaluate(program, train, self.metric, threads=self.threads, progress=False).score
            self.results.append(Trial(name, text, tried[text], round_))

        score(p.instructions, 0)
        fields = p.system_prompt(instructions="").strip()  # the field list alone
        with ctx.using(self.proposer.model or p.model or ctx._MODEL.get()):
            proposals = self.proposer(current_instructions=next(iter(tried)), fields=fields).proposed_instructions
            for round_ in range(1, self.depth + 1):
                for text in _clean(proposals)[:self.breadth]:
                    score(text, round_)
                if round_ < self.depth:
                    attempts = "\n\n".join(f"Instructions: {t}\nScore: {s:.3f}"
                                           for t, s in sorted(tried.items(), key=lambda x: x[1]))
                    proposals = self.refiner(fields=fields, attempts=attempts).proposed_instructions
        return tried


def _clean(texts: list[str]) -> list[str]:
    out: list[str] = []
    for t in texts:
        t = t.strip()
        if t and t not in out:
            out.append(t)
    return out
