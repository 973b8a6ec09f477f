"""``ReAct``: a signature answered by an agent that may call tools first.

The loop is llmkit's own ``Agent`` (native tool calls, or the ReAct text format for models
without them); this module only turns a signature into the agent's task and reads the typed
outputs back through ``Agent(output_schema=...)``, which asks for them as structured output.
Demonstrations and instructions work as in ``Predict``, so the optimisers tune ReAct too.

    >>> def lookup(city: str) -> str:
    ...     "Population of a city."
    ...     return {"Paris": "2.1 million"}.get(city, "unknown")
    >>> agent = ReAct("question -> answer", tools=[lookup], model=lk.model(), max_steps=4)
    >>> agent(question="How many people live in Paris?").answer
"""
from __future__ import annotations

from typing import Any

from ..core.errors import ConfigError
from ..core.types import Message, user
from .predict import Call, Predict, _calls
from .signatures import Signature


class ReAct(Predict):
    """Predict whose call is an agent run with ``tools``.

    Args:
        signature: as for Predict.
        tools: ``@lk.tool`` functions, Toolkits or typed functions (see ``llmkit.agents``).
        max_steps: most model calls of one run (the agent's budget).
        mode: the agent's mode: ``"auto"``, ``"tools"`` or ``"react"``.
        **kw: as for Predict (model, instructions, sampling fields).
    """

    def __init__(self, signature: str | type[Signature], tools: list[Any] = (), *, max_steps: int = 6,
                 mode: str = "auto", **kw: Any):
        super().__init__(signature, **kw)
        self.tools, self.max_steps, self.mode = list(tools), max_steps, mode

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ReAct:
        raise ConfigError("a saved ReAct does not hold its tools: build ReAct(signature, tools=[...]) and call "
                          ".load(path) on it")

    def _generate(self, model: Any, messages: list[Message], sampling: dict[str, Any]) -> Call:
        from ..agents import FINAL_JSON_PROMPT, Agent

        schema = self.signature.output_model()
        agent = Agent(model, self.tools, system=messages[0].content, max_steps=self.max_steps, mode=self.mode,
                      output_schema=schema, answer_on_limit=True, **sampling)
        # the system prompt goes to the agent; the demos are the history; this call's inputs are the task
        result = agent.run(messages[-1].content, history=messages[1:-1])
        out, sent = result.output, list(result.messages)
        notes = [f"{s.line()}" for s in result.steps if s.kind == "tool"]
        if not isinstance(out, schema):  # the budget ran out before a final answer: ask for one from what we have
            sent.append(user(FINAL_JSON_PROMPT))
            out = model.json(sent, schema=schema, max_retries=self.max_retries, **sampling)
            notes.append(f"stopped: {result.stopped}; outputs asked for with FINAL_JSON_PROMPT")
        else:
            notes.append(f"final outputs asked for with FINAL_JSON_PROMPT: {FINAL_JSON_PROMPT!r}")
        outputs = {n: getattr(out, n) for n in self.signature.output_fields}
        return Call(next(_calls), sent, out.model_dump_json(), outputs, notes=notes)
