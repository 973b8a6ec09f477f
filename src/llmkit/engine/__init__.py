"""The serving engine: continuous batching, prefix caching and speculative decoding over
llama.cpp's low-level API. ``lk.model()`` and ``llmkit serve`` both run on it."""
from .scheduler import Engine, Request

__all__ = ["Engine", "Request"]
