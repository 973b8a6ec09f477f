"""The agent loop: the model asks for tools, llmkit runs them and feeds the results back, until
the model answers or a budget runs out.

    >>> import llmkit as lk
    >>> from llmkit.agents import builtin
    >>> agent = lk.Agent(lk.model(), tools=[builtin.calculator], max_steps=4)
    >>> result = agent.run("What is 17 * 23?")
    >>> result.output, result.stopped          # ('391', 'done')
    >>> result.print()                         # every step: model text, tool, arguments, result, time, tokens

How each step asks for tools:

- ``mode="tools"``: the backend's native tool calling (OpenAI, Anthropic, Gemini, Cohere), and on
  local models tool calls generated under a grammar built from the tool schemas, so a call is
  always well-formed JSON naming a real tool.
- ``mode="react"``: the text format of ``agents/react.py`` (Thought / Action / Observation) for
  models without tool calling.
- ``mode="auto"`` (default): ``tools`` when the backend can call tools, else ``react``.

A tool that raises, an unknown tool name and arguments that fail validation all come back to the
model as an observation starting with ``Error:`` — the loop goes on, so the model can correct
itself. Tools marked ``dangerous`` run only when ``approve(call, tool)`` returns True (no hook: they
never run). Budgets: ``max_steps`` model calls, ``max_seconds`` of wall time, ``max_total_tokens``
input + output tokens over all calls. Every model call and every tool run is a span under ``agent.run``.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core import tracing
from ..core.errors import ConfigError
from ..core.types import Message, ToolCall, assistant, system, user
from ..core.types import tool as tool_message
from . import react
from .tools import FunctionTool, ToolArgumentError, as_tools, serialize

MODES = ("auto", "tools", "react")
FINAL_JSON_PROMPT = "Give the final answer to the task above as JSON, using what the tools returned."
ANSWER_NOW_PROMPT = "Stop using tools. Answer the task now, using the tool results above."
MAX_OBSERVATION = 4000  # characters of a tool result shown to the model; longer ones are cut, marked


@dataclass
class Step:
    """One event of a run: a model reply (``kind="model"``), a tool run (``"tool"``) or the answer (``"final"``)."""

    kind: str
    index: int
    text: str = ""
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    result: str | None = None
    error: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    def line(self) -> str:
        if self.kind == "model":
            calls = ", ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" for c in self.tool_calls)
            said = self.text.strip().replace("\n", " ")
            return (f"[{self.index}] model  {self.seconds:6.2f}s {self.input_tokens:>5}+{self.output_tokens:<4} tok  "
                    f"{said[:200]}{' -> ' + calls if calls else ''}")
        if self.kind == "tool":
            shown = self.error if self.error else self.result or ""
            return (f"[{self.index}] tool   {self.seconds:6.2f}s  {self.tool}({json.dumps(self.arguments, ensure_ascii=False)})"
                    f" = {'ERROR ' if self.error else ''}{shown[:200]}")
        return f"[{self.index}] final  {self.text[:400]}"


@dataclass
class AgentResult:
    """What ``Agent.run`` returns.

    Attributes:
        output: the final answer — text, or the parsed ``output_schema`` object.
        text: the final answer's text.
        stopped: ``"done"``, ``"max_steps"``, ``"max_seconds"`` or ``"max_total_tokens"``.
        steps: every model reply and tool run, in order.
        messages: the whole conversation, ready to continue.
    """

    output: Any
    text: str
    stopped: str
    steps: list[Step]
    messages: list[Message]

    @property
    def usage(self) -> tuple[int, int]:
        """(input, output) tokens over every model call."""
        return (sum(s.input_tokens for s in self.steps), sum(s.output_tokens for s in self.steps))

    @property
    def tool_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "tool"]

    def print(self) -> None:
        for s in self.steps:
            print(s.line())
        print(f"stopped: {self.stopped}; tokens {self.usage[0]} in, {self.usage[1]} out")


class Agent:
    """A model with tools, run in a loop until it answers.

    Args:
        model: any llmkit model.
        tools: ``@lk.tool`` functions, ``Toolkit``s, or plain typed functions.
        system: the system prompt.
        max_steps: most model calls in one run.
        max_seconds: wall-clock budget for one run (checked between steps).
        max_total_tokens: budget of input + output tokens over all model calls of one run
            (``max_tokens``, a sampling field, limits each reply).
        approve: ``approve(call, tool) -> bool``, asked before every tool marked dangerous.
        output_schema: a pydantic model or JSON Schema: the final answer is then asked for as JSON
            (constrained locally) and returned parsed in ``result.output``.
        mode: ``"auto"``, ``"tools"`` or ``"react"`` (see the module docstring).
        parallel_tool_calls: let the model ask for several tools in one reply (run concurrently).
        answer_on_limit: when ``max_steps`` runs out, make one more call without tools asking for
            the answer from what the tools returned (``ANSWER_NOW_PROMPT``); ``stopped`` still
            says ``"max_steps"``.
        tool_choice: for the first step only: ``"required"`` or a tool's name forces a call (on local
            models through the grammar), so even a small model starts with the tool; later steps
            are ``"auto"``.
        react_template: the ReAct prompt (``react.REACT_TEMPLATE``), for ``mode="react"``.
        **sampling: sampling fields for every model call (``temperature=0``, ``max_tokens=256`` …).
    """

    def __init__(self, model: Any, tools: Iterable[Any] = (), *, system: str | None = None, max_steps: int = 10,
                 max_seconds: float | None = None, max_total_tokens: int | None = None,
                 approve: Callable[[ToolCall, FunctionTool], bool] | None = None, output_schema: Any = None,
                 mode: str = "auto", parallel_tool_calls: bool = True, tool_choice: str | None = None,
                 answer_on_limit: bool = False, react_template: str = react.REACT_TEMPLATE, **sampling: Any):
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} is not one of: {', '.join(MODES)}")
        if max_steps < 1:
            raise ConfigError(f"max_steps={max_steps} must be at least 1")
        self.model, self.tools = model, as_tools(tools)
        self.system, self.max_steps, self.max_seconds = system, max_steps, max_seconds
        self.max_total_tokens = max_total_tokens
        self.approve, self.output_schema, self.parallel_tool_calls = approve, output_schema, parallel_tool_calls
        self.react_template, self.sampling, self.tool_choice = react_template, sampling, tool_choice
        self.answer_on_limit = answer_on_limit
        if tool_choice not in (None, "auto", "none", "required", *self.tools):
            raise ConfigError(f"tool_choice={tool_choice!r} is not 'auto', 'none', 'required' or a tool name "
                              f"({', '.join(self.tools) or 'no tools given'})")
        self.mode = mode if mode != "auto" else ("tools" if "tools" in getattr(model, "capabilities", ()) else "react")

    # --- public ---------------------------------------------------------------------------------
    def run(self, task: str, history: list[Message] | None = None) -> AgentResult:
        """Run the task to an answer (or a budget); ``history``: earlier turns to continue from."""
        result = None
        for event in self.stream(task, history):
            if isinstance(event, AgentResult):
                result = event
        assert result is not None
        return result

    def stream(self, task: str, history: list[Message] | None = None) -> Iterator[Step | AgentResult]:
        """Yield each model and tool ``Step`` as it happens, then the ``AgentResult`` (whose
        ``steps`` end with the ``"final"`` one)."""
        with tracing.span("agent.run", {"llmkit.agent.mode": self.mode, "llmkit.agent.tools": list(self.tools),
                                        "llmkit.agent.task": task if tracing.record_content() else None}) as span:
            loop = self._react_loop if self.mode == "react" else self._tools_loop
            result = yield from loop(task, list(history or []))
            span.set_attributes(tracing.clean({"llmkit.agent.stopped": result.stopped,
                                               "llmkit.agent.steps": len(result.steps)}))
            yield result

    async def arun(self, task: str, history: list[Message] | None = None) -> AgentResult:
        """``run`` in a worker thread, so an event loop stays responsive while the agent works."""
        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, self.run, task, history)

    # --- the loops --------------------------------------------------------------------------------
    def _tools_loop(self, task: str, history: list[Message]):
        messages = ([system(self.system)] if self.system else []) + history + [user(task)]
        steps: list[Step] = []
        budget = _Budget(self)
        specs = [t.spec for t in self.tools.values()] or None
        extra = {"parallel_tool_calls": False} if specs and not self.parallel_tool_calls else {}
        for i in range(1, self.max_steps + 1):
            if (why := budget.exceeded(steps)) is not None:
                return self._finish(messages, steps, why, "")
            t0 = time.perf_counter()
            choice = {"tool_choice": self.tool_choice} if i == 1 and self.tool_choice and specs else {}
            c = self.model.chat(messages, tools=specs, **extra, **choice, **self.sampling)
            step = Step("model", i, c.text, tool_calls=list(c.tool_calls), seconds=time.perf_counter() - t0,
                        input_tokens=c.usage.input_tokens, output_tokens=c.usage.output_tokens)
            steps.append(step)
            yield step
            messages.append(assistant(c.text, list(c.tool_calls)))
            if not c.tool_calls:
                return self._finish(messages, steps, "done", c.text)
            for call, tool_step in zip(c.tool_calls, self._run_calls(c.tool_calls, i)):
                steps.append(tool_step)
                yield tool_step
                messages.append(tool_message(_observation(tool_step), call.id, call.name))
        text = ""
        if self.answer_on_limit:
            t0 = time.perf_counter()
            messages.append(user(ANSWER_NOW_PROMPT))
            c = self.model.chat(messages, **self.sampling)  # no tools offered: the reply is text
            text = c.text
            steps.append(Step("model", self.max_steps + 1, text, seconds=time.perf_counter() - t0,
                              input_tokens=c.usage.input_tokens, output_tokens=c.usage.output_tokens))
            yield steps[-1]
            messages.append(assistant(text))
        return self._finish(messages, steps, "max_steps", text)

    def _react_loop(self, task: str, history: list[Message]):
        prompt = react.react_prompt(task, self.tools, self.react_template)
        head = ([system(self.system)] if self.system else []) + history
        scratch, steps, budget = "", [], _Budget(self)
        sampling = {k: v for k, v in self.sampling.items() if k != "stop"}
        stop = list(self.sampling.get("stop") or []) + react.STOP
        for i in range(1, self.max_steps + 1):
            if (why := budget.exceeded(steps)) is not None:
                return self._finish(head + [user(prompt + scratch)], steps, why, "")
            t0 = time.perf_counter()
            # the scratchpad (earlier thoughts, actions, observations) grows inside the prompt, as in the paper
            c = self.model.chat(head + [user(prompt + scratch)], stop=stop, **sampling)
            parsed = react.parse_react(c.text)
            calls = [ToolCall(id=f"react_{i}", name=parsed.action, arguments=parsed.arguments)] if parsed.action else []
            step = Step("model", i, c.text, tool_calls=calls, seconds=time.perf_counter() - t0,
                        input_tokens=c.usage.input_tokens, output_tokens=c.usage.output_tokens)
            steps.append(step)
            yield step
            if parsed.final is not None:
                return self._finish(head + [user(prompt + scratch), assistant(c.text)], steps, "done", parsed.final)
            if parsed.error and not parsed.action:
                observation = parsed.error
            elif parsed.error:
                observation = f"Error: {parsed.error}"
            else:
                tool_step = self._run_calls(calls, i)[0]
                steps.append(tool_step)
                yield tool_step
                observation = _observation(tool_step)
            scratch += "\n" + c.text.strip() + f"\nObservation: {observation}"
        return self._finish(head + [user(prompt + scratch)], steps, "max_steps", "")

    # --- pieces -------------------------------------------------------------------------------------
    def _run_calls(self, calls: list[ToolCall], index: int) -> list[Step]:
        """Run a reply's tool calls — concurrently when there are several — each under its own span."""
        if len(calls) == 1:
            return [self._run_call(calls[0], index)]
        with ThreadPoolExecutor(min(8, len(calls))) as pool:  # spans nest: each thread runs in a copy of the context
            futures = [pool.submit(contextvars.copy_context().run, self._run_call, c, index) for c in calls]
            return [f.result() for f in futures]

    def _run_call(self, call: ToolCall, index: int) -> Step:
        step = Step("tool", index, tool=call.name, arguments=call.arguments)
        t0 = time.perf_counter()
        with tracing.span(f"tool {call.name}", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                                                "gen_ai.tool.call.id": call.id}) as span:
            tool = self.tools.get(call.name)
            if tool is None:
                step.error = f"unknown tool {call.name!r}; the tools are: {', '.join(self.tools) or 'none'}"
            elif tool.dangerous and not (self.approve and self.approve(call, tool)):
                step.error = f"calling {call.name} was not approved"
            else:
                try:
                    step.result = serialize(tool.run(call.arguments))
                except ToolArgumentError as e:
                    step.error = str(e)
                except Exception as e:  # the model sees the failure and may try again differently
                    step.error = f"{type(e).__name__}: {e}"
            step.seconds = time.perf_counter() - t0
            if tracing.record_content():
                span.set_attributes(tracing.clean({"llmkit.tool.arguments": json.dumps(call.arguments, ensure_ascii=False),
                                                   "llmkit.tool.result": step.result, "llmkit.tool.error": step.error}))
            if step.error:
                span.set_attribute("llmkit.tool.failed", True)
        return step

    def _finish(self, messages: list[Message], steps: list[Step], stopped: str, text: str) -> AgentResult:
        output: Any = text
        if stopped == "done" and self.output_schema is not None:
            output = self.model.json(messages + [user(FINAL_JSON_PROMPT)], schema=self.output_schema, **self.sampling)
            text = output.model_dump_json() if hasattr(output, "model_dump_json") else json.dumps(output)
        steps.append(Step("final", len([s for s in steps if s.kind == "model"]), text))
        return AgentResult(output=output, text=text, stopped=stopped, steps=steps, messages=messages)


class _Budget:
    def __init__(self, agent: Agent):
        self.agent, self.start = agent, time.perf_counter()

    def exceeded(self, steps: list[Step]) -> str | None:
        a = self.agent
        if a.max_seconds is not None and time.perf_counter() - self.start > a.max_seconds:
            return "max_seconds"
        if a.max_total_tokens is not None and sum(s.input_tokens + s.output_tokens for s in steps) >= a.max_total_tokens:
            return "max_total_tokens"
        return None


def _observation(step: Step) -> str:
    text = f"Error: {step.error}" if step.error else (step.result or "")
    if len(text) > MAX_OBSERVATION:
        text = text[:MAX_OBSERVATION] + f"… [{len(text) - MAX_OBSERVATION} more characters cut]"
    return text
