"""CLI flags derived from config objects, never a second hand-kept list.

``with_config(Cls)`` adds one ``--flag`` per field of a pydantic config (help text from the
field's description, the type from its annotation) and hands the command a validated
instance. ``with_sampling`` is that for :class:`Sampling`.

Example:
    >>> @app.command()
    ... @with_config(ServeConfig)
    ... def serve(config: ServeConfig = None): ...
"""
from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any, Callable, List, Optional

import typer
from pydantic import BaseModel, SecretStr, ValidationError

from ..core.errors import ConfigError
from ..core.sampling import Sampling


def _flag_type(annotation: Any) -> Any:
    """The type click parses a field into: ``int | None`` → int, ``list[str]`` → List[str],
    a secret → str (pydantic wraps it again)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is SecretStr:
        return str
    if typing.get_origin(annotation) is list:
        return List[typing.get_args(annotation)[0]]
    return annotation


def with_config(cls: type[BaseModel], param: str = "config", panel: str | None = None,
                make: Callable[[type[BaseModel], dict], Any] | None = None, skip: tuple[str, ...] = ()) -> Callable:
    """Decorator: one ``--flag`` per field of ``cls``; the command receives ``cls(**flags)`` as ``param``.

    Flags left out keep the config's own defaults (environment-backed ones included). A bad
    value raises a one-line ConfigError naming the field. A field may name a short alias with
    ``json_schema_extra={"short": "-m"}``. ``make(cls, flags)`` replaces the default
    ``build(cls, flags)`` (e.g. to lay the flags over a YAML recipe); ``skip`` names fields with no flag.
    """

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != param]
        annotations = {k: v for k, v in fn.__annotations__.items() if k != param}
        for name, field in cls.model_fields.items():
            if name in skip:
                continue
            kind = _flag_type(field.annotation)
            flag = "--" + name.replace("_", "-")
            decls = [f"{flag}/--no-{name.replace('_', '-')}"] if kind is bool else [flag]
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            decls += [extra["short"]] if "short" in extra else []
            help_text = field.description or ""
            if typing.get_origin(kind) is list:
                help_text += " (repeatable)"
            if field.default not in (None, "") and not field.is_required() and field.default_factory is None:
                help_text += f" (default: {field.default})"
            info = typer.Option(None, *decls, help=help_text, show_default=False, rich_help_panel=panel)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=Optional[kind]))
            annotations[name] = Optional[kind]

        @functools.wraps(fn)
        def wrapper(**kw: Any):
            given = {k: kw.pop(k) for k in cls.model_fields if k not in skip}
            given = {k: v for k, v in given.items() if v is not None and v != [] and v != ()}
            return fn(**kw, **{param: (make or build)(cls, given)})

        wrapper.__signature__ = sig.replace(parameters=params)
        wrapper.__annotations__ = annotations
        del wrapper.__wrapped__  # typer must read the new signature, not fn's
        return wrapper

    return decorate


def build(cls: type[BaseModel], fields: dict[str, Any]) -> BaseModel:
    """``cls(**fields)``, with a validation error turned into one line naming the field and value."""
    try:
        return cls(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or cls.__name__
        shown = "***" if "key" in field or "token" in field else repr(err.get("input"))  # never echo a secret
        raise ConfigError(f"{field}={shown} is invalid: {err['msg']}") from None


#: One ``--flag`` per Sampling field; the command receives ``sampling=Sampling(...)``.
with_sampling = with_config(Sampling, "sampling", panel="Sampling")
