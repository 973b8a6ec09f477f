"""Machinery the generators share: merging a config with keyword options, per-call seeds, the
model's name for ``meta``, the answer checks of the instruction methods, and the progress bar."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ...core.errors import ConfigError

#: The user turn that asks for an instruction's answer; the row's user turn is the instruction itself.
RESPONSE_TEMPLATE = "{{ instruction }}"


def _options(cls: type, config: Any, shortcuts: dict[str, Any], options: dict[str, Any]) -> Any:
    """``config`` (or the defaults) with ``options`` over it, and the positional ``shortcuts`` (``n``,
    ``rounds``) that were given (not None); errors name the field."""
    from pydantic import ValidationError

    if config is not None and not isinstance(config, cls):
        raise ConfigError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    fields = {**(config.model_dump(exclude_unset=True) if config else {}), **options,
              **{k: v for k, v in shortcuts.items() if v is not None}}
    try:
        return cls(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or cls.__name__
        raise ConfigError(f"{name}={err.get('input')!r} is invalid: {err['msg']}") from None


class _Calls:
    """Sampling for each call: call i gets ``seed + i`` where the backend takes a seed, so a run can be
    repeated exactly yet no two calls sample alike (the same seed would ask for the same tasks)."""

    def __init__(self, model: Any, seed: int | None):
        self.seed = seed if seed is not None and "seed" in getattr(model, "supported", ()) else None
        self.count = 0

    def __call__(self, temperature: float, max_tokens: int) -> dict[str, Any]:
        self.count += 1
        s: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if self.seed is not None:
            s["seed"] = self.seed + self.count
        return s


def _model_name(model: Any) -> str:
    return f"{getattr(model, 'provider', '?')}:{getattr(model, 'name', type(model).__name__)}"


def _answer_problem(reply: Any, keep_truncated: bool) -> str | None:
    if not reply.text.strip():
        return "empty_response"
    if reply.finish_reason == "length" and not keep_truncated:
        return "truncated"
    return None


@contextmanager
def _progress(total: int | None, what: str, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    """A rich bar on stderr (only on a terminal unless forced); yields ``advance(n)``."""
    if not (sys.stderr.isatty() if enabled is None else enabled) or not total:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)
