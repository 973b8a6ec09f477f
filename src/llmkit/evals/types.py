"""What the evaluation pieces pass each other: a model's output for one case, an assertion's verdict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Output:
    """What a model produced for one test case (or the error that stopped it)."""

    text: str
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None          # USD, when the provider's prices are known
    parsed: Any = None                 # the validated value when the case had a constraint
    error: str | None = None           # the model call failed: every assertion fails, none is skipped
    cached: bool = False


@dataclass
class Result:
    """One assertion's verdict on one output. ``score`` is in [0, 1]; ``reason`` says why, in words
    a person reads in a failure message or a report."""

    type: str
    passed: bool
    score: float
    reason: str
    weight: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)   # e.g. the judge's reasoning and raw score
