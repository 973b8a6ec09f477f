"""OpenAI's wire format: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``.

Requests are validated into pydantic models (an unknown field is a 400 naming it, not silently
dropped), turned into llmkit messages and a ``Sampling``, and answered by ``model.chat`` /
``model.stream`` / ``model.complete``. Beyond OpenAI's own fields the sampling extras that
vLLM and llmkit's ``llmkit:`` client preset send are accepted: ``top_k``, ``min_p``,
``repetition_penalty``, ``typical_p``. A field the model cannot honour is a 400 naming it.

``model`` in a request may be the served name (``/v1/models``) or the spec the server was
started with; anything else is a 404 ``model_not_found``. Omitting it means the served model.
"""
from __future__ import annotations

import base64
import struct
import time
import uuid
from contextlib import aclosing
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ConfigError
from ..core.sampling import Sampling
from ..core.types import Completion, Message, TokenLogprob, Tool, ToolCall, Usage
from ..models.openai import wire_message
from .errors import APIError, sampling, stream_error
from .runner import SSEResponse, sse

router = APIRouter()


# --- request bodies ------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampled(_Body):
    """Fields shared by chat and text completions."""

    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = None
    n: int = Field(1, ge=1, le=16, description="independent completions; with a seed, choice i uses seed + i")
    stream: bool = False
    stream_options: StreamOptions | None = None
    top_k: int | None = None                 # the extras: vLLM's names, sent by llmkit's own client
    min_p: float | None = None
    repetition_penalty: float | None = None
    typical_p: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None                  # accepted for compatibility; changes nothing
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None

    def samplings(self, max_tokens: int | None, logprobs: bool | None, top_logprobs: int | None) -> list[Sampling]:
        """One Sampling per choice (seed + i for choice i, so choices differ yet reproduce)."""
        if self.logit_bias:
            raise APIError(400, "logit_bias is not supported", param="logit_bias", code="unsupported_parameter")
        s = sampling(temperature=self.temperature, top_p=self.top_p, frequency_penalty=self.frequency_penalty,
                     presence_penalty=self.presence_penalty, seed=self.seed, stop=self.stop, max_tokens=max_tokens,
                     top_k=self.top_k, min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                     typical_p=self.typical_p, logprobs=logprobs, top_logprobs=top_logprobs)
        if self.n == 1 or s.seed is None:
            return [s] * self.n
        return [s.model_copy(update={"seed": s.seed + i}) for i in range(self.n)]


class FunctionCall(BaseModel):
    name: str
    arguments: str = "{}"  # a JSON string, as OpenAI sends it


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    # Clients append the assistant message they got back, with fields like refusal/annotations.
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Any = None  # a string or a list of parts; checked in to_messages for a clear error
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Body):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolDef(_Body):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class ChatRequest(_Sampled):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampled):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=20, description="alternatives per token, as in the legacy API")
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class EmbeddingRequest(_Body):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


# --- routes --------------------------------------------------------------------------------------
@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    served = request.app.state.served
    served.check_model(body.model)
    constraint = response_constraint(body.response_format)
    if constraint is not None and body.tools and body.tool_choice != "none":
        raise APIError(400, "send either response_format or tools, not both", param="response_format")
    messages = to_messages(body.messages)
    tools = [Tool(name=t.function.name, description=t.function.description, parameters=t.function.parameters)
             for t in body.tools or []] or None
    choice = body.tool_choice.function.name if isinstance(body.tool_choice, NamedToolChoice) else body.tool_choice
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    samplings = body.samplings(max_tokens, body.logprobs, body.top_logprobs)
    model, head = served.model, _head("chatcmpl", "chat.completion", served.name)
    kw = dict(tools=tools, tool_choice=choice, parallel_tool_calls=body.parallel_tool_calls) if constraint is None \
        else dict(constraint=constraint)
    if not body.stream:  # a constrained answer comes back as generated (cut at max_tokens, like OpenAI's)
        call = (lambda s: model.chat(messages, sampling=s, **kw)) if constraint is None else \
            (lambda s: model._collect_stream(model.stream(messages, sampling=s, **kw)))
        done = await served.runner.complete([lambda s=s: call(s) for s in samplings])
        return {**head, "choices": [chat_choice(i, c) for i, c in enumerate(done)], "usage": wire_usage(done)}
    pairs = await served.runner.stream(request, [lambda s=s: model.stream(messages, sampling=s, **kw) for s in samplings])
    return SSEResponse(_chat_events(pairs, {**head, "object": "chat.completion.chunk"}, _include_usage(body),
                                    request.url.path))


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    served = request.app.state.served
    served.check_model(body.model)
    for name, ok in (("echo", not body.echo), ("suffix", body.suffix is None), ("best_of", body.best_of in (None, body.n))):
        if not ok:
            raise APIError(400, f"{name} is not supported", param=name, code="unsupported_parameter")
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts:
        raise APIError(400, "prompt is empty: send a string or a list of strings", param="prompt")
    samplings = body.samplings(body.max_tokens, True if body.logprobs is not None else None, body.logprobs or None)
    model, head = served.model, _head("cmpl", "text_completion", served.name)
    jobs = [(p, s) for p in prompts for s in samplings]  # choice index = prompt index × n + j, as OpenAI numbers them
    if not body.stream:
        done = await served.runner.complete([lambda p=p, s=s: model.complete(p, sampling=s) for p, s in jobs])
        return {**head, "choices": [text_choice(i, c) for i, c in enumerate(done)], "usage": wire_usage(done, len(prompts))}
    pairs = await served.runner.stream(request, [lambda p=p, s=s: model.stream_complete(p, sampling=s) for p, s in jobs])
    return SSEResponse(_text_events(pairs, head, _include_usage(body), len(prompts), request.url.path))


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request):
    served = request.app.state.served
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise APIError(400, "input must be a non-empty string or list of strings (token ids are not supported)",
                       param="input")
    embedder = await served.runner.side(served.embedder)
    names = (embedder.name, f"sentence-transformers/{embedder.name}")
    if body.model is not None and body.model not in names:
        raise APIError(404, f"embedding model {body.model!r} is not served here; this server embeds with "
                            f"{embedder.name!r}", param="model", code="model_not_found")
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise APIError(400, f"dimensions={body.dimensions}: {embedder.name} has {embedder.dimensions}",
                       param="dimensions")
    vectors = await served.runner.side(embedder.embed, texts)
    count = getattr(embedder, "count_tokens", None)  # an embedder without a tokenizer reports words
    tokens = await served.runner.side(count, texts) if count else sum(len(t.split()) for t in texts)
    served.metrics.input_tokens.inc(tokens)
    data = [{"object": "embedding", "index": i,
             "embedding": _b64(v) if body.encoding_format == "base64" else v} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": embedder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.get("/v1/models")
async def list_models(request: Request):
    """OpenAI's model list; with an ``anthropic-version`` header (Anthropic's SDK), Anthropic's."""
    served = request.app.state.served
    ids = [served.name, *served.embedding_ids()]
    if "anthropic-version" in request.headers:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(served.created))
        data = [{"type": "model", "id": i, "display_name": i, "created_at": created} for i in ids]
        return {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
    return {"object": "list", "data": [_model_card(served, i) for i in ids]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request):
    served = request.app.state.served
    if model_id in served.embedding_ids():
        return _model_card(served, model_id)
    served.check_model(model_id)
    return _model_card(served, served.name)


# --- OpenAI ⇄ llmkit -----------------------------------------------------------------------------
def response_constraint(fmt: dict[str, Any] | None):
    """``response_format`` as an llmkit constraint (None for text), compiled now so that a bad
    schema is a 400 before any generation. Beyond OpenAI's ``json_object`` and ``json_schema``,
    llmkit accepts ``{"type": "regex", "pattern": ...}``, ``{"type": "choice", "choices": [...]}``
    and ``{"type": "grammar", "grammar": ...}`` (Lark or GBNF)."""
    from ..structured import JSON, Choice, Grammar, JSONSchema, Regex

    kind = (fmt or {}).get("type", "text")
    try:
        if kind == "text":
            return None
        if kind == "json_object":
            return JSON()
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise APIError(400, "response_format.json_schema.schema must be a JSON Schema object",
                               param="response_format.json_schema")
            return JSONSchema(spec["schema"], name=spec.get("name"))
        if kind == "regex":
            return Regex(fmt.get("pattern"))
        if kind == "choice":
            return Choice(fmt.get("choices"))
        if kind == "grammar":
            return Grammar(fmt.get("grammar"))
    except ConfigError as e:
        raise APIError(400, str(e), param="response_format", code="invalid_response_format") from None
    raise APIError(400, f"response_format.type {kind!r} is not one of: text, json_object, json_schema, regex, "
                        "choice, grammar", param="response_format.type")



def to_messages(messages: list[ChatMessage]) -> list[Message]:
    """OpenAI chat messages as llmkit Messages (``developer`` is a system message)."""
    if not messages:
        raise APIError(400, "messages is empty: send at least one message", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if m.role == "tool" and not m.tool_call_id:
            raise APIError(400, f"{where}.tool_call_id is required on a tool message", param=f"{where}.tool_call_id")
        calls = []
        for j, c in enumerate(m.tool_calls or []):
            try:
                calls.append(ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments))
            except ValueError:
                raise APIError(400, f"{where}.tool_calls.{j}.function.arguments is not a JSON object: "
                                    f"{c.function.arguments[:200]!r}", param=f"{where}.tool_calls") from None
        out.append(Message(role="system" if m.role == "developer" else m.role, content=_text(m.content, where),
                           tool_calls=calls, tool_call_id=m.tool_call_id if m.role == "tool" else None,
                           name=m.name if m.role == "tool" else None))
    return out


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for j, p in enumerate(content):
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                kind = p.get("type") if isinstance(p, dict) else type(p).__name__
                raise APIError(400, f"{where}.content.{j}: only text parts are supported, got {kind!r}",
                               param=f"{where}.content", code="unsupported_parameter")
            parts.append(p["text"])
        return "".join(parts)
    raise APIError(400, f"{where}.content must be a string or a list of text parts", param=f"{where}.content")


def _head(prefix: str, obj: str, model: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": obj, "created": int(time.time()), "model": model}


def _include_usage(body: _Sampled) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def wire_usage(done: list[Completion], prompts: int = 1) -> dict[str, int]:
    """Usage over all choices: each distinct prompt counted once (as OpenAI does for ``n``)."""
    per_prompt = len(done) // max(prompts, 1)
    prompt = sum(c.usage.input_tokens for c in done[::per_prompt or 1])
    completion = sum(c.usage.output_tokens for c in done)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_choice(i: int, c: Completion) -> dict[str, Any]:
    return {"index": i, "message": wire_message(c.message()), "finish_reason": c.finish_reason or "stop",
            "logprobs": {"content": chat_logprobs(c.logprobs), "refusal": None} if c.logprobs is not None else None}


def chat_logprobs(lps: list[TokenLogprob]) -> list[dict[str, Any]]:
    entry = lambda token, lp: {"token": token, "logprob": lp, "bytes": list(token.encode())}
    return [{**entry(t.token, t.logprob), "top_logprobs": [entry(a, b) for a, b in t.top]} for t in lps]


def text_choice(i: int, c: Completion) -> dict[str, Any]:
    return {"index": i, "text": c.text, "finish_reason": c.finish_reason or "stop",
            "logprobs": legacy_logprobs(c.logprobs) if c.logprobs is not None else None}


def legacy_logprobs(lps: list[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    offsets = []
    for t in lps:
        offsets.append(offset)
        offset += len(t.token)
    return {"tokens": [t.token for t in lps], "token_logprobs": [t.logprob for t in lps],
            "top_logprobs": [dict(t.top) for t in lps], "text_offset": offsets}



def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()  # little-endian float32, as OpenAI


def _model_card(served, model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": served.created, "owned_by": "llmkit"}


# --- streams -------------------------------------------------------------------------------------
async def _chat_events(pairs, head: dict, include_usage: bool, path: str):
    """chat.completion.chunk events: a role delta first, content / tool-call deltas, a finish
    chunk per choice, then (with include_usage) one chunk with usage and no choices, then [DONE]."""
    usage_of = {"usage": None} if include_usage else {}
    chunk = lambda i, delta, finish=None, lp=None: sse({**head, "choices": [
        {"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}], **usage_of})
    started, calls, usages = set(), {}, []
    async with aclosing(pairs):
        try:
            async for i, c in pairs:
                if i not in started:
                    started.add(i)
                    yield chunk(i, {"role": "assistant", "content": ""})
                if c.text or c.logprobs:
                    lp = {"content": chat_logprobs(c.logprobs), "refusal": None} if c.logprobs else None
                    yield chunk(i, {"content": c.text}, lp=lp)
                if c.tool_calls:
                    wire = wire_message(Message(role="assistant", tool_calls=c.tool_calls))["tool_calls"]
                    first = calls.setdefault(i, 0)
                    calls[i] += len(wire)
                    yield chunk(i, {"tool_calls": [{"index": first + k, **w} for k, w in enumerate(wire)]})
                if c.finish_reason:
                    yield chunk(i, {}, c.finish_reason)
                    usages.append(c.usage or Usage())
            if include_usage:
                done = [Completion(usage=u) for u in usages]
                yield sse({**head, "choices": [], "usage": wire_usage(done)})
            yield "data: [DONE]\n\n"
        except Exception as e:  # headers are out: the error can only travel as an event
            yield sse(stream_error(path, e))


async def _text_events(pairs, head: dict, include_usage: bool, prompts: int, path: str):
    usage_of = {"usage": None} if include_usage else {}
    usages = []
    async with aclosing(pairs):
        try:
            async for i, c in pairs:
                lp = legacy_logprobs(c.logprobs) if c.logprobs else None
                yield sse({**head, "choices": [{"index": i, "text": c.text, "logprobs": lp,
                                                "finish_reason": c.finish_reason}], **usage_of})
                if c.finish_reason:
                    usages.append(c.usage or Usage())
            if include_usage:
                yield sse({**head, "choices": [], "usage": wire_usage([Completion(usage=u) for u in usages], prompts)})
            yield "data: [DONE]\n\n"
        except Exception as e:
            yield sse(stream_error(path, e))
