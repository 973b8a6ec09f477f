"""CLI flags derived from config objects, never a second hand-kept list.

``with_sampling(fn)`` adds one ``--flag`` per :class:`Sampling` field (help text from the
field's description) and hands ``fn`` a validated ``Sampling`` as ``sampling=``.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, List, Optional

import typer

from ..core.sampling import Sampling, make_sampling

_TYPES = {"temperature": float, "top_p": float, "min_p": float, "typical_p": float, "repetition_penalty": float,
          "frequency_penalty": float, "presence_penalty": float, "penalty_alpha": float,
          "top_k": int, "seed": int, "max_tokens": int, "top_logprobs": int, "num_beams": int,
          "stop": List[str], "logprobs": bool}


def with_sampling(fn):
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "sampling"]
    annotations = {k: v for k, v in fn.__annotations__.items() if k != "sampling"}
    for name, field in Sampling.model_fields.items():
        flag = "--" + name.replace("_", "-")
        typ = Optional[_TYPES[name]]
        if name == "logprobs":
            info = typer.Option(None, f"{flag}/--no-logprobs", help=field.description, rich_help_panel="Sampling")
        else:
            info = typer.Option(None, flag, help=field.description + (" (repeatable)" if name == "stop" else ""),
                                rich_help_panel="Sampling")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=typ))
        annotations[name] = typ

    @functools.wraps(fn)
    def wrapper(**kw: Any):
        fields = {k: kw.pop(k) for k in Sampling.model_fields}
        return fn(**kw, sampling=make_sampling(None, **fields))  # validation errors become one-line ConfigErrors

    wrapper.__signature__ = sig.replace(parameters=params)
    wrapper.__annotations__ = annotations
    del wrapper.__wrapped__  # typer must read the new signature, not fn's
    return wrapper
