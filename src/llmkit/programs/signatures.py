"""Signatures: what an LM call takes and gives, declared as typed, described fields.

A signature is either a string or a class. The class's docstring is the task's instructions;
each field's type is enforced through structured output and its ``desc`` is shown to the model.

    >>> QA = make_signature("question, context: list[str] -> answer")
    >>> class Sum(Signature):
    ...     \"\"\"Add the numbers.\"\"\"
    ...     numbers: list[int] = InputField(desc="the numbers to add")
    ...     total: int = OutputField(desc="their sum")
    >>> Sum.input_fields, Sum.output_fields
    (['numbers'], ['total'])
    >>> Sum.instructions
    'Add the numbers.'

Signatures are immutable: ``prepend``, ``append`` and ``with_instructions`` return new classes.
"""
from __future__ import annotations

import copy
import importlib
import re
import typing
import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from ..core.errors import ConfigError

_KIND = "__llmkit_field"  # json_schema_extra key saying whether a field is an input or an output


def InputField(*, desc: str = "", **kw: Any) -> Any:
    """An input of a signature: ``question: str = InputField(desc="asked by the user")``."""
    return _field("input", desc, kw)


def OutputField(*, desc: str = "", **kw: Any) -> Any:
    """An output of a signature: ``answer: int = OutputField(desc="the number asked for")``."""
    return _field("output", desc, kw)


def _field(kind: str, desc: str, kw: dict[str, Any]) -> Any:
    """A pydantic Field marked as an input or output; ``kw``: other Field options (``default=``, ``ge=``…)."""
    return Field(description=desc or None, json_schema_extra={_KIND: kind}, **kw)


def field_kind(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    return extra.get(_KIND) if isinstance(extra, dict) else None


class _view:
    """A read-only class-level property that is not a data descriptor: a field of the same name
    (``instructions: str = InputField()``) then stays a field instead of reading this view."""

    def __init__(self, f: Any):
        self.f, self.__doc__ = f, f.__doc__

    def __get__(self, cls: Any, owner: Any = None) -> Any:
        return self.f(cls)


class SignatureMeta(type(BaseModel)):
    """Class-level views of a signature (``QA.input_fields``, ``QA.instructions``)."""

    def __new__(mcs, name: str, bases: tuple, namespace: dict, **kw: Any):
        with warnings.catch_warnings():  # a field may be called `instructions`: these views live on the class only
            warnings.filterwarnings("ignore", message=r"Field name .* shadows an attribute in parent")
            return super().__new__(mcs, name, bases, namespace, **kw)

    @_view
    def input_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items() if field_kind(f) == "input"]

    @_view
    def output_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items() if field_kind(f) == "output"]

    @_view
    def instructions(cls) -> str:
        doc = (cls.__dict__.get("__doc__") or "").strip()
        return doc or default_instructions(cls.input_fields, cls.output_fields)

    @_view
    def spec(cls) -> str:
        """The signature as a typed string: ``"question: str -> answer: int"``."""
        side = lambda names: ", ".join(f"{n}: {type_name(cls.model_fields[n].annotation)}" for n in names)
        return f"{side(cls.input_fields)} -> {side(cls.output_fields)}"


class Signature(BaseModel, metaclass=SignatureMeta):
    """Base of every signature class; see the module docstring."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @classmethod
    def describe(cls, name: str) -> str:
        return cls.model_fields[name].description or ""

    @classmethod
    def with_instructions(cls, instructions: str) -> type[Signature]:
        return _build(cls.__name__, instructions, _fields(cls))

    @classmethod
    def prepend(cls, name: str, field: Any, type_: Any = str) -> type[Signature]:
        """A new signature with ``name`` first among its kind (inputs or outputs)."""
        return cls._insert(name, field, type_, first=True)

    @classmethod
    def append(cls, name: str, field: Any, type_: Any = str) -> type[Signature]:
        return cls._insert(name, field, type_, first=False)

    @classmethod
    def _insert(cls, name: str, field: FieldInfo, type_: Any, first: bool) -> type[Signature]:
        if name in cls.model_fields:
            raise ConfigError(f"signature {cls.__name__} already has a field {name!r}")
        kind = field_kind(field)
        if kind not in ("input", "output"):
            raise ConfigError(f"field {name!r} must be an InputField() or OutputField()")
        fields = _fields(cls)
        same = [i for i, (_, _, f) in enumerate(fields) if field_kind(f) == kind]
        if same:
            at = same[0] if first else same[-1] + 1
        else:
            at = 0 if kind == "input" else len(fields)
        fields.insert(at, (name, type_, field))
        return _build(cls.__name__, cls.__dict__.get("__doc__"), fields)

    @classmethod
    def output_model(cls) -> type[BaseModel]:
        """A Pydantic model of the output fields: the schema the model's reply is held to."""
        defs = {}
        for n in cls.output_fields:
            info = copy.copy(cls.model_fields[n])  # keeps constraints (ge=, max_length=…) and the description
            info.json_schema_extra = None
            defs[n] = (info.annotation, info)
        return create_model(f"{cls.__name__}Output", __config__=ConfigDict(extra="forbid"), **defs)


def default_instructions(inputs: list[str], outputs: list[str]) -> str:
    quote = lambda names: ", ".join(f"`{n}`" for n in names)
    return f"Given the fields {quote(inputs)}, produce the fields {quote(outputs)}."


def _fields(sig: type[Signature]) -> list[tuple[str, Any, FieldInfo]]:
    return [(n, f.annotation, f) for n, f in sig.model_fields.items()]


def _build(name: str, instructions: str | None, fields: list[tuple[str, Any, FieldInfo]]) -> type[Signature]:
    sig = create_model(name, __base__=Signature, __doc__=instructions, **{n: (t, f) for n, t, f in fields})
    sig.__module__ = __name__  # a built signature is described by its spec, not importable by name
    return sig


# --- string signatures --------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_]\w*")
# Types a string signature may name (anything else: write a Signature class).
_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                          "tuple": tuple, "Any": Any, "Literal": typing.Literal, "Optional": typing.Optional,
                          "None": None}


def parse_type(text: str) -> Any:
    """A type written in a string signature (``int``, ``list[str]``, ``Literal['a', 'b']``)."""
    try:
        return eval(text, {"__builtins__": {}}, dict(_TYPES))
    except Exception:
        raise ConfigError(f"unknown type {text!r} in a signature; accepted: {', '.join(_TYPES)} "
                          "and their combinations (list[str], dict[str, int], Literal['a', 'b'])") from None


def type_name(t: Any) -> str:
    if isinstance(t, type) and not typing.get_args(t):
        return t.__name__
    return repr(t).replace("typing.", "")


def _split_fields(side: str) -> list[str]:
    """Split on commas outside brackets (``a: dict[str, int], b``)."""
    parts, depth, cur = [], 0, ""
    for ch in side:
        depth += ch in "[(" and 1 or 0
        depth -= ch in "])" and 1 or 0
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def make_signature(spec: str, instructions: str | None = None, name: str = "StringSignature") -> type[Signature]:
    """A signature from ``"question, context: list[str] -> answer: int"`` (untyped fields are ``str``)."""
    if not isinstance(spec, str) or spec.count("->") != 1:
        raise ConfigError(f"a signature string has one '->' between inputs and outputs, like "
                          f"'question, context -> answer'; got {spec!r}")
    fields: list[tuple[str, Any, FieldInfo]] = []
    for kind, side in zip(("input", "output"), spec.split("->")):
        for part in _split_fields(side):
            fname, _, tname = part.partition(":")
            fname = fname.strip()
            if not _NAME.fullmatch(fname):
                raise ConfigError(f"{fname!r} in signature {spec!r} is not a field name")
            make = InputField if kind == "input" else OutputField
            fields.append((fname, parse_type(tname.strip()) if tname.strip() else str, make()))
    names = [f[0] for f in fields]
    if len(set(names)) != len(names):
        raise ConfigError(f"signature {spec!r} names a field twice")
    if not any(field_kind(f) == "output" for _, _, f in fields):
        raise ConfigError(f"signature {spec!r} has no output field")
    return _build(name, instructions, fields)


def ensure_signature(sig: str | type[Signature], instructions: str | None = None) -> type[Signature]:
    """A Signature class from a string or a class (``instructions`` replace the docstring)."""
    if isinstance(sig, str):
        return make_signature(sig, instructions)
    if isinstance(sig, type) and issubclass(sig, Signature):
        return sig.with_instructions(instructions) if instructions is not None else sig
    raise ConfigError(f"a signature is a string like 'question -> answer' or a Signature class, got {sig!r}")


def signature_state(sig: type[Signature]) -> dict[str, Any]:
    """What ``save`` writes about a signature: the importable class if there is one, and always
    the spec, instructions and field descriptions, from which a string signature is rebuilt."""
    state: dict[str, Any] = {"spec": sig.spec, "instructions": sig.instructions,
                             "desc": {n: f.description for n, f in sig.model_fields.items() if f.description}}
    if sig.__module__ != __name__:
        state["class"] = f"{sig.__module__}:{sig.__qualname__}"
    return state


def signature_from_state(state: dict[str, Any]) -> type[Signature]:
    ref = state.get("class")
    if ref:
        mod, _, qual = ref.partition(":")
        try:
            obj: Any = importlib.import_module(mod)
            for part in qual.split("."):
                obj = getattr(obj, part)
            return obj.with_instructions(state["instructions"])
        except (ImportError, AttributeError):
            pass  # rebuilt from the spec below: the same fields, types of the basic kinds
    sig = make_signature(state["spec"], state["instructions"])
    fields = [(n, t, f) for n, t, f in _fields(sig)]
    for n, _, f in fields:
        f.description = state.get("desc", {}).get(n)
    return _build(sig.__name__, state["instructions"], fields)


def derive(sig: type[Signature], *, instructions: str, inputs: list[tuple[str, Any, Any]] = (),
           outputs: list[tuple[str, Any, Any]] | None = None, keep_outputs: bool = True) -> type[Signature]:
    """A new signature from ``sig``'s inputs plus ``inputs``, then ``outputs`` and (``keep_outputs``)
    ``sig``'s outputs: how ProgramOfThought and MultiChainComparison build their inner steps.

    Each added field is ``(name, type, InputField(...) or OutputField(...))``.
    """
    own = _fields(sig)
    fields = [f for f in own if field_kind(f[2]) == "input"] + list(inputs) + list(outputs or [])
    if keep_outputs:
        fields += [f for f in own if field_kind(f[2]) == "output"]
    return _build(sig.__name__, instructions, fields)
