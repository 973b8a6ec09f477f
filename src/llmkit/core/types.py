"""The data every part of llmkit passes around: messages, tool calls, completions."""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCall(_Strict):
    """A model's request to call a tool. ``arguments`` is already parsed JSON."""

    id: str = Field(description="provider-assigned id; tool results refer back to it")
    name: str = Field(description="the tool's name")
    arguments: dict[str, Any] = Field(default_factory=dict, description="parsed JSON arguments")

    @field_validator("arguments", mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if isinstance(v, str):  # OpenAI-style wire format sends a JSON string
            v = json.loads(v) if v.strip() else {}
        return v


class Tool(_Strict):
    """A tool the model may call: a name, a description, and a JSON Schema for its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Message(_Strict):
    """One chat turn. ``tool`` messages carry a tool's result and the ``tool_call_id`` it answers."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list, description="assistant turns only")
    tool_call_id: str | None = Field(default=None, description="tool turns only")
    name: str | None = Field(default=None, description="the tool's name on tool turns")


def system(text: str) -> Message:
    """A system message: ``lk.system("Be brief.")``."""
    return Message(role="system", content=text)


def user(text: str) -> Message:
    """A user message: ``lk.user("Capital of France?")``."""
    return Message(role="user", content=text)


def assistant(text: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
    """An assistant message, optionally with the tool calls it made."""
    return Message(role="assistant", content=text, tool_calls=tool_calls or [])


def tool(content: str, tool_call_id: str, name: str | None = None) -> Message:
    """A tool result answering the tool call ``tool_call_id``."""
    return Message(role="tool", content=content, tool_call_id=tool_call_id, name=name)


class Usage(_Strict):
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class TokenLogprob(_Strict):
    """Log-probability of one generated token, with the most likely alternatives."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = Field(default_factory=list)


class Completion(_Strict):
    """The result of ``chat`` or ``complete``.

    ``raw`` keeps the provider's own response (a dict for HTTP backends) for anything
    llmkit does not lift into a field.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage = Field(default_factory=Usage)
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    model: str = ""
    provider: str = ""
    parsed: Any = Field(default=None, description="the validated value when the call had a constraint")
    raw: Any = None

    def message(self) -> Message:
        """This completion as an assistant message, ready to append to a conversation."""
        return assistant(self.text, self.tool_calls)


class Chunk(_Strict):
    """One piece of a stream. The last chunk has ``finish_reason`` and, where known, ``usage``;
    tool calls arrive whole, on the chunk where they complete."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)


class ModelInfo(_Strict):
    """What ``model.info`` reports: who serves it and what it can do."""

    provider: str
    name: str
    context_length: int | None = None
    capabilities: list[str] = Field(default_factory=list, description="chat, stream, complete, tools, logprobs, …")


def as_messages(messages: str | Message | dict | list) -> list[Message]:
    """Accept a string, a Message, an OpenAI-style dict, or a list of those."""
    if isinstance(messages, (str, Message, dict)):
        messages = [messages]
    out = []
    for m in messages:
        if isinstance(m, str):
            out.append(user(m))
        elif isinstance(m, Message):
            out.append(m)
        elif isinstance(m, dict):
            out.append(Message.model_validate(m))
        else:
            from .errors import ConfigError

            raise ConfigError(f"message {m!r} is neither a str, a dict nor an llmkit Message")
    if not out:
        from .errors import ConfigError

        raise ConfigError("messages is empty: pass at least one message")
    return out
