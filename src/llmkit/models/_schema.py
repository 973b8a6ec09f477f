"""JSON Schema plumbing shared by remote backends whose structured output needs an object at the root.

Anthropic's forced tool use and Cohere's JSON-object mode both produce a JSON *object*; a
constraint whose root is something else (``list[Pet]``, a string enum) is sent wrapped as
``{"value": <schema>}`` and the reply unwrapped, so the user still gets the value asked for.
"""
from __future__ import annotations

import json
from typing import Any

VALUE = "value"  # the one property a non-object root is wrapped in


def object_root(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``schema`` with an object at its root, and whether it had to be wrapped to get one.

    ``$defs``/``definitions`` move up to the wrapper, so ``#/$defs/...`` references still resolve.

    Example:
        >>> object_root({"type": "array", "items": {"type": "integer"}})
        ({'type': 'object', 'properties': {'value': {'type': 'array', 'items': {'type': 'integer'}}},
          'required': ['value']}, True)
    """
    if schema.get("type") == "object":
        return schema, False
    moved = ("$defs", "definitions", "$schema")
    wrapped = {"type": "object", "properties": {VALUE: {k: v for k, v in schema.items() if k not in moved}},
               "required": [VALUE]}
    wrapped.update({k: schema[k] for k in moved if k in schema})
    return wrapped, True


def unwrap(value: Any) -> Any:
    """The wrapped value of a reply to a wrapped schema; anything else comes back as it is, for
    validation to report."""
    return value[VALUE] if isinstance(value, dict) and VALUE in value else value


def unwrap_text(text: str) -> str:
    """:func:`unwrap` on JSON text (a streamed reply, gathered); text that is not JSON is kept."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and VALUE in value:
        return json.dumps(value[VALUE], ensure_ascii=False)
    return text
