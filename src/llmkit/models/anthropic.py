"""Anthropic's Messages API over plain HTTP (no SDK).

The key comes from ``ANTHROPIC_API_KEY`` (or ``api_key=``) and is sent as ``x-api-key``;
``base_url`` is the host root, as in Anthropic's SDKs (``ANTHROPIC_BASE_URL`` overrides the
default), and this backend appends ``/v1/messages``.

Structured output (``m.json``, ``chat(constraint=...)``) uses forced tool use: one tool whose
``input_schema`` is the constraint's schema, and ``tool_choice`` naming it. Its input is the
answer: the completion's text is that JSON and its finish reason "stop", not "tool_calls". A root
that is not an object (``list[Pet]``) travels wrapped as ``{"value": ...}`` and comes back unwrapped.

Example:
    >>> import llmkit as lk
    >>> m = lk.model("anthropic:claude-sonnet-4-5")
    >>> r = m.chat([lk.system("Be brief."), lk.user("Capital of France?")], temperature=0, max_tokens=32)
    >>> r.text, r.finish_reason, r.usage.output_tokens
    >>> for chunk in m.stream("Count to five."):
    ...     print(chunk.text, end="")
"""
from __future__ import annotations

import json
import os
from contextlib import closing
from typing import Any, Iterator

from pydantic import ValidationError

from ..core.errors import ConfigError, ProviderError
from ..core.sampling import Sampling
from ..core.types import Chunk, Completion, Message, Tool, ToolCall, Usage, as_messages
from ._http import HTTP, RemoteOptions, loads, malformed, resolve_key
from ._schema import object_root, unwrap, unwrap_text
from .base import Model

KEY_ENV = ("ANTHROPIC_API_KEY",)
BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"  # the Messages API's only version; features arrive through anthropic-beta headers
DEFAULT_MAX_TOKENS = 1024   # the API requires max_tokens; this is what the SDK examples use when none is given

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "refusal": "content_filter", "model_context_window_exceeded": "length"}
TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
ANSWER_TOOL = "Reply with the structured output."  # description of the forced tool that carries a constraint


class AnthropicModel(Model):
    """A Claude model behind the Messages API.

    Args:
        name: the model id, e.g. ``"claude-sonnet-4-5"``.
        **options: :class:`RemoteOptions` (``base_url``, ``api_key``, ``timeout``, ``max_retries``, …).

    Example:
        >>> m = AnthropicModel("claude-sonnet-4-5", max_retries=5)
        >>> m.chat("Hi", max_tokens=16).text
    """

    provider = "anthropic"
    supported = frozenset({"temperature", "top_p", "top_k", "stop", "max_tokens"})
    capabilities = ("chat", "stream", "tools")
    constraint_kinds = frozenset({"json", "json_schema"})  # forced tool use; see the module docstring
    parallel_tool_control = True

    def __init__(self, name: str, **options: Any):
        super().__init__(name)
        opts = RemoteOptions.parse(self.provider, options)
        key = resolve_key(opts, KEY_ENV, self.provider)  # fail at construction, not on the first call
        self._secrets = (key,)  # never shown in errors or traces, even if a proxy echoes it
        self.base_url = opts.base_url or os.environ.get("ANTHROPIC_BASE_URL") or BASE_URL
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url={self.base_url!r} must start with http:// or https://")
        self.http = HTTP(self.provider, self.base_url, {"x-api-key": key, "anthropic-version": API_VERSION}, opts)

    # --- chat -------------------------------------------------------------------------------
    def _chat(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None, parallel_tool_calls: bool | None = None) -> Completion:
        data = self.http.post("/v1/messages", self._body(messages, s, tools, tool_choice, constraint, parallel_tool_calls))
        if data.get("type") == "error":  # an error object that came with a 2xx status
            raise malformed(self.provider, f"error in response: {_error_text(data)}", data)
        try:
            blocks = data["content"]
            text = "".join(b["text"] for b in blocks if b["type"] == "text")
            calls = [ToolCall(id=b["id"], name=b["name"], arguments=b["input"]) for b in blocks if b["type"] == "tool_use"]
            usage = _usage(data["usage"])
        except (KeyError, TypeError, ValidationError) as e:
            raise malformed(self.provider, f"malformed response: {type(e).__name__}: {e}", data) from None
        if constraint is not None and calls:  # the forced tool's input is the answer, not a call to run
            value, wrapped = calls[0].arguments, answer_tool(constraint)[1]
            text, calls = json.dumps(unwrap(value) if wrapped else value, ensure_ascii=False), []
        return Completion(text=text, finish_reason=_finish(data.get("stop_reason"), constraint), usage=usage,
                          tool_calls=calls, model=data.get("model") or self.name, provider=self.provider, raw=data)

    # --- stream -----------------------------------------------------------------------------
    def _stream(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
                constraint: Any = None, parallel_tool_calls: bool | None = None) -> Iterator[Chunk]:
        body = {**self._body(messages, s, tools, tool_choice, constraint, parallel_tool_calls), "stream": True}
        usage, stop_reason = Usage(), None
        pending: dict[int, dict[str, Any]] = {}  # block index → tool_use id, name and JSON pieces so far
        wrapped = constraint is not None and answer_tool(constraint)[1]
        answer: dict[int, list[str]] = {}  # the forced tool's block → its JSON, held back only when wrapped
        # closing(): a caller that stops reading early releases the connection at once
        with closing(self.http.stream("/v1/messages", body)) as events:
            for event, data in events:
                ev = loads(data, self.provider)
                kind = ev.get("type", event) if isinstance(ev, dict) else event
                try:
                    if kind == "message_start":
                        usage = _usage(ev["message"].get("usage") or {})
                    elif kind == "content_block_start":
                        block = ev["content_block"]
                        if block["type"] == "tool_use" and constraint is not None:
                            answer[ev["index"]] = []
                        elif block["type"] == "tool_use":
                            pending[ev["index"]] = {"id": block["id"], "name": block["name"], "parts": []}
                        elif block["type"] == "text" and block.get("text") and constraint is None:
                            yield Chunk(text=block["text"])
                    elif kind == "content_block_delta":
                        delta = ev["delta"]
                        if delta["type"] == "text_delta" and constraint is None:  # text beside the answer is not JSON
                            yield Chunk(text=delta["text"])
                        elif delta["type"] == "input_json_delta" and ev["index"] in answer:
                            if wrapped:
                                answer[ev["index"]].append(delta["partial_json"])
                            elif delta["partial_json"]:
                                yield Chunk(text=delta["partial_json"])
                        elif delta["type"] == "input_json_delta":
                            pending[ev["index"]]["parts"].append(delta["partial_json"])
                        # thinking_delta, signature_delta, citations_delta: not part of the answer text
                    elif kind == "content_block_stop":
                        if ev["index"] in pending:
                            yield Chunk(tool_calls=[self._tool_call(pending.pop(ev["index"]))])
                        elif wrapped and ev["index"] in answer:
                            yield Chunk(text=unwrap_text("".join(answer.pop(ev["index"]))))
                    elif kind == "message_delta":
                        stop_reason = ev["delta"].get("stop_reason") or stop_reason
                        usage = _usage(ev.get("usage") or {}, usage)  # running totals, not increments
                    elif kind == "message_stop":
                        # a tool block the server never closed is still a whole call: hand it over now
                        calls = [self._tool_call(p) for p in pending.values()]
                        text = unwrap_text("".join(next(iter(answer.values())))) if wrapped and answer else ""
                        yield Chunk(text=text, finish_reason=_finish(stop_reason, constraint), usage=usage,
                                    tool_calls=calls)
                        return
                    elif kind == "error":  # e.g. overloaded mid-stream; too late to retry, events were delivered
                        raise ProviderError(_error_text(ev), provider=self.provider, body=data[:2000])
                    # ping and event types added later are skipped, as Anthropic's versioning policy asks
                except (KeyError, TypeError, AttributeError, ValidationError) as e:
                    raise ProviderError(f"malformed stream event {kind!r}: {type(e).__name__}: {e}",
                                        provider=self.provider, body=data[:2000]) from None
        raise ProviderError("stream ended before message_stop: the answer is incomplete", provider=self.provider)

    def _tool_call(self, p: dict[str, Any]) -> ToolCall:
        raw = "".join(p["parts"]) or "{}"  # a tool with no parameters streams no JSON at all
        try:
            args = json.loads(raw)
        except json.JSONDecodeError:
            raise ProviderError(f"tool call {p['name']!r} streamed invalid JSON arguments: {raw[:200]!r}",
                                provider=self.provider) from None
        return ToolCall(id=p["id"], name=p["name"], arguments=args)

    # --- tokens -----------------------------------------------------------------------------
    def count_tokens(self, text: str | list[Message] | Message) -> int:
        """Input tokens of a string or a conversation, counted by Anthropic's own endpoint.

        Example:
            >>> m.count_tokens([lk.system("Be brief."), lk.user("Hi")])
        """
        system, turns = to_wire(as_messages(text))
        body: dict[str, Any] = {"model": self.name, "messages": turns}
        if system:
            body["system"] = system
        try:
            data = self.http.post("/v1/messages/count_tokens", body)
        except Exception as e:
            self._hide_secrets(e)
            raise
        if not isinstance(data.get("input_tokens"), int):
            raise malformed(self.provider, f"malformed count_tokens response: {json.dumps(data)[:200]}", data)
        return data["input_tokens"]

    # --- request building -------------------------------------------------------------------
    def _body(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None, parallel_tool_calls: bool | None = None) -> dict[str, Any]:
        if s.temperature is not None and s.temperature > 1:  # llmkit allows up to 5; the API rejects > 1
            raise ConfigError(f"temperature={s.temperature} is out of range for anthropic: accepted 0 to 1")
        system, turns = to_wire(messages)
        body: dict[str, Any] = {"model": self.name, "max_tokens": s.max_tokens or DEFAULT_MAX_TOKENS, "messages": turns}
        if system:
            body["system"] = system
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.top_p is not None:
            body["top_p"] = s.top_p
        if s.top_k:  # 0 means "off", which is what leaving it out asks for
            body["top_k"] = s.top_k
        if s.stop:
            body["stop_sequences"] = s.stop
        if tools:
            body["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]
            if tool_choice:
                body["tool_choice"] = TOOL_CHOICE.get(tool_choice) or {"type": "tool", "name": tool_choice}
            if parallel_tool_calls is False:  # Anthropic's switch lives in tool_choice
                body["tool_choice"] = {**body.get("tool_choice", {"type": "auto"}), "disable_parallel_tool_use": True}
        elif tool_choice == "required":
            raise ConfigError("tool_choice='required' needs tools: pass tools=[...]")
        if constraint is not None:
            tool, _ = answer_tool(constraint)
            body["tools"], body["tool_choice"] = [tool], {"type": "tool", "name": tool["name"]}
        return body


def answer_tool(c: Any) -> tuple[dict[str, Any], bool]:
    """The tool whose forced input carries constraint ``c``'s JSON, and whether its schema was
    wrapped in ``{"value": ...}`` (the API wants an object at the root of ``input_schema``).

    Example:
        >>> answer_tool(JSON())[0]["input_schema"]
        {'type': 'object'}
        >>> tool, wrapped = answer_tool(Typed(list[int]))
        >>> tool["input_schema"]["properties"], wrapped
        ({'value': {'items': {'type': 'integer'}, 'type': 'array'}}, True)
    """
    schema, wrapped = object_root(c.schema() or {"type": "object"})
    return {"name": getattr(c, "name", None) or "respond", "description": ANSWER_TOOL, "input_schema": schema}, wrapped


def _finish(stop_reason: str | None, constraint: Any) -> str | None:
    if constraint is not None and stop_reason == "tool_use":  # the forced tool's input IS the answer
        return "stop"
    return FINISH.get(stop_reason)


def to_wire(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """llmkit messages → Anthropic's ``(system, messages)``.

    System messages move to the top-level ``system``; tool results become ``tool_result``
    blocks in a user turn; consecutive turns of the same role merge, because the API
    requires user and assistant to alternate.

    Example:
        >>> to_wire([lk.system("Be brief."), lk.user("Hi")])
        ('Be brief.', [{'role': 'user', 'content': [{'type': 'text', 'text': 'Hi'}]}])
    """
    system, turns = [], []
    for i, m in enumerate(messages):
        if m.role == "system":
            system.append(m.content)
            continue
        if m.tool_calls and m.role != "assistant":
            raise ConfigError(f"message {i} ({m.role}) has tool_calls: only assistant messages may")
        if m.role == "tool":
            if not m.tool_call_id:
                raise ConfigError(f"message {i} is a tool result without tool_call_id: set it to the call's id")
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
        else:
            role = m.role
            # the API rejects blank text blocks; assistant turns that only call tools often carry "" or "\n"
            blocks = [{"type": "text", "text": m.content}] if m.content.strip() else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls]
            if not blocks:
                raise ConfigError(f"message {i} ({m.role}) is empty: Anthropic rejects messages with no content")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    for t in turns:  # in a user turn, tool_result blocks must come before any text (stable sort keeps order)
        t["content"].sort(key=lambda b: b["type"] != "tool_result")
    return "\n\n".join(system), turns


def _usage(u: Any, before: Usage | None = None) -> Usage:
    """Anthropic's ``usage`` → llmkit's. Its ``input_tokens`` leaves out prompt tokens written to or
    read from the prompt cache; llmkit counts every prompt token, as OpenAI's ``prompt_tokens`` does."""
    if not isinstance(u, dict):
        raise TypeError(f"usage is {type(u).__name__}, not an object")
    before = before or Usage()
    parts = [u[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens") if u.get(k) is not None]
    return Usage(input_tokens=sum(parts) if parts else before.input_tokens,
                 output_tokens=u.get("output_tokens", before.output_tokens))


def _error_text(data: Any) -> str:
    """``{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}`` → its message."""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return f"{err.get('type', 'error')}: {err.get('message', '')}".strip()
    return json.dumps(data)[:500]
