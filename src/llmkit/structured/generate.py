"""Generation under a constraint, for any backend: enforce, validate, re-ask, give up clearly.

A backend that enforces the constraint's kind itself (``Model.constraint_kinds``: token masks on
local models; ``response_format``, forced tool use or ``responseSchema`` on providers) gets the
constraint; any other backend is asked in words (``Constraint.instructions()``). Either way the
output is validated, and an invalid one is sent back with the errors (``REPAIR_PROMPT``) up to
``max_retries`` times before :class:`~llmkit.StructuredOutputError` carries the last text and errors.

An output that a token limit cut inside a free string (a chain-of-thought ``reasoning`` that does
not stop) is not re-asked in words where the backend masks tokens by the schema (local models):
the retry enforces the same schema with its free strings capped to fit the limit (:func:`fitted`),
and the result is still checked against the schema as given. Providers keep the words (their
schema modes do not all take or enforce ``maxLength``).

These functions back ``Model.chat(constraint=...)``, ``Model.json``, ``Model.choose`` and
``Model.stream_json``; call those.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from ..core.errors import StructuredOutputError, UnsupportedParameterError
from ..core.sampling import Sampling
from ..core.types import Completion, Message, user
from .constraints import Constraint, Invalid, JSONSchema, _cap_strings, _free_strings

if TYPE_CHECKING:
    from ..models.base import Model

#: Sent after an output that did not validate (``{errors}``: one line per problem).
REPAIR_PROMPT = ("Your reply was not valid:\n{errors}\n"
                 "Reply again with only the corrected output, and nothing else.")


def with_instructions(messages: list[Message], c: Constraint) -> list[Message]:
    """The conversation with the constraint's instructions appended to the last user turn."""
    msgs = list(messages)
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].role == "user":
            msgs[i] = msgs[i].model_copy(update={"content": f"{msgs[i].content}\n\n{c.instructions()}"})
            return msgs
    return msgs + [user(c.instructions())]


def _native(model: Model, c: Constraint) -> bool:
    if c.kind in model.constraint_kinds:
        return True
    if c.kind == "grammar":  # nothing can check a grammar after the fact
        raise UnsupportedParameterError("constraint", model.provider,
                                        "a Grammar is enforced only on local models (local, llamacpp, hf); "
                                        "use JSONSchema, a Pydantic model, Regex or Choice")
    return False


def _validate(c: Constraint, comp: Completion) -> list[str]:
    """Fill ``comp.parsed``; return the problems (empty when the output is valid)."""
    if comp.finish_reason == "length":
        return [f"the output stopped at the token limit before it was complete ({comp.usage.output_tokens} tokens); "
                "raise max_tokens or ask for less"]
    try:
        comp.parsed = c.check(comp.text)
    except Invalid as e:
        return e.errors
    return []


def _give_up(c: Constraint, comp: Completion, errors: list[str], tries: int) -> StructuredOutputError:
    return StructuredOutputError(f"the output did not satisfy {c!r} after {tries} attempt(s): {'; '.join(errors)[:500]}",
                                 text=comp.text, errors=errors)


def _repair(messages: list[Message], comp: Completion, errors: list[str]) -> list[Message]:
    from ..core.types import assistant

    return messages + [assistant(comp.text), user(REPAIR_PROMPT.format(errors="\n".join(f"- {e}" for e in errors)))]


def _prompt(model: Model, messages: list[Message], c: Constraint, instructions: bool) -> tuple[bool, list[Message]]:
    """Whether the backend enforces ``c``, and the messages to send: the instructions are added when
    asked for, when nothing enforces the constraint, and for JSON mode when no message says "JSON"
    (OpenAI-style JSON modes refuse a request that never asks for JSON)."""
    native = _native(model, c)
    silent = c.kind == "json" and not any("json" in m.content.lower() for m in messages)
    return native, with_instructions(messages, c) if instructions or not native or silent else messages


#: Share of a cut output's token budget that a fitted retry leaves to its free strings (the rest is
#: for the keys, punctuation and the other fields).
FIT_SHARE = 0.5


def fitted(c: Constraint, comp: Completion, s: Sampling, cap: int | None = None) -> tuple[JSONSchema, int] | None:
    """After ``comp`` stopped at the token limit: ``c``'s schema with every free string capped so
    the output closes within the limit, and the cap; None where that cannot help (not a JSON
    Schema, no free string, nothing written). The cap is the strings' share (``FIT_SHARE``) of the
    budget in characters, at the characters per token this output reached; a previous fit's
    ``cap`` is at least halved.

    Example: ``{"reasoning": "…`` cut at ``max_tokens=96`` after 380 characters, one free string:
    the retry's grammar allows ``reasoning`` 0.5 × 96 × 380/96 = 190 characters.
    """
    if c.kind != "json_schema" or not comp.text or not isinstance(c.schema(), dict):
        return None
    strings = _free_strings(c.schema())
    budget = s.max_tokens or comp.usage.output_tokens
    if not strings or not budget:
        return None
    per_token = len(comp.text) / max(1, comp.usage.output_tokens or len(comp.text))
    fit = int(FIT_SHARE * budget * per_token / strings)
    fit = min(fit, cap // 2) if cap else fit
    if fit < 1:
        return None
    schema = _cap_strings(c.schema(), fit)
    return JSONSchema(schema, name=getattr(c, "name", None), bounded=getattr(c, "bounded", True)), fit


def _refit(model: Model, native: bool, comp: Completion) -> bool:
    """Whether a failed output is retried under a :func:`fitted` schema: cut by the token limit, on
    a backend that masks tokens by the grammar (it takes ``Grammar``), so a cap holds exactly."""
    return native and comp.finish_reason == "length" and "grammar" in model.constraint_kinds


def run(model: Model, messages: list[Message], s: Sampling, c: Constraint, max_retries: int,
        instructions: bool = False, enforce: Constraint | None = None) -> Completion:
    """One constrained answer: ``Completion.parsed`` holds the validated value. ``enforce``: the
    constraint the backend enforces, when not ``c`` itself (a :func:`fitted` one); ``c`` checks."""
    native, msgs = _prompt(model, messages, c, instructions)
    enforce, cap = enforce or c, None
    for attempt in range(max_retries + 1):
        comp = model._constrained_call(msgs, s, enforce if native else None)
        errors = _validate(c, comp)
        if not errors:
            return comp
        if attempt < max_retries:
            fit = fitted(c, comp, s, cap) if _refit(model, native, comp) else None
            if fit is not None:
                enforce, cap = fit  # the same question under a schema that fits the limit
            else:
                msgs = _repair(msgs, comp, errors)
    raise _give_up(c, comp, errors, max_retries + 1)


def stream(model: Model, messages: list[Message], s: Sampling, c: Constraint, max_retries: int,
           instructions: bool = False) -> Iterator[Any]:
    """Partial values as the JSON grows, then the validated value (see ``Model.stream_json``)."""
    from pydantic_core import from_json

    native, msgs = _prompt(model, messages, c, instructions)
    text, last, shown = [], None, None
    for chunk in model._constrained_stream(msgs, s, c if native else None):
        text.append(chunk.text)
        last = chunk
        if not chunk.text:
            continue
        try:
            partial = from_json("".join(text), allow_partial="trailing-strings")
        except ValueError:
            continue
        if partial != shown and isinstance(partial, (dict, list)):
            shown = partial
            yield partial
    comp = Completion(text="".join(text), finish_reason=last.finish_reason if last else None,
                      usage=last.usage if last and last.usage else Completion().usage)
    errors = _validate(c, comp)
    if not errors:
        yield comp.parsed
        return
    if max_retries <= 0:
        raise _give_up(c, comp, errors, 1)
    fit = fitted(c, comp, s) if _refit(model, native, comp) else None
    yield run(model, msgs if fit is not None else _repair(msgs, comp, errors), s, c, max_retries - 1,
              instructions=False, enforce=fit[0] if fit else None).parsed
