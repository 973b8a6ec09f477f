"""A fast, deterministic stand-in for a sentence embedder in RAG unit tests: a bag of words hashed
into 64 buckets, unit length, so texts that share words are close. ``calls`` counts embed calls."""
from __future__ import annotations

import hashlib
import math
import re

WORDS = re.compile(r"[^\W_]+")


class HashEmbedder:
    name = "hash-bow-64"
    dimensions = 64

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = []
        for t in texts:
            v = [0.0] * self.dimensions
            for w in WORDS.findall(t.lower()):
                v[int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dimensions] += 1.0
            n = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / n for x in v])
        return out
