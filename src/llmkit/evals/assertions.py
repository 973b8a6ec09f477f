"""Assertions: promptfoo's checks on one model output (``contains``, ``is-json``, ``similar``, ``llm-rubric``…).

An assertion is one item of a test case's ``assert:`` list in a suite file::

    assert:
      - type: icontains
        value: "{{city}}"           # string values are Jinja2 templates over the case's vars
      - type: not-contains          # every type also as not-<type>
        value: As an AI
      - type: llm-rubric
        value: Answers in one sentence and names the capital.
        threshold: 0.75             # on the judge's score mapped to [0, 1] (default: the judge's pass mark)
      - type: latency
        value: 2000                 # ms
        weight: 0.5                 # share of the case's weighted score

``TYPES`` lists every type with what it checks. An output whose model call failed fails every
assertion with that error as the reason (never skipped, never NaN); so does a check that cannot be
made (an unknown cost, a python check that raises), in its ``not-`` form too.

Example:
    >>> from llmkit.evals.assertions import Assertion, evaluate
    >>> from llmkit.evals.types import Output
    >>> r = evaluate(Assertion(type="contains", value="{{city}}"), Output("The capital is Lyon."), {"city": "Paris"})
    >>> r.passed, r.reason
    (False, "expected to contain 'Paris'; got 'The capital is Lyon.'")
"""
from __future__ import annotations

import builtins
import importlib
import json
import math
import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ..core.errors import ConfigError
from .types import Output, Result

TYPES = {
    "equals": "the output is exactly `value` (a non-string value: the output parsed as JSON equals it)",
    "contains": "the output contains `value`",
    "icontains": "the output contains `value`, ignoring case",
    "contains-any": "the output contains at least one of `value` (a list, or a comma-separated string)",
    "contains-all": "the output contains every item of `value` (score: the fraction found)",
    "regex": "the Python regular expression `value` matches somewhere in the output",
    "starts-with": "the output starts with `value`",
    "is-json": "the output is JSON; with a `value`, JSON valid against that JSON Schema",
    "json-schema": "the output is JSON valid against the JSON Schema `value`",
    "one-of": "the output, stripped, is one of the strings in the list `value`",
    "python": "a Python expression over `output` and `vars` (or a body that returns, or 'pkg.module:function' "
              "called as f(output, vars)) gives a bool, a score, or {pass, score, reason}",
    "similar": "cosine similarity (embedded MiniLM) to `value` (or the best of a list) is at least `threshold`, "
               "default 0.75",
    "llm-rubric": "a judge model grades the output against the rubric `value`",
    "latency": "the call took at most `value` ms",
    "max-tokens": "the output is at most `value` tokens",
    "cost": "the call cost at most `value` USD (an unknown cost fails)",
}
SIMILAR_THRESHOLD = 0.75
_THRESHOLD_TYPES = ("similar", "llm-rubric", "python", "latency", "max-tokens", "cost")  # threshold: limit, as promptfoo
_LIMIT_TYPES = ("latency", "max-tokens", "cost")
_RENDERED = ("equals", "contains", "icontains", "contains-any", "contains-all", "regex", "starts-with", "one-of",
             "similar", "llm-rubric")  # python code and JSON Schemas are used as written
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class Assertion(BaseModel, extra="forbid"):
    """One check on a model output; see ``TYPES``. Unknown keys and bad values fail at load time.

    Example:
        >>> Assertion(type="regex", value=r"\\d{4}")
        >>> Assertion.parse({"type": "similar", "value": "Paris is the capital.", "threshold": 0.8})
    """

    type: str = Field(description="one of TYPES, or not-<type> to invert it")
    value: Any = Field(None, description="what to check against; string values are Jinja2 templates over vars")
    threshold: float | None = Field(None, description="passing score for similar, llm-rubric and python; "
                                                      "the limit for latency, max-tokens and cost")
    weight: float = Field(1.0, ge=0, description="share in the case's weighted score (0: reported only)")
    judge: str | None = Field(None, description="model spec of the llm-rubric judge (default: the suite's judge)")
    template: str | None = Field(None, description="llm-rubric prompt replacing judges.RUBRIC_TEMPLATE")

    @property
    def base(self) -> str:
        """The type without its ``not-`` prefix."""
        return self.type.removeprefix("not-")

    @property
    def inverted(self) -> bool:
        return self.type.startswith("not-")

    @field_validator("type")
    @classmethod
    def _known(cls, t: str) -> str:
        if t.removeprefix("not-") not in TYPES:
            raise ValueError(f"unknown assertion type {t!r}; accepted: {', '.join(TYPES)} (each also as not-<type>)")
        return t

    @model_validator(mode="after")
    def _value_fits_type(self) -> Assertion:
        t, v = self.base, self.value
        if self.threshold is not None and t not in _THRESHOLD_TYPES:
            raise ValueError(f"threshold: {self.type!r} has no threshold (only {', '.join(_THRESHOLD_TYPES)})")
        if (self.judge is not None or self.template is not None) and t != "llm-rubric":
            raise ValueError(f"{'judge' if self.judge is not None else 'template'}: only llm-rubric uses it, "
                             f"not {self.type!r}")
        need = _VALUE_RULES[t](self, v)
        if need:
            raise ValueError(f"value of {self.type!r} {need}; got {v!r:.80}")
        return self

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Assertion:
        """An assertion from a dict, or a ConfigError in one line naming the bad field."""
        try:
            return cls(**spec)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            raise ConfigError(f"assertion {where + ': ' if where else ''}{msg}") from None
        except TypeError:
            raise ConfigError(f"an assertion is a mapping with type and value, got {spec!r:.80}") from None


# --- load-time checks of `value`: each returns what is wrong ("must be ...") or None ----------------

def _is_text(v: Any) -> bool:
    return isinstance(v, (str, int, float)) and not isinstance(v, bool)


def _need_text(a: Assertion, v: Any) -> str | None:
    return None if _is_text(v) else "must be a string"


def _need_texts(a: Assertion, v: Any) -> str | None:
    if isinstance(v, str):  # promptfoo's comma-separated form
        a.value = v = [s.strip() for s in v.split(",") if s.strip()]
    if isinstance(v, list) and v and all(_is_text(s) for s in v):
        a.value = [str(s) for s in v]
        return None
    return "must be a non-empty list of strings"


def _need_equals(a: Assertion, v: Any) -> str | None:
    return "is required (a string, or any JSON value to compare with the parsed output)" if v is None else None


def _need_regex(a: Assertion, v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a regular expression string"
    try:
        re.compile(v)
    except re.error as e:
        return f"is not a valid regular expression ({e})"
    return None


def _need_schema(a: Assertion, v: Any) -> str | None:
    if v is None and a.base == "is-json":
        return None
    if not isinstance(v, dict):
        return "must be a JSON Schema (a mapping)"
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(v)
    except SchemaError as e:
        return f"is not a valid JSON Schema (at {'/'.join(map(str, e.absolute_path)) or 'the root'}: {e.message})"
    return None


def _need_one_of(a: Assertion, v: Any) -> str | None:
    if isinstance(v, list) and v and all(_is_text(s) for s in v):
        a.value = [str(s) for s in v]
        return None
    return "must be a non-empty list of strings"


def _need_python(a: Assertion, v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip():
        return "must be Python code (a string) or 'pkg.module:function'"
    if _IMPORT_PATH.fullmatch(v.strip()):
        return None
    try:
        _compile_python(v)
    except SyntaxError as e:
        return f"is not valid Python ({e.msg}, line {e.lineno})"
    return None


def _need_similar(a: Assertion, v: Any) -> str | None:
    if _is_text(v) or isinstance(v, list) and v and all(_is_text(s) for s in v):
        return None
    return "must be a string or a non-empty list of strings"


def _need_rubric(a: Assertion, v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "must be the rubric, a non-empty string"


def _need_limit(a: Assertion, v: Any) -> str | None:
    if v is not None and a.threshold is not None:
        return "and threshold are both set; give the limit once"
    limit = a.threshold if v is None else v
    try:  # a CSV shorthand ("latency:500") gives a string
        ok = not isinstance(limit, bool) and float(limit) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return "(or threshold) must be a number >= 0"
    a.value, a.threshold = float(limit), None
    return None


_VALUE_RULES = {
    "equals": _need_equals, "contains": _need_text, "icontains": _need_text, "contains-any": _need_texts,
    "contains-all": _need_texts, "regex": _need_regex, "starts-with": _need_text, "is-json": _need_schema,
    "json-schema": _need_schema, "one-of": _need_one_of, "python": _need_python, "similar": _need_similar,
    "llm-rubric": _need_rubric, "latency": _need_limit, "max-tokens": _need_limit, "cost": _need_limit,
}


# --- the checks: each returns (passed, score or None, what was expected, what it got) ------------

class _CannotCheck(Exception):
    """The check has no verdict (unknown cost, a failing judge): fails in both forms."""


def _clip(text: str, n: int = 80) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n] + "…"


def _show(text: Any, n: int = 80) -> str:
    return repr(_clip(text, n))


def _equals(a, v, out, env):
    if isinstance(v, str):
        return out.text == v, None, f"equal {_show(v)}", f"got {_show(out.text)}"
    try:
        got = json.loads(out.text)
    except ValueError:
        return False, None, f"equal the JSON {_clip(json.dumps(v))}", f"got non-JSON {_show(out.text)}"
    return got == v, None, f"equal the JSON {_clip(json.dumps(v))}", f"got {_clip(json.dumps(got))}"


def _contains(a, v, out, env):
    return str(v) in out.text, None, f"contain {_show(v)}", f"got {_show(out.text)}"


def _icontains(a, v, out, env):
    return str(v).lower() in out.text.lower(), None, f"contain {_show(v)} (any case)", f"got {_show(out.text)}"


def _contains_any(a, v, out, env):
    found = [s for s in v if s in out.text]
    got = f"found {found}" if found else "found none"
    return bool(found), None, f"contain any of {_clip(v, 120)}", f"{got} in {_show(out.text)}"


def _contains_all(a, v, out, env):
    missing = [s for s in v if s not in out.text]
    got = f"missing {missing}" if missing else "found all"
    return not missing, 1 - len(missing) / len(v), f"contain all of {_clip(v, 120)}", f"{got} in {_show(out.text)}"


def _regex(a, v, out, env):
    m = re.search(v, out.text)
    got = f"matched {_show(m.group(0))} in" if m else "got"
    return m is not None, None, f"match /{_clip(v)}/", f"{got} {_show(out.text)}"


def _starts_with(a, v, out, env):
    return out.text.startswith(str(v)), None, f"start with {_show(v)}", f"got {_show(out.text)}"


def _json(a, schema, out, env):
    expect = "be JSON" if schema is None else "be JSON valid against the schema"
    try:
        value = json.loads(out.text)
    except ValueError as e:
        return False, None, expect, f"got invalid JSON ({e.msg} at column {e.colno}): {_show(out.text)}"
    if schema is None:
        return True, None, expect, f"got {_show(out.text)}"
    from jsonschema import Draft202012Validator, FormatChecker

    errors = [f"at {e.json_path}: {e.message}" for e in Draft202012Validator(schema, format_checker=FormatChecker())
              .iter_errors(value)]
    env["details"]["errors"] = errors
    got = f"got {len(errors)} error(s): {_clip('; '.join(errors), 200)}" if errors else "got valid JSON"
    return not errors, None, expect, f"{got} in {_show(out.text)}"


def _one_of(a, v, out, env):
    return out.text.strip() in v, None, f"be one of {_clip(v, 120)}", f"got {_show(out.text.strip())}"


_SAFE_BUILTINS = {n: getattr(builtins, n) for n in [
    "abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "int", "isinstance", "len", "list", "map",
    "max", "min", "range", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "zip"]}


@lru_cache(maxsize=256)
def _compile_python(code: str):
    """An expression, or else a function body that ``return``s (promptfoo's multi-line form)."""
    try:
        return compile(code.strip(), "<python assertion>", "eval"), False
    except SyntaxError as first:
        body = "def __check__():\n" + "\n".join("    " + line for line in code.strip("\n").splitlines())
        try:
            return compile(body, "<python assertion>", "exec"), True
        except SyntaxError:
            raise first from None


def _python(a, code, out, env):
    """Not a sandbox: the namespace only keeps a suite's expressions short and predictable; the code
    is the suite author's own, like a test file."""
    code = code.strip()
    if _IMPORT_PATH.fullmatch(code):
        module, _, name = code.partition(":")
        ret = getattr(importlib.import_module(module), name)(out.text, env["vars"])
    else:
        compiled, is_body = _compile_python(code)
        ns = {"__builtins__": _SAFE_BUILTINS, "output": out.text, "vars": env["vars"], "json": json, "re": re,
              "math": math}
        if is_body:
            exec(compiled, ns)
            ret = ns["__check__"]()
        else:
            ret = eval(compiled, ns)
    ret = ret.item() if hasattr(ret, "item") and not isinstance(ret, (dict, list, str)) else ret  # numpy scalars
    expect, reason = f"pass the python check {_show(code)}", None
    if isinstance(ret, dict):
        if not {"pass", "score"} & set(ret):
            raise _CannotCheck(f"the python check returned {ret!r:.80}, a dict without 'pass' or 'score'")
        passed, score, reason = ret.get("pass"), ret.get("score"), ret.get("reason")
    elif isinstance(ret, bool):
        passed, score = ret, None
    elif isinstance(ret, (int, float)):
        passed, score = None, ret
    else:
        raise _CannotCheck(f"the python check returned {type(ret).__name__} {ret!r:.60}; "
                           "expected a bool, a number or a dict with pass/score/reason")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score)):
        raise _CannotCheck(f"the python check returned the score {score!r}; expected a number")
    if passed is None:  # a score alone passes above 0, or at the threshold when there is one (as promptfoo)
        passed = score >= a.threshold if a.threshold is not None else score > 0
    env["details"]["returned"] = ret
    got = f"got {ret!r:.120}" if reason is None else f"got {_clip(reason, 200)}"
    return bool(passed), score, expect, got


_lock = threading.Lock()
_shared: dict[str, Any] = {}  # the default embedder and judge models, loaded once and shared by threads


def default_embedder():
    """The embedded MiniLM, loaded once (several seconds on CPU) for every ``similar`` check."""
    with _lock:
        if "embedder" not in _shared:
            from ..rag.embedders import Embedder

            _shared["embedder"] = Embedder()
        return _shared["embedder"]


def resolve_judge(judge: Any = None):
    """A judge model: a Model as is, a spec string loaded once, None: the embedded model ``llmkit.model()``."""
    if judge is not None and not isinstance(judge, str):
        return judge
    key = "judge:" + (judge or "")
    with _lock:
        if key not in _shared:
            from ..models import model

            _shared[key] = model(judge or "")
        return _shared[key]


def _cosine(x: list[float], y: list[float]) -> float:
    dot = sum(a * b for a, b in zip(x, y))
    norm = math.sqrt(sum(a * a for a in x) * sum(b * b for b in y))
    return dot / norm if norm else 0.0


def _similar(a, v, out, env):
    refs = [str(v)] if _is_text(v) else [str(s) for s in v]
    threshold = SIMILAR_THRESHOLD if a.threshold is None else a.threshold
    vectors = (env["embedder"] or default_embedder()).embed([out.text, *refs])
    sims = [_cosine(vectors[0], r) for r in vectors[1:]]
    best = max(range(len(sims)), key=sims.__getitem__)
    env["details"].update(similarity=sims[best], reference=refs[best])
    which = _show(refs[0]) if len(refs) == 1 else f"one of {_clip(refs, 120)}"
    return (sims[best] >= threshold, sims[best], f"be similar to {which} (cosine >= {threshold:g})",
            f"got cosine {sims[best]:.3f} for {_show(out.text)}")


def _rubric(a, rubric, out, env):
    from .judges import grade

    judge = resolve_judge(a.judge if a.judge is not None else env["judge"])
    try:
        g = grade(judge, out.text, rubric, template=a.template)
    except Exception as e:
        raise _CannotCheck(f"the judge failed: {type(e).__name__}: {e}") from None
    env["details"].update(reasoning=g.reasoning, score=g.score, scale=list(g.scale), normalized=g.normalized,
                          judge=getattr(judge, "name", str(judge)))
    passed = g.normalized >= a.threshold if a.threshold is not None else g.passed
    return (passed, g.normalized, f"satisfy the rubric {_show(rubric)}",
            f"the judge scored {g.score} on {g.scale[0]}-{g.scale[1]} ({g.normalized:.2f}): {_clip(g.reasoning, 300)}")


def _latency(a, limit, out, env):
    return out.latency_ms <= limit, None, f"take at most {limit:g} ms", f"took {out.latency_ms:.0f} ms"


def _max_tokens(a, limit, out, env):
    if out.output_tokens == 0 and out.text:
        raise _CannotCheck("the output's token count is unknown (the backend reported 0 tokens for a non-empty text)")
    return out.output_tokens <= limit, None, f"be at most {limit:g} tokens", f"got {out.output_tokens} tokens"


def _cost(a, limit, out, env):
    if out.cost is None:
        raise _CannotCheck("the call's cost is unknown (no prices for this model)")
    return out.cost <= limit, None, f"cost at most ${limit:g}", f"cost ${out.cost:.6g}"


CHECKS = {
    "equals": _equals, "contains": _contains, "icontains": _icontains, "contains-any": _contains_any,
    "contains-all": _contains_all, "regex": _regex, "starts-with": _starts_with, "is-json": _json,
    "json-schema": _json, "one-of": _one_of, "python": _python, "similar": _similar, "llm-rubric": _rubric,
    "latency": _latency, "max-tokens": _max_tokens, "cost": _cost,
}


@lru_cache(maxsize=1)
def _jinja():
    import jinja2
    import jinja2.sandbox

    return jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(value: Any, vars: dict[str, Any]) -> Any:
    """``value`` with each string (also inside a list) rendered as a Jinja2 template over ``vars``."""
    if isinstance(value, list):
        return [render(v, vars) for v in value]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return _jinja().from_string(value).render(**vars)
    return value


def evaluate(a: Assertion, output: Output | str, vars: dict[str, Any] | None = None, *, judge: Any = None,
             embedder: Any = None) -> Result:
    """Check one output against one assertion.

    Args:
        a: the assertion.
        output: what the model produced (a plain string is taken as its text).
        vars: the case's variables, for ``{{name}}`` in string values and ``vars`` in python checks.
        judge: the llm-rubric judge (a Model or a spec) when the assertion names none; default: the
            embedded model.
        embedder: the ``similar`` embedder (anything with ``embed(list[str])``); default: the embedded MiniLM.

    Example:
        >>> r = evaluate(Assertion(type="not-icontains", value="sorry"), Output("Paris."))
        >>> r.passed, r.score, r.reason
        (True, 1.0, "expected not to contain 'sorry' (any case); got 'Paris.'")
    """
    out = Output(text=output) if isinstance(output, str) else output
    vars = vars or {}

    def failed(reason: str, details: dict | None = None) -> Result:
        return Result(type=a.type, passed=False, score=0.0, reason=reason, weight=a.weight, details=details or {})

    if out.error:
        return failed(f"the model call failed: {out.error}")
    try:
        value = render(a.value, vars) if a.base in _RENDERED else a.value
    except Exception as e:  # an undefined variable, a template syntax error
        return failed(f"cannot render {_show(a.value)} from vars: {e}")
    details: dict[str, Any] = {}
    env = {"vars": vars, "judge": judge, "embedder": embedder, "details": details}
    try:
        passed, score, expect, got = CHECKS[a.base](a, value, out, env)
    except _CannotCheck as e:
        return failed(f"cannot check {a.type}: {e}", details)
    except Exception as e:  # a check that raises (python code, a bad rendered regex) fails; the run goes on
        return failed(f"{a.type} check raised {type(e).__name__}: {e}", details)
    score = float(passed) if score is None else min(max(float(score), 0.0), 1.0)
    if a.inverted:
        passed, score = not passed, 1.0 - score
    return Result(type=a.type, passed=bool(passed), score=score, weight=a.weight, details=details,
                  reason=f"expected {'not ' if a.inverted else ''}to {expect}; {got}")


def score_case(results: Iterable[Result], threshold: float | None = None) -> tuple[bool, float]:
    """A case's verdict: (passed, weighted mean score).

    Without a threshold every assertion of weight > 0 must pass; with one, the weighted score must
    reach it. Weight-0 assertions are reported only (as promptfoo), unless every weight is 0: then the
    score is the plain mean. A case with no assertions passes with score 1.

    Example:
        >>> score_case([Result("contains", True, 1.0, "", weight=3), Result("latency", False, 0.0, "")], 0.7)
        (True, 0.75)
    """
    results = list(results)
    if not results:
        return True, 1.0
    total = sum(r.weight for r in results)
    if total > 0:
        score = sum(r.score * r.weight for r in results) / total
    else:
        score = sum(r.score for r in results) / len(results)
    gating = [r for r in results if r.weight > 0] if total > 0 else results
    passed = all(r.passed for r in gating) if threshold is None else score >= threshold
    return passed, score
