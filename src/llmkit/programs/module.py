"""``Module``: the base of every LM program, composed as plain Python classes.

    >>> class RAG(Module):
    ...     def __init__(self, retrieve):
    ...         self.retrieve = retrieve
    ...         self.answer = ChainOfThought("context: list[str], question -> answer")
    ...     def forward(self, question):
    ...         return self.answer(context=self.retrieve(question), question=question)
    >>> rag = RAG(kb.search).set_model(lk.model())
    >>> rag(question="Who wrote Dune?").answer
    >>> rag.named_predictors()          # [('answer', ChainOfThought(...))]: what optimisers tune
    >>> rag.inspect()                   # the last prompt sent and the reply, exactly
    >>> rag.save("rag.json"); rag.load("rag.json")

The context helpers below (``using``, ``tracing_predictors``, …) pass per-run settings down to
every ``Predict`` a program calls without threading arguments through user code; they are
``contextvars``, so concurrent runs (``evaluate(threads=8)``) do not see each other's.
"""
from __future__ import annotations

import contextvars
import copy
import functools
import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from .predict import Predict

_MODEL: contextvars.ContextVar[Any] = contextvars.ContextVar("llmkit_program_model", default=None)
_TRACE: contextvars.ContextVar[list | None] = contextvars.ContextVar("llmkit_program_trace", default=None)
_SAMPLING: contextvars.ContextVar[dict | None] = contextvars.ContextVar("llmkit_program_sampling", default=None)
_HINT: contextvars.ContextVar[str | None] = contextvars.ContextVar("llmkit_program_hint", default=None)
_DEMOS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("llmkit_program_demos", default=None)


@contextmanager
def _set(var: contextvars.ContextVar, value: Any) -> Iterator[Any]:
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def using(model: Any) -> Any:
    """``with using(m): program(...)``: ``m`` answers for every Predict that has no model of its own."""
    return _set(_MODEL, model)


def tracing_predictors() -> Any:
    """``with tracing_predictors() as trace``: every Predict call appends ``(predict, inputs, prediction)``
    to ``trace`` (what BootstrapFewShot turns into demonstrations)."""
    return _set(_TRACE, [])


def sampling_overrides(**fields: Any) -> Any:
    """Sampling fields laid over every Predict's own (``temperature=1.0`` for extra attempts)."""
    return _set(_SAMPLING, {**(_SAMPLING.get() or {}), **fields})


def hint(text: str | None) -> Any:
    """Feedback every Predict adds to its prompt (``predict.HINT_TEMPLATE``); used by ``Refine``."""
    return _set(_HINT, text)


def demo_overrides(demos: dict[int, list]) -> Any:
    """Demonstrations to use instead of a Predict's own, by ``id(predict)``; used by ``KNNFewShot``."""
    return _set(_DEMOS, {**(_DEMOS.get() or {}), **demos})


class _hybridmethod:
    """A method that works on the class (``Module.load(path)``) and on an instance (``prog.load(path)``)."""

    def __init__(self, f: Any):
        self.f = f
        functools.update_wrapper(self, f)

    def __get__(self, obj: Any, owner: type) -> Any:
        return functools.partial(self.f, owner, obj)


class Module:
    """A program: subclass, create sub-modules in ``__init__``, call them in ``forward``."""

    def forward(self, **inputs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward(...)")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # --- the predictors inside ----------------------------------------------------------------
    def named_predictors(self) -> list[tuple[str, Predict]]:
        """Every ``Predict`` in the program with its attribute path (``"answer"``, ``"hops[0]"``);
        a program that is itself a Predict answers ``[("self", it)]``."""
        from .predict import Predict

        if isinstance(self, Predict):
            return [("self", self)]
        found: list[tuple[str, Predict]] = []
        seen: set[int] = set()

        def walk(obj: Any, path: str) -> None:
            if id(obj) in seen:
                return
            if isinstance(obj, Predict):
                seen.add(id(obj))
                found.append((path, obj))
            elif isinstance(obj, Module):
                seen.add(id(obj))
                for k, v in vars(obj).items():
                    walk(v, f"{path}.{k}" if path else k)
            elif isinstance(obj, (list, tuple)):
                for i, v in enumerate(obj):
                    walk(v, f"{path}[{i}]")
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    walk(v, f"{path}[{k!r}]")

        seen.add(id(self))
        for k, v in vars(self).items():
            walk(v, k)
        return found

    def predictors(self) -> list[Predict]:
        return [p for _, p in self.named_predictors()]

    def set_model(self, model: Any) -> Module:
        """Give every predictor this model; returns the program."""
        for p in self.predictors():
            p.model = model
        return self

    # --- copies ----------------------------------------------------------------------------------
    def deepcopy(self) -> Module:
        """A copy whose modules, predictors and demos are new; models, tools and other objects are shared."""
        new = copy.copy(self)
        new.__dict__.update({k: _copy_value(v) for k, v in vars(self).items()})
        return new

    def reset_copy(self) -> Module:
        """A copy with every predictor's demonstrations removed."""
        new = self.deepcopy()
        for p in new.predictors():
            p.demos = []
        return new

    # --- inspect ---------------------------------------------------------------------------------
    def inspect(self, n: int = 1, *, show: bool = True) -> str:
        """Print (and return) the last ``n`` model calls of this program, exactly as they were sent."""
        calls = sorted(((c, name) for name, p in self.named_predictors() for c in p.history), key=lambda x: x[0].index)
        text = "\n\n".join(c.render(name) for c, name in calls[-n:]) if calls else "(no calls yet)"
        if show:
            print(text)
        return text

    # --- save / load -----------------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        return {"class": f"{type(self).__module__}:{type(self).__qualname__}",
                "predictors": {name: p.state() for name, p in self.named_predictors()}}

    def load_state(self, state: dict[str, Any]) -> Module:
        mine = dict(self.named_predictors())
        saved = state.get("predictors", {})
        if set(mine) != set(saved):
            raise ConfigError(f"the saved program has predictors {sorted(saved)}, this one has {sorted(mine)}; "
                              "load it into a program of the same structure")
        for name, p in mine.items():
            p.set_state(saved[name])
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the program's instructions and demonstrations as JSON (models are not saved)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.dump_state(), indent=1, ensure_ascii=False))
        return path

    @_hybridmethod
    def load(cls, self: Module | None, path: str | os.PathLike, model: Any = None) -> Module:
        """``program.load(path)`` fills this program; ``Module.load(path, model=m)`` rebuilds one.

        Rebuilding works for ``Predict``-family programs and for programs whose class takes no
        constructor arguments; otherwise build the program and call ``program.load(path)``.
        """
        try:
            state = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load a program from {str(path)!r}: {e}") from None
        if self is None:
            self = _build_from_state(cls, state)
        self.load_state(state)
        if model is not None:
            self.set_model(model)
        return self


def _copy_value(v: Any) -> Any:
    if isinstance(v, Module):
        return v.deepcopy()
    if isinstance(v, list):
        return [_copy_value(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_copy_value(x) for x in v)
    if isinstance(v, dict):
        return {k: _copy_value(x) for k, x in v.items()}
    return v


def _build_from_state(cls: type, state: dict[str, Any]) -> Module:
    from .predict import Predict

    mod, _, qual = str(state.get("class", "")).partition(":")
    try:
        target: Any = importlib.import_module(mod)
        for part in qual.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"cannot import the saved program's class {state.get('class')!r}; build the program "
                          "and call program.load(path)") from None
    if not (isinstance(target, type) and issubclass(target, cls)):
        raise ConfigError(f"the saved program is a {qual}, not a {cls.__name__}")
    if issubclass(target, Predict):
        return target.from_state(state["predictors"]["self"])
    try:
        return target()
    except TypeError as e:
        raise ConfigError(f"{qual}() needs arguments ({e}); build it yourself and call program.load(path)") from None
