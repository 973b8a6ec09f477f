"""A model whose replies are written in advance: for testing prompts, programs and agents.

``lk.model("scripted")`` (or ``ScriptedModel(...)``) answers each call with the next reply in
its script, and records every call (messages, sampling, tools) in ``.calls`` so a test can
assert on what was sent. A reply is one of:

- a string: the reply text;
- a ``ToolCall``, a dict ``{"name": ..., "arguments": {...}}``, or a list of them: tool calls;
- a ``Completion``: returned as it is (logprobs, usage, finish reason and all);
- a callable ``reply(messages, tools) -> any of the above``: a reply that depends on what the
  model was shown (the few-shot demonstrations, the last tool result …).

An exhausted script raises ``ScriptExhausted`` (an ``LLMKitError``), naming the call that found
it empty, so a loop that calls the model more often than the test planned fails loudly.

Example:
    >>> m = ScriptedModel(["Let me add.", {"name": "add", "arguments": {"a": 2, "b": 3}}, "5"])
    >>> m = ScriptedModel(lambda msgs, tools: "yes" if "Paris" in msgs[-1].content else "no", repeat=True)
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

from ..core.errors import LLMKitError
from ..core.sampling import Sampling
from ..core.types import Chunk, Completion, Message, Tool, ToolCall, Usage
from .base import Model

Reply = Any  # str | ToolCall | dict | list | Completion | Callable[[list[Message], list[Tool] | None], ...]
_ids = itertools.count(1)


class ScriptExhausted(LLMKitError):
    """The scripted model was called more often than its script has replies."""


class ScriptedModel(Model):
    """Replies from a script; every call recorded in ``.calls`` as ``(messages, sampling, tools)``.

    Args:
        replies: the replies in order (see the module docstring), or one callable.
        repeat: cycle through the replies forever instead of raising when they run out.
        name: the model name shown in traces.
    """

    provider = "scripted"
    supported = frozenset(Sampling.model_fields)  # records every field; a test asserts on what it got
    capabilities = ("chat", "stream", "complete", "tools")
    parallel_tool_control = True

    def __init__(self, replies: Reply | list[Reply] = (), *, repeat: bool = False, name: str = "scripted"):
        super().__init__(name)
        if callable(replies) or isinstance(replies, (str, dict, ToolCall, Completion)):
            replies = [replies]
        self.replies = list(replies)
        self.repeat = repeat
        self.calls: list[tuple[list[Message], Sampling, list[Tool] | None]] = []
        self.tool_choices: list[str | None] = []  # the tool_choice of each call
        self._next = 0

    @property
    def prompts(self) -> list[str]:
        """The last message's content of every call so far."""
        return [msgs[-1].content if msgs else "" for msgs, _, _ in self.calls]

    def _reply(self, messages: list[Message], s: Sampling, tools: list[Tool] | None,
               tool_choice: str | None = None) -> Completion:
        self.calls.append((list(messages), s, tools))
        self.tool_choices.append(tool_choice)
        if not self.replies or (self._next >= len(self.replies) and not self.repeat):
            raise ScriptExhausted(f"the scripted model has {len(self.replies)} replies and got call "
                                  f"{len(self.calls)}: {(messages[-1].content if messages else '')[:80]!r}")
        reply = self.replies[self._next % len(self.replies)]
        self._next += 1
        if callable(reply) and not isinstance(reply, (ToolCall, Completion)):
            reply = reply(list(messages), tools)
        return _completion(reply, self.name)

    def _chat(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None, parallel_tool_calls: bool = True) -> Completion:
        return self._reply(messages, s, tools, tool_choice)

    def _stream(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
                constraint: Any = None, parallel_tool_calls: bool = True) -> Iterator[Chunk]:
        c = self._reply(messages, s, tools, tool_choice)
        words = c.text.split(" ")
        for i, w in enumerate(words):  # word by word, as a real stream arrives in pieces
            yield Chunk(text=w if i == len(words) - 1 else w + " ")
        yield Chunk(finish_reason=c.finish_reason, usage=c.usage, tool_calls=c.tool_calls)

    def _complete(self, prompt: str, s: Sampling) -> Completion:
        return self._reply([Message(role="user", content=prompt)], s, None)

    def count_tokens(self, text: Any) -> int:
        """Words, as a stand-in for tokens."""
        if isinstance(text, str):
            return len(text.split())
        msgs = [text] if isinstance(text, Message) else list(text)
        return sum(len(m.content.split()) + 1 for m in msgs)


def _completion(reply: Reply, model: str) -> Completion:
    if isinstance(reply, Completion):
        return reply
    if isinstance(reply, str):
        return Completion(text=reply, finish_reason="stop", model=model,
                          usage=Usage(input_tokens=0, output_tokens=len(reply.split())))
    calls = reply if isinstance(reply, list) else [reply]
    out = []
    for c in calls:
        if isinstance(c, dict):
            c = ToolCall(id=c.get("id") or f"call_{next(_ids)}", name=c["name"], arguments=c.get("arguments", {}))
        if not isinstance(c, ToolCall):
            raise TypeError(f"a scripted reply must be a str, ToolCall, dict, list of calls or Completion, got {c!r}")
        out.append(c)
    return Completion(text="", tool_calls=out, finish_reason="tool_calls", model=model)
