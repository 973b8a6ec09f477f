"""``Predict`` (one structured LM call for a signature) and ``ChainOfThought`` (reasoning first).

The prompt is built from visible templates and sent as chat turns:

    system     SYSTEM_TEMPLATE: the instructions, then every field with its type and description
    user       a demonstration's inputs    ┐ one pair per demo
    assistant  its outputs as JSON         ┘ (few-shot turns)
    user       this call's inputs (+ HINT_TEMPLATE when Refine sends feedback)
               + the output schema, added by structured output

The reply is held to a schema built from the output fields (``Model.json``: enforced token by
token on local models, validated and re-asked on remote ones), so a program never fails on
formatting.

    >>> qa = Predict("question -> answer: int", model=lk.model(), temperature=0)
    >>> qa(question="How many legs has a spider?").answer
    8
    >>> qa.inspect()                               # exactly what was sent, and the reply
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_jsonable_python

from ..core.errors import ConfigError
from ..core.types import Message, assistant, system, user
from . import module as ctx
from .example import Example, Prediction
from .module import Module
from .signatures import (
    OutputField,
    Signature,
    ensure_signature,
    signature_from_state,
    signature_state,
    type_name,
)

SYSTEM_TEMPLATE = """{instructions}

Input fields:
{inputs}

Output fields, answered as one JSON object with these keys:
{outputs}"""
FIELD_TEMPLATE = "- {name} ({type}){desc}"
INPUT_TEMPLATE = "{name}: {value}"  # one line (or block) per input field, joined by a blank line
HINT_TEMPLATE = "\n\nFeedback on an earlier attempt at this task — use it to do better:\n{hint}"
REASONING_DESC = "Think step by step: the reasoning that leads to the other outputs."
HISTORY = 50  # calls kept per predictor for inspect()

_calls = itertools.count(1)


@dataclass
class Call:
    """One model call made by a predictor: the messages as sent, the reply text, the parsed outputs."""

    index: int
    messages: list[Message]
    reply: str
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def render(self, name: str = "") -> str:
        head = f"=== call {self.index}{' · ' + name if name else ''} · {self.seconds:.2f}s ==="
        turns = []
        for m in self.messages:
            body = m.content
            if m.tool_calls:
                body += "".join(f"\n-> {c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in m.tool_calls)
            turns.append(f"[{m.role}{' ' + m.name if m.name else ''}]\n{body}")
        turns.append(f"[reply]\n{self.reply}")
        turns += [f"[note]\n{n}" for n in self.notes]
        return head + "\n" + "\n\n".join(turns)


def render_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):  # passages: numbered, one per line
        return "\n".join(f"[{i}] {x}" for i, x in enumerate(v, 1))
    return json.dumps(to_jsonable_python(v), ensure_ascii=False)


class Predict(Module):
    """One LM call for a signature, with demonstrations.

    Args:
        signature: ``"question -> answer"`` or a ``Signature`` class.
        model: the model; else ``set_model``, or ``with using(m):`` around the call.
        instructions: replace the signature's instructions.
        max_retries: re-asks when a remote model's reply does not validate.
        **sampling: sampling fields for every call (``temperature=0``, ``max_tokens=256``).

    Attributes:
        demos: demonstrations (``Example``s with input and output fields), shown as few-shot turns.
        history: the last calls, for ``inspect()``.
    """

    def __init__(self, signature: str | type[Signature], *, model: Any = None, instructions: str | None = None,
                 max_retries: int = 2, **sampling: Any):
        self.base_signature = ensure_signature(signature)
        self.signature = self._extend(self.base_signature)
        if instructions is not None:
            self.instructions = instructions
        self.model, self.max_retries, self.sampling = model, max_retries, sampling
        self.demos: list[Example] = []
        self.history: list[Call] = []

    def _extend(self, sig: type[Signature]) -> type[Signature]:
        """Subclasses add fields here (ChainOfThought: reasoning)."""
        return sig

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature.spec!r}, demos={len(self.demos)})"

    @property
    def instructions(self) -> str:
        return self.signature.instructions

    @instructions.setter
    def instructions(self, text: str) -> None:
        self.signature = self.signature.with_instructions(text)

    def deepcopy(self) -> Predict:
        new = super().deepcopy()
        new.demos = [Example(d) for d in self.demos]
        new.history = []
        return new

    # --- the prompt ------------------------------------------------------------------------------
    def system_prompt(self, instructions: str | None = None) -> str:
        """SYSTEM_TEMPLATE filled in (``instructions``: others than the signature's)."""
        sig = self.signature

        def lines(names: list[str]) -> str:
            return "\n".join(FIELD_TEMPLATE.format(name=n, type=type_name(sig.model_fields[n].annotation),
                                                   desc=f": {sig.describe(n)}" if sig.describe(n) else "")
                             for n in names)

        return SYSTEM_TEMPLATE.format(instructions=sig.instructions if instructions is None else instructions,
                                      inputs=lines(sig.input_fields),
                                      outputs=lines(sig.output_fields))

    def render_inputs(self, values: dict[str, Any]) -> str:
        return "\n\n".join(INPUT_TEMPLATE.format(name=n, value=render_value(values[n]))
                           for n in self.signature.input_fields if n in values)

    def render_outputs(self, values: dict[str, Any]) -> str:
        return json.dumps({n: to_jsonable_python(values[n]) for n in self.signature.output_fields if n in values},
                          ensure_ascii=False)

    def current_demos(self) -> list[Example]:
        return (ctx._DEMOS.get() or {}).get(id(self), self.demos)

    def messages(self, inputs: dict[str, Any]) -> list[Message]:
        """The conversation for these inputs, before structured output adds the schema."""
        msgs = [system(self.system_prompt())]
        for d in self.current_demos():
            if any(n in d for n in self.signature.input_fields) and any(n in d for n in self.signature.output_fields):
                msgs += [user(self.render_inputs(d)), assistant(self.render_outputs(d))]
        text = self.render_inputs(inputs)
        if (h := ctx._HINT.get()) is not None:
            text += HINT_TEMPLATE.format(hint=h)
        return msgs + [user(text)]

    # --- a call ----------------------------------------------------------------------------------
    def forward(self, **inputs: Any) -> Prediction:
        config = inputs.pop("config", None) or {}
        sig = self.signature
        missing = [n for n in sig.input_fields if n not in inputs]
        unknown = [n for n in inputs if n not in sig.input_fields]
        if missing or unknown:
            raise ConfigError(f"{type(self).__name__}({sig.spec!r}) takes {', '.join(sig.input_fields)}"
                              + (f"; missing: {', '.join(missing)}" if missing else "")
                              + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        model = self.model or ctx._MODEL.get()
        if model is None:
            raise ConfigError(f"{type(self).__name__}({sig.spec!r}) has no model: pass model=, call "
                              "program.set_model(m), or run it inside `with using(m):`")
        t0 = time.perf_counter()
        sampling = {**self.sampling, **(ctx._SAMPLING.get() or {}), **config}
        call = self._generate(model, self.messages(inputs), sampling)
        call.seconds = time.perf_counter() - t0
        self.history = (self.history + [call])[-HISTORY:]
        pred = Prediction(**call.outputs)
        if (trace := ctx._TRACE.get()) is not None:
            trace.append((self, dict(inputs), pred))
        return pred

    def _generate(self, model: Any, messages: list[Message], sampling: dict[str, Any]) -> Call:
        """Ask the model under the output schema; the Call holds the messages exactly as sent."""
        from ..structured import as_constraint
        from ..structured.generate import with_instructions

        constraint = as_constraint(self.signature.output_model())
        comp = model.chat(messages, constraint=constraint, instructions=True, max_retries=self.max_retries, **sampling)
        out = comp.parsed
        return Call(next(_calls), with_instructions(messages, constraint), comp.text,
                    {n: getattr(out, n) for n in self.signature.output_fields})

    # --- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """This predictor's part of a saved program: signature, instructions, demos, sampling."""
        return {"signature": signature_state(self.base_signature), "instructions": self.instructions,
                "demos": [to_jsonable_python(d.to_dict()) for d in self.demos],
                "sampling": to_jsonable_python(self.sampling), "max_retries": self.max_retries}

    def set_state(self, state: dict[str, Any]) -> Predict:
        self.instructions = state["instructions"]
        self.demos = [Example(d) for d in state.get("demos", [])]
        return self

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Predict:
        p = cls(signature_from_state(state["signature"]), max_retries=state.get("max_retries", 2),
                **state.get("sampling", {}))
        return p.set_state(state)


class ChainOfThought(Predict):
    """``Predict`` with a ``reasoning`` output written before the others (Wei et al., 2022).

    Example:
        >>> cot = ChainOfThought("question -> answer: float", model=m)
        >>> pred = cot(question="A bat and a ball cost 1.10 ...")
        >>> pred.reasoning, pred.answer
    """

    def _extend(self, sig: type[Signature]) -> type[Signature]:
        return sig.prepend("reasoning", OutputField(desc=REASONING_DESC), str)
