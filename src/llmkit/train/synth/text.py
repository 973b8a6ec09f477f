"""Text measures the generators and filters share: ROUGE's words, stop words, ROUGE-L, word
shingles and Jaccard similarity.

Example:
    >>> from llmkit.train.synth import rouge_l, jaccard, shingles
    >>> rouge_l("the cat sat on the mat", "the cat lay on the mat")
    0.8333333333333334
    >>> jaccard(shingles("a b c"), shingles("a b d"))
    0.3333333333333333
"""
from __future__ import annotations

import re
from collections.abc import Iterable

STOP_WORDS = frozenset(["a", "about", "above", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "s", "t"])
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lower-case words (letters and digits; punctuation splits), as ROUGE's tokenizer makes them."""
    return _WORD.findall(text.lower())


def _content(ws: Iterable[str]) -> list[str]:
    return [w for w in ws if w not in STOP_WORDS]


def rouge_l(a: str | list[str], b: str | list[str]) -> float:
    """ROUGE-L F1 of two texts: their longest common word subsequence over each one's length,
    combined by the harmonic mean (symmetric; 0 when either is empty).

    Example:
        >>> rouge_l("the cat sat on the mat", "the cat lay on the mat")   # LCS 5 of 6 and 6
        0.8333333333333334
    """
    x, y = (words(t) if isinstance(t, str) else t for t in (a, b))
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for xi in x:
        cur = [0]
        for j, yj in enumerate(y):
            cur.append(prev[j] + 1 if xi == yj else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    return 0.0 if lcs == 0 else 2 * lcs / (len(x) + len(y))  # = 2PR / (P + R) with P = lcs/|x|, R = lcs/|y|


def shingles(text: str, k: int = 2) -> set[str]:
    """The set of ``k``-word shingles of ``text`` (a text shorter than ``k`` words is one shingle)."""
    ws = words(text)
    if len(ws) <= k:
        return {" ".join(ws)} if ws else set()
    return {" ".join(ws[i:i + k]) for i in range(len(ws) - k + 1)}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1.0)."""
    return len(a & b) / len(a | b) if a or b else 1.0
