"""Anthropic's Messages API: ``POST /v1/messages`` (streaming included) and ``/v1/messages/count_tokens``.

Content blocks map onto llmkit messages: ``text`` blocks join into the turn's text,
``tool_use`` blocks become the assistant's ``ToolCall``s, and each ``tool_result`` block becomes
a ``tool`` message answering its ``tool_use_id``. ``tool_choice`` ``auto``/``any``/``tool``/``none``
become llmkit's ``auto``/``required``/NAME/``none``.

A stream sends Anthropic's events in Anthropic's order: ``message_start``, then per content
block ``content_block_start`` / ``content_block_delta`` (``text_delta`` or ``input_json_delta``) /
``content_block_stop``, then ``message_delta`` (stop reason, usage) and ``message_stop``.
"""
from __future__ import annotations

import json
import uuid
from contextlib import aclosing
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ConfigError, LLMKitError, UnsupportedParameterError
from ..core.types import Completion, Message, Tool, ToolCall, Usage
from .errors import APIError, sampling, stream_error
from .runner import SSEResponse, sse

router = APIRouter()

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


# --- request bodies ------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnthropicMessage(_Body):
    role: Literal["user", "assistant"]
    content: Any  # a string or a list of content blocks; checked in to_messages for a clear error


class AnthropicTool(BaseModel):
    model_config = ConfigDict(extra="ignore")  # cache_control and other hints change nothing here
    name: str
    description: str = ""
    input_schema: dict[str, Any]


class ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class CountRequest(_Body):
    model: str | None = None
    messages: list[AnthropicMessage]
    system: Any = None  # a string or a list of text blocks
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None


class MessagesRequest(CountRequest):
    max_tokens: int = Field(description="required, as in Anthropic's API")
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None     # accepted for compatibility; changes nothing
    service_tier: str | None = None
    output_config: dict[str, Any] | None = None


# --- routes --------------------------------------------------------------------------------------
@router.post("/v1/messages")
async def messages(body: MessagesRequest, request: Request):
    served = request.app.state.served
    served.check_model(body.model)
    constraint = output_constraint(body.output_config)
    msgs, tools, choice = _convert(body)
    s = sampling(max_tokens=body.max_tokens, stop=body.stop_sequences, temperature=body.temperature,
                 top_p=body.top_p, top_k=body.top_k)
    model, msg_id = served.model, f"msg_{uuid.uuid4().hex[:24]}"
    if constraint is not None:
        if tools:
            raise APIError(400, "send either output_config.format or tools, not both", param="output_config")
        call = dict(sampling=s, constraint=constraint)
    else:
        call = dict(sampling=s, tools=tools, tool_choice=choice)
        if body.tool_choice is not None and body.tool_choice.disable_parallel_tool_use:
            call["parallel_tool_calls"] = False
    if not body.stream:  # a constrained answer comes back as generated (cut at max_tokens)
        chat = (lambda: model.chat(msgs, **call)) if constraint is None else \
            (lambda: model._collect_stream(model.stream(msgs, **call)))
        (c,) = await served.runner.complete([chat])
        return {"id": msg_id, "type": "message", "role": "assistant", "model": served.name,
                "content": content_blocks(c), "stop_reason": STOP_REASONS.get(c.finish_reason, "end_turn"),
                "stop_sequence": None, "usage": {"input_tokens": c.usage.input_tokens,
                                                 "output_tokens": c.usage.output_tokens}}
    # message_start carries input_tokens before generation ends; message_delta repeats the exact count
    try:
        counted = await served.runner.side(model.count_tokens, msgs)
    except LLMKitError:  # a backend that cannot count: message_delta still has the real number
        counted = 0
    pairs = await served.runner.stream(request, [lambda: model.stream(msgs, **call)])
    head = {"id": msg_id, "type": "message", "role": "assistant", "model": served.name, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": counted, "output_tokens": 0}}
    return SSEResponse(_events(pairs, head, request.url.path))


def output_constraint(config: dict[str, Any] | None):
    """``output_config.format`` (``{"type": "json_schema", "schema": {...}}``, Anthropic's structured
    outputs) as an llmkit constraint, compiled now so that a bad schema is a 400 before generation."""
    if not config or config.get("format") is None:
        return None
    fmt = config["format"]
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise APIError(400, "output_config.format must be {'type': 'json_schema', 'schema': {...}}",
                       param="output_config.format")
    from ..structured import JSONSchema

    try:
        return JSONSchema(fmt["schema"])
    except ConfigError as e:
        raise APIError(400, str(e), param="output_config.format") from None


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountRequest, request: Request):
    """Tokens the model reads for this request: the conversation as its chat template renders it,
    plus the tool definitions as JSON (an estimate where the backend formats tools itself)."""
    served = request.app.state.served
    served.check_model(body.model)
    msgs, tools, _ = _convert(body)
    if tools and "tools" not in served.model.capabilities:
        raise UnsupportedParameterError("tools", served.model.provider, "this backend cannot call tools yet")
    n = await served.runner.side(served.model.count_tokens, msgs)
    if tools:
        n += await served.runner.side(served.model.count_tokens, json.dumps([t.model_dump() for t in tools]))
    return {"input_tokens": n}


# --- Anthropic ⇄ llmkit --------------------------------------------------------------------------
def _convert(body: CountRequest) -> tuple[list[Message], list[Tool] | None, str | None]:
    msgs = to_messages(body.messages, body.system)
    tools = [Tool(name=t.name, description=t.description, parameters=t.input_schema) for t in body.tools or []] or None
    choice = None
    if body.tool_choice is not None:
        if body.tool_choice.type == "tool":
            if not body.tool_choice.name:
                raise APIError(400, "tool_choice of type 'tool' needs the tool's name", param="tool_choice.name")
            choice = body.tool_choice.name
        else:
            choice = TOOL_CHOICE[body.tool_choice.type]
    return msgs, tools, choice


def to_messages(messages: list[AnthropicMessage], system: Any) -> list[Message]:
    """Anthropic's system + messages as llmkit Messages."""
    if not messages:
        raise APIError(400, "messages is empty: send at least one message", param="messages")
    out = []
    if system:
        blocks = _blocks(system, "system")
        out.append(Message(role="system", content="".join(_only_text(blocks, "system"))))
    for i, m in enumerate(messages):
        where = f"messages.{i}.content"
        text, calls, results = [], [], 0
        for j, b in enumerate(_blocks(m.content, where)):
            kind = b["type"]
            if kind == "text":
                text.append(_need(b, "text", str, f"{where}.{j}"))
            elif kind == "tool_use" and m.role == "assistant":
                calls.append(ToolCall(id=_need(b, "id", str, f"{where}.{j}"), name=_need(b, "name", str, f"{where}.{j}"),
                                      arguments=_need(b, "input", dict, f"{where}.{j}")))
            elif kind == "tool_result" and m.role == "user":
                result = b.get("content", "")
                result = result if isinstance(result, str) else "".join(_only_text(_blocks(result, f"{where}.{j}.content"),
                                                                                   f"{where}.{j}.content"))
                out.append(Message(role="tool", content=result, tool_call_id=_need(b, "tool_use_id", str, f"{where}.{j}")))
                results += 1
            else:
                raise APIError(400, f"{where}.{j}: a {m.role} turn cannot carry a {kind!r} block here (text, tool_use "
                                    "on assistant turns, tool_result on user turns)", param=where)
        if text or calls or not results:  # a turn of tool results only needs no empty turn beside them
            out.append(Message(role=m.role, content="".join(text), tool_calls=calls))
    return out


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in content):
        return content
    raise APIError(400, f"{where} must be a string or a list of content blocks with a 'type'", param=where)


def _only_text(blocks: list[dict[str, Any]], where: str) -> list[str]:
    bad = [b["type"] for b in blocks if b["type"] != "text"]
    if bad:
        raise APIError(400, f"{where}: only text blocks are supported here, got {bad[0]!r}", param=where)
    return [_need(b, "text", str, where) for b in blocks]


def _need(block: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = block.get(key)
    if not isinstance(value, kind):
        raise APIError(400, f"{where}.{key} must be a {'string' if kind is str else 'JSON object'}",
                       param=f"{where}.{key}")
    return value


def content_blocks(c: Completion) -> list[dict[str, Any]]:
    blocks = [{"type": "text", "text": c.text}] if c.text or not c.tool_calls else []
    return blocks + [{"type": "tool_use", "id": t.id, "name": t.name, "input": t.arguments} for t in c.tool_calls]


# --- streams -------------------------------------------------------------------------------------
async def _events(pairs, head: dict[str, Any], path: str):
    event = lambda kind, **data: sse({"type": kind, **data}, kind)
    index, text_open, finish, usage = -1, False, None, Usage()
    async with aclosing(pairs):
        try:
            yield event("message_start", message=head)
            async for _, c in pairs:
                if c.text:
                    if not text_open:
                        index, text_open = index + 1, True
                        yield event("content_block_start", index=index, content_block={"type": "text", "text": ""})
                    yield event("content_block_delta", index=index, delta={"type": "text_delta", "text": c.text})
                for t in c.tool_calls:
                    if text_open:
                        yield event("content_block_stop", index=index)
                        text_open = False
                    index += 1
                    yield event("content_block_start", index=index,
                                content_block={"type": "tool_use", "id": t.id, "name": t.name, "input": {}})
                    yield event("content_block_delta", index=index,
                                delta={"type": "input_json_delta", "partial_json": json.dumps(t.arguments)})
                    yield event("content_block_stop", index=index)
                finish = c.finish_reason or finish
                usage = c.usage or usage
            if text_open:
                yield event("content_block_stop", index=index)
            yield event("message_delta", delta={"stop_reason": STOP_REASONS.get(finish, "end_turn"), "stop_sequence": None},
                        usage={"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens})
            yield event("message_stop")
        except Exception as e:  # headers are out: the error can only travel as an event
            yield sse(stream_error(path, e), "error")
