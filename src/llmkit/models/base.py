"""The ``Model`` protocol every backend honours, and the tracing wrapped around each call.

A backend subclasses :class:`Model` and implements ``_chat`` and ``_stream`` (and, if it
can, ``_complete`` and ``count_tokens``). The public methods normalise input once,
check sampling fields against what the backend supports, and record a span per call.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

from ..core import tracing
from ..core.errors import ConfigError, UnsupportedParameterError
from ..core.sampling import Sampling, make_sampling
from ..core.types import Chunk, Completion, Message, ModelInfo, Tool, Usage, as_messages


class Options(BaseModel):
    """Base of each backend's options: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def parse(cls, backend: str, options: dict[str, Any]) -> "Options":
        try:
            return cls(**options)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                raise ConfigError(f"{backend} has no option {field!r}; accepted: {', '.join(cls.model_fields)}") from None
            shown = "***" if "key" in field or "token" in field else repr(err.get("input"))  # never echo a secret
            raise ConfigError(f"{backend} option {field}={shown} is invalid: {err['msg']}") from None


def as_tools(tools: list[Any] | None) -> list[Tool] | None:
    """Accept Tool objects, plain dicts, or OpenAI-style ``{"type": "function", "function": {...}}``."""
    if not tools:
        return None
    out = []
    for t in tools:
        if isinstance(t, Tool):
            out.append(t)
        elif isinstance(t, dict):
            spec = t.get("function", t) if t.get("type") == "function" else t
            try:
                out.append(Tool(**spec))
            except ValidationError as e:
                raise ConfigError(f"tool {t!r} is invalid: {e.errors()[0]['msg']}") from None
        else:
            raise ConfigError(f"tool {t!r} must be an llmkit Tool or a dict with name/description/parameters")
    return out


def template_message(m: Message) -> dict[str, Any]:
    """An llmkit Message as the dict Jinja chat templates expect (HF and GGUF templates alike)."""
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [{"type": "function", "id": c.id, "function": {"name": c.name, "arguments": c.arguments}}
                           for c in m.tool_calls]
    if m.tool_call_id:
        d["tool_call_id"] = m.tool_call_id
    if m.name:
        d["name"] = m.name
    return d


def check_tool_choice(tool_choice: str | None, tools: list[Tool] | None) -> str | None:
    if tool_choice is None:
        return None
    names = [t.name for t in tools or []]
    if tool_choice == "required" and not names:
        raise ConfigError("tool_choice='required' needs tools: pass tools=[...]")
    if tool_choice in ("auto", "none", "required") or tool_choice in names:
        return tool_choice
    raise ConfigError(f"tool_choice={tool_choice!r} is not 'auto', 'none', 'required' or a tool name ({', '.join(names) or 'no tools given'})")


class Model:
    """One model behind one API. Get one with ``llmkit.model(spec)``.

    Example:
        >>> import llmkit as lk
        >>> m = lk.model()
        >>> m.chat([lk.user("Capital of France?")], temperature=0, max_tokens=16).text
    """

    provider: str = "base"
    #: Sampling fields this backend honours; any other field that is set raises.
    supported: frozenset[str] = frozenset()
    capabilities: tuple[str, ...] = ("chat", "stream")
    #: Secrets (API keys) that must never show in an error or a trace; remote backends set it.
    _secrets: tuple[str, ...] = ()
    #: Constraint kinds (``Constraint.kind``) the backend enforces itself, receiving ``constraint=``
    #: in ``_chat``/``_stream``; any other kind is asked for in words, validated and retried.
    constraint_kinds: frozenset[str] = frozenset()
    #: Whether ``_chat``/``_stream`` accept ``parallel_tool_calls=`` (False: at most one call per reply).
    parallel_tool_control: bool = False

    def __init__(self, name: str):
        self.name = name

    def _hide_secrets(self, e: BaseException) -> None:
        """Replace any secret in an error with ***, in case a server or proxy echoes the key."""
        for key in self._secrets:
            if len(key) < 8:  # a toy key like "x" would mangle ordinary words, and guards nothing
                continue
            e.args = tuple(a.replace(key, "***") if isinstance(a, str) else a for a in e.args)
            for attr in ("message", "body"):
                if isinstance(getattr(e, attr, None), str):
                    setattr(e, attr, getattr(e, attr).replace(key, "***"))

    def __repr__(self) -> str:  # never shows keys
        return f"<{type(self).__name__} {self.provider}:{self.name}>"

    # --- what a backend implements -------------------------------------------------------
    def _chat(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
              constraint: Any = None) -> Completion:
        raise NotImplementedError

    def _stream(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice: str | None,
                constraint: Any = None) -> Iterator[Chunk]:
        raise NotImplementedError

    def _complete(self, prompt: str, s: Sampling) -> Completion:
        raise UnsupportedParameterError("complete", self.provider, "this backend only offers chat")

    def count_tokens(self, text: str | list[Message] | Message) -> int:
        """Tokens in a string, or in a conversation as the model will see it."""
        raise UnsupportedParameterError("count_tokens", self.provider)

    @property
    def context_length(self) -> int | None:
        return None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(provider=self.provider, name=self.name, context_length=self.context_length,
                         capabilities=list(self.capabilities))

    # --- the public API -------------------------------------------------------------------
    def chat(self, messages: Any, *, sampling: Sampling | dict | None = None, tools: list[Any] | None = None,
             tool_choice: str | None = None, parallel_tool_calls: bool | None = None, constraint: Any = None,
             max_retries: int = 2, instructions: bool = False, **fields: Any) -> Completion:
        """Answer a conversation. Sampling fields may come as ``sampling=`` or as keywords.

        ``constraint``: a :mod:`llmkit.structured` constraint (or a Pydantic class, a JSON Schema
        dict, a list of choices) the answer must satisfy; ``Completion.parsed`` then holds the
        validated value. Local models enforce it token by token; remote ones with the provider's
        mechanism, re-asked up to ``max_retries`` times with the validation errors. With
        ``instructions=True`` the constraint's instructions join the last user message (they
        always do where the backend cannot enforce the constraint itself).
        """
        msgs, s, tools, tool_choice = self._prepare(messages, sampling, tools, tool_choice, fields)
        if constraint is not None:
            from ..structured import as_constraint, generate

            if tools:
                raise ConfigError("pass either tools or constraint, not both (tool calls have their own grammar)")
            return generate.run(self, msgs, s, as_constraint(constraint), _retries(max_retries), instructions)
        with _CallSpan(self, "chat", msgs, s, tools) as call:
            try:
                c = self._chat(msgs, s, tools, tool_choice, **self._parallel(parallel_tool_calls, tools))
            except Exception as e:
                self._hide_secrets(e)
                raise
            call.finish(c)
        return c

    def stream(self, messages: Any, *, sampling: Sampling | dict | None = None, tools: list[Any] | None = None,
               tool_choice: str | None = None, parallel_tool_calls: bool | None = None, constraint: Any = None,
               **fields: Any) -> Iterator[Chunk]:
        """Answer a conversation chunk by chunk; the last chunk carries finish_reason and usage.

        ``constraint`` is enforced while streaming where the backend can (see ``constraint_kinds``);
        :meth:`stream_json` also validates the result and retries."""
        msgs, s, tools, tool_choice = self._prepare(messages, sampling, tools, tool_choice, fields)
        if constraint is not None:
            from ..structured import as_constraint

            c = as_constraint(constraint)
            if tools:
                raise ConfigError("pass either tools or constraint, not both (tool calls have their own grammar)")
            if c.kind not in self.constraint_kinds:
                raise UnsupportedParameterError(f"a {c.kind} constraint in stream()", self.provider,
                                                "it cannot be enforced while streaming here; use chat(constraint=...) "
                                                "or stream_json(), which validate and retry")
            return self._constrained_stream(msgs, s, c)
        extra = self._parallel(parallel_tool_calls, tools)
        return self._traced_stream("chat", msgs, s, tools, lambda: self._stream(msgs, s, tools, tool_choice, **extra))

    # --- structured output ------------------------------------------------------------------
    def json(self, messages: Any, schema: Any = None, *, instructions: bool = True, max_retries: int = 2,
             sampling: Sampling | dict | None = None, **fields: Any) -> Any:
        """Answer with JSON that validates: a Pydantic instance for a model class, else the parsed JSON.

        Args:
            schema: a Pydantic model class or any type (``list[int]``), a JSON Schema dict, or
                None for any JSON object.
            instructions: append the schema to the last user message (``Constraint.instructions()``),
                so the model knows what the fields mean; the constraint is enforced either way.
            max_retries: re-asks with the validation errors before StructuredOutputError.

        Example:
            >>> class City(BaseModel):
            ...     name: str
            >>> m.json("Name the capital of France.", schema=City, temperature=0)
            City(name='Paris')
        """
        from ..structured import JSON, as_constraint

        c = JSON() if schema is None else as_constraint(schema)
        return self.chat(messages, sampling=sampling, constraint=c, max_retries=max_retries, instructions=instructions,
                         **fields).parsed

    def choose(self, messages: Any, options: list[str], *, instructions: bool = True, max_retries: int = 2,
               sampling: Sampling | dict | None = None, **fields: Any) -> str:
        """Answer with exactly one of ``options`` (a label, a letter, yes/no).

        Example:
            >>> m.choose("Is 'I loved it' positive or negative?", ["positive", "negative"], temperature=0)
            'positive'
        """
        from ..structured import Choice

        return self.chat(messages, sampling=sampling, constraint=Choice(options), max_retries=max_retries,
                         instructions=instructions, **fields).parsed

    def stream_json(self, messages: Any, schema: Any = None, *, instructions: bool = True, max_retries: int = 2,
                    sampling: Sampling | dict | None = None, **fields: Any) -> Iterator[Any]:
        """Like :meth:`json`, yielding the partially filled object (a dict or list) each time it grows;
        the last value yielded is the validated result (a Pydantic instance for a model class).

        Example:
            >>> for obj in m.stream_json("Describe a cat.", schema=Pet): print(obj)
            {'name': 'Whi'}
            {'name': 'Whiskers', 'age': 3}
            Pet(name='Whiskers', age=3)
        """
        from ..structured import JSON, as_constraint, generate

        c = JSON() if schema is None else as_constraint(schema)
        msgs, s, _, _ = self._prepare(messages, sampling, None, None, fields)
        return generate.stream(self, msgs, s, c, _retries(max_retries), instructions)

    def _constrained_call(self, msgs: list[Message], s: Sampling, c: Any) -> Completion:
        """One traced call; ``c`` is passed to the backend (it enforces that kind) or None."""
        with _CallSpan(self, "chat", msgs, s, None) as call:
            if c is not None:
                call.attrs["llmkit.constraint"] = repr(c)
            try:
                comp = self._chat(msgs, s, None, None, constraint=c) if c is not None else self._chat(msgs, s, None, None)
            except Exception as e:
                self._hide_secrets(e)
                raise
            call.finish(comp)
        return comp

    def _constrained_stream(self, msgs: list[Message], s: Sampling, c: Any) -> Iterator[Chunk]:
        chunks = (lambda: self._stream(msgs, s, None, None, constraint=c)) if c is not None else \
            (lambda: self._stream(msgs, s, None, None))
        return self._traced_stream("chat", msgs, s, None, chunks)

    def complete(self, prompt: str, *, sampling: Sampling | dict | None = None, **fields: Any) -> Completion:
        """Continue a raw prompt, with no chat template."""
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
        s = make_sampling(sampling, **fields)
        s.check(self.provider, self.supported)
        with _CallSpan(self, "text_completion", prompt, s, None) as call:
            try:
                c = self._complete(prompt, s)
            except Exception as e:
                self._hide_secrets(e)
                raise
            call.finish(c)
        return c

    def stream_complete(self, prompt: str, *, sampling: Sampling | dict | None = None, **fields: Any) -> Iterator[Chunk]:
        """Continue a raw prompt chunk by chunk (the streaming twin of :meth:`complete`)."""
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
        s = make_sampling(sampling, **fields)
        s.check(self.provider, self.supported)
        return self._traced_stream("text_completion", prompt, s, None, lambda: self._stream_complete(prompt, s))

    def _stream_complete(self, prompt: str, s: Sampling) -> Iterator[Chunk]:
        """Backends that stream raw completions override this; the rest answer in one chunk."""
        c = self._complete(prompt, s)
        yield Chunk(text=c.text, finish_reason=c.finish_reason, usage=c.usage, logprobs=c.logprobs)

    async def achat(self, messages: Any, **kw: Any) -> Completion:
        """Async twin of :meth:`chat` (runs the call off the event loop)."""
        return await asyncio.to_thread(self.chat, messages, **kw)

    async def ajson(self, messages: Any, schema: Any = None, **kw: Any) -> Any:
        """Async twin of :meth:`json`."""
        return await asyncio.to_thread(self.json, messages, schema, **kw)

    async def achoose(self, messages: Any, options: list[str], **kw: Any) -> str:
        """Async twin of :meth:`choose`."""
        return await asyncio.to_thread(self.choose, messages, options, **kw)

    async def astream(self, messages: Any, **kw: Any) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`stream`."""
        it = self.stream(messages, **kw)
        done = object()
        while True:
            chunk = await asyncio.to_thread(next, it, done)
            if chunk is done:
                return
            yield chunk

    # --- shared plumbing --------------------------------------------------------------------
    def _collect_stream(self, chunks: Iterator[Chunk]) -> Completion:
        """Gather a backend's own chunk stream into one Completion (local backends generate
        by streaming, and chat() is the stream collected)."""
        text, logprobs, calls, last = [], [], [], Chunk()
        for c in chunks:
            text.append(c.text)
            logprobs += c.logprobs or []
            calls += c.tool_calls
            last = c
        return Completion(text="".join(text), finish_reason=last.finish_reason, usage=last.usage or Usage(),
                          logprobs=logprobs or None, tool_calls=calls, model=self.name, provider=self.provider)

    def _parallel(self, parallel: bool | None, tools: list[Tool] | None) -> dict[str, bool]:
        """``parallel_tool_calls`` for the backend, when given with tools (False: at most one call)."""
        if parallel is None or not tools:
            return {}
        if not isinstance(parallel, bool):
            raise ConfigError(f"parallel_tool_calls={parallel!r} must be true or false")
        if not self.parallel_tool_control:
            if parallel:
                return {}  # what this backend does anyway
            raise UnsupportedParameterError("parallel_tool_calls=False", self.provider,
                                            "its API has no way to limit a reply to one tool call")
        return {"parallel_tool_calls": parallel}

    def _prepare(self, messages, sampling, tools, tool_choice, fields):
        msgs = as_messages(messages)
        s = make_sampling(sampling, **fields)
        s.check(self.provider, self.supported)
        tools = as_tools(tools)
        if tools and "tools" not in self.capabilities:
            raise UnsupportedParameterError("tools", self.provider, "this backend cannot call tools yet")
        return msgs, s, tools, check_tool_choice(tool_choice, tools)

    def _traced_stream(self, op: str, inputs: Any, s: Sampling, tools: list[Tool] | None,
                       chunks: Callable[[], Iterator[Chunk]]) -> Iterator[Chunk]:
        call = _CallSpan(self, op, inputs, s, tools, current=False)
        call.__enter__()
        text, last, calls, first = [], None, [], None
        try:
            for chunk in chunks():
                if first is None and (chunk.text or chunk.tool_calls):
                    first = time.perf_counter()
                text.append(chunk.text)
                calls += chunk.tool_calls
                last = chunk
                yield chunk
        except GeneratorExit:  # the caller stopped reading: not an error
            call.attrs["llmkit.cancelled"] = True
            call.finish(Completion(text="".join(text), finish_reason=None, tool_calls=calls))
            call.__exit__(None, None, None)
            raise
        except BaseException as e:
            self._hide_secrets(e)
            call.__exit__(type(e), e, e.__traceback__)
            raise
        if first is not None:
            call.attrs["llmkit.time_to_first_token_s"] = first - call.t0
        call.finish(Completion(text="".join(text), finish_reason=last.finish_reason if last else None,
                               usage=(last.usage if last and last.usage else Usage()), tool_calls=calls))
        call.__exit__(None, None, None)


def _retries(n: Any) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10:
        raise ConfigError(f"max_retries={n!r} must be an integer from 0 to 10")
    return n


# llmkit provider → the GenAI semantic conventions' gen_ai.provider.name (others pass through)
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "cohere": "cohere",
                  "mistral": "mistral_ai", "local": "llama.cpp", "llamacpp": "llama.cpp", "hf": "transformers"}


class _CallSpan:
    """Records one model call as a GenAI span: request attributes at the start, the
    response (text, usage, finish reason, latency) at the end, the error if it fails."""

    def __init__(self, model: Model, op: str, inputs: Any, s: Sampling, tools: list[Tool] | None, current: bool = True):
        self.model, self.op, self.current = model, op, current
        self.attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.provider.name": PROVIDER_NAMES.get(model.provider, model.provider),
            "gen_ai.request.model": model.name,
            "llmkit.provider": model.provider,
            "gen_ai.request.temperature": s.temperature, "gen_ai.request.top_p": s.top_p,
            "gen_ai.request.top_k": s.top_k, "gen_ai.request.max_tokens": s.max_tokens,
            "gen_ai.request.frequency_penalty": s.frequency_penalty,
            "gen_ai.request.presence_penalty": s.presence_penalty,
            "gen_ai.request.stop_sequences": s.stop, "gen_ai.request.seed": s.seed,
            "llmkit.sampling": s.set_fields(),
        }
        if tracing.record_content():
            if isinstance(inputs, str):
                self.attrs["llmkit.prompt"] = inputs
            else:
                self.attrs["gen_ai.input.messages"] = [m.model_dump(exclude_defaults=True) for m in inputs]
            if tools:
                self.attrs["gen_ai.tool.definitions"] = [t.model_dump() for t in tools]

    def __enter__(self) -> "_CallSpan":
        self.t0 = time.perf_counter()
        self.enabled = tracing.enabled()
        if self.enabled:
            name = f"{self.op} {self.model.name}"
            if self.current:
                self._cm = tracing.span(name, kind="CLIENT")
                self.span = self._cm.__enter__()
            else:  # a stream: not made current, since its generator yields to the caller
                from opentelemetry.trace import SpanKind

                self._cm, self.span = None, tracing.tracer().start_span(name, kind=SpanKind.CLIENT)
        return self

    def finish(self, c: Completion) -> None:
        self.attrs.update({
            "gen_ai.usage.input_tokens": c.usage.input_tokens,
            "gen_ai.usage.output_tokens": c.usage.output_tokens,
            "gen_ai.response.finish_reasons": [c.finish_reason] if c.finish_reason else None,
            "gen_ai.response.model": c.model or None,
        })
        if tracing.record_content():
            msg = {"role": "assistant", "content": c.text}
            if c.tool_calls:
                msg["tool_calls"] = [t.model_dump() for t in c.tool_calls]
            self.attrs["gen_ai.output.messages"] = [msg]

    def __exit__(self, et, e, tb) -> None:
        if not self.enabled:
            return
        self.attrs["llmkit.latency_s"] = time.perf_counter() - self.t0
        self.span.set_attributes(tracing.clean(self.attrs))
        if self._cm is not None:
            self._cm.__exit__(et, e, tb)
            return
        if e is not None:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_attribute("error.type", type(e).__name__)
            self.span.record_exception(e)
            self.span.set_status(Status(StatusCode.ERROR, str(e)[:2000]))
        self.span.end()
