"""A thin layer over llama.cpp's C API (through llama-cpp-python's ctypes bindings).

One model, one context holding up to ``n_seq`` sequences in a unified KV cache, one
reusable batch. Everything above (scheduling, sampling, caching) is plain Python in
the sibling modules; this file is the only one that touches ctypes.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError


_log_callback = None


def quiet_logs(verbose: bool = False) -> None:
    """Route llama.cpp's own log lines: dropped, or to stderr when ``verbose`` (errors always)."""
    global _log_callback
    import sys

    import llama_cpp as C

    def log(level: int, text: bytes, _user) -> None:
        if verbose or level == 4:  # GGML_LOG_LEVEL_ERROR
            print(text.decode("utf-8", "replace"), end="", file=sys.stderr)

    _log_callback = C.llama_log_callback(log)  # kept referenced: C holds the pointer
    C.llama_log_set(_log_callback, ctypes.c_void_p(0))


class Runtime:
    """llama.cpp model + context + batch.

    Args:
        path: a GGUF file.
        n_ctx: KV cells shared by all sequences (unified cache: a shared prefix is stored once).
        n_seq: most sequence ids in flight (active requests plus prefix-cache entries).
        n_batch: most tokens in one ``llama_decode`` call.
        n_threads: CPU threads.
    """

    def __init__(self, path: Path, *, n_ctx: int, n_seq: int, n_batch: int, n_threads: int, verbose: bool = False):
        import llama_cpp as C

        self.C = C
        quiet_logs(verbose)
        C.llama_backend_init()
        mp = C.llama_model_default_params()
        self.model = C.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise ConfigError(f"llama.cpp could not load {str(path)!r}: is it a GGUF model file?")
        cp = C.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_batch, n_batch, n_seq
        cp.n_threads = cp.n_threads_batch = n_threads
        cp.kv_unified = True   # sequences share one cell pool, so seq_cp shares a prefix instead of copying it
        cp.no_perf = True
        self.ctx = C.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise ConfigError(f"llama.cpp could not create a context of {n_ctx} cells for {n_seq} sequences")
        self.vocab = C.llama_model_get_vocab(self.model)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.n_ctx = C.llama_n_ctx(self.ctx)
        self.n_ctx_train = C.llama_model_n_ctx_train(self.model)
        self.n_batch = n_batch
        self.mem = C.llama_get_memory(self.ctx)
        self.batch = C.llama_batch_init(n_batch, 0, 1)

    # --- vocabulary ----------------------------------------------------------------------------
    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``special=True`` parses markers like ``<|im_start|>``."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (self.C.llama_token * cap)()
        n = self.C.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (self.C.llama_token * cap)()
            n = self.C.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character)."""
        buf = ctypes.create_string_buffer(64)  # per call: the engine thread and callers' threads both decode pieces
        n = self.C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.C.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        """End of generation: EOS, EOT, ``<|im_end|>`` and the like."""
        return bool(self.C.llama_vocab_is_eog(self.vocab, token))

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string (e.g. ``tokenizer.chat_template``)."""
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.C.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self.C.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def special(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace") if token >= 0 else ""

    # --- evaluation ----------------------------------------------------------------------------
    def decode(self, tokens: list[int], positions: list[int], seqs: list[int], logits: list[bool]) -> int:
        """Evaluate one batch; returns llama_decode's status (0 ok, 1 no KV slot)."""
        b, n = self.batch, len(tokens)
        for i in range(n):
            b.token[i] = tokens[i]
            b.pos[i] = positions[i]
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seqs[i]
            b.logits[i] = logits[i]
        b.n_tokens = n
        return self.C.llama_decode(self.ctx, b)

    def logits(self, i: int) -> np.ndarray:
        """The logits of the ``i``-th token of the last batch (a view: copy before the next decode)."""
        ptr = self.C.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> None:
        """Forget positions [p0, p1) of a sequence (-1: open end)."""
        self.C.llama_memory_seq_rm(self.mem, seq, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Let ``dst`` share ``src``'s cells for positions [p0, p1) (no copy in a unified cache)."""
        self.C.llama_memory_seq_cp(self.mem, src, dst, p0, p1)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.C.llama_batch_free(self.batch)
            self.C.llama_free(self.ctx)
            self.C.llama_model_free(self.model)
            self.ctx = None
