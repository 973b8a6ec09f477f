"""Evaluation suites: YAML files of prompts × models × test cases with assertions.

    description: capitals
    prompts:                                   # templates (Jinja2) or chat message lists
      - "Answer in one word: {{question}}"
      - id: brief
        messages:
          - {role: system, content: "Be brief."}
          - {role: user, content: "{{question}}"}
    models: [local]                            # model specs; or {spec, label, options, price: [0.15, 0.6]}
    sampling: {temperature: 0, max_tokens: 24} # every call (a case may override)
    judge: local                               # the model behind llm-rubric assertions
    defaults:                                  # merged into every case
      assert: [{type: max-tokens, value: 24}]
    tests:                                     # cases inline, and/or files (JSONL, CSV)
      - description: France
        vars: {question: "What is the capital of France?"}
        assert: [{type: icontains, value: paris}]
      - file: more_cases.jsonl
    threshold: null                            # weighted score a case needs (default: every assertion passes)
    concurrency: 8                             # calls in flight in all
    rate_limits: {openai: {rps: 5, concurrency: 4}}   # per provider, shared by its models

A case row in JSONL is ``{"vars": {...}, "assert": [...], "description": ..., "metadata": ...}``
or a flat object of variables; a CSV row is variables, with an optional ``__expected`` column
(``icontains:paris``, or a bare value meaning ``equals``). Bad files raise ConfigError naming the
file, the line and the field.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ..core.errors import ConfigError
from .assertions import Assertion
from .types import jsonl_rows, yaml_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    spec: str = Field(description="model spec, e.g. 'local', 'openai:gpt-4o-mini'")
    label: str | None = Field(None, description="name shown in reports (default: the spec)")
    options: dict[str, Any] = Field(default_factory=dict, description="options for llmkit.model(spec, **options)")
    concurrency: int | None = Field(None, ge=1, description="most calls in flight to this model")
    rps: float | None = Field(None, gt=0, description="most requests per second to this model")
    price: tuple[float, float] | None = Field(None, description="USD per million tokens [input, output]: "
                                                                "gives each answer a cost for `cost` assertions")

    @property
    def name(self) -> str:
        return self.label or self.spec


class RateLimit(_Strict):
    concurrency: int | None = Field(None, ge=1, description="most calls in flight to this provider")
    rps: float | None = Field(None, gt=0, description="most requests per second to this provider")


class Prompt(_Strict):
    id: str | None = Field(None, description="name shown in reports")
    template: str | None = Field(None, description="a user message template (Jinja2 over the case's vars)")
    messages: list[dict[str, str]] | None = Field(None, description="chat messages, each content a template")


class Case(_Strict):
    description: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    assert_: list[Assertion] = Field(default_factory=list, alias="assert")
    threshold: float | None = Field(None, ge=0, le=1, description="weighted score to pass (default: all pass)")
    sampling: dict[str, Any] = Field(default_factory=dict, description="overrides the suite's sampling")
    metadata: dict[str, Any] = Field(default_factory=dict)
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="JSON Schema the answer must follow")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Defaults(_Strict):
    assert_: list[Assertion] = Field(default_factory=list, alias="assert")
    vars: dict[str, Any] = Field(default_factory=dict)
    threshold: float | None = Field(None, ge=0, le=1)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Suite(_Strict):
    description: str = ""
    prompts: list[str | Prompt] = Field(min_length=1)
    models: list[str | ModelEntry] = Field(default_factory=lambda: ["local"])
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0})
    judge: str | None = Field(None, description="model spec for llm-rubric (default: the embedded model)")
    defaults: Defaults = Field(default_factory=Defaults)
    tests: list[Case | dict[str, str]] = Field(min_length=1)
    threshold: float | None = Field(None, ge=0, le=1)
    concurrency: int = Field(8, ge=1, description="calls in flight in all")
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict,
                                              description="per provider (the spec's prefix: openai, anthropic, local…), "
                                                          "shared by every model of that provider")
    seed: int = Field(0, description="seed of sampled calls (repeat i uses seed + i)")

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: list) -> list[Prompt]:
        out = []
        for i, p in enumerate(v):
            p = Prompt(template=p) if isinstance(p, str) else p
            if (p.template is None) == (p.messages is None):
                raise ValueError(f"prompt {i} needs exactly one of template or messages")
            out.append(p)
        return out

    @field_validator("models")
    @classmethod
    def _models(cls, v: list) -> list[ModelEntry]:
        return [ModelEntry(spec=m) if isinstance(m, str) else m for m in v]

    # --- what load() adds: where the suite lives, and every case (inline and from files) --------
    _path: Path | None = PrivateAttr(None)
    _cases: list[Case] = PrivateAttr(default_factory=list)

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def cases(self) -> list[Case]:
        return self._cases


def load(path: str | Path) -> Suite:
    """Read and validate a suite file (and the case files it names)."""
    path = Path(path)
    raw, text = yaml_mapping(path, "suite", "prompts, models and tests")
    try:
        suite = Suite(**raw)
    except ValidationError as e:
        raise _located(e, path, text) from None
    suite._path = path
    for i, t in enumerate(suite.tests):
        if isinstance(t, dict):  # {file: cases.jsonl}
            if set(t) != {"file"}:
                raise ConfigError(f"{path}:{_line(text, ['tests', i])}: tests.{i} must be a case or {{file: PATH}}")
            suite._cases += load_cases(path.parent / t["file"])
        else:
            suite._cases.append(t)
    for c in suite.cases:  # defaults apply under each case's own values
        c.vars = {**suite.defaults.vars, **c.vars}
        c.assert_ = suite.defaults.assert_ + c.assert_
        if c.threshold is None:
            c.threshold = suite.defaults.threshold if suite.defaults.threshold is not None else suite.threshold
    return suite


def load_cases(path: Path) -> list[Case]:
    """Cases from a JSONL or CSV file (see the module docstring)."""
    if not path.is_file():
        raise ConfigError(f"case file {str(path)!r} does not exist")
    cases = []
    if path.suffix == ".jsonl":
        cases = [_case(row, path, n) for n, row in jsonl_rows(path)]
    elif path.suffix == ".csv":
        with path.open(newline="") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                expected = row.pop("__expected", None)
                asserts = [_shorthand(expected)] if expected else []
                cases.append(_case({"vars": row, "assert": asserts}, path, n))
    else:
        raise ConfigError(f"case file {str(path)!r}: accepted formats are .jsonl and .csv")
    return cases


def _case(row: Any, path: Path, n: int) -> Case:
    if not isinstance(row, dict):
        raise ConfigError(f"{path}:{n}: a case is a JSON object, got {type(row).__name__}")
    if not set(row) & {"vars", "assert", "description", "metadata", "threshold", "sampling", "schema"}:
        row = {"vars": row}  # a flat row of variables
    try:
        return Case(**row)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}:{n}: {field}: {err['msg']}") from None


def _shorthand(text: str) -> dict:
    kind, sep, value = text.partition(":")
    return {"type": kind, "value": value} if sep and kind.replace("-", "").isalpha() else {"type": "equals", "value": text}


def _located(e: ValidationError, path: Path, text: str) -> ConfigError:
    err = e.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p in ("str", "Case", "Prompt", "ModelEntry",
                                                                        "dict[str,str]"))]
    field = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return ConfigError(f"{path}:{_line(text, loc)}: {field}: {msg}")


def _line(text: str, loc: list) -> int:
    """The line of the YAML node at ``loc`` (or of its nearest ancestor that exists)."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return 1
    line = node.start_mark.line if node else 0
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(key) or k.value == str(key).rstrip("_")), None)
            if nxt is None:
                break
            key_node = next(k for k, v in node.value if v is nxt)
            line, node = key_node.start_mark.line, nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line
        else:
            break
    return line + 1
