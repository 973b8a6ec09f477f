"""Prefix caching: finished sequences stay in the KV cache, bounded, least recently used out.

A new request that shares a prefix with a cached (or still running) sequence gets those
cells through ``llama_memory_seq_cp`` — in a unified KV cache that shares cells rather than
copying them — and only its new suffix is evaluated: a system prompt, a few-shot block or
the earlier turns of a chat are computed once.
"""
from __future__ import annotations

from collections import OrderedDict


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """Sequence ids whose cells are kept for reuse, with the tokens those cells hold."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.entries: OrderedDict[int, list[int]] = OrderedDict()  # seq id → tokens in its cells

    def __len__(self) -> int:
        return len(self.entries)

    def best(self, tokens: list[int]) -> tuple[int, int]:
        """``(seq, n)``: the cached sequence sharing the longest prefix with ``tokens`` (n=0: none)."""
        best_seq, best_n = -1, 0
        for seq, cached in self.entries.items():
            n = common_prefix(tokens, cached)
            if n > best_n:
                best_seq, best_n = seq, n
        if best_n:
            self.entries.move_to_end(best_seq)  # recently useful: evict it last
        return best_seq, best_n

    def add(self, seq: int, tokens: list[int]) -> list[int]:
        """Keep ``seq``'s cells; returns the sequence ids evicted to stay within capacity."""
        evicted = []
        # An entry that is a prefix of the new one adds nothing: drop it.
        for old, cached in list(self.entries.items()):
            if len(cached) <= len(tokens) and tokens[:len(cached)] == cached:
                del self.entries[old]
                evicted.append(old)
        self.entries[seq] = tokens
        while len(self.entries) > self.capacity:
            evicted.append(self.entries.popitem(last=False)[0])
        return evicted

    def pop_oldest(self) -> int | None:
        return self.entries.popitem(last=False)[0] if self.entries else None
