"""``assert_llm``: promptfoo-style checks in ordinary pytest tests, and the ``llm_judge`` fixture.

llmkit registers this module as a pytest plugin (entry point ``pytest11``), so any project with
llmkit installed gets the fixture; ``assert_llm`` also works without pytest::

    import llmkit as lk
    from llmkit.evals import assert_llm

    def test_capital(llm_judge):
        answer = lk.model().chat("Capital of France? One sentence.", temperature=0)
        assert_llm(answer, icontains="paris", not_contains="As an AI",
                   rubric="Names Paris as the capital in one sentence.", judge=llm_judge)

A failure raises ``AssertionError`` that shows the output and every expectation as PASS or FAIL,
with the judge's score and reasoning for ``rubric``. Loading the plugin imports no model library:
a model loads only when a test asks for a judge or a ``similar`` check.
"""
from __future__ import annotations

from typing import Any

from ..core.errors import ConfigError
from ..core.types import Completion
from .assertions import Assertion, evaluate, resolve_judge
from .types import Output, Result

try:
    import pytest
except ImportError:  # assert_llm works without pytest; only the fixture needs it
    pytest = None

SHOWN_OUTPUT = 2000  # characters of the output a failure message shows


def _output(output: Any) -> Output:
    if isinstance(output, Output):
        return output
    if isinstance(output, str):
        return Output(text=output)
    if isinstance(output, Completion):
        return Output(text=output.text, input_tokens=output.usage.input_tokens,
                      output_tokens=output.usage.output_tokens, parsed=output.parsed)
    raise ConfigError(f"assert_llm takes a str or an llmkit Completion, got {type(output).__name__}")


def _listed(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _assertions(contains, icontains, equals, regex, not_contains, is_json, json_schema, similar, threshold,
                rubric) -> list[Assertion]:
    specs: list[dict[str, Any]] = []
    specs += [{"type": "contains", "value": v} for v in _listed(contains)]
    specs += [{"type": "icontains", "value": v} for v in _listed(icontains)]
    specs += [{"type": "not-contains", "value": v} for v in _listed(not_contains)]
    if equals is not None:
        specs.append({"type": "equals", "value": equals})
    specs += [{"type": "regex", "value": v} for v in _listed(regex)]
    if is_json is not None:  # True: JSON; False: not JSON; a dict: JSON valid against that schema
        specs.append({"type": "is-json"} if is_json is True else {"type": "not-is-json"} if is_json is False
                     else {"type": "is-json", "value": is_json})
    if json_schema is not None:
        specs.append({"type": "json-schema", "value": json_schema})
    if similar is not None:
        specs.append({"type": "similar", "value": similar, "threshold": threshold})
    if rubric is not None:
        specs.append({"type": "llm-rubric", "value": rubric, "threshold": threshold})
    if threshold is not None and similar is None and rubric is None:
        raise ConfigError("assert_llm: threshold applies to similar= and rubric=; neither was given")
    return [Assertion.parse(s) for s in specs]


def _line(r: Result) -> str:
    line = f"  {'PASS' if r.passed else 'FAIL'}  {r.type}: {r.reason}"
    reasoning = r.details.get("reasoning")
    if reasoning and reasoning not in r.reason:  # the reason clips long reasoning; show all of it
        line += f"\n        judge reasoning: {reasoning}"
    return line


def failure_message(output: Output, results: list[Result]) -> str:
    """The text of assert_llm's AssertionError: the output, then every expectation with PASS/FAIL."""
    failed = sum(not r.passed for r in results)
    text = output.text if len(output.text) <= SHOWN_OUTPUT else output.text[:SHOWN_OUTPUT] + "…"
    shown = "\n".join("    " + line for line in text.splitlines()) or "    (empty)"
    lines = [f"assert_llm: {failed} of {len(results)} expectations failed", "output:", shown, "expectations:"]
    return "\n".join(lines + [_line(r) for r in results])


def assert_llm(output: str | Completion | Output, *, contains: str | list[str] | None = None,
               icontains: str | list[str] | None = None, equals: Any = None, regex: str | list[str] | None = None,
               not_contains: str | list[str] | None = None, is_json: bool | dict | None = None,
               json_schema: dict | None = None, similar: str | list[str] | None = None, threshold: float | None = None,
               rubric: str | None = None, judge: Any = None, vars: dict[str, Any] | None = None) -> list[Result]:
    """Check a model output; raise ``AssertionError`` listing every expectation if any fails.

    Args:
        output: the text, or the ``Completion`` a model returned.
        contains, icontains, not_contains: a string or a list of strings (each one must hold).
        equals: the exact text, or a JSON value the output must parse to.
        regex: a pattern (or several) that must match somewhere in the output.
        is_json: True: the output is JSON; False: it is not; a dict: JSON valid against that schema.
        json_schema: a JSON Schema the output must validate against.
        similar: text the output must be close to (cosine similarity of the embedded MiniLM).
        threshold: passing score for ``similar`` (default 0.75) and ``rubric`` (default: the judge's pass mark).
        rubric: what a good output does, graded by ``judge``.
        judge: a model spec or Model for ``rubric``; default: the embedded model ``llmkit.model()``.
        vars: values for ``{{name}}`` in the expectations.

    Returns:
        The results, when every expectation holds.

    Example:
        >>> assert_llm("The capital of France is Paris.", icontains="paris", not_contains="Lyon")
        >>> assert_llm('{"city": "Paris"}', is_json={"type": "object", "required": ["city"]})
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this function's
    out = _output(output)
    checks = _assertions(contains, icontains, equals, regex, not_contains, is_json, json_schema, similar, threshold,
                         rubric)
    if not checks:
        raise ConfigError("assert_llm needs an expectation: contains=, icontains=, equals=, regex=, not_contains=, "
                          "is_json=, json_schema=, similar= or rubric=")
    results = [evaluate(a, out, vars, judge=judge) for a in checks]
    if not all(r.passed for r in results):
        raise AssertionError(failure_message(out, results))
    return results


if pytest is not None:

    @pytest.fixture(scope="session")
    def llm_judge():
        """The default judge, the embedded model (``llmkit.model()``), loaded once per test session."""
        return resolve_judge(None)
