"""What a model's output must look like: JSON Schema, a Pydantic type, a regex, a choice, a grammar.

A constraint knows three things:

- ``grammar()``: the llguidance grammar that local backends turn into token masks, so every
  generated token keeps the output inside the language (invalid output cannot be produced);
- ``schema()``: the JSON Schema that remote providers enforce with their own mechanism
  (``None`` for constraints that are not JSON);
- ``check(text)``: parse and validate a finished output, returning the value (a dict, a Pydantic
  instance, the chosen string) or raising :class:`Invalid` with one line per problem.

Every constraint is checked when it is built: a bad schema, regex or grammar raises
:class:`~llmkit.ConstraintError` naming the offending part, before any generation.

Example:
    >>> from llmkit.structured import JSONSchema, Regex, Choice
    >>> Regex(r"\\d{4}-\\d{2}-\\d{2}").check("2026-11-26")
    '2026-11-26'
    >>> Choice(["positive", "negative"]).check("negative")
    'negative'
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..core.errors import ConstraintError

# JSON as small models write it best: one line, a space after ',' and ':' (no runaway whitespace).
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class Invalid(Exception):
    """An output that does not satisfy its constraint; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


def _validated(grammar: str, what: str) -> str:
    """Check a grammar with llguidance (no tokenizer needed) and return it, or raise ConstraintError."""
    import llguidance

    bad, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if bad:  # one line: drop llguidance's source excerpts ("   1 | start: foo") and caret lines
        lines = [ln.strip() for ln in messages[0].splitlines()
                 if ln.strip() and not re.fullmatch(r"\s*(\d+\s*\|.*|[\^~\s]+)", ln)]
        raise ConstraintError(f"{what} cannot be enforced: {' '.join(lines)}")
    return grammar


class Constraint:
    """Base of every constraint; see the module docstring."""

    kind: str = "constraint"

    def grammar(self) -> str:
        raise NotImplementedError

    def schema(self) -> dict | None:
        return None

    def check(self, text: str) -> Any:
        raise NotImplementedError

    def instructions(self) -> str:
        """A sentence telling a model what to write, for prompts (the constraint itself enforces it)."""
        raise NotImplementedError


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Invalid([f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"]) from None


class JSON(Constraint):
    """Any JSON object."""

    kind = "json"
    _SCHEMA = {"type": "object"}

    def __init__(self):
        import llguidance

        self._grammar = _validated(llguidance.LLMatcher.grammar_from_json_schema(self._SCHEMA, overrides=JSON_OPTIONS),
                                   "JSON()")

    def grammar(self) -> str:
        return self._grammar

    def check(self, text: str) -> Any:
        value = _load_json(text)
        if not isinstance(value, dict):
            raise Invalid([f"expected a JSON object, got {type(value).__name__}"])
        return value

    def instructions(self) -> str:
        return "Reply with a single JSON object and nothing else."

    def __repr__(self) -> str:
        return "JSON()"


class JSONSchema(Constraint):
    """JSON that validates against a JSON Schema (draft 2020-12; ``$ref``/``$defs`` included).

    Args:
        schema: the schema, a dict.
        name: a name for providers that want one (OpenAI's ``json_schema.name``).
        bounded: generate locally within practical bounds (see :func:`_bounded`): every output
            still validates against ``schema``, but a small model can no longer write a number,
            a timestamp or a list of invented keys that never ends. False: the schema as it is.
    """

    kind = "json_schema"

    def __init__(self, schema: dict, name: str | None = None, bounded: bool = True):
        import llguidance
        from jsonschema import Draft202012Validator, FormatChecker
        from jsonschema.exceptions import SchemaError

        if not isinstance(schema, dict):
            raise ConstraintError(f"a JSON Schema must be a dict, got {type(schema).__name__}: {schema!r:.80}")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise ConstraintError(f"invalid JSON Schema at {where}: {e.message}") from None
        self._schema = schema
        self.name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(name or schema.get("title") or "response"))[:64]  # providers' rule
        self._validator = Draft202012Validator(schema, format_checker=FormatChecker())
        self.bounded = bounded
        self._grammar = _validated(llguidance.LLMatcher.grammar_from_json_schema(
            _bounded(schema) if bounded else schema, overrides=JSON_OPTIONS), "this JSON Schema")

    def grammar(self) -> str:
        return self._grammar

    def schema(self) -> dict:
        return self._schema

    def check(self, text: str) -> Any:
        value = _load_json(text)
        errors = [f"at {e.json_path}: {e.message}" for e in self._validator.iter_errors(value)]
        if errors:
            raise Invalid(errors)
        return value

    def instructions(self) -> str:
        return ("Reply with a single JSON value that validates against this JSON Schema, and nothing else:\n"
                + json.dumps(self._schema))

    def __repr__(self) -> str:
        return f"JSONSchema({json.dumps(self._schema)[:80]})"


class Typed(JSONSchema):
    """JSON for a Python type through Pydantic: a ``BaseModel`` class, ``list[int]``, a ``Literal``…

    ``check`` returns the validated Python value (a model instance for a model class).
    """

    kind = "json_schema"

    def __init__(self, tp: Any):
        from pydantic import PydanticSchemaGenerationError, TypeAdapter

        try:
            self._adapter = TypeAdapter(tp)
            schema = self._adapter.json_schema()
        except PydanticSchemaGenerationError as e:
            raise ConstraintError(f"{tp!r} has no JSON Schema: {e}") from None
        self.type = tp
        super().__init__(schema, name=getattr(tp, "__name__", None))

    def check(self, text: str) -> Any:
        from pydantic import ValidationError

        try:
            return self._adapter.validate_json(text)
        except ValidationError as e:
            raise Invalid([f"at {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                           for err in e.errors()]) from None

    def __repr__(self) -> str:
        return f"Typed({getattr(self.type, '__name__', self.type)!r})"


SAFE_INT = 2**53 - 1       # the largest integer every JSON parser reads exactly
NUMBER_LIMIT = 1e15        # |x| for numbers the schema leaves unbounded
NUMBER_STEP = 1e-6         # decimals for numbers with no multipleOf: six at most
FORMAT_LENGTH = {"date-time": 35, "time": 21}   # 2026-11-26T10:16:49.123456+01:00 is 32 characters
_YEAR = r"(000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d\d\d)"
_LEAP_YEAR = r"(\d\d(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
#: Exactly the valid calendar dates YYYY-MM-DD (0001-9999, February 29 in leap years only): what
#: the validator's ``date`` format accepts. llguidance's own ``date`` lets through 2022-02-29.
DATE_PATTERN = (rf"^({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)"
                rf"|02-(0[1-9]|1\d|2[0-8]))|{_LEAP_YEAR}-02-29)$")
_SUBSCHEMAS = ("properties", "$defs", "definitions", "items", "prefixItems", "anyOf", "oneOf", "allOf",
               "additionalProperties", "then", "else")


def _bounded(schema: Any, in_all_of: bool = False) -> Any:
    """The schema a local model generates under: a subset of ``schema``'s language, so every output
    still validates, without the endless outputs a small model falls into.

    - an object that lists ``properties`` and says nothing of ``additionalProperties`` gets no
      invented keys (``false``), except inside ``allOf``, where its siblings may add properties;
    - an integer with no bound stays within ±(2^53 - 1); a number with no bound within ±1e15,
      and with no ``multipleOf`` gets six decimals at most;
    - a ``date-time`` or ``time`` string with no ``maxLength`` gets a length that fits any
      timestamp with microseconds (its fraction of a second is otherwise unbounded);
    - a ``date`` string with no ``pattern`` is generated by :data:`DATE_PATTERN`, real dates only.
    """
    if isinstance(schema, list):
        return [_bounded(x, in_all_of) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMAS:
        if key not in out:
            continue
        sub = out[key]
        if key in ("properties", "$defs", "definitions") and isinstance(sub, dict):
            out[key] = {k: _bounded(v) for k, v in sub.items()}
        elif isinstance(sub, (dict, list)):
            out[key] = _bounded(sub, in_all_of=key == "allOf")
    types = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
    if "properties" in out and not in_all_of and "allOf" not in out and "additionalProperties" not in out \
            and "patternProperties" not in out and "unevaluatedProperties" not in out:
        out["additionalProperties"] = False
    if "integer" in types:
        out.setdefault("minimum", -SAFE_INT) if "exclusiveMinimum" not in out else None
        out.setdefault("maximum", SAFE_INT) if "exclusiveMaximum" not in out else None
    elif "number" in types:
        out.setdefault("minimum", -NUMBER_LIMIT) if "exclusiveMinimum" not in out else None
        out.setdefault("maximum", NUMBER_LIMIT) if "exclusiveMaximum" not in out else None
        out.setdefault("multipleOf", NUMBER_STEP)
    if out.get("format") in FORMAT_LENGTH:
        out.setdefault("maxLength", FORMAT_LENGTH[out["format"]])
    elif out.get("format") == "date" and "pattern" not in out:
        del out["format"]  # the check still holds the output to the schema's format
        out["pattern"] = DATE_PATTERN
    return out


def _free_strings(schema) -> int:
    """How many free (uncapped-by-schema) string fields ``schema`` has, nested ones included."""
    if isinstance(schema, list):
        return sum(_free_strings(x) for x in schema)
    if not isinstance(schema, dict):
        return 0
    types = schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]
    own = int("string" in types and not any(k in schema for k in ("enum", "const", "pattern", "format")))
    subs = [*schema.get("properties", {}).values(), *schema.get("$defs", {}).values()]
    subs += [schema[k] for k in ("items", "prefixItems", "anyOf", "oneOf", "allOf") if k in schema]
    return own + sum(_free_strings(x) for x in subs)


def _cap_strings(schema, cap: int | None):
    """``schema`` with ``maxLength <= cap`` on every free string (not enums, consts, patterns or formats)."""
    if cap is None:
        return schema
    if isinstance(schema, list):
        return [_cap_strings(x, cap) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (_cap_strings(v, cap) if isinstance(v, (dict, list)) and k not in ("enum", "const", "default", "examples")
               else v) for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _cap_strings(v, cap) for k, v in schema["properties"].items()}
    types = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
    if "string" in types and not any(k in out for k in ("enum", "const", "pattern", "format")):
        out["maxLength"] = max(min(out.get("maxLength", cap), cap), out.get("minLength", 0))
    return out


class Regex(Constraint):
    """Text that matches a regular expression in full (Rust ``regex`` syntax, as llguidance reads it)."""

    kind = "regex"

    def __init__(self, pattern: str):
        import llguidance

        if not isinstance(pattern, str) or not pattern:
            raise ConstraintError(f"a regex must be a non-empty string, got {pattern!r}")
        self.pattern = pattern
        self._grammar = _validated(llguidance.LLMatcher.grammar_from_regex(pattern), f"regex {pattern!r}")
        try:
            self._python = re.compile(pattern)
        except re.error:  # Rust-only syntax: llguidance already guarantees the match locally
            self._python = None

    def grammar(self) -> str:
        return self._grammar

    def check(self, text: str) -> str:
        if self._python is not None and not self._python.fullmatch(text):
            raise Invalid([f"{text[:200]!r} does not match the regex {self.pattern!r}"])
        return text

    def instructions(self) -> str:
        return f"Reply with text that matches the regular expression {self.pattern} and nothing else."

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


class Choice(Constraint):
    """Exactly one of a list of strings (a classifier's labels, a multiple-choice letter)."""

    kind = "choice"

    def __init__(self, options: list[str]):
        import llguidance

        options = list(options) if isinstance(options, (list, tuple)) else options
        if not isinstance(options, list) or not options or not all(isinstance(o, str) and o for o in options):
            raise ConstraintError(f"choices must be a non-empty list of non-empty strings, got {options!r:.200}")
        if len(set(options)) != len(options):
            raise ConstraintError(f"choices repeat an option: {options!r:.200}")
        self.options = options
        lark = "start: " + " | ".join(json.dumps(o) for o in options)
        self._grammar = _validated(llguidance.LLMatcher.grammar_from_lark(lark), f"choices {options!r:.200}")

    def grammar(self) -> str:
        return self._grammar

    def schema(self) -> dict:
        return {"type": "string", "enum": self.options}

    def check(self, text: str) -> str:
        if text in self.options:
            return text
        # A remote model may add quotes, a period or capitals: accept it when exactly one option fits.
        norm = lambda s: re.sub(r"[\s\"'`.]+", " ", s).strip().lower()  # noqa: E731
        hits = [o for o in self.options if norm(o) == norm(text)]
        if len(hits) == 1:
            return hits[0]
        raise Invalid([f"{text[:200]!r} is not one of {self.options}"])

    def instructions(self) -> str:
        return "Reply with exactly one of: " + ", ".join(self.options) + "."

    def __repr__(self) -> str:
        return f"Choice({self.options!r})"


class Grammar(Constraint):
    """Text in the language of a context-free grammar: Lark syntax as llguidance reads it
    (``%json {...}`` embeds a JSON Schema), or llama.cpp's GBNF (recognised by its ``::=``).

    Only local models can be held to a grammar; there is no remote mechanism to validate one.
    """

    kind = "grammar"

    def __init__(self, text: str):
        import llguidance
        from llguidance.gbnf_to_lark import any_to_lark

        if not isinstance(text, str) or not text.strip():
            raise ConstraintError(f"a grammar must be non-empty text, got {text!r:.80}")
        self.text, self.syntax = text, "gbnf" if "::=" in text else "lark"
        lark = text
        if self.syntax == "gbnf":
            try:
                lark = any_to_lark(text)
            except Exception as e:
                raise ConstraintError(f"this GBNF grammar cannot be read: {e}") from None
        self._grammar = _validated(llguidance.LLMatcher.grammar_from_lark(lark), f"this {self.syntax.upper()} grammar")

    def grammar(self) -> str:
        return self._grammar

    def check(self, text: str) -> str:
        return text  # enforced token by token; see the class docstring

    def instructions(self) -> str:
        return "Reply in the format this grammar defines:\n" + self.text

    def __repr__(self) -> str:
        return f"Grammar({self.text[:60]!r})"


def as_constraint(value: Any) -> Constraint:
    """Accept what users naturally pass: a Constraint, a Pydantic model class or any type
    (``list[int]``), a JSON Schema dict, or a list of choices."""
    if isinstance(value, Constraint):
        return value
    if isinstance(value, dict):
        return JSONSchema(value)
    if isinstance(value, (list, tuple)):
        return Choice(list(value))
    if isinstance(value, type) or hasattr(value, "__origin__") or str(value).startswith("typing."):
        return Typed(value)
    raise ConstraintError(f"{value!r:.80} is not a constraint: pass a Pydantic model class, a JSON Schema dict, "
                          "a list of choices, or JSON(), JSONSchema(), Regex(), Choice(), Grammar()")
