"""What the evaluation pieces pass each other: a model's output for one case, an assertion's verdict."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError


def yaml_mapping(path: Path, what: str, expects: str) -> tuple[dict, str]:
    """A YAML file that must hold a mapping, and its text; errors name the file (and the line)."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {what} is a YAML mapping with {expects}")
    return raw, text


def jsonl_rows(path: Path) -> list[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSONL file; bad JSON names file and line."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{n}: not valid JSON: {e.msg}") from None
    return rows


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
