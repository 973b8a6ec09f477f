"""Examples (training and dev data, demonstrations) and Predictions (what a program returns).

Both are dicts with attribute access:

    >>> ex = Example(question="2 + 2?", answer="4").with_inputs("question")
    >>> ex.question, ex.inputs(), ex.labels()
    ('2 + 2?', {'question': '2 + 2?'}, {'answer': '4'})
    >>> pred = Prediction(answer="4")
    >>> pred.answer
    '4'
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class Example:
    """A record of named fields; ``with_inputs`` marks which ones a program takes as input."""

    def __init__(self, base: dict[str, Any] | Example | None = None, **fields: Any):
        data = dict(base._store if isinstance(base, Example) else base or {})
        data.update(fields)
        object.__setattr__(self, "_store", data)
        keys = base._input_keys if isinstance(base, Example) else None
        object.__setattr__(self, "_input_keys", keys)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._store[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}; it has: "
                                 f"{', '.join(self._store) or 'none'}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._store[name] = value

    def __getitem__(self, name: str) -> Any:
        return self._store[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._store[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self._store

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Example) and self._store == other._store

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._store.items())))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._store.items())
        return f"{type(self).__name__}({body})"

    def get(self, name: str, default: Any = None) -> Any:
        return self._store.get(name, default)

    def keys(self) -> list[str]:
        return list(self._store)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._store.items())

    def to_dict(self) -> dict[str, Any]:
        return dict(self._store)

    def with_inputs(self, *keys: str) -> Example:
        """A copy that knows ``keys`` are its inputs (the rest are labels)."""
        missing = [k for k in keys if k not in self._store]
        if missing:
            raise KeyError(f"with_inputs: no field(s) {missing}; the example has {list(self._store)}")
        ex = type(self)(self)
        object.__setattr__(ex, "_input_keys", tuple(keys))
        return ex

    @property
    def input_keys(self) -> tuple[str, ...] | None:
        return self._input_keys

    def inputs(self) -> dict[str, Any]:
        if self._input_keys is None:
            raise ValueError(f"{self!r} has no inputs marked: call .with_inputs('question', ...) first")
        return {k: self._store[k] for k in self._input_keys}

    def labels(self) -> dict[str, Any]:
        keys = self._input_keys or ()
        return {k: v for k, v in self._store.items() if k not in keys}


class Prediction(Example):
    """A program's output: the output fields as attributes (``pred.answer``)."""


def as_example(x: Example | dict[str, Any]) -> Example:
    return x if isinstance(x, Example) else Example(x)
