"""Self-query: a question becomes a semantic search query plus a metadata filter, written by the
model under a JSON Schema built from the metadata fields you declare.

"Comedies from after 2015 about time travel" → query ``"time travel"``, filter
``{"genre": {"$eq": "comedy"}, "year": {"$gt": 2015}}``, then ``kb.search(query, filter=filter)``.

The schema allows only the declared fields, each with values of its type (or one of its allowed
values) and only the operators of :func:`~llmkit.rag.stores.sqlite.filter_sql`
(``$eq $ne $gt $gte $lt $lte $in $nin``; no ordering of booleans or labels), so locally the grammar cannot produce anything else and
a remote model's reply is validated and re-asked with the errors. :func:`check_filter` then
checks the filter once more (and repairs what is unambiguous) before it reaches the store.

    >>> from llmkit.rag.self_query import MetadataField, self_query
    >>> fields = [MetadataField("genre", "string", "the film's genre", values=["comedy", "drama", "horror"]),
    ...           MetadataField("year", "integer", "the year the film came out")]
    >>> r = self_query(lk.model(), kb, "comedies after 2015 about time travel", fields=fields)
    >>> r.query, r.filter, [h.source for h in r.hits]
    >>> hits, query, filter = r                     # it unpacks, too
    >>> print(SELF_QUERY_TEMPLATE)                  # the whole prompt; pass template= to change it
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..core import tracing
from ..core.errors import ConfigError
from ..core.types import user
from .stores import Hit, filter_sql

SELF_QUERY_TEMPLATE = """Turn the question into a search over a collection of documents: a short search query for \
what the documents should be about, and a filter on their metadata for the conditions the question states.

Metadata fields:
{fields}

Filter language: {{"field": {{"$op": value}}}} with $op one of $eq $ne $gt $gte $lt $lte, or $in / $nin with \
a list of values; several fields must all match. Use only the fields above and only conditions the \
question states; {{}} when it states none. Leave the filtered conditions out of the query.

Question: {question}"""

TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}
_PY_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
_ALIASES = {"=": "$eq", "==": "$eq", "!=": "$ne", "<>": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
            "in": "$in", "nin": "$nin", "not in": "$nin", "eq": "$eq", "ne": "$ne", "gt": "$gt", "gte": "$gte",
            "lt": "$lt", "lte": "$lte"}
_KEY = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")  # filter_sql's metadata keys, dotted for nesting


@dataclass
class MetadataField:
    """One metadata key the model may filter on.

    Args:
        name: the key in the chunks' metadata (dotted for nested keys: ``"record.author"``).
        type: ``"string"``, ``"integer"``, ``"number"`` or ``"boolean"`` (or ``str int float bool``).
        description: what it holds, for the model ("the year the film came out").
        values: the allowed values, when there are few (the model can use no other).
    """

    name: str
    type: Any = "string"
    description: str = ""
    values: list[Any] | None = None

    def __post_init__(self):
        self.type = _PY_TYPES.get(self.type, self.type)
        if not isinstance(self.name, str) or not _KEY.fullmatch(self.name):
            raise ConfigError(f"metadata field name {self.name!r} must be letters, digits, _ and -, dotted for nesting")
        if self.type not in TYPES:
            raise ConfigError(f"metadata field {self.name!r}: type {self.type!r} is not one of {', '.join(TYPES)}")
        if self.values is not None:
            if not isinstance(self.values, (list, tuple)) or not self.values:
                raise ConfigError(f"metadata field {self.name!r}: values must be a non-empty list, got {self.values!r}")
            values, self.values = self.values, None  # coerce each to the type, not yet to the list
            self.values = [_coerce(self, v) for v in values]

    def scalar_schema(self) -> dict[str, Any]:
        """The JSON Schema of one value of this field."""
        s: dict[str, Any] = {"type": self.type}
        if self.values is not None:
            s["enum"] = list(self.values)
        elif self.type == "string":
            s["maxLength"] = 200  # bounds what a small model can ramble into a value
        return s

    def operators(self) -> tuple[str, ...]:
        """The operators that make sense on this field: no ordering of booleans or of a list of labels."""
        if self.type == "boolean":
            return ("$eq", "$ne")
        return ("$eq", "$ne", "$in", "$nin") if self.values is not None else OPERATORS

    def line(self) -> str:
        """``- name (type, one of: a, b): description``, as the prompt lists the fields."""
        kind = self.type + (f", one of: {', '.join(json.dumps(v) for v in self.values)}" if self.values else "")
        return f"- {self.name} ({kind})" + (f": {self.description}" if self.description else "")


def as_fields(fields: Any) -> list[MetadataField]:
    """``MetadataField``s from fields or dicts ``{"name", "type", "description", "values"}``; names unique."""
    if not isinstance(fields, (list, tuple)) or not fields:
        raise ConfigError("fields must be a non-empty list of MetadataField(name, type, description, values)")
    out = []
    for f in fields:
        if isinstance(f, MetadataField):
            out.append(f)
        elif isinstance(f, dict):
            try:
                out.append(MetadataField(**f))
            except TypeError as e:
                raise ConfigError(f"metadata field {f!r}: {e}; accepted keys: name, type, description, values") from None
        else:
            raise ConfigError(f"metadata field {f!r} must be a MetadataField or a dict")
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"metadata fields repeat a name: {names}")
    return out


def filter_schema(fields: list[MetadataField]) -> dict[str, Any]:
    """The JSON Schema of the filters the model may write over ``fields``: filter_sql's operator form
    (``{"year": {"$gte": 2015}}``, equality as ``{"$eq": …}``), every field optional.

    One form per condition keeps the grammar small and a validation error specific ("'western' is
    not one of […]"), where a choice between a bare value and an operator object would only say
    that neither matched.
    """
    props = {}
    for f in as_fields(fields):
        scalar = f.scalar_schema()
        ops = {op: ({"type": "array", "items": scalar, "minItems": 1, "maxItems": 20}
                    if op in ("$in", "$nin") else scalar) for op in f.operators()}
        props[f.name] = {"type": "object", "properties": ops, "additionalProperties": False, "minProperties": 1,
                         **({"description": f.description} if f.description else {})}
    return {"type": "object", "properties": props, "additionalProperties": False}


def query_schema(fields: list[MetadataField]) -> dict[str, Any]:
    """The JSON Schema the model answers in: ``{"query": str, "filter": {...}}``."""
    return {"type": "object", "additionalProperties": False, "required": ["query", "filter"],
            "properties": {"query": {"type": "string", "maxLength": 300,
                                     "description": "what the documents should be about, without the filtered conditions"},
                           "filter": filter_schema(fields)}}


def _coerce(f: MetadataField, value: Any) -> Any:
    """``value`` as a value of ``f``: numbers from numeric strings, allowed values matched without
    regard to case; anything else raises ConfigError."""
    want = TYPES[f.type]
    v = value
    if f.type == "boolean":
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            v = v.strip().lower() == "true"
    elif f.type in ("integer", "number") and isinstance(v, str):
        try:
            v = float(v.strip()) if f.type == "number" else int(v.strip())
        except ValueError:
            pass
    elif f.type == "string" and isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if f.type == "integer" and isinstance(v, float) and v.is_integer():
        v = int(v)
    if f.type == "number" and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
        raise ConfigError(f"filter {f.name!r}: {value!r} is not of type {f.type}")
    if f.values is not None and v not in f.values:
        same = [a for a in f.values if isinstance(a, str) and isinstance(v, str) and a.lower() == v.strip().lower()]
        if len(same) != 1:
            raise ConfigError(f"filter {f.name!r}: {value!r} is not one of the allowed values {f.values}")
        v = same[0]
    return v


def check_filter(filter: Any, fields: Any) -> dict[str, Any]:
    """Validate a filter against the declared fields, repairing what is unambiguous; return it clean.

    Repaired: ``">="``/``"gte"`` for ``"$gte"`` (and the other operators), a bare list for
    ``{"$in": list}``, ``"2020"`` for ``2020`` in a number field, ``"Comedy"`` for an allowed
    ``"comedy"``. Rejected with a :class:`~llmkit.ConfigError` naming the bad part and what is
    accepted: unknown fields or operators, values of the wrong type or outside the allowed ones.

    Example:
        >>> check_filter({"year": {">=": "2015"}, "genre": ["Comedy"]}, fields)
        {'year': {'$gte': 2015}, 'genre': {'$in': ['comedy']}}
    """
    fields = {f.name: f for f in as_fields(fields)}
    if filter is None:
        return {}
    if not isinstance(filter, dict):
        raise ConfigError(f"filter {filter!r:.200} must be an object such as {{'year': {{'$gte': 2015}}}}")
    out: dict[str, Any] = {}
    for key, cond in filter.items():
        f = fields.get(key)
        if f is None:
            raise ConfigError(f"filter on unknown metadata field {key!r}; accepted: {', '.join(fields)}")
        if isinstance(cond, (list, tuple)):
            cond = {"$in": list(cond)}
        if not isinstance(cond, dict):
            out[key] = _coerce(f, cond)
            continue
        if not cond:
            raise ConfigError(f"filter on {key!r} has no condition")
        ops = {}
        for op, value in cond.items():
            op = _ALIASES.get(op.strip().lower(), op) if isinstance(op, str) else op
            allowed = f.operators()
            if op not in allowed:
                raise ConfigError(f"filter {key!r}: operator {op!r} is not one of {', '.join(allowed)}")
            if op in ("$in", "$nin"):
                value = value if isinstance(value, (list, tuple)) else [value]
                if not value:
                    raise ConfigError(f"filter {key!r}: {op} takes a non-empty list")
                ops[op] = [_coerce(f, v) for v in value]
            else:
                ops[op] = _coerce(f, value)
        out[key] = ops
    filter_sql(out)  # the store's own check: it must accept what we pass on
    return out


class SelfQuery(NamedTuple):
    """What :func:`self_query` returns; unpacks as ``hits, query, filter``."""

    hits: list[Hit]
    query: str
    filter: dict[str, Any]


def build_prompt(question: str, fields: list[MetadataField], template: str = SELF_QUERY_TEMPLATE) -> str:
    """The prompt :func:`build_query` sends; ``template`` may use ``{fields}`` and ``{question}``."""
    try:
        return template.format(fields="\n".join(f.line() for f in fields), question=question)
    except (KeyError, IndexError) as e:
        raise ConfigError(f"self-query template has an unknown placeholder {e}; accepted: {{fields}}, {{question}} "
                          "(double other braces: {{ }})") from None


def build_query(model: Any, question: str, fields: Any, *, template: str = SELF_QUERY_TEMPLATE,
                max_tokens: int = 300, max_retries: int = 2, **sampling: Any) -> tuple[str, dict[str, Any]]:
    """Ask ``model`` for ``(query, filter)``: JSON under :func:`query_schema`, then :func:`check_filter`.

    An empty query falls back to the question. Raises ``StructuredOutputError`` when the model's
    JSON still breaks the schema after ``max_retries`` re-asks, ``ConfigError`` when the filter
    fails :func:`check_filter`.

    Example:
        >>> build_query(lk.model(), "dramas from 1999", fields)
        ('dramas', {'genre': 'drama', 'year': 1999})
    """
    if not isinstance(question, str) or not question.strip():
        raise ConfigError(f"question={question!r} must be a non-empty string")
    fields = as_fields(fields)
    sampling.setdefault("temperature", 0)
    with tracing.span("rag.self_query", {"llmkit.rag.question": question if tracing.record_content() else None,
                                         "llmkit.rag.fields": [f.name for f in fields]}) as s:
        obj = model.json([user(build_prompt(question, fields, template))], schema=query_schema(fields),
                         max_tokens=max_tokens, max_retries=max_retries, **sampling)
        query = obj["query"].strip() or question
        filter = check_filter(obj["filter"], fields)
        s.set_attributes(tracing.clean({"llmkit.rag.query": query if tracing.record_content() else None,
                                        "llmkit.rag.filter": filter}))
    return query, filter


def self_query(model: Any, kb: Any, question: str, fields: Any, *, k: int = 5, mode: str = "hybrid",
               template: str = SELF_QUERY_TEMPLATE, **options: Any) -> SelfQuery:
    """Turn ``question`` into a query and a filter (:func:`build_query`), then search ``kb`` with both.

    Args:
        model: the llmkit model that writes the query and filter.
        kb: a :class:`~llmkit.rag.KnowledgeBase` (anything with ``search(query, k, mode, filter)``).
        question: the user's question.
        fields: ``MetadataField``s (or dicts) the filter may use.
        k, mode: passed to ``kb.search``.
        template: the prompt, with ``{fields}`` and ``{question}``.
        **options: ``max_tokens``, ``max_retries`` and sampling fields for the model call.

    Example:
        >>> hits, query, filter = self_query(m, kb, "horror films before 1990", fields)
    """
    query, filter = build_query(model, question, fields, template=template, **options)
    return SelfQuery(kb.search(query, k=k, mode=mode, filter=filter or None), query, filter)
