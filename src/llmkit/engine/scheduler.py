"""The serving engine: continuous batching over llama.cpp sequences.

One background thread runs ``step()`` in a loop. Each step builds one batch:

1. every decoding sequence contributes its last sampled token (plus, under prompt-lookup
   speculation, a few drafted tokens), so no running request ever waits;
2. the rest of the batch (``n_batch`` tokens) goes to prompts still being prefilled, in
   arrival order — a long prompt is spread over several steps instead of stalling the others;

then calls ``llama_decode`` once, samples every sequence that produced logits, and streams
the text out. Requests join between steps and leave the moment they finish; their KV cells
stay behind in the prefix cache for the next request that shares their prefix.

Example:
    >>> eng = Engine(embedded_gguf())
    >>> req = eng.submit(eng.runtime.tokenize("Once upon a time"), Sampling(temperature=0, max_tokens=8))
    >>> "".join(chunk.text for chunk in req)
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.errors import ConfigError, ContextLengthError, LLMKitError, OverloadedError
from ..core.sampling import Sampling
from ..core.types import Chunk, TokenLogprob, Usage
from ..models.stops import StopChecker
from . import sampler as sampling
from .prefix_cache import PrefixCache, common_prefix
from .runtime import Runtime
from .speculative import NgramIndex

MIN_REUSE = 4  # shorter shared prefixes are not worth a seq_cp


@dataclass(eq=False)
class Request:
    """One generation in the engine. Iterate it for :class:`Chunk`\\ s; ``cancel()`` to stop early."""

    prompt: list[int]
    sampling: Sampling
    max_tokens: int
    top_logprobs: int | None = None          # None: no logprobs
    speculate: bool = False
    matcher: object = None                   # an llguidance LLMatcher when the output is constrained
    raw: np.ndarray | None = None            # its logits before the mask, this step (for logprobs)
    # --- engine state (touched by the engine thread only) ---
    seq: int = -1
    n_past: int = 0                          # cells this sequence holds: positions [0, n_past)
    todo: list[int] = field(default_factory=list)   # tokens to evaluate in the next step
    out: list[int] = field(default_factory=list)
    prefilling: bool = True
    sampler: object = None
    index: NgramIndex | None = None
    d_seq: int = -1                          # draft-model sequence (speculative="draft")
    d_past: int = 0                          # cells the draft model holds for it
    k: int = 4                               # its current draft length (adaptive)
    stops: StopChecker | None = None
    pending: bytes = b""                     # bytes of a UTF-8 character split across tokens
    reused: int = 0                          # prompt tokens taken from the prefix cache
    t_submit: float = field(default_factory=time.perf_counter)
    t_first: float | None = None
    # --- shared ---
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False
    finished: bool = False

    def cancel(self) -> None:
        """Stop generating; the engine frees the sequence at its next step."""
        self.cancelled = True

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            item = self.events.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.finish_reason is not None:
                return


class Engine:
    """Continuous-batching generation over one GGUF model, shared by all callers.

    Args:
        path: the GGUF file.
        n_ctx: KV cells shared by all sequences (the unified cache stores a shared prefix once).
        max_concurrency: most requests decoding together.
        max_queue: most requests waiting for a slot; beyond it ``submit`` raises OverloadedError.
        prefix_cache: how many finished sequences to keep for prefix reuse (0: off).
        speculative: ``"ngram"`` (prompt-lookup drafting), ``"draft"`` (a small draft model
            drafts, ``draft_model`` names its GGUF; it must share the tokenizer) or ``None``.
            Only plain greedy requests speculate; their output is unchanged.
        n_draft: most drafted tokens per step under speculation. Each request adapts its own draft
            length: doubled after a fully accepted draft, cut to what was accepted (+1) after a miss,
            because on a CPU every drafted token costs compute whether it is kept or not.
        draft_model: the draft model's GGUF, with ``speculative="draft"``.
        n_batch: most tokens per llama_decode call (prefill chunk size).
        n_threads: CPU threads (default: all cores).
    """

    def __init__(self, path: Path, *, n_ctx: int = 16384, max_concurrency: int = 16, max_queue: int = 256,
                 prefix_cache: int = 16, speculative: str | None = None, n_draft: int = 16, n_batch: int = 512,
                 n_threads: int | None = None, ctx_per_request: int | None = None, draft_model: Path | None = None):
        threads = n_threads or os.cpu_count() or 1
        self.runtime = rt = Runtime(path, n_ctx=n_ctx, n_seq=max_concurrency + prefix_cache, n_batch=n_batch,
                                    n_threads=threads)
        if speculative not in (None, "ngram", "draft"):
            raise ConfigError(f"speculative={speculative!r} is not one of: None, 'ngram', 'draft'")
        self.draft = None
        if speculative == "draft":
            if draft_model is None:
                raise ConfigError("speculative='draft' needs draft_model=PATH.gguf (a small model with the same tokenizer)")
            self.draft = _draft_runtime(Path(draft_model), rt, n_ctx=n_ctx, n_seq=max_concurrency, n_batch=n_batch,
                                        n_threads=threads)
            self.draft_free = list(range(max_concurrency - 1, -1, -1))
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self.ctx_per_request = min(ctx_per_request or rt.n_ctx_train or rt.n_ctx, rt.n_ctx)
        self.speculative, self.n_draft = speculative, n_draft
        self.cache = PrefixCache(prefix_cache)
        self.free_seqs = list(range(max_concurrency + prefix_cache - 1, -1, -1))
        self.waiting: list[Request] = []
        self.active: list[Request] = []
        self.counters = dict(requests=0, prefix_cache_hits=0, prefix_cache_tokens=0, tokens_in=0, tokens_out=0,
                             drafted=0, accepted=0, steps=0)
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="llmkit-engine", daemon=True)
        self._thread.start()

    # --- the public side (any thread) -----------------------------------------------------------
    def submit(self, prompt: list[int], s: Sampling, *, max_tokens: int | None = None,
               matcher: object = None) -> Request:
        """Queue a generation; raises ContextLengthError or OverloadedError at once, before any work.

        ``matcher``: an llguidance matcher (``structured.masks.matcher``) the output must satisfy;
        the request then ends when its grammar is complete."""
        if not prompt:
            raise ContextLengthError("the prompt is empty: give at least one token")
        limit = self.ctx_per_request
        n_max = max_tokens or s.max_tokens or limit - len(prompt)
        if len(prompt) + n_max > limit or len(prompt) >= limit:
            raise ContextLengthError(
                f"prompt of {len(prompt)} tokens + max_tokens {n_max} exceeds the context of {limit} tokens",
                tokens=len(prompt) + n_max, limit=limit)
        top = (s.top_logprobs or 0) if (s.logprobs or s.top_logprobs) else None
        speculate = (self.speculative is not None and matcher is None and top is None and sampling.is_plain_greedy(s))
        req = Request(prompt=list(prompt), sampling=s, max_tokens=n_max, top_logprobs=top, speculate=speculate,
                      matcher=matcher)
        with self._cv:
            if self._closed:
                raise LLMKitError("the engine is shut down")
            if len(self.waiting) >= self.max_queue:
                raise OverloadedError(f"the engine's queue is full ({self.max_queue} waiting); retry shortly")
            self.waiting.append(req)
            self._cv.notify()
        return req

    def stats(self) -> dict:
        """Live numbers for /metrics: active, queued, prefix-cache hits and reused tokens, …"""
        with self._cv:
            return {"active": len(self.active), "queued": len(self.waiting), "cached_sequences": len(self.cache),
                    **self.counters}

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)
        self.runtime.close()

    # --- the engine thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self.waiting and not self.active:
                    self._cv.wait()
                if self._closed:
                    for r in self.waiting + self.active:
                        r.events.put(LLMKitError("the engine shut down"))
                    return
                self._admit()
            try:
                self.step()
            except Exception as e:  # never leave callers waiting forever
                for r in self.active:
                    r.events.put(e)
                    self._release(r, keep=False)
                self.active.clear()

    def _admit(self) -> None:
        """Move waiting requests into free sequences (called with the lock held)."""
        budget = self.runtime.n_ctx - sum(len(r.prompt) + r.max_tokens for r in self.active)
        while self.waiting and len(self.active) < self.max_concurrency:
            r = self.waiting[0]
            if r.cancelled:
                self.waiting.pop(0)
                continue
            need = len(r.prompt) + r.max_tokens + (self.n_draft if r.speculate else 0)
            if need > budget and self.active:
                break  # wait until running requests leave room in the KV cache
            self.waiting.pop(0)
            budget -= need
            self._start(r)

    def _start(self, r: Request) -> None:
        rt = self.runtime
        r.seq = self.free_seqs.pop() if self.free_seqs else self.cache.pop_oldest()
        rt.seq_rm(r.seq)
        # Longest shared prefix among cached sequences and running ones (their filled cells).
        src, n = self.cache.best(r.prompt)
        for other in self.active:
            m = common_prefix(r.prompt, (other.prompt + other.out)[:other.n_past])
            if m > n:
                src, n = other.seq, m
        n = min(n, len(r.prompt) - 1)  # the last prompt token is always evaluated: its logits pick token 1
        if n >= MIN_REUSE:
            rt.seq_cp(src, r.seq, 0, n)
            r.reused = n
            self.counters["prefix_cache_hits"] += 1
            self.counters["prefix_cache_tokens"] += n
        else:
            n = 0
        r.n_past, r.todo = n, r.prompt[n:]
        r.sampler = sampling.build(rt.C, rt.n_vocab, r.sampling)
        r.stops = StopChecker(r.sampling.stop)
        r.k = min(4, self.n_draft)
        r.index = NgramIndex(r.prompt) if r.speculate and self.speculative == "ngram" else None
        if r.speculate and self.draft is not None:
            r.d_seq, r.d_past = self.draft_free.pop(), 0
        self.counters["requests"] += 1
        self.counters["tokens_in"] += len(r.prompt)
        self.active.append(r)

    def step(self) -> None:
        """One llama_decode over every active sequence (see the module docstring)."""
        rt = self.runtime
        for r in [r for r in self.active if r.cancelled]:
            self._finish(r, None)
        if not self.active:
            return
        if self.draft is not None:
            self._draft_round()
        toks, pos, seqs, want, plan = [], [], [], [], []
        room = rt.n_batch
        for r in self.active:                       # 1. decoding sequences first: one token (+ drafts)
            if r.prefilling:
                continue
            todo = r.todo[: room]
            plan.append((r, len(toks), len(todo)))
            for j, t in enumerate(todo):
                toks.append(t), pos.append(r.n_past + j), seqs.append(r.seq), want.append(True)
            room -= len(todo)
        for r in self.active:                       # 2. prompts, chunked into what is left
            if not r.prefilling or room <= 0:
                continue
            chunk = r.todo[: room]
            last = len(chunk) == len(r.todo)
            plan.append((r, len(toks), len(chunk)))
            for j, t in enumerate(chunk):
                toks.append(t), pos.append(r.n_past + j), seqs.append(r.seq), want.append(last and j == len(chunk) - 1)
            room -= len(chunk)
        status = rt.decode(toks, pos, seqs, want)
        if status == 1:                              # no KV slot: free cached cells and try again next step
            victim = self.cache.pop_oldest()
            if victim is not None:
                rt.seq_rm(victim)
                self.free_seqs.append(victim)
                return
            newest = self.active[-1]
            newest.events.put(ContextLengthError("the KV cache is full: too many long requests at once; retry"))
            self._release(newest, keep=False)
            self.active.remove(newest)
            return
        if status != 0:
            raise LLMKitError(f"llama_decode failed with status {status}")
        self.counters["steps"] += 1
        self._mask(plan, want)
        for r, start, n in plan:
            if r.prefilling and not want[start + n - 1]:
                r.n_past += n                        # a prompt chunk that does not finish the prompt
                r.todo = r.todo[n:]
                continue
            was_prefill, r.prefilling = r.prefilling, False
            if r.speculate and not was_prefill and n > 1:
                self._verify(r, start, n)
            else:
                r.n_past += n
                t = rt.C.llama_sampler_sample(r.sampler, rt.ctx, start + n - 1)
                lp = self._logprob(start + n - 1, t, r.top_logprobs, r.raw) if r.top_logprobs is not None else None
                if r.matcher is not None and not self._advance(r, t):
                    continue
                if self._emit(r, t, lp):
                    if r.matcher is not None and r.matcher.is_stopped():
                        self._finish(r, "stop")   # the grammar is complete: no step spent on an EOS
                        continue
                    r.todo = [t] + self._draft(r)
        for r in [r for r in self.active if r.finished]:
            self.active.remove(r)

    def _mask(self, plan: list, want: list[bool]) -> None:
        """Constrained sequences about to sample: their masks, computed together, applied to the logits."""
        rows = [(r, start + n - 1) for r, start, n in plan if r.matcher is not None and want[start + n - 1]]
        if not rows:
            return
        from ..structured import masks

        tok = masks.llamacpp_tokenizer(self.runtime)
        bits = masks.new_masks(len(rows), tok.vocab_size)
        masks.fill_masks([(r.matcher, k) for k, (r, _) in enumerate(rows)], bits)
        for k, (r, i) in enumerate(rows):
            if r.top_logprobs is not None:  # logprobs are the model's own, as without a constraint
                r.raw = self.runtime.logits(i).copy()
            masks.apply_mask(self.runtime.logits(i), bits[k])

    def _advance(self, r: Request, t: int) -> bool:
        """Move a request's grammar past the sampled token; False (and an error to the caller) if it cannot."""
        if self.runtime.is_eog(t) or r.matcher.consume_token(t):
            return True
        from ..core.errors import StructuredOutputError

        text = self.runtime.piece(t).decode("utf-8", "replace")
        r.events.put(StructuredOutputError(f"the grammar rejected token {t} ({text!r}): {r.matcher.get_error()}"))
        self._release(r, keep=False)
        r.finished = True
        return False

    def _verify(self, r: Request, start: int, n: int) -> None:
        """Keep the drafted tokens the model agrees with (greedy): identical output, fewer steps."""
        rt, drafts = self.runtime, r.todo[1:n]
        self.counters["drafted"] += len(drafts)
        for j in range(n):
            t = int(np.argmax(rt.logits(start + j)))
            if not self._emit(r, t, None):
                return                                   # finished: its cells are released anyway
            if j < len(drafts) and t == drafts[j]:
                self.counters["accepted"] += 1
                continue
            if j < len(drafts):   # adapt: after a miss, draft only as far as was kept (+1)...
                r.k = max(1, j + 1)
            elif len(drafts) == r.k:  # ...after a full-length draft fully kept, twice as far
                r.k = min(self.n_draft, 2 * r.k)
            r.n_past += j + 1                            # cells of the last token and the accepted drafts
            rt.seq_rm(r.seq, r.n_past, -1)               # forget the rejected drafts
            if self.draft is not None and r.d_past > r.n_past:
                self.draft.seq_rm(r.d_seq, r.n_past, -1)
                r.d_past = r.n_past
            r.todo = [t] + self._draft(r)
            return

    def _draft(self, r: Request) -> list[int]:
        if not r.speculate or r.index is None:  # the draft model drafts at the start of the next step
            return []
        room = min(r.k, r.max_tokens - len(r.out) - 1)
        return r.index.draft(room) if room > 0 else []

    def _draft_round(self) -> None:
        """Draft-model speculation: the draft model catches up with each speculating request's
        accepted tokens, then proposes ``n_draft`` greedy tokens, all requests batched together."""
        d = self.draft
        reqs = [r for r in self.active if r.speculate and not r.prefilling and not r.cancelled]
        if not reqs:
            return
        todo = {r: (r.prompt + r.out)[r.d_past:r.n_past] + r.todo[:1] for r in reqs}
        drafts = {r: [] for r in reqs}
        for _ in range(self.n_draft):
            live = [r for r in reqs if len(drafts[r]) < min(r.k, r.max_tokens - len(r.out) - 1)]
            if not live:
                break
            pending = {r: todo[r] for r in live}   # catch-up tokens may exceed one batch: chunk them
            while pending:
                toks, pos, seqs, want, ends = [], [], [], [], {}
                for r, rest in pending.items():
                    chunk = rest[: d.n_batch - len(toks)]
                    if not chunk:
                        continue
                    for j, t in enumerate(chunk):
                        toks.append(t), pos.append(r.d_past + j), seqs.append(r.d_seq)
                        want.append(j == len(rest) - 1)
                    ends[r] = (len(toks) - 1, len(chunk))
                if d.decode(toks, pos, seqs, want) != 0:
                    return                         # no room: this step goes without drafts
                for r, (last, n) in ends.items():
                    r.d_past += n
                    pending[r] = pending[r][n:]
                    if not pending[r]:             # caught up: its logits give the next draft token
                        t = int(np.argmax(d.logits(last)))
                        drafts[r].append(t)
                        todo[r] = [t]
                        del pending[r]
        for r in reqs:
            r.todo = r.todo[:1] + drafts[r]

    def _emit(self, r: Request, t: int, lp: TokenLogprob | None) -> bool:
        """Deliver one sampled token; False once the request has finished."""
        rt = self.runtime
        if r.t_first is None:
            r.t_first = time.perf_counter()
        if rt.is_eog(t):
            self._finish(r, "stop")
            return False
        r.out.append(t)
        self.counters["tokens_out"] += 1
        if r.index is not None:
            r.index.append(t)
        data = r.pending + rt.piece(t)
        cut = _utf8_boundary(data)
        r.pending = data[cut:]
        text, stopped = r.stops.feed(data[:cut].decode("utf-8"))
        if text or lp is not None:
            r.events.put(Chunk(text=text, logprobs=[lp] if lp is not None else None))
        if stopped:
            self._finish(r, "stop")
            return False
        if len(r.out) >= r.max_tokens:
            self._finish(r, "length")
            return False
        return True

    def _finish(self, r: Request, reason: str | None) -> None:
        if r.finished:
            return
        r.finished = True
        if reason is not None:  # None: cancelled, nobody is listening
            tail = r.stops.feed(r.pending.decode("utf-8", "replace"))[0] + r.stops.flush() if r.pending else r.stops.flush()
            r.events.put(Chunk(text=tail, finish_reason=reason,
                               usage=Usage(input_tokens=len(r.prompt), output_tokens=len(r.out))))
        else:
            self.active.remove(r)
        self._release(r, keep=True)

    def _release(self, r: Request, keep: bool) -> None:
        """Free the sampler; keep the cells in the prefix cache (or drop them)."""
        if r.sampler is not None:
            self.runtime.C.llama_sampler_free(r.sampler)
            r.sampler = None
        if r.d_seq >= 0:
            self.draft.seq_rm(r.d_seq)
            self.draft_free.append(r.d_seq)
            r.d_seq = -1
        if r.seq < 0:
            return
        if keep and self.cache.capacity and r.n_past >= MIN_REUSE:
            for seq in self.cache.add(r.seq, (r.prompt + r.out)[:r.n_past]):
                self.runtime.seq_rm(seq)
                self.free_seqs.append(seq)
        else:
            self.runtime.seq_rm(r.seq)
            self.free_seqs.append(r.seq)
        r.seq = -1

    def _logprob(self, i: int, t: int, top: int, raw: np.ndarray | None = None) -> TokenLogprob:
        """log_softmax of the raw logits (before penalties, temperature and any grammar mask), as
        OpenAI reports them; ``raw``: a constrained request's logits saved before its mask."""
        rt = self.runtime
        x = (rt.logits(i) if raw is None else raw).astype(np.float64)
        x -= x.max()
        x -= np.log(np.exp(x).sum())
        alts = np.argpartition(-x, top)[:top] if top else []
        alts = sorted(alts, key=lambda j: -x[j])
        text = lambda j: rt.piece(int(j)).decode("utf-8", "replace")  # noqa: E731
        return TokenLogprob(token=text(t), logprob=float(x[t]), top=[(text(j), float(x[j])) for j in alts])


def _utf8_boundary(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that ends on a UTF-8 character boundary."""
    for back in range(0, min(4, len(data)) + 1):
        cut = len(data) - back
        try:
            data[:cut].decode("utf-8")
            return cut
        except UnicodeDecodeError:
            continue
    return 0


def _draft_runtime(path: Path, target: Runtime, **kw) -> Runtime:
    """Load a draft model and check that it speaks the target's tokenizer."""
    if not path.is_file():
        raise ConfigError(f"draft model {str(path)!r} does not exist; pass a GGUF path")
    d = Runtime(path, **kw)
    probe = "Hello, world! 123 <|im_start|>user\nÉté"
    if d.n_vocab != target.n_vocab or d.tokenize(probe) != target.tokenize(probe):
        d.close()
        raise ConfigError(f"draft model {path.name} does not share the target model's tokenizer")
    return d
