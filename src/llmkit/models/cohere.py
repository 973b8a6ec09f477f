"""Cohere's Chat API v2 over plain HTTP (no SDK).

The key comes from ``CO_API_KEY`` or ``COHERE_API_KEY`` (or ``api_key=``) and is sent as
``Authorization: Bearer``; ``base_url`` is the host root, as in Cohere's SDK (``CO_API_URL``
overrides the default), and this backend appends ``/v2/chat``.

When Command decides to call tools it first writes a *tool plan* ("I will look up the weather…")
instead of content; llmkit returns that plan as the completion's text and sends it back as
``tool_plan`` when the turn is replayed, so nothing the model said is lost.

Structured output (``m.json``, ``chat(constraint=...)``) sets ``response_format``:
``{"type": "json_object"}`` for JSON(), plus ``"json_schema": <schema>`` for a JSON Schema or a
Pydantic type. JSON-object mode always writes an object, so a schema with another root
(``list[Pet]``) travels wrapped as ``{"value": ...}`` and comes back unwrapped.

Example:
    >>> import llmkit as lk
    >>> m = lk.model("cohere:command-a-03-2025")
    >>> r = m.chat([lk.system("Be brief."), lk.user("Capital of France?")], temperature=0, max_tokens=32)
    >>> r.text, r.finish_reason, r.usage.output_tokens
    >>> for chunk in m.stream("Count to five."):
    ...     print(chunk.text, end="")
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

from pydantic import ValidationError

from ..core.errors import ConfigError, ProviderError
from ..core.sampling import Sampling
from ..core.types import Chunk, Completion, Message, TokenLogprob, Tool, ToolCall, Usage, as_messages
from ._http import HTTP, RemoteOptions, loads, malformed, resolve_key
from ._schema import object_root, unwrap_text
from .base import Model
from .registry import NATIVE

BASE_URL = "https://api.cohere.com"

# llmkit Sampling field → Chat v2 request key
SAMPLING = {"temperature": "temperature", "top_p": "p", "top_k": "k", "max_tokens": "max_tokens",
            "stop": "stop_sequences", "seed": "seed", "frequency_penalty": "frequency_penalty",
            "presence_penalty": "presence_penalty", "logprobs": "logprobs"}
FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}
FAILED = {"ERROR", "TIMEOUT"}  # generation broke off: what came back is not an answer
MALFORMED = (KeyError, IndexError, TypeError, AttributeError, ValueError, ValidationError)


class CohereModel(Model):
    """A Command model behind Cohere's Chat API v2.

    Args:
        name: the model id, e.g. ``"command-a-03-2025"``.
        **options: :class:`RemoteOptions` (``base_url``, ``api_key``, ``timeout``, ``max_retries``, …).

    Example:
        >>> m = CohereModel("command-a-03-2025", max_retries=5)
        >>> m.chat("Hi", max_tokens=16).text
    """

    provider = "cohere"
    supported = frozenset(SAMPLING)
    capabilities = ("chat", "stream", "tools")
    constraint_kinds = frozenset({"json", "json_schema"})  # response_format; see the module docstring

    def __init__(self, name: str, **options: Any):
        super().__init__(name)
        opts = RemoteOptions.parse(self.provider, options)
        key = resolve_key(opts, NATIVE["cohere"], self.provider)  # fail at construction, not on the first call
        self._secrets = (key,)  # never shown in errors or traces, even if a proxy echoes it
        base_url = opts.base_url or os.environ.get("CO_API_URL") or BASE_URL
        self.http = HTTP(self.provider, base_url, {"authorization": f"Bearer {key}"}, opts)

    # --- chat -------------------------------------------------------------------------------
    def _chat(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None) -> Completion:
        data = self.http.post("/v2/chat", self._body(messages, s, tools, tool_choice, constraint))
        reason = data.get("finish_reason")
        if reason in FAILED:
            raise malformed(self.provider, f"generation failed: finish_reason {reason}", data)
        try:
            msg = data["message"]
            text = "".join(c["text"] for c in msg.get("content") or [] if c.get("type") == "text")
            calls = [_tool_call(c["id"], c["function"]["name"], c["function"].get("arguments")) for c in msg.get("tool_calls") or []]
            logprobs = [_logprob(item) for item in data["logprobs"]] if data.get("logprobs") else None
            usage = _usage(data.get("usage"))
        except MALFORMED as e:
            raise malformed(self.provider, f"malformed response: {type(e).__name__}: {e}", data) from None
        if constraint is not None and response_format(constraint)[1]:
            text = unwrap_text(text)
        return Completion(text=text or msg.get("tool_plan") or "", finish_reason=_finish(reason, bool(calls)),
                          usage=usage, logprobs=logprobs, tool_calls=calls, model=self.name, provider=self.provider, raw=data)

    # --- stream -----------------------------------------------------------------------------
    def _stream(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
                constraint: Any = None) -> Iterator[Chunk]:
        body = {**self._body(messages, s, tools, tool_choice, constraint), "stream": True}
        pending: dict[int, dict[str, Any]] = {}  # tool-call index → id, name and argument pieces so far
        n_calls = 0
        # a reply to a wrapped schema is held back and unwrapped at the end
        held: list[str] | None = [] if constraint is not None and response_format(constraint)[1] else None
        for event, data in self.http.stream("/v2/chat", body):
            ev = loads(data, self.provider)
            kind = ev.get("type", event) if isinstance(ev, dict) else event
            try:
                delta = ev.get("delta") or {}
                msg = delta.get("message") or {}
                if kind == "content-delta":
                    text = (msg.get("content") or {}).get("text")  # thinking content has no text: skipped
                    logprobs = [_logprob(ev["logprobs"])] if ev.get("logprobs") else None
                    if held is not None:
                        held.append(text or "")
                    elif text or logprobs:
                        yield Chunk(text=text or "", logprobs=logprobs)
                elif kind == "tool-plan-delta":
                    if msg.get("tool_plan"):
                        yield Chunk(text=msg["tool_plan"])
                elif kind == "tool-call-start":
                    call = msg["tool_calls"]  # one call per event, not a list
                    fn = call.get("function") or {}
                    pending[ev.get("index", n_calls)] = {"id": call["id"], "name": fn["name"],
                                                         "parts": [fn.get("arguments") or ""]}
                    n_calls += 1
                elif kind == "tool-call-delta":
                    piece = ((msg.get("tool_calls") or {}).get("function") or {}).get("arguments") or ""
                    pending[ev.get("index", n_calls - 1)]["parts"].append(piece)
                elif kind == "tool-call-end":
                    p = pending.pop(ev.get("index", n_calls - 1), None)
                    if p:
                        yield Chunk(tool_calls=[self._streamed_call(p)])
                elif kind == "message-end":
                    reason = delta.get("finish_reason")
                    if reason in FAILED or delta.get("error"):
                        raise ProviderError(delta.get("error") or f"generation failed: finish_reason {reason}",
                                            provider=self.provider, body=data[:2000])
                    # a call the server never closed is still a whole call: hand it over now
                    calls = [self._streamed_call(p) for p in pending.values()]
                    yield Chunk(text=unwrap_text("".join(held)) if held else "", tool_calls=calls,
                                finish_reason=_finish(reason, n_calls > 0), usage=_usage(delta.get("usage")))
                    return
                # message-start, content-start/-end, citation-* and types added later carry nothing to emit
            except MALFORMED as e:
                raise ProviderError(f"malformed stream event {kind!r}: {type(e).__name__}: {e}",
                                    provider=self.provider, body=data[:2000]) from None
        raise ProviderError("stream ended before message-end: the answer is incomplete", provider=self.provider)

    def _streamed_call(self, p: dict[str, Any]) -> ToolCall:
        try:
            return _tool_call(p["id"], p["name"], "".join(p["parts"]))
        except ValueError:
            raise ProviderError(f"tool call {p['name']!r} streamed invalid JSON arguments: {''.join(p['parts'])[:200]!r}",
                                provider=self.provider) from None

    # --- tokens -----------------------------------------------------------------------------
    def count_tokens(self, text: str | list[Message] | Message) -> int:
        """Tokens in a string, counted by Cohere's ``/v1/tokenize`` with this model's tokenizer.

        For a conversation this tokenizes the messages' text joined by newlines, so it is an
        estimate: the chat template and tool definitions Cohere adds are not counted.

        Example:
            >>> m.count_tokens("Hello world")
        """
        if not isinstance(text, str):
            text = "\n".join(m.content + "".join(json.dumps(c.arguments) for c in m.tool_calls)
                             for m in as_messages(text))
        data = self.http.post("/v1/tokenize", {"text": text, "model": self.name})
        if not isinstance(data.get("tokens"), list):
            raise malformed(self.provider, f"malformed tokenize response: {json.dumps(data)[:200]}", data)
        return len(data["tokens"])

    # --- request building -------------------------------------------------------------------
    def _body(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.name, "messages": to_wire(messages)}
        body.update({SAMPLING[k]: v for k, v in s.set_fields().items() if k in SAMPLING})
        if tools:
            if tool_choice not in (None, "auto", "none", "required"):
                # v2's tool_choice is only REQUIRED or NONE and cannot name a tool, so offering
                # just that tool and requiring a call is how to force it.
                tools, tool_choice = [t for t in tools if t.name == tool_choice], "required"
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                               "parameters": t.parameters}} for t in tools]
            if tool_choice in ("required", "none"):  # "auto" is the default, sent as no field at all
                body["tool_choice"] = tool_choice.upper()
        elif tool_choice == "required":
            raise ConfigError("tool_choice='required' needs tools: pass tools=[...]")
        if constraint is not None:
            body["response_format"] = response_format(constraint)[0]
        return body


def response_format(c: Any) -> tuple[dict[str, Any], bool]:
    """A constraint as Chat v2's ``response_format``, and whether its schema was wrapped in
    ``{"value": ...}`` to put an object at the root.

    Example:
        >>> response_format(JSON())
        ({'type': 'json_object'}, False)
    """
    if c.schema() is None:
        return {"type": "json_object"}, False
    schema, wrapped = object_root(c.schema())
    return {"type": "json_object", "json_schema": schema}, wrapped


def to_wire(messages: list[Message]) -> list[dict[str, Any]]:
    """llmkit messages → Chat v2 ``messages``.

    Example:
        >>> to_wire([lk.system("Be brief."), lk.user("Hi")])
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    """
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if m.role == "assistant" and m.tool_calls:
            msg: dict[str, Any] = {"role": "assistant", "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in m.tool_calls]}
            if m.content:  # text before a call is Command's tool plan; Cohere asks for it back
                msg["tool_plan"] = m.content
            out.append(msg)
        elif m.role == "tool":
            if not m.tool_call_id:
                raise ConfigError(f"message {i} is a tool result without tool_call_id: set it to the call's id")
            # a document (rather than a bare string) lets Command cite the tool's output
            out.append({"role": "tool", "tool_call_id": m.tool_call_id,
                        "content": [{"type": "document", "document": {"data": _document(m.content)}}]})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _document(content: str) -> str:
    """A tool's output as the JSON string a document's ``data`` holds."""
    try:
        value = json.loads(content)
    except ValueError:
        return json.dumps({"result": content})
    return content if isinstance(value, dict) else json.dumps({"result": value})


def _tool_call(id: str, name: str, arguments: str | None) -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments or "{}")  # a call with no parameters may send none


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    if has_calls and reason == "COMPLETE":  # some models end a tool-calling turn with COMPLETE
        return "tool_calls"
    return FINISH.get(reason, "error")


def _usage(u: dict[str, Any] | None) -> Usage:
    """``tokens`` are what the model read and wrote; ``billed_units`` the fallback (it omits the template)."""
    u = u or {}
    t = u.get("tokens") or u.get("billed_units") or {}
    return Usage(input_tokens=int(t.get("input_tokens") or 0), output_tokens=int(t.get("output_tokens") or 0))


def _logprob(item: dict[str, Any]) -> TokenLogprob:
    """One Cohere logprob item: a text piece and the logprob of each token in it (summed: the piece's)."""
    return TokenLogprob(token=item.get("text", ""), logprob=float(sum(item.get("logprobs") or [])))
