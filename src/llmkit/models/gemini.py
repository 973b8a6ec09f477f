"""Google Gemini through the Gemini API's ``generateContent``, over plain HTTP (no SDK).

The key comes from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` (or ``api_key=``) and travels in the
``x-goog-api-key`` header, never in the URL, so it cannot leak into access logs or tracebacks.
``base_url`` is the host root (``GEMINI_BASE_URL`` overrides the default); this backend appends
``/v1beta/models/{model}:generateContent`` (``:streamGenerateContent?alt=sse`` when streaming).

Gemini gives tool calls no ids, so llmkit numbers them ``call_0``, ``call_1``… within each
response; a tool result finds its function name by walking back to the call it answers.

Structured output (``m.json``, ``m.choose``, ``chat(constraint=...)``) sets ``generationConfig``:
``responseMimeType: application/json`` with ``responseSchema`` (the constraint's JSON Schema turned
into Gemini's OpenAPI subset by :func:`gemini_schema`), or ``text/x.enum`` with a string enum for
a Choice. The reply is still validated against the full schema, so what the subset drops is checked.

Example:
    >>> import llmkit as lk
    >>> m = lk.model("gemini:gemini-2.5-flash")
    >>> r = m.chat([lk.system("Be brief."), lk.user("Capital of France?")], temperature=0, max_tokens=32)
    >>> r.text, r.finish_reason, r.usage.output_tokens
    >>> for chunk in m.stream("Count to five."):
    ...     print(chunk.text, end="")
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Iterator

from pydantic import ValidationError

from ..core.errors import ConfigError, ProviderError
from ..core.sampling import Sampling
from ..core.types import Chunk, Completion, Message, TokenLogprob, Tool, ToolCall, Usage, as_messages
from ._http import HTTP, RemoteOptions, error_message, loads, malformed, resolve_key
from .base import Model
from .registry import NATIVE

BASE_URL = "https://generativelanguage.googleapis.com"
API = "/v1beta"  # tools, systemInstruction and logprobs are all in v1beta; v1 lags behind

# llmkit Sampling field → generationConfig key (logprobs/top_logprobs are handled apart)
GENERATION = {"temperature": "temperature", "top_p": "topP", "top_k": "topK", "max_tokens": "maxOutputTokens",
              "stop": "stopSequences", "seed": "seed", "presence_penalty": "presencePenalty",
              "frequency_penalty": "frequencyPenalty"}
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
          "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
          "IMAGE_SAFETY": "content_filter"}  # anything else (OTHER, MALFORMED_FUNCTION_CALL, …) is "error"
MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Gemini 3 rejects a replayed functionCall without its thought signature (HTTP 400). When llmkit
# does not hold the real one (a conversation saved and reloaded, or written by hand), Google's
# thought-signature guide documents this value as the way to skip the check.
SKIP_SIGNATURE = "skip_thought_signature_validator"
MALFORMED = (KeyError, IndexError, TypeError, AttributeError, ValidationError)
# JSON Schema keywords with the same meaning in Gemini's Schema (v1beta), kept as they are
SCHEMA_KEEP = ("description", "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength",
               "minProperties", "maxProperties", "propertyOrdering")
# the only ``format`` values the Gemini API accepts, per type; any other makes the request fail
SCHEMA_FORMATS = {"STRING": {"date-time", "enum"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}


class GeminiModel(Model):
    """A Gemini model behind the Gemini API (Google AI Studio keys).

    Args:
        name: the model id, e.g. ``"gemini-2.5-flash"``; a name with a slash (``"tunedModels/my-model"``)
            is used as the resource path as it is.
        **options: :class:`RemoteOptions` (``base_url``, ``api_key``, ``timeout``, ``max_retries``, …).

    Example:
        >>> m = GeminiModel("gemini-2.5-flash", max_retries=5)
        >>> m.chat("Hi", max_tokens=16).text
    """

    provider = "gemini"
    supported = frozenset(GENERATION) | {"logprobs", "top_logprobs"}
    capabilities = ("chat", "stream", "tools")
    constraint_kinds = frozenset({"json", "json_schema", "choice"})  # responseMimeType/responseSchema

    def __init__(self, name: str, **options: Any):
        super().__init__(name)
        opts = RemoteOptions.parse(self.provider, options)
        key = resolve_key(opts, NATIVE["gemini"], self.provider)  # fail at construction, not on the first call
        self._secrets = (key,)  # never shown in errors or traces, even if a proxy echoes it
        base_url = opts.base_url or os.environ.get("GEMINI_BASE_URL") or BASE_URL
        self.http = HTTP(self.provider, base_url, {"x-goog-api-key": key}, opts)
        self.resource = name if "/" in name else f"models/{name}"
        version = re.search(r"gemini-(\d+)", name)
        self._needs_signature = bool(version and int(version.group(1)) >= 3)
        # (id, name, args) → thought signature of calls this instance received, so a tool loop that
        # replays them gets the real signature back; ToolCall has no field to carry it.
        self._signatures: dict[tuple[str, str, str], str] = {}

    def _path(self, method: str) -> str:
        return f"{API}/{self.resource}:{method}"

    # --- chat -------------------------------------------------------------------------------
    def _chat(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None) -> Completion:
        data = self.http.post(self._path("generateContent"), self._body(messages, s, tools, tool_choice, constraint))
        try:
            got = self._candidate(data, first_call=0)
            usage = _usage(data)
        except MALFORMED as e:
            raise malformed(self.provider, f"malformed response: {type(e).__name__}: {e}", data) from None
        if got is None:
            raise malformed(self.provider, f"malformed response: no candidates in {json.dumps(data)[:200]}", data)
        text, calls, reason, logprobs = got
        return Completion(text=text, finish_reason=_finish(reason, bool(calls)), usage=usage, logprobs=logprobs,
                          tool_calls=calls, model=data.get("modelVersion") or self.name, provider=self.provider, raw=data)

    # --- stream -----------------------------------------------------------------------------
    def _stream(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
                constraint: Any = None) -> Iterator[Chunk]:
        body = self._body(messages, s, tools, tool_choice, constraint)
        reason, usage, n_calls = None, Usage(), 0
        for _, data in self.http.stream(self._path("streamGenerateContent"), body, params={"alt": "sse"}):
            ev = loads(data, self.provider)
            if isinstance(ev, dict) and "error" in ev:  # failed mid-stream; too late to retry
                raise ProviderError(error_message(data), provider=self.provider, body=data[:2000])
            try:
                got = self._candidate(ev, first_call=n_calls)
                if "usageMetadata" in ev:  # running totals, repeated on later events: keep the last
                    usage = _usage(ev)
            except MALFORMED as e:
                raise ProviderError(f"malformed stream event: {type(e).__name__}: {e}",
                                    provider=self.provider, body=data[:2000]) from None
            if got is None:  # an event with only usage or feedback in it
                continue
            text, calls, r, logprobs = got
            n_calls += len(calls)
            reason = r or reason
            if text or calls or logprobs:
                yield Chunk(text=text, tool_calls=calls, logprobs=logprobs)
        if reason is None:
            raise ProviderError("stream ended without a finishReason: the answer is incomplete", provider=self.provider)
        yield Chunk(finish_reason=_finish(reason, n_calls > 0), usage=usage)

    def _candidate(self, data: dict[str, Any], first_call: int) -> tuple[str, list[ToolCall], str | None, list[TokenLogprob] | None] | None:
        """Text, tool calls, finishReason and logprobs of the first candidate; None if there is none."""
        candidates = data.get("candidates")
        if not candidates:
            block = (data.get("promptFeedback") or {}).get("blockReason")
            if block:
                raise ProviderError(f"the prompt was blocked: {block}", provider=self.provider,
                                    body=json.dumps(data)[:2000])
            return None
        cand = candidates[0]
        texts, calls = [], []
        for part in (cand.get("content") or {}).get("parts") or []:
            if "functionCall" in part:
                fc = part["functionCall"]
                call = ToolCall(id=fc.get("id") or f"call_{first_call + len(calls)}", name=fc["name"],
                                arguments=fc.get("args") or {})
                if part.get("thoughtSignature"):
                    self._remember(call, part["thoughtSignature"])
                calls.append(call)
            elif "text" in part and not part.get("thought"):  # thought summaries are not the answer
                texts.append(part["text"])
        return "".join(texts), calls, cand.get("finishReason"), _logprobs(cand.get("logprobsResult"))

    def _remember(self, call: ToolCall, signature: str) -> None:
        self._signatures[_signature_key(call)] = signature
        if len(self._signatures) > 1024:  # a long-lived model must not grow without bound
            self._signatures.pop(next(iter(self._signatures)))

    # --- tokens -----------------------------------------------------------------------------
    def count_tokens(self, text: str | list[Message] | Message) -> int:
        """Input tokens of a string or a conversation, counted by Gemini's ``countTokens``.

        Example:
            >>> m.count_tokens([lk.system("Be brief."), lk.user("Hi")])
        """
        if isinstance(text, str):
            body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        else:  # systemInstruction is only accepted inside a full generateContentRequest
            system, contents = self._contents(as_messages(text))
            request: dict[str, Any] = {"model": self.resource, "contents": contents}
            if system:
                request["systemInstruction"] = system
            body = {"generateContentRequest": request}
        data = self.http.post(self._path("countTokens"), body)
        if not isinstance(data.get("totalTokens"), int):
            raise malformed(self.provider, f"malformed countTokens response: {json.dumps(data)[:200]}", data)
        return data["totalTokens"]

    # --- request building -------------------------------------------------------------------
    def _body(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None) -> dict[str, Any]:
        system, contents = self._contents(messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = system
        if tools:
            # parametersJsonSchema takes full JSON Schema (additionalProperties, $defs, anyOf) as
            # llmkit tools and pydantic write it; the older ``parameters`` takes an OpenAPI subset
            # and rejects those keys.
            decls = [{"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters} for t in tools]
            body["tools"] = [{"functionDeclarations": decls}]
            if tool_choice:
                config = {"mode": MODE.get(tool_choice, "ANY")}
                if tool_choice not in MODE:  # a tool's name: force a call to that one
                    config["allowedFunctionNames"] = [tool_choice]
                body["toolConfig"] = {"functionCallingConfig": config}
        elif tool_choice == "required":
            raise ConfigError("tool_choice='required' needs tools: pass tools=[...]")
        config = {GENERATION[k]: v for k, v in s.set_fields().items() if k in GENERATION}
        if s.logprobs or s.top_logprobs:  # Gemini only takes a logprobs count alongside responseLogprobs
            config["responseLogprobs"] = True
            if s.top_logprobs is not None:
                config["logprobs"] = s.top_logprobs
        if constraint is not None:
            config.update(response_format(constraint))
        if config:
            body["generationConfig"] = config
        return body

    def _contents(self, messages: list[Message]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """llmkit messages → Gemini's ``(systemInstruction, contents)``."""
        system, contents = [], []
        for i, m in enumerate(messages):
            if m.role == "system":
                system.append({"text": m.content})
            elif m.role == "user":
                contents.append({"role": "user", "parts": [{"text": m.content}]})
            elif m.role == "assistant":
                parts = [{"text": m.content}] if m.content or not m.tool_calls else []
                contents.append({"role": "model", "parts": parts + self._call_parts(m.tool_calls)})
            else:
                part = {"functionResponse": {"name": _tool_name(m, messages[:i], i), "response": _response(m.content)}}
                last = contents[-1] if contents else None
                if last and last["role"] == "user" and all("functionResponse" in p for p in last["parts"]):
                    last["parts"].append(part)  # answers to parallel calls go back together, in one turn
                else:
                    contents.append({"role": "user", "parts": [part]})
        return ({"parts": system} if system else None), contents

    def _call_parts(self, calls: list[ToolCall]) -> list[dict[str, Any]]:
        parts = []
        for c in calls:
            part: dict[str, Any] = {"functionCall": {"name": c.name, "args": c.arguments}}
            if sig := self._signatures.get(_signature_key(c)):
                part["thoughtSignature"] = sig
            parts.append(part)
        # Gemini signs only the first of parallel calls, so one missing signature per turn is the norm
        if parts and self._needs_signature and not any("thoughtSignature" in p for p in parts):
            parts[0]["thoughtSignature"] = SKIP_SIGNATURE
        return parts


def response_format(c: Any) -> dict[str, Any]:
    """A constraint as ``generationConfig`` fields.

    Example:
        >>> response_format(Choice(["yes", "no"]))
        {'responseMimeType': 'text/x.enum', 'responseSchema': {'type': 'STRING', 'enum': ['yes', 'no']}}
    """
    if c.kind == "choice":  # the reply is the bare option, not a JSON string
        return {"responseMimeType": "text/x.enum", "responseSchema": {"type": "STRING", "enum": c.options}}
    config = {"responseMimeType": "application/json"}
    if c.schema() is not None:
        try:
            config["responseSchema"] = gemini_schema(c.schema())
        except Inexpressible:  # JSON mode alone; the reply is still validated against the schema
            pass
    return config


class Inexpressible(Exception):
    """A JSON Schema that Gemini's Schema subset cannot carry (a recursive or external $ref, a
    free-form object)."""


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema as Gemini's ``responseSchema``: the OpenAPI 3.0 subset of the v1beta ``Schema``.

    Converted: ``$ref``/``$defs`` are inlined; ``"type": [X, "null"]`` and an ``anyOf`` branch
    ``{"type": "null"}`` become ``nullable: true``; types are upper-cased; ``const`` becomes a
    one-value ``enum``; ``allOf`` is merged in and ``oneOf`` sent as ``anyOf``. Kept: ``type``,
    ``properties``, ``required``, ``items``, ``anyOf``, ``enum`` (strings only), :data:`SCHEMA_KEEP`.
    Dropped: ``format`` other than :data:`SCHEMA_FORMATS` (the API rejects it), ``pattern`` (a
    regex dialect Gemini may not share), ``title`` and ``default`` (no effect on the output), and
    every other keyword (``additionalProperties``, ``$schema``, ``exclusiveMinimum``,
    ``uniqueItems``…). Raises :class:`Inexpressible` for a recursive or external ``$ref`` and for
    an object without ``properties`` (a ``dict[str, X]``), which the subset has no way to say.

    Example:
        >>> gemini_schema({"type": "object", "properties": {"n": {"type": ["integer", "null"]}},
        ...                "required": ["n"], "additionalProperties": False})
        {'type': 'OBJECT', 'properties': {'n': {'type': 'INTEGER', 'nullable': True}}, 'required': ['n']}
    """
    def resolve(ref: str, seen: tuple[str, ...]) -> dict[str, Any]:
        if not ref.startswith("#/") or ref in seen:
            raise Inexpressible(f"$ref {ref!r}")
        node: Any = schema
        try:
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        except (KeyError, TypeError):
            raise Inexpressible(f"$ref {ref!r} points nowhere") from None
        return convert(node, (*seen, ref))

    def convert(s: Any, seen: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(s, dict):  # true/false schemas, tuple-style items
            raise Inexpressible(f"the schema {s!r:.60}")
        out: dict[str, Any] = {}
        if "$ref" in s:
            out.update(resolve(s["$ref"], seen))
        for sub in s.get("allOf") or []:
            out.update(convert(sub, seen))
        types = s.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        subs = s.get("anyOf") or s.get("oneOf") or []
        nulls = [sub for sub in subs if isinstance(sub, dict) and sub.get("type") == "null"]
        nullable = "null" in types or bool(nulls)
        types = [t for t in types if t != "null"]
        branches = [convert(sub, seen) for sub in subs if sub not in nulls]
        branches += [{"type": t.upper()} for t in types[1:]]  # ["string", "integer"]: one branch per type
        if types:
            out["type"] = types[0].upper()
        if len(branches) == 1 and not types:
            out.update(branches[0])
        elif branches:
            out["anyOf"] = ([{"type": out.pop("type")}] if types else []) + branches
        values = [s["const"]] if "const" in s else s.get("enum")
        if values and all(isinstance(v, str) for v in values):
            out["enum"] = values
            out.setdefault("type", "STRING")
        if "properties" in s:
            out["properties"] = {k: convert(v, seen) for k, v in s["properties"].items()}
            if required := [k for k in s.get("required") or [] if k in s["properties"]]:
                out["required"] = required
            out.setdefault("type", "OBJECT")
        elif out.get("type") == "OBJECT" and "properties" not in out:
            raise Inexpressible("an object without properties")
        if "items" in s:
            out["items"] = convert(s["items"], seen)
        if s.get("format") in SCHEMA_FORMATS.get(out.get("type"), ()):
            out["format"] = s["format"]
        out.update({k: s[k] for k in SCHEMA_KEEP if k in s})
        if nullable:
            out["nullable"] = True
        return out

    return convert(schema, ())


def _tool_name(m: Message, earlier: list[Message], i: int) -> str:
    """A tool result's function name: its own, or that of the latest call with its id.

    Walking back finds the right call even though ``call_0`` recurs in every response."""
    if m.name:
        return m.name
    for prev in reversed(earlier):
        for c in prev.tool_calls:
            if c.id == m.tool_call_id:
                return c.name
    raise ConfigError(f"message {i} is a tool result for {m.tool_call_id!r}, but no earlier assistant message "
                      "made that call and it has no name: Gemini needs the function's name (lk.tool(..., name=...))")


def _response(content: str) -> dict[str, Any]:
    """A tool's output as the JSON object functionResponse.response must be."""
    try:
        value = json.loads(content)
    except ValueError:
        value = content
    return value if isinstance(value, dict) else {"result": value}


def _signature_key(call: ToolCall) -> tuple[str, str, str]:
    return call.id, call.name, json.dumps(call.arguments, sort_keys=True)


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if reason is None or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    if has_calls and reason == "STOP":  # Gemini has no finish reason of its own for tool calls
        return "tool_calls"
    return FINISH.get(reason, "error")


def _usage(data: dict[str, Any]) -> Usage:
    meta = data.get("usageMetadata") or {}
    # thinking tokens are generated and billed as output, as OpenAI counts reasoning tokens
    out = meta.get("candidatesTokenCount", 0) + meta.get("thoughtsTokenCount", 0)
    return Usage(input_tokens=meta.get("promptTokenCount", 0), output_tokens=out)


def _logprobs(result: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not result:
        return None
    tops = result.get("topCandidates") or []
    out = []
    for i, c in enumerate(result.get("chosenCandidates") or []):
        alts = (tops[i].get("candidates") or []) if i < len(tops) else []
        out.append(TokenLogprob(token=c.get("token", ""), logprob=c.get("logProbability", 0.0),
                                top=[(a.get("token", ""), a.get("logProbability", 0.0)) for a in alts]))
    return out
