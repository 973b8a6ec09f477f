"""Backends behind one ``Model`` API; ``model(spec)`` picks one. Backends import their
heavy libraries (llama_cpp, torch, transformers) only when instantiated."""
from .base import Model, Options
from .registry import embedded_gguf, model, providers, status

__all__ = ["Model", "Options", "model", "providers", "status", "embedded_gguf"]
