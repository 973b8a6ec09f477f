"""transformers backend: the embedded SmolLM2 (or any local HF folder) as torch weights.

    HFModel("smollm2")        the embedded GGUF, dequantized once and cached under cache_dir()/hf
    HFModel("/path/to/dir")   a local transformers folder (config.json + weights + tokenizer)
    HFModel.from_objects(m, tok)   an already-built model/tokenizer pair (tests, notebooks)

Decoding is a lean loop of our own: prefill once, then one token per forward with a KV cache
(``decode_steps``). Two things make it faster than ``model.generate`` on CPU, both without
touching the model: a KV cache written in place into buffers sized for the call
(``torch_decode.PreallocatedLayer``), and one-row linears computed as a batched matvec
(``torch_decode.row_linear``), which on the dev box is ~3x faster than BLAS's one-row matmul.
Beam search is delegated to ``model.generate``; contrastive search (whose transformers
implementation moved to a Hub repo) lives in ``contrastive.py``.

Defaults, since ``None`` means "the backend's default":
    temperature  the model's generation_config temperature if it sets do_sample, else 1.0
                 (multinomial sampling, as the OpenAI API); 0 = greedy
    max_tokens   256, clipped to the room left in the context
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..core.errors import ConfigError, ContextLengthError, UnsupportedParameterError
from ..core.sampling import FIELDS, Sampling
from ..core.settings import cache_dir
from ..core.types import Chunk, Completion, Message, TokenLogprob, Usage, as_messages
from ..core.progress import loading
from .base import Model, Options, template_message
from .stops import StopChecker
from .torch_decode import preallocated_layer_class, row_matvec_class, row_matvec_pays

if TYPE_CHECKING:
    import torch

EMBEDDED = "smollm2"
DEFAULT_MAX_TOKENS = 256
# Tokens that end a turn in common chat templates; added to the eos set when the vocab has them.
END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>")


class HFOptions(Options):
    """Options of the ``hf`` backend (``lk.model("hf:smollm2", dtype="bfloat16")``)."""

    dtype: Literal["float32", "bfloat16"] = Field("float32", description="weight dtype: float32 (exact; fastest on most CPUs) or bfloat16 (half the memory)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (torch.set_num_threads, process-wide); default: torch's choice")
    max_context: int | None = Field(None, ge=2, description="cap the context window below the model's max_position_embeddings")
    static_cache: bool = Field(False, description="use transformers' StaticCache (attends over the whole preallocated length); measured no faster on CPU")
    row_matvec: bool | None = Field(None, description="compute decode-step fp32 CPU linears as a batched matvec, which beats BLAS's "
                                                      "one-row matmul on some CPUs; None = time both once per model and pick")


# --- loading -------------------------------------------------------------------------------
@contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the duration: loading the embedded model must never touch the network."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def embedded_dir() -> Path:
    """The embedded SmolLM2 GGUF as a transformers folder, converted on first use.

    Dequantizing and converting the tokenizer takes ~40 s, so the result is saved under
    ``cache_dir()/hf/smollm2-<hash of the GGUF's size and mtime>`` (written to a temp folder,
    then renamed, so a half-written cache is never read) and loaded from there afterwards.

    Example:
        >>> from transformers import AutoTokenizer
        >>> tok = AutoTokenizer.from_pretrained(embedded_dir())
    """
    from .registry import embedded_gguf

    gguf = embedded_gguf()
    st = gguf.stat()
    key = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    final = cache_dir() / "hf" / f"{EMBEDDED}-{key}"
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with loading(f"Converting {gguf.name} for transformers (once, about a minute)"), _offline():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        # The weights are dense torch tensors now; drop the GGUF quantizer record, which
        # save_pretrained refuses ("not serializable") and which would mislead the reload.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is for everyone who can read it
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished first: use its copy
                if not (final / "config.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_pretrained(name: str, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) for ``"smollm2"`` or a local transformers folder (used by ``train/`` too)."""
    if name.lower() == EMBEDDED:
        path = embedded_dir()
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ConfigError(f"hf model folder {str(path)!r} does not exist; use 'hf:smollm2' or 'hf:/path/to/a/transformers/folder'")
        if not (path / "config.json").exists():
            raise ConfigError(f"hf model folder {str(path)!r} has no config.json; is it a transformers folder?")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with loading(f"Loading hf:{name}"), _offline():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer


# --- the model -----------------------------------------------------------------------------
class HFModel(Model):
    """A causal LM run in torch through transformers.

    Example:
        >>> import llmkit as lk
        >>> m = lk.model("hf:smollm2")            # or HFModel("smollm2", dtype="bfloat16")
        >>> m.chat("Capital of France?", temperature=0, max_tokens=16).text
    """

    provider = "hf"
    supported = FIELDS
    capabilities = ("chat", "stream", "complete", "logprobs", "tools", "structured")
    constraint_kinds = frozenset({"json", "json_schema", "regex", "choice", "grammar"})
    parallel_tool_control = True

    def __init__(self, name: str = EMBEDDED, **options: Any):
        super().__init__(name)
        self.options = HFOptions.parse("hf", options)
        self.model, self.tokenizer = load_pretrained(name, self.options.dtype)
        self._setup()

    @classmethod
    def from_objects(cls, model: Any, tokenizer: Any, name: str = "custom", **options: Any) -> HFModel:
        """Wrap a model and tokenizer you already have; ``dtype``, if given, casts the model in place.

        Example:
            >>> m = HFModel.from_objects(LlamaForCausalLM(config), tokenizer, name="tiny")
        """
        self = cls.__new__(cls)
        Model.__init__(self, name)
        self.options = HFOptions.parse("hf", options)
        if "dtype" in options:
            import torch

            model = model.to(getattr(torch, self.options.dtype))
        self.model, self.tokenizer = model, tokenizer
        self._setup()
        return self

    def _setup(self) -> None:
        if self.options.threads:
            import torch

            torch.set_num_threads(self.options.threads)
        self.model.eval()
        tok, gc = self.tokenizer, self.model.generation_config
        eos: set[int] = set()
        for ids in (getattr(gc, "eos_token_id", None), tok.eos_token_id):
            eos.update([ids] if isinstance(ids, int) else ids or [])
        vocab = tok.get_vocab()
        eos.update(vocab[t] for t in END_OF_TURN if t in vocab)
        self.eos_token_ids = frozenset(eos)
        pad = tok.pad_token_id if tok.pad_token_id is not None else getattr(gc, "pad_token_id", None)
        self.pad_token_id = pad if pad is not None else min(eos, default=0)

    # --- what the base class asks for --------------------------------------------------------
    @property
    def context_length(self) -> int:
        n = getattr(self.model.config.get_text_config(), "max_position_embeddings", None) or 2**31
        return min(n, self.options.max_context or n)

    def count_tokens(self, text: str | list[Message] | Message) -> int:
        """Tokens in a raw prompt (as ``complete`` sees it) or in a conversation after the chat template."""
        return len(self._prompt_ids(text) if isinstance(text, str) else self._chat_ids(as_messages(text)))

    def _chat(self, messages, s, tools, tool_choice, constraint=None, parallel_tool_calls: bool = True) -> Completion:
        return self._collect_stream(self._chat_stream(messages, s, tools, tool_choice, constraint, parallel_tool_calls,
                                                      stream=False))

    def _stream(self, messages, s, tools, tool_choice, constraint=None, parallel_tool_calls: bool = True) -> Iterator[Chunk]:
        if (s.num_beams or 1) > 1:
            raise UnsupportedParameterError("stream with num_beams", self.provider, "beam search finishes all beams before it can answer; use chat()")
        return self._chat_stream(messages, s, tools, tool_choice, constraint, parallel_tool_calls, stream=True)

    def _chat_stream(self, messages, s, tools, tool_choice, constraint, parallel: bool, stream: bool) -> Iterator[Chunk]:
        """Tools (unless tool_choice="none") become a grammar over ``<tool_call>`` blocks; see structured/tools.py."""
        from ..structured import tools as tool_format

        calls = tool_format.ToolCalls(tools, tool_choice or "auto", parallel=parallel, max_tokens=s.max_tokens) \
            if tools and tool_choice != "none" else None
        ids = self._chat_ids(tool_format.as_template_messages(messages, tools if calls else None))
        chunks = self._generate(ids, s, stream=stream or calls is not None, constraint=calls or constraint)
        return tool_format.stream_calls(chunks) if calls else chunks

    def _complete(self, prompt: str, s: Sampling) -> Completion:
        return self._collect_stream(self._generate(self._prompt_ids(prompt), s, stream=False))

    def _stream_complete(self, prompt: str, s: Sampling) -> Iterator[Chunk]:
        if (s.num_beams or 1) > 1:
            raise UnsupportedParameterError("stream with num_beams", self.provider, "beam search finishes all beams before it can answer; use complete()")
        return self._generate(self._prompt_ids(prompt), s, stream=True)

    # --- tokens in -----------------------------------------------------------------------------
    def _chat_ids(self, messages: list[Message]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"hf:{self.name} has no chat template; use complete() with a raw prompt")
        text = self.tokenizer.apply_chat_template([template_message(m) for m in messages], tokenize=False,
                                                  add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)  # the template already has them

    def _prompt_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer.encode(prompt)
        if not ids and self.tokenizer.bos_token_id is not None:
            ids = [self.tokenizer.bos_token_id]
        if not ids:
            raise ConfigError("the prompt is empty and the tokenizer adds no BOS token: give at least one character")
        return ids

    def _budget(self, n: int, s: Sampling) -> int:
        """How many tokens may be generated after an ``n``-token prompt."""
        limit = self.context_length
        if s.max_tokens is not None:
            if n + s.max_tokens > limit:
                raise ContextLengthError(f"the prompt has {n} tokens and max_tokens is {s.max_tokens}: {n + s.max_tokens} "
                                         f"exceeds the {limit}-token context of hf:{self.name}", tokens=n + s.max_tokens, limit=limit)
            return s.max_tokens
        if n >= limit:
            raise ContextLengthError(f"the prompt has {n} tokens; the context of hf:{self.name} holds {limit} "
                                     f"including at least one new token", tokens=n, limit=limit)
        return min(DEFAULT_MAX_TOKENS, limit - n)

    # --- decoding ------------------------------------------------------------------------------
    def _generate(self, ids: list[int], s: Sampling, stream: bool, constraint=None) -> Iterator[Chunk]:
        """Chunks of text; the last one carries finish_reason and usage."""
        max_new = self._budget(len(ids), s)
        matcher = None
        if constraint is not None:
            from ..structured import masks

            if (s.num_beams or 1) > 1 or s.penalty_alpha is not None:
                raise UnsupportedParameterError("a constraint with num_beams or penalty_alpha", self.provider,
                                                "constraints apply to sampling and greedy decoding")
            n_vocab = self.model.get_output_embeddings().weight.shape[0]
            matcher = masks.matcher(constraint, masks.hf_tokenizer(self.tokenizer, n_vocab))
        if (s.num_beams or 1) > 1:
            yield self._beam_search(ids, s, max_new)
            return
        if s.penalty_alpha is not None:
            from .contrastive import contrastive_steps

            _deterministic(s, "penalty_alpha", allowed={"top_k"})
            if (s.top_k or 0) < 2:
                raise ConfigError(f"penalty_alpha={s.penalty_alpha} (contrastive search) needs top_k > 1 candidates, got top_k={s.top_k}")
            steps = contrastive_steps(self.model, ids, s, max_new)
        else:
            steps = self.decode_steps(ids, self._resolve(s), max_new, matcher)
        want_lp = bool(s.logprobs or s.top_logprobs)
        detok, stops = _Detokenizer(self.tokenizer), StopChecker(s.stop)
        out: list[int] = []
        held: list[str] = []      # chat() gets all text on the final chunk
        pending: list[TokenLogprob] = []  # logprobs wait for the chunk that carries their text
        finish = "length"
        try:
            for t, logits in steps:
                if t in self.eos_token_ids:
                    finish = "stop"
                    break
                out.append(t)
                if want_lp:
                    pending.append(self._logprob(logits, t, s.top_logprobs or 0))
                text, stopped = stops.feed(detok.add(t))
                if stream and text:
                    yield Chunk(text=text, logprobs=pending or None)
                    pending = []
                elif text:
                    held.append(text)
                if stopped or (matcher is not None and matcher.is_stopped()):
                    finish = "stop"   # a stop string, or a complete grammar (no step spent on an EOS)
                    break
        finally:
            steps.close()
        text, _ = stops.feed(detok.flush())
        yield Chunk(text="".join(held) + text + stops.flush(), finish_reason=finish,
                    usage=Usage(input_tokens=len(ids), output_tokens=len(out)), logprobs=pending or None)

    def decode_steps(self, ids: list[int], s: Sampling, max_new: int, matcher=None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(token, raw logits it was chosen from)``, ``max_new`` times at most.

        ``matcher``: an llguidance matcher; its token mask is applied to the logits before the
        penalties and warpers, and each chosen token advances it.

        Prefill the prompt once, then feed back one token per forward pass with the KV cache.
        Per-step work is kept to the forward itself: no attention mask (one unpadded row),
        logits for the last position only, the token history tensor only when a penalty reads
        it, and single-row linears as a batched matvec where that is faster (``row_matvec``).
        Inference mode is entered around each computation, never held across a ``yield``.
        """
        import torch

        from .logits import build_processors, greedy, sample

        dev = self.model.device
        procs = build_processors(s, prompt_len=len(ids))
        generator = None
        if s.temperature != 0:
            generator = torch.Generator(device=dev).manual_seed(s.seed if s.seed is not None else secrets.randbits(63))
        n = len(ids)
        history = torch.tensor([ids + [0] * max_new], device=dev) if procs else None
        cache = self._new_cache(n + max_new)
        fast = self._row_matvec_mode()
        with torch.inference_mode():
            logits = self._forward(torch.tensor([ids], device=dev), cache, 0)
        for i in range(max_new):
            with torch.inference_mode():
                scores = logits if matcher is None else _masked(logits, matcher)
                scores = procs(history[:, : n + i], scores) if procs else scores
                tok = greedy(scores) if generator is None else sample(scores, generator)
            t = int(tok)
            if matcher is not None and t not in self.eos_token_ids and not matcher.consume_token(t):
                from ..core.errors import StructuredOutputError

                raise StructuredOutputError(f"the grammar rejected token {t}: {matcher.get_error()}")
            yield t, logits
            if i + 1 == max_new:
                return
            with torch.inference_mode(), fast:
                if history is not None:
                    history[0, n + i] = t
                logits = self._forward(tok.view(1, 1), cache, n + i)

    def _row_matvec_mode(self):
        """The RowMatvec mode if ``row_matvec`` is on (``None``: timed once per model, on first use)."""
        from contextlib import nullcontext

        if self.options.row_matvec is None:
            self.options.row_matvec = row_matvec_pays(self.model)
        return row_matvec_class()() if self.options.row_matvec else nullcontext()

    def _new_cache(self, max_len: int):
        """A KV cache for one call of at most ``max_len`` tokens.

        Default: a DynamicCache whose plain full-attention layers write into buffers sized for the
        call (``_PreallocatedLayer``), so no step re-copies the whole past as ``torch.cat`` does,
        and attention still sees only the filled part (a StaticCache attends over all of it).
        """
        from transformers import DynamicCache, StaticCache
        from transformers.cache_utils import DynamicLayer

        if self.options.static_cache:
            return StaticCache(config=self.model.config, max_cache_len=max_len)
        cache = DynamicCache(config=self.model.config)
        if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
            cache.layers = [preallocated_layer_class()(max_len) for _ in cache.layers]
        return cache

    def _forward(self, input_ids: torch.Tensor, cache, start: int) -> torch.Tensor:
        """Logits (1, vocab) of the last position, as float32."""
        import torch

        pos = torch.arange(start, start + input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        out = self.model(input_ids=input_ids, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()

    def _resolve(self, s: Sampling) -> Sampling:
        """Fill ``temperature=None`` from the model's generation_config (see the module docstring)."""
        if s.temperature is not None:
            return s
        gc = self.model.generation_config
        fields = s.set_fields()
        if getattr(gc, "do_sample", False):
            fields["temperature"] = gc.temperature if gc.temperature is not None else 1.0
            for k in ("top_p", "top_k", "min_p", "typical_p"):
                if fields.get(k) is None and getattr(gc, k, None) is not None:
                    fields[k] = getattr(gc, k)
        else:
            fields["temperature"] = 1.0
        return Sampling(**fields)

    def _beam_search(self, ids: list[int], s: Sampling, max_new: int) -> Chunk:
        """Delegated to ``model.generate(num_beams=…)``: it returns whole sequences, never streams."""
        import torch

        from .logits import build_processors

        if s.logprobs or s.top_logprobs:
            raise UnsupportedParameterError("logprobs with num_beams", self.provider, "beam search scores sequences, not the tokens it returns")
        _deterministic(s, "num_beams")
        if s.penalty_alpha is not None:
            raise UnsupportedParameterError("penalty_alpha with num_beams", self.provider, "choose beam search or contrastive search")
        x = torch.tensor([ids], device=self.model.device)
        with torch.inference_mode():
            seq = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), num_beams=s.num_beams,
                                      do_sample=False, max_new_tokens=max_new, eos_token_id=sorted(self.eos_token_ids),
                                      pad_token_id=self.pad_token_id, logits_processor=build_processors(s, len(ids), warpers=False))
        new = seq[0, len(ids):].tolist()
        cut = next((i for i, t in enumerate(new) if t in self.eos_token_ids), None)
        finish = "stop" if cut is not None else "length"
        new = new[:cut]
        stops = StopChecker(s.stop)
        text, stopped = stops.feed(self.tokenizer.decode(new, skip_special_tokens=True))
        return Chunk(text=text + stops.flush(), finish_reason="stop" if stopped else finish,
                     usage=Usage(input_tokens=len(ids), output_tokens=len(new)))

    # --- tokens out ----------------------------------------------------------------------------
    def _logprob(self, logits: torch.Tensor, t: int, k: int) -> TokenLogprob:
        """log_softmax of the raw model logits (before penalties and temperature), as OpenAI reports them."""
        import torch

        lp = torch.log_softmax(logits[0].float(), dim=-1)
        top = []
        if k:
            values, idx = lp.topk(k)
            top = [(self.tokenizer.decode([j]), v) for j, v in zip(idx.tolist(), values.tolist())]
        return TokenLogprob(token=self.tokenizer.decode([t]), logprob=float(lp[t]), top=top)



def _masked(logits: torch.Tensor, matcher) -> torch.Tensor:
    """``logits`` with every token the grammar forbids at -inf (a copy: the raw logits feed logprobs)."""
    import torch

    from ..structured import masks

    bits = masks.new_masks(1, logits.shape[-1])
    masks.fill_masks([(matcher, 0)], bits)
    ok = torch.from_numpy(masks.allowed(bits[0], logits.shape[-1])).to(logits.device)
    return logits.masked_fill(~ok, float("-inf"))


def _deterministic(s: Sampling, mode: str, allowed: set[str] = frozenset()) -> None:
    """Beam and contrastive search pick tokens deterministically: sampling knobs would be ignored."""
    if s.temperature not in (None, 0):
        raise UnsupportedParameterError(f"temperature with {mode}", "hf", f"{mode} is deterministic; leave temperature unset or 0")
    for name in ("top_k", "top_p", "min_p", "typical_p"):
        if name not in allowed and getattr(s, name) is not None:
            raise UnsupportedParameterError(f"{name} with {mode}", "hf", f"{mode} does not sample; drop {name}")



class _Detokenizer:
    """Incremental decoding that never splits a multi-byte character or a merge.

    Each new token decodes a short window of recent ids and emits what it adds to the text;
    the window only moves on once the text is complete (no trailing U+FFFD). Concatenating
    the pieces gives what decoding all ids at once gives (the windowed form of
    "decode everything, emit the new suffix", without its quadratic cost).
    """

    def __init__(self, tokenizer: Any):
        self.tok, self.ids, self.prefix, self.read = tokenizer, [], 0, 0

    def _new_text(self) -> str:
        before = self.tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        after = self.tok.decode(self.ids[self.prefix:], skip_special_tokens=True)
        return after[len(before):] if len(after) > len(before) else ""

    def add(self, t: int) -> str:
        self.ids.append(t)
        piece = self._new_text()
        if piece and not piece.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return piece
        return ""

    def flush(self) -> str:
        """Whatever is still held (an incomplete character decodes to U+FFFD here)."""
        piece = self._new_text()
        self.prefix = self.read = len(self.ids)
        return piece
