"""Several attempts at a module, judged by a reward function.

- ``BestOfN``: up to N independent attempts; the first that reaches ``threshold`` wins, else the best.
- ``Refine``: the same, but each new attempt sees feedback on the last one (``FEEDBACK_TEMPLATE``,
  or your ``feedback`` function), added to every prompt through ``predict.HINT_TEMPLATE``.

A reward function is ``reward(inputs: dict, prediction) -> float`` (a bool counts as 0 or 1).
Attempts after the first are sampled at ``temperature`` so they can differ.

    >>> one_word = lambda inputs, pred: float(len(pred.answer.split()) == 1)
    >>> best = BestOfN(Predict("question -> answer", model=m), N=3, reward_fn=one_word, threshold=1.0)
    >>> best(question="What is the capital of Belgium?").answer
    >>> Refine(ChainOfThought("question -> answer", model=m), N=3, reward_fn=one_word, threshold=1.0)
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from pydantic_core import to_jsonable_python

from . import module as ctx
from .example import Prediction
from .module import Module

FEEDBACK_TEMPLATE = ("The previous attempt answered {outputs} and scored {reward:.2f}, below the target of "
                     "{threshold:.2f}.{advice} Give a better answer.")

Reward = Callable[[dict[str, Any], Prediction], float]


class BestOfN(Module):
    """Run ``module`` up to ``N`` times; return the first prediction with reward >= ``threshold``, else the best.

    Attributes:
        attempts: ``(prediction, reward)`` of the last call's attempts (an attempt that raised: ``(None, 0.0)``).
    """

    def __init__(self, module: Module, N: int, reward_fn: Reward, threshold: float = 1.0,
                 temperature: float = 1.0, fail_count: int | None = None):
        if N < 1:
            raise ValueError(f"N={N} must be at least 1")
        self.module, self.N, self.reward_fn, self.threshold = module, N, reward_fn, threshold
        self.temperature = temperature
        self.fail_count = N if fail_count is None else fail_count  # attempts that may raise before the error surfaces
        self.attempts: list[tuple[Prediction | None, float]] = []

    def forward(self, **inputs: Any) -> Prediction:
        self.attempts, failures, last_error = [], 0, None
        best: tuple[Prediction | None, float] = (None, float("-inf"))
        for i in range(self.N):
            try:
                with ExitStack() as stack:
                    for cm in self._attempt(i, inputs):
                        stack.enter_context(cm)
                    pred = self.module(**inputs)
            except Exception as e:  # an attempt may fail; the next one may not
                failures, last_error = failures + 1, e
                self.attempts.append((None, 0.0))
                if failures >= self.fail_count:
                    raise
                continue
            reward = float(self.reward_fn(dict(inputs), pred))
            self.attempts.append((pred, reward))
            if reward > best[1]:
                best = (pred, reward)
            if reward >= self.threshold:
                break
        if best[0] is None:
            raise last_error  # every attempt failed
        return best[0]

    def _attempt(self, i: int, inputs: dict[str, Any]) -> list[Any]:
        """The context managers an attempt runs under (later attempts: a higher temperature)."""
        return [ctx.sampling_overrides(temperature=self.temperature)] if i else []


class Refine(BestOfN):
    """``BestOfN`` where each attempt after the first is told how the previous one fell short.

    Args:
        feedback: ``feedback(inputs, prediction, reward) -> str``: advice added to the default
            feedback (e.g. a validator's message); None: the previous outputs and score only.
    """

    def __init__(self, module: Module, N: int, reward_fn: Reward, threshold: float = 1.0,
                 feedback: Callable[[dict[str, Any], Prediction, float], str] | None = None,
                 template: str = FEEDBACK_TEMPLATE, **kw: Any):
        super().__init__(module, N, reward_fn, threshold, **kw)
        self.feedback, self.template = feedback, template

    def _attempt(self, i: int, inputs: dict[str, Any]) -> list[Any]:
        if i == 0 or not self.attempts or self.attempts[-1][0] is None:
            return super()._attempt(i, inputs)
        pred, reward = self.attempts[-1]
        advice = self.feedback(dict(inputs), pred, reward) if self.feedback else ""
        text = self.template.format(outputs=to_jsonable_python(pred.to_dict()), reward=reward, threshold=self.threshold,
                                    advice=f" {advice.strip()}" if advice else "")
        return [ctx.sampling_overrides(temperature=self.temperature), ctx.hint(text)]
