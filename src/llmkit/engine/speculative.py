"""Prompt-lookup (n-gram) drafting for speculative decoding.

When the output repeats its input — editing, quoting, extracting, code changes — the
tokens after the latest earlier occurrence of the last few tokens are a good guess of
what comes next. The engine evaluates the guess in the same batch as the real token and
keeps the longest prefix the model agrees with (greedy), so the output is unchanged and
several tokens can come out of one forward pass.
"""
from __future__ import annotations


class NgramIndex:
    """Most recent continuation of every n-gram (``n_min..n_max``) in a growing token list.

    Updating costs O(n_max) per token, looking up a draft O(n_max), whatever the length.

    Example:
        >>> ix = NgramIndex([5, 6, 7, 8, 1, 5, 6])
        >>> ix.draft(k=2)        # "5 6" was followed by "7 8"
        [7, 8]
    """

    def __init__(self, tokens: list[int], n_min: int = 2, n_max: int = 4):
        self.tokens: list[int] = []
        self.n_min, self.n_max = n_min, n_max
        self.where: dict[tuple[int, ...], int] = {}  # n-gram → index just past its latest earlier occurrence
        for t in tokens:
            self.append(t)

    def append(self, token: int) -> None:
        toks = self.tokens
        end = len(toks)
        # The n-grams that ended where `token` now lands gain a continuation.
        for n in range(self.n_min, self.n_max + 1):
            if end >= n:
                self.where[tuple(toks[end - n:end])] = end
        toks.append(token)

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the longest matching suffix, or [] if none matches."""
        toks = self.tokens
        for n in range(self.n_max, self.n_min - 1, -1):
            if len(toks) <= n:
                continue
            start = self.where.get(tuple(toks[-n:]))
            if start is not None:
                return toks[start:start + k]
        return []
