"""``MultiChainComparison``: M reasoning attempts, then one call that compares them and answers
(Yoran et al., 2023, "Answering Questions by Meta-Reasoning over Multiple Chains of Thought").

    >>> mcc = MultiChainComparison("question -> answer", M=3, model=lk.model())
    >>> pred = mcc(question="...")            # 3 ChainOfThought attempts at temperature 0.7, then a comparison
    >>> pred.rationale, pred.answer
    >>> mcc(question="...", completions=[p1, p2, p3])   # or compare attempts you already have
"""
from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from . import module as ctx
from .example import Prediction
from .module import Module
from .predict import ChainOfThought, Predict
from .signatures import InputField, OutputField, Signature, derive, ensure_signature

COMPARE_TEMPLATE = """{instructions}

The inputs include {m} attempts at this task, each with its reasoning and outputs. Compare them:
find where they agree and where one went wrong, then give a corrected rationale and the best outputs."""
ATTEMPT_TEMPLATE = "reasoning: {reasoning}\noutputs: {outputs}"
RATIONALE_DESC = "which attempts are right, and why; the corrected reasoning"


class MultiChainComparison(Module):
    """Sample ``M`` chains of thought, then answer by comparing them.

    Args:
        signature: as for Predict.
        M: the number of attempts compared.
        temperature: sampling temperature of the attempts (they should differ).
        model, **sampling: for both inner predictors (``attempt`` and ``compare``).
    """

    def __init__(self, signature: str | type[Signature], *, M: int = 3, temperature: float = 0.7,
                 model: Any = None, **sampling: Any):
        self.signature, self.M, self.temperature = ensure_signature(signature), M, temperature
        self.attempt = ChainOfThought(self.signature, model=model, **sampling)
        attempts = [(f"attempt_{i}", str, InputField(desc=f"attempt {i}")) for i in range(1, M + 1)]
        compare_sig = derive(self.signature, instructions=COMPARE_TEMPLATE.format(
            instructions=self.signature.instructions, m=M), inputs=attempts,
            outputs=[("rationale", str, OutputField(desc=RATIONALE_DESC))])
        self.compare = Predict(compare_sig, model=model, **sampling)

    def forward(self, completions: list[Any] | None = None, **inputs: Any) -> Prediction:
        if completions is None:
            with ctx.sampling_overrides(temperature=self.temperature):
                completions = [self.attempt(**inputs) for _ in range(self.M)]
        if len(completions) != self.M:
            raise ValueError(f"MultiChainComparison(M={self.M}) compares {self.M} completions, got {len(completions)}")
        outs = self.signature.output_fields
        shown = {f"attempt_{i}": ATTEMPT_TEMPLATE.format(
            reasoning=str(c.get("reasoning", "") or "").strip() or "(none given)",
            outputs=", ".join(f"{n}={to_jsonable_python(c.get(n))!r}" for n in outs))
            for i, c in enumerate(completions, 1)}
        return self.compare(**inputs, **shown)
