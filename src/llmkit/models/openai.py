"""Any OpenAI-compatible Chat Completions endpoint: OpenAI itself and the hosts in PRESETS.

One class, :class:`OpenAIModel`, speaks the wire format of ``POST {base_url}/chat/completions``
(and the legacy ``/completions`` for :meth:`~llmkit.Model.complete`). A preset only names a
host: its default URL, where its key lives, and which non-OpenAI sampling fields it accepts.

    openai      api.openai.com          OPENAI_API_KEY      (OPENAI_BASE_URL overrides the URL)
    openrouter  openrouter.ai           OPENROUTER_API_KEY
    together    api.together.xyz        TOGETHER_API_KEY
    hf-router   router.huggingface.co   HF_TOKEN
    groq, fireworks, deepseek, mistral  <NAME>_API_KEY
    ollama, lmstudio, vllm, tgi, llama-server, llmkit   local servers, no key needed

Structured output (``m.json``, ``chat(constraint=...)``) travels as ``response_format``: JSON()
as ``{"type": "json_object"}``, a JSON Schema or Pydantic type as ``{"type": "json_schema", ...}``.
OpenAI's ``strict: true`` only takes schemas in which every object has ``additionalProperties:
false`` and lists all its properties in ``required``, with a subset of keywords; llmkit sends
``strict: true`` when the schema already qualifies (:func:`strict_ok`) and ``strict: false``
otherwise, never rewriting the schema behind your back. Either way the reply is validated against
the full schema and re-asked on errors. (Pydantic writes ``additionalProperties: false`` for a model
with ``model_config = ConfigDict(extra="forbid")``.) Regex and Choice are asked for in words.

Example:
    >>> import llmkit as lk
    >>> m = lk.model("openai:gpt-4o-mini")                                  # key from OPENAI_API_KEY
    >>> m = lk.model("vllm:Qwen/Qwen2.5-0.5B-Instruct", base_url="http://127.0.0.1:8000/v1")
    >>> m.chat("Capital of France?", temperature=0, max_tokens=16, top_k=20).text
"""
from __future__ import annotations

import json
import os
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Iterator


from ..core.errors import ConfigError, ProviderError, UnsupportedParameterError
from ..core.sampling import Sampling
from ..core.types import Chunk, Completion, Message, TokenLogprob, Tool, ToolCall, Usage
from ._http import HTTP, RemoteOptions, loads, malformed, resolve_key
from .base import Model


@dataclass(frozen=True)
class Preset:
    base_url: str                      # ends in /v1 (or the host's equivalent)
    key_env: tuple[str, ...] = ()      # environment variables holding the key, first wins
    key_required: bool = True          # local servers need none
    base_url_env: str | None = None    # environment variable that overrides base_url


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", ("OPENAI_API_KEY",), base_url_env="OPENAI_BASE_URL"),
    "openrouter": Preset("https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",)),
    "together": Preset("https://api.together.xyz/v1", ("TOGETHER_API_KEY",)),
    "hf-router": Preset("https://router.huggingface.co/v1", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")),
    "groq": Preset("https://api.groq.com/openai/v1", ("GROQ_API_KEY",)),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", ("FIREWORKS_API_KEY",)),
    "deepseek": Preset("https://api.deepseek.com/v1", ("DEEPSEEK_API_KEY",)),
    "mistral": Preset("https://api.mistral.ai/v1", ("MISTRAL_API_KEY",)),
    "ollama": Preset("http://127.0.0.1:11434/v1", ("OLLAMA_API_KEY",), key_required=False, base_url_env="OLLAMA_BASE_URL"),
    "lmstudio": Preset("http://127.0.0.1:1234/v1", ("LMSTUDIO_API_KEY",), key_required=False),
    "vllm": Preset("http://127.0.0.1:8000/v1", ("VLLM_API_KEY",), key_required=False, base_url_env="VLLM_BASE_URL"),
    "tgi": Preset("http://127.0.0.1:8080/v1", ("TGI_API_KEY",), key_required=False),
    "llama-server": Preset("http://127.0.0.1:8080/v1", ("LLAMA_API_KEY",), key_required=False),
    "llmkit": Preset("http://127.0.0.1:8000/v1", ("LLMKIT_API_KEY",), key_required=False, base_url_env="LLMKIT_BASE_URL"),
}

# Sampling fields in OpenAI's own API, sent under the same names to every host.
STANDARD = frozenset({"temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop",
                      "max_tokens", "logprobs", "top_logprobs"})

# Fields outside OpenAI's API that a host documents as extra body keys: llmkit name → wire name.
# Conservative on purpose: a host that silently drops a field would break llmkit's promise to
# raise instead, so only what the host's own docs list is here. Hosts not named get none.
EXTRA: dict[str, dict[str, str]] = {
    "vllm": {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty"},
    # OpenRouter documents these; a provider behind it that lacks one drops it (its docs say so)
    "openrouter": {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty"},
    "together": {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty"},
    "fireworks": {"top_k": "top_k", "repetition_penalty": "repetition_penalty"},
    # llama.cpp keeps its native names on the OpenAI routes
    "llama-server": {"top_k": "top_k", "min_p": "min_p", "typical_p": "typical_p", "repetition_penalty": "repeat_penalty"},
    "lmstudio": {"top_k": "top_k", "repetition_penalty": "repeat_penalty"},
    "llmkit": {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty"},  # llmkit serve
}

# Keywords OpenAI's strict structured outputs accept (its "supported schemas" guide).
STRICT_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "anyOf", "enum",
                             "const", "$ref", "$defs", "definitions", "title", "description", "pattern", "format",
                             "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems",
                             "maxItems"})

FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
          "content_filter": "content_filter", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop",
          "error": "error"}  # the last four: TGI and other servers' spellings


class OpenAIModel(Model):
    """A model behind an OpenAI-compatible endpoint. Get one with ``lk.model("PRESET:NAME")``.

    Args:
        name: the model name the host expects, e.g. ``"gpt-4o-mini"``.
        preset: a key of :data:`PRESETS`; it sets the default URL, the key's variable and the
            extra sampling fields. ``provider`` is the preset name.
        **options: :class:`~llmkit.models._http.RemoteOptions` (base_url, api_key, timeout,
            max_retries, backoff, headers, …); an unknown option raises ConfigError.

    Example:
        >>> m = OpenAIModel("gpt-4o-mini", api_key="sk-...", timeout=30)
        >>> m.chat("Say hi", max_tokens=8).text
    """

    provider = "openai"
    supported = STANDARD  # per instance in __init__: each preset adds its EXTRA fields
    capabilities = ("chat", "stream", "complete", "tools", "logprobs")
    constraint_kinds = frozenset({"json", "json_schema"})  # response_format; see the module docstring
    parallel_tool_control = True

    def __init__(self, name: str, preset: str = "openai", **options: Any):
        super().__init__(name)
        if preset not in PRESETS:
            raise ConfigError(f"unknown OpenAI-compatible preset {preset!r}; known: {', '.join(PRESETS)}")
        p = PRESETS[preset]
        opts = RemoteOptions.parse(preset, options)
        self.provider = preset
        self.extra = EXTRA.get(preset, {})
        self.supported = STANDARD | frozenset(self.extra)
        # OpenAI deprecated max_tokens for chat (o-series models reject it); the compatible
        # servers still read max_tokens. Point a local server at its own preset, not "openai".
        self.max_tokens_name = "max_completion_tokens" if preset == "openai" else "max_tokens"
        self.base_url = opts.base_url or (p.base_url_env and os.environ.get(p.base_url_env)) or p.base_url
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url={self.base_url!r} must start with http:// or https://")
        key = resolve_key(opts, p.key_env, preset, required=p.key_required)
        self._secrets = (key,) if key else ()  # never shown in errors or traces, even if echoed back
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._http = HTTP(preset, self.base_url, headers, opts)

    # --- request ---------------------------------------------------------------------------
    def _sampling(self, s: Sampling, chat: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for field in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop"):
            if getattr(s, field) is not None:
                body[field] = getattr(s, field)
        if s.max_tokens is not None:  # legacy /completions only knows max_tokens
            body[self.max_tokens_name if chat else "max_tokens"] = s.max_tokens
        for field, wire in self.extra.items():
            if getattr(s, field) is not None:
                body[wire] = getattr(s, field)
        # OpenAI rejects top_logprobs without logprobs=true, so top_logprobs alone implies it
        if s.logprobs or (s.logprobs is None and s.top_logprobs is not None):
            if chat:
                body["logprobs"] = True
                if s.top_logprobs is not None:
                    body["top_logprobs"] = s.top_logprobs
            else:  # legacy completions: logprobs is the number of alternatives per token
                body["logprobs"] = s.top_logprobs or 0
        return body

    def _body(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None, parallel_tool_calls: bool | None = None) -> dict:
        body = {"model": self.name, "messages": [wire_message(m) for m in messages], **self._sampling(s, chat=True)}
        if constraint is not None:
            body["response_format"] = response_format(constraint)
        if tools:
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                               "parameters": t.parameters}} for t in tools]
        if parallel_tool_calls is not None:
            body["parallel_tool_calls"] = parallel_tool_calls
        if tool_choice in ("auto", "none", "required"):
            body["tool_choice"] = tool_choice
        elif tool_choice:
            body["tool_choice"] = {"type": "function", "function": {"name": tool_choice}}
        return body

    # --- the Model protocol ----------------------------------------------------------------
    def _chat(self, messages, s, tools, tool_choice, constraint=None, parallel_tool_calls=None) -> Completion:
        data = self._http.post("/chat/completions", self._body(messages, s, tools, tool_choice, constraint,
                                                               parallel_tool_calls))
        choice = self._choice(data)
        msg = choice.get("message")
        if not isinstance(msg, dict):
            raise self._malformed("choices[0].message is missing", data)
        lp = choice.get("logprobs") or {}
        return Completion(text=msg.get("content") or "", finish_reason=FINISH.get(choice.get("finish_reason")),
                          usage=usage(data.get("usage")), logprobs=chat_logprobs(lp) if lp else None,
                          tool_calls=self._tool_calls(msg.get("tool_calls") or []),
                          model=data.get("model") or self.name, provider=self.provider, raw=data)

    def _stream(self, messages, s, tools, tool_choice, constraint=None, parallel_tool_calls=None) -> Iterator[Chunk]:
        body = {**self._body(messages, s, tools, tool_choice, constraint, parallel_tool_calls), "stream": True,
                "stream_options": {"include_usage": True}}  # usage comes in a last chunk with no choices
        calls: dict[int, dict[str, Any]] = {}  # tool calls arrive in pieces, keyed by their index
        finish, used, done = None, None, False
        # closing(): a caller that stops reading early releases the connection at once
        with closing(self._http.stream("/chat/completions", body)) as events:
            for event, data in events:
                if data.strip() == "[DONE]":
                    done = True
                    break
                obj = loads(data, self.provider)
                if event == "error" or not isinstance(obj, dict) or obj.get("error"):  # a failure mid-stream
                    raise ProviderError(_message(obj), provider=self.provider, body=data[:2000])
                if obj.get("usage"):
                    used = usage(obj["usage"])
                for choice in obj.get("choices") or []:
                    delta = choice.get("delta") or {}
                    for piece in delta.get("tool_calls") or []:
                        _add_tool_delta(calls, piece)
                    lp = choice.get("logprobs") or {}
                    if delta.get("content") or lp.get("content"):
                        yield Chunk(text=delta.get("content") or "", logprobs=chat_logprobs(lp) if lp else None)
                    if choice.get("finish_reason"):
                        finish = FINISH.get(choice["finish_reason"])
            if not done and finish is None:
                raise ProviderError("stream ended before [DONE] and without a finish_reason", provider=self.provider)
            tool_calls = self._tool_calls([calls[i] for i in sorted(calls)])
        yield Chunk(finish_reason=finish, usage=used or Usage(), tool_calls=tool_calls)

    def _complete(self, prompt: str, s: Sampling) -> Completion:
        data = self._http.post("/completions", {"model": self.name, "prompt": prompt, **self._sampling(s, chat=False)})
        choice = self._choice(data)
        lp = choice.get("logprobs") or {}
        # vLLM and OpenAI send the legacy shape; recent llama-server sends chat's "content" list
        logprobs = (chat_logprobs(lp) if "content" in lp else legacy_logprobs(lp)) if lp else None
        return Completion(text=choice.get("text") or "", finish_reason=FINISH.get(choice.get("finish_reason")),
                          usage=usage(data.get("usage")), logprobs=logprobs,
                          model=data.get("model") or self.name, provider=self.provider, raw=data)

    def count_tokens(self, text: str | list[Message] | Message) -> int:
        """Tokens by tiktoken: exact for OpenAI models, an ``o200k_base`` estimate for others.

        A conversation adds OpenAI's published per-message overhead (3 tokens each, 3 to prime
        the reply). Raises UnsupportedParameterError when tiktoken is not installed.
        """
        try:
            import tiktoken
        except ImportError:
            raise UnsupportedParameterError("count_tokens", self.provider, "pip install 'llmkit[tokens]' (tiktoken)") from None
        try:
            try:
                enc = tiktoken.encoding_for_model(self.name)
            except KeyError:  # not an OpenAI model name
                enc = tiktoken.get_encoding("o200k_base")
        except Exception as e:  # tiktoken downloads its BPE files on first use: offline, that fails
            raise UnsupportedParameterError("count_tokens", self.provider,
                                            f"tiktoken could not load its encoding ({type(e).__name__}); offline, "
                                            "put the .tiktoken files in $TIKTOKEN_CACHE_DIR") from None
        if isinstance(text, str):
            return len(enc.encode(text))
        msgs = [text] if isinstance(text, Message) else text
        n = 3
        for m in msgs:
            n += 3 + len(enc.encode(m.role)) + len(enc.encode(m.content))
            for c in m.tool_calls:
                n += len(enc.encode(c.name)) + len(enc.encode(json.dumps(c.arguments)))
        return n

    # --- response helpers ------------------------------------------------------------------
    def _choice(self, data: dict[str, Any]) -> dict[str, Any]:
        choices = data.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            if data.get("error"):  # some routers answer 200 with an error object
                raise ProviderError(_message(data), provider=self.provider, body=json.dumps(data)[:2000])
            raise self._malformed("no choices", data)
        return choices[0]

    def _malformed(self, what: str, data: Any) -> ProviderError:
        return malformed(self.provider, f"malformed response ({what}): {json.dumps(data)[:200]}", data)

    def _tool_calls(self, raw: list[dict[str, Any]]) -> list[ToolCall]:
        out = []
        for i, c in enumerate(raw):
            fn = c.get("function") or {}
            name, args = fn.get("name") or "", fn.get("arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError:
                    raise ProviderError(f"tool call {name!r} has arguments that are not JSON: {args[:200]!r}",
                                        provider=self.provider) from None
            if not isinstance(args, dict):
                raise ProviderError(f"tool call {name!r} has arguments that are not a JSON object: {args!r}",
                                    provider=self.provider)
            out.append(ToolCall(id=c.get("id") or f"call_{i}", name=name, arguments=args))
        return out



def response_format(c: Any) -> dict[str, Any]:
    """A constraint as Chat Completions' ``response_format`` (``json`` and ``json_schema`` kinds).

    Example:
        >>> response_format(JSON())
        {'type': 'json_object'}
        >>> response_format(JSONSchema({"type": "array"}, name="A"))
        {'type': 'json_schema', 'json_schema': {'name': 'A', 'schema': {'type': 'array'}, 'strict': False}}
    """
    schema = c.schema()
    if schema is None:  # JSON(): any object
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": c.name, "schema": schema, "strict": strict_ok(schema)}}


def strict_ok(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's strict mode accepts ``schema`` as it is: an object at the root; every object
    closed (``additionalProperties: false``) with all its properties required; only
    :data:`STRICT_KEYWORDS`, checked through ``$defs``, ``properties``, ``items`` and ``anyOf``."""
    def ok(s: Any) -> bool:
        if not isinstance(s, dict) or not set(s) <= STRICT_KEYWORDS:
            return False
        props = s.get("properties") or {}
        if (s.get("type") == "object" or props) and (s.get("additionalProperties") is not False
                                                     or set(s.get("required") or []) != set(props)):
            return False
        subs = [*props.values(), *(s.get("$defs") or {}).values(), *(s.get("definitions") or {}).values(),
                *(s.get("anyOf") or [])]
        if "items" in s:
            subs.append(s["items"])
        return all(ok(sub) for sub in subs)

    return schema.get("type") == "object" and ok(schema)


def wire_message(m: Message) -> dict[str, Any]:
    """An llmkit Message in OpenAI's shape."""
    if m.role == "tool":
        if not m.tool_call_id:
            raise ConfigError("a tool message needs the tool_call_id it answers: lk.tool(content, tool_call_id)")
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["content"] = m.content or None  # OpenAI's own replies carry null content beside tool calls
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                             for c in m.tool_calls]
    return out


def usage(u: dict[str, Any] | None) -> Usage:
    u = u or {}
    return Usage(input_tokens=u.get("prompt_tokens") or 0, output_tokens=u.get("completion_tokens") or 0)


def chat_logprobs(lp: dict[str, Any]) -> list[TokenLogprob]:
    """Chat's ``logprobs.content``: one entry per token, with its ``top_logprobs`` alternatives."""
    return [TokenLogprob(token=t["token"], logprob=t["logprob"],
                         top=[(a["token"], a["logprob"]) for a in t.get("top_logprobs") or []])
            for t in lp.get("content") or []]


def legacy_logprobs(lp: dict[str, Any]) -> list[TokenLogprob]:
    """Legacy completions: parallel lists ``tokens``, ``token_logprobs``, ``top_logprobs`` (dicts)."""
    tops = lp.get("top_logprobs") or []
    out = []
    for i, (tok, value) in enumerate(zip(lp.get("tokens") or [], lp.get("token_logprobs") or [])):
        if value is None:  # the first prompt token when echoing has no logprob
            continue
        top = tops[i] if i < len(tops) and tops[i] else {}
        out.append(TokenLogprob(token=tok, logprob=value, top=sorted(top.items(), key=lambda kv: -kv[1])))
    return out


def _add_tool_delta(calls: dict[int, dict[str, Any]], piece: dict[str, Any]) -> None:
    """Merge one streamed tool-call fragment: id and name come first, arguments in pieces."""
    i = piece.get("index")
    if i is None:  # a few servers omit index: a new id starts a new call
        i = len(calls) if piece.get("id") and all(c["id"] != piece["id"] for c in calls.values()) else max(calls, default=0)
    call = calls.setdefault(i, {"id": "", "function": {"name": "", "arguments": ""}})
    fn = piece.get("function") or {}
    call["id"] = piece.get("id") or call["id"]
    call["function"]["name"] = fn.get("name") or call["function"]["name"]
    call["function"]["arguments"] += fn.get("arguments") or ""


def _message(obj: Any) -> str:
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)
