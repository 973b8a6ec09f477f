"""llama.cpp: the embedded SmolLM2-135M-Instruct, or any GGUF, on llmkit's serving engine.

Every call becomes a request in a continuous-batching :class:`~llmkit.engine.Engine`, so
``lk.model()`` used from many threads or asyncio tasks decodes them together, reuses
shared prompt prefixes, and — with ``speculative="ngram"`` — drafts tokens from the input.
Token selection is llama.cpp's own sampler chain; unset fields take llama.cpp's defaults
(temperature 0.8, top-k 40, top-p 0.95, min-p 0.05).

Example:
    >>> import llmkit as lk
    >>> m = lk.model()                                 # the embedded model
    >>> m = lk.model("llamacpp:/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", n_ctx=32768)
    >>> m.chat("Capital of France?", temperature=0, max_tokens=16).text
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

from pydantic import Field

from ..core.errors import ConfigError
from ..core.progress import loading
from ..core.sampling import Sampling
from ..core.types import Chunk, Completion, Message, Tool
from ..engine import sampler
from .base import Model, Options, template_message
from .registry import embedded_gguf

DEFAULT_MAX_TOKENS = 512


class LocalOptions(Options):
    n_ctx: int = Field(16384, ge=256, description="KV cells shared by all concurrent requests (a shared prefix is stored once)")
    max_context: int | None = Field(None, ge=16, description="most tokens one request may use (default: the model's trained context)")
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    n_batch: int = Field(512, ge=16, description="most tokens per llama_decode call: the prompt chunk size")
    max_concurrency: int = Field(16, ge=1, le=256, description="most requests decoded together in one batch")
    max_queue: int = Field(256, ge=0, description="most requests waiting for a slot before OverloadedError")
    prefix_cache: int = Field(16, ge=0, description="finished sequences kept for prefix reuse (0 = off)")
    speculative: Literal["off", "ngram", "draft"] = Field("off", description="greedy requests draft tokens: 'ngram' from the input (prompt lookup), 'draft' with draft_model")
    draft_model: str | None = Field(None, description="GGUF of a small draft model sharing the tokenizer (speculative='draft')")
    n_draft: int = Field(16, ge=1, le=64, description="most drafted tokens per step under speculation (each request adapts below it)")
    chat_template: str | None = Field(None, description="Jinja chat template overriding the GGUF's own")
    lora: str | None = Field(None, description="GGUF LoRA adapter applied at scale 1.0 (e.g. from `llmkit export BASE --lora ADAPTER`)")


class LocalModel(Model):
    provider = "local"
    supported = sampler.SUPPORTED
    capabilities = ("chat", "stream", "complete", "logprobs", "tools", "structured")
    constraint_kinds = frozenset({"json", "json_schema", "regex", "choice", "grammar"})
    parallel_tool_control = True

    def __init__(self, path: str | None = None, **options):
        from ..engine import Engine

        opts = LocalOptions.parse("local", options)
        gguf = Path(path).expanduser() if path else embedded_gguf()
        if not gguf.is_file():
            raise ConfigError(f"GGUF file {str(gguf)!r} does not exist; pass a path to a .gguf file")
        lora = Path(opts.lora).expanduser() if opts.lora else None
        if lora is not None and not lora.is_file():
            raise ConfigError(f"LoRA file {str(lora)!r} does not exist; pass a GGUF LoRA adapter (llmkit export --lora)")
        super().__init__(gguf.name if path else "smollm2-135m-instruct")
        self.provider = "llamacpp" if path else "local"
        self.path, self.options = gguf, opts
        with loading(f"Loading {gguf.name}"):
            self.engine = Engine(gguf, n_ctx=opts.n_ctx, max_concurrency=opts.max_concurrency,
                                 max_queue=opts.max_queue, prefix_cache=opts.prefix_cache,
                                 speculative=None if opts.speculative == "off" else opts.speculative,
                                 n_draft=opts.n_draft, n_batch=opts.n_batch, n_threads=opts.n_threads,
                                 ctx_per_request=opts.max_context, draft_model=opts.draft_model)
            if lora is not None:
                _apply_lora(self.engine, lora)
        self._template = None

    # --- prompt building -----------------------------------------------------------------
    def render(self, messages: list[Message]) -> str:
        """The prompt string the chat template makes of ``messages`` (what the model sees)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self._template is None:
            rt = self.engine.runtime
            template = self.options.chat_template or rt.meta("tokenizer.chat_template")
            if not template:
                raise ConfigError(f"{self.path.name} has no chat template; pass chat_template=... or use complete()")
            bos, eos = (rt.C.llama_vocab_bos(rt.vocab), rt.C.llama_vocab_eos(rt.vocab))
            self._template = Jinja2ChatFormatter(template, eos_token=rt.special(eos), bos_token=rt.special(bos))
        return self._template(messages=[template_message(m) for m in messages]).prompt

    def tokenize(self, text: str) -> list[int]:
        return self.engine.runtime.tokenize(text)

    def count_tokens(self, text) -> int:
        if isinstance(text, str):
            return len(self.tokenize(text))
        msgs = [text] if isinstance(text, Message) else list(text)
        return len(self.tokenize(self.render(msgs)))

    @property
    def context_length(self) -> int:
        return self.engine.ctx_per_request

    # --- generation ----------------------------------------------------------------------------
    def _chat(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice,
              constraint=None, parallel_tool_calls: bool = True) -> Completion:
        return self._collect_stream(self._stream(messages, s, tools, tool_choice, constraint, parallel_tool_calls))

    def _stream(self, messages, s, tools, tool_choice, constraint=None, parallel_tool_calls: bool = True) -> Iterator[Chunk]:
        """Tools (unless tool_choice="none") become a grammar over ``<tool_call>`` blocks; see structured/tools.py."""
        from ..structured import tools as tool_format

        calls = tool_format.ToolCalls(tools, tool_choice or "auto", parallel=parallel_tool_calls,
                                       max_tokens=s.max_tokens) \
            if tools and tool_choice != "none" else None
        prompt = self.render(tool_format.as_template_messages(messages, tools if calls else None))
        chunks = self._generate(prompt, s, calls or constraint)
        return tool_format.stream_calls(chunks) if calls else chunks

    def _complete(self, prompt: str, s: Sampling) -> Completion:
        return self._collect_stream(self._generate(prompt, s))

    def _stream_complete(self, prompt: str, s: Sampling) -> Iterator[Chunk]:
        return self._generate(prompt, s)

    def _generate(self, prompt: str, s: Sampling, constraint=None) -> Iterator[Chunk]:
        """Submit at once (so context, queue and constraint errors are raised here), then stream."""
        tokens = self.tokenize(prompt)
        room = self.engine.ctx_per_request - len(tokens)
        max_tokens = s.max_tokens or max(1, min(DEFAULT_MAX_TOKENS, room))
        matcher = None
        if constraint is not None:
            from ..structured import masks

            matcher = masks.matcher(constraint, masks.llamacpp_tokenizer(self.engine.runtime))
        req = self.engine.submit(tokens, s, max_tokens=max_tokens, matcher=matcher)
        return _follow(req)

    def close(self) -> None:
        """Stop the engine thread and free the model (also done at interpreter exit)."""
        self.engine.close()


def _apply_lora(engine, path: Path) -> None:
    """Attach a GGUF LoRA to the engine's context before its first request (the engine thread is still
    idle, and the prefix cache empty). llama.cpp frees the adapter with the model."""
    import ctypes

    rt = engine.runtime
    adapter = rt.C.llama_adapter_lora_init(rt.model, str(path).encode())
    if not adapter or rt.C.llama_set_adapters_lora(rt.ctx, (rt.C.llama_adapter_lora_p_ctypes * 1)(adapter), 1,
                                                   (ctypes.c_float * 1)(1.0)):
        engine.close()
        raise ConfigError(f"llama.cpp could not apply LoRA {str(path)!r}: is it a GGUF LoRA made for this model?")


def _follow(req) -> Iterator[Chunk]:
    """Yield a request's chunks; closing the generator (a client that went away) cancels it."""
    try:
        yield from req
    finally:
        if not req.finished:
            req.cancel()

