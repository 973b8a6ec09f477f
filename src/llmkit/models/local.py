"""llama.cpp through llama-cpp-python: the embedded SmolLM2-135M-Instruct, or any GGUF.

Decoding runs llama.cpp's own sampler chain (penalties → top-k → typical → top-p → min-p →
temperature → seeded draw) one token at a time through ``Llama.generate``, which also
reuses the KV cache of a shared prompt prefix between calls. Around it llmkit adds exact
stop strings (:mod:`stops`), exact token counts, and log-probabilities read from the last
logits row — so ``logits_all`` stays off and prompt processing stays fast.

Example:
    >>> import llmkit as lk
    >>> m = lk.model()                                 # the embedded model
    >>> m = lk.model("llamacpp:/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", n_ctx=8192)
    >>> m.chat("Capital of France?", temperature=0, max_tokens=16).text
"""
from __future__ import annotations

import os
import random
import threading
from pathlib import Path
from typing import Iterator

from pydantic import Field

from ..core.errors import ConfigError, ContextLengthError
from ..core.sampling import Sampling
from ..core.types import Chunk, Completion, Message, TokenLogprob, Tool, Usage
from .base import Model, Options
from .registry import embedded_gguf
from .stops import StopChecker

# When a field is left unset, llama.cpp's own defaults apply (the same as llama-cli's).
DEFAULTS = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0,
                repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0)
DEFAULT_MAX_TOKENS = 512


class LocalOptions(Options):
    n_ctx: int = Field(8192, ge=0, description="context window in tokens (0 = the model's trained length)")
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    n_batch: int = Field(512, ge=1, description="prompt tokens evaluated per llama_decode call")
    chat_template: str | None = Field(None, description="Jinja chat template overriding the GGUF's own")
    verbose: bool = Field(False, description="let llama.cpp print its own logs to stderr")


class LocalModel(Model):
    provider = "local"
    supported = frozenset({"temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty",
                           "frequency_penalty", "presence_penalty", "seed", "stop", "max_tokens",
                           "logprobs", "top_logprobs"})
    capabilities = ("chat", "stream", "complete", "logprobs")

    def __init__(self, path: str | None = None, **options):
        opts = LocalOptions.parse("local", options)
        gguf = Path(path).expanduser() if path else embedded_gguf()
        if not gguf.is_file():
            raise ConfigError(f"GGUF file {str(gguf)!r} does not exist; pass a path to a .gguf file")
        super().__init__(gguf.name if path else "smollm2-135m-instruct")
        self.provider = "llamacpp" if path else "local"
        self.path, self.options = gguf, opts
        self._lock = threading.Lock()  # one llama.cpp context: one call at a time
        self.llm = _load(gguf, opts)
        self._template = None
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._is_eog = lambda t: llama_cpp.llama_vocab_is_eog(vocab, t)  # EOS, <|im_end|>, EOT…

    # --- prompt building -----------------------------------------------------------------
    def render(self, messages: list[Message]) -> str:
        """The prompt string the chat template makes of ``messages`` (what the model sees)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self._template is None:
            template = self.options.chat_template or self.llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise ConfigError(f"{self.path.name} has no chat template; pass chat_template=... or use complete()")
            piece = lambda t: self.llm.detokenize([t], special=True).decode("utf-8", "replace") if t >= 0 else ""
            self._template = Jinja2ChatFormatter(template, eos_token=piece(self.llm.token_eos()),
                                                 bos_token=piece(self.llm.token_bos()))
        return self._template(messages=[_wire(m) for m in messages]).prompt

    def tokenize(self, text: str) -> list[int]:
        # special=True: template markers like <|im_start|> become their single special tokens
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, text) -> int:
        if isinstance(text, str):
            return len(self.tokenize(text))
        msgs = [text] if isinstance(text, Message) else list(text)
        return len(self.tokenize(self.render(msgs)))

    @property
    def context_length(self) -> int:
        return self.llm.n_ctx()

    # --- generation ----------------------------------------------------------------------------
    def _chat(self, messages: list[Message], s: Sampling, tools: list[Tool] | None, tool_choice) -> Completion:
        return self._collect_stream(self._generate(self.render(messages), s))

    def _stream(self, messages, s, tools, tool_choice) -> Iterator[Chunk]:
        return self._generate(self.render(messages), s)

    def _complete(self, prompt: str, s: Sampling) -> Completion:
        return self._collect_stream(self._generate(prompt, s))

    def _generate(self, prompt: str, s: Sampling) -> Iterator[Chunk]:
        import numpy as np

        tokens = self.tokenize(prompt)
        max_tokens = s.max_tokens or DEFAULT_MAX_TOKENS
        if len(tokens) + max_tokens > self.llm.n_ctx():
            if len(tokens) >= self.llm.n_ctx() or s.max_tokens:
                raise ContextLengthError(
                    f"prompt of {len(tokens)} tokens + max_tokens {max_tokens} exceeds the context of "
                    f"{self.llm.n_ctx()} tokens", tokens=len(tokens) + max_tokens, limit=self.llm.n_ctx())
            max_tokens = self.llm.n_ctx() - len(tokens)  # max_tokens unset: fill what is left
        p = {k: (getattr(s, k) if getattr(s, k) is not None else v) for k, v in DEFAULTS.items()}
        want_logprobs = bool(s.logprobs or s.top_logprobs)
        stops = StopChecker(s.stop or [])
        with self._lock:
            self.llm.set_seed(s.seed if s.seed is not None else random.randint(0, 2**31 - 1))
            gen = self.llm.generate(
                tokens, temp=p["temperature"], top_k=p["top_k"], top_p=p["top_p"], min_p=p["min_p"],
                typical_p=p["typical_p"], repeat_penalty=p["repetition_penalty"],
                frequency_penalty=p["frequency_penalty"], presence_penalty=p["presence_penalty"])
            out_ids: list[int] = []
            emitted_bytes = 0
            finish = "length"
            try:
                for token in gen:
                    if self._is_eog(token):
                        finish = "stop"
                        break
                    lp = self._logprob(token, s.top_logprobs or 0, np) if want_logprobs else None
                    out_ids.append(token)
                    # Decode all output bytes and emit only the complete UTF-8 suffix, so a
                    # character split across tokens is never emitted half.
                    data = self.llm.detokenize(out_ids)
                    new = _complete_utf8(data[emitted_bytes:])
                    emitted_bytes += len(new)
                    text, stopped = stops.feed(new.decode("utf-8"))
                    if text or lp:
                        yield Chunk(text=text, logprobs=[lp] if lp else None)
                    if stopped:
                        finish = "stop"
                        break
                    if len(out_ids) >= max_tokens:
                        break
            finally:
                gen.close()
        tail = stops.flush()
        yield Chunk(text=tail, finish_reason=finish,
                    usage=Usage(input_tokens=len(tokens), output_tokens=len(out_ids)))

    def _logprob(self, token: int, top: int, np) -> TokenLogprob:
        import llama_cpp

        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.llm.n_vocab(),))
        logp = row - row.max()
        logp = logp - np.log(np.exp(logp).sum())
        alts = np.argsort(-logp)[:top] if top else []
        piece = lambda t: self.llm.detokenize([int(t)]).decode("utf-8", "replace")
        return TokenLogprob(token=piece(token), logprob=float(logp[token]),
                            top=[(piece(t), float(logp[t])) for t in alts])


def _load(path: Path, opts: LocalOptions):
    from llama_cpp import Llama

    from ..core.progress import loading

    with loading(f"Loading {path.name}"):
        return Llama(model_path=str(path), n_ctx=opts.n_ctx, n_threads=opts.n_threads or os.cpu_count(),
                     n_batch=opts.n_batch, verbose=opts.verbose)


def _complete_utf8(data: bytes) -> bytes:
    """The longest prefix of ``data`` that ends on a UTF-8 character boundary."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            data[:cut].decode("utf-8")
            return data[:cut]
        except UnicodeDecodeError:
            continue
    return b""


def _wire(m: Message) -> dict:
    d = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                           for c in m.tool_calls]
    if m.tool_call_id:
        d["tool_call_id"] = m.tool_call_id
    return d

