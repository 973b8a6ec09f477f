"""llmkit: a local-first LLM engineering toolkit.

    >>> import llmkit as lk
    >>> m = lk.model()                      # embedded SmolLM2-135M-Instruct, offline
    >>> m.chat([lk.user("Capital of France?")], temperature=0).text
"""
from .core import (AuthenticationError, Chunk, Completion, ConfigError, ConstraintError, StructuredOutputError, ContextLengthError, LLMKitError, OverloadedError, Message,
                   ModelInfo, ProviderError, RateLimitError, Sampling, TokenLogprob, Tool, ToolCall,
                   UnsupportedParameterError, Usage, assistant, system, user)
from .agents import Agent
from .agents.tools import tool  # @lk.tool makes a tool; lk.tool(content, tool_call_id) is still a tool message
from .models import Model, model

__version__ = "0.1.0"

__all__ = [
    "model", "Model", "Agent", "tool", "Message", "ToolCall", "Tool", "Sampling", "Completion", "Chunk", "Usage", "TokenLogprob",
    "ModelInfo", "system", "user", "assistant", "tool",
    "LLMKitError", "ConfigError", "ProviderError", "AuthenticationError", "RateLimitError",
    "ContextLengthError", "OverloadedError", "UnsupportedParameterError", "ConstraintError", "StructuredOutputError",
]


def __getattr__(name: str):
    """``lk.rag``, ``lk.evals``, ``lk.structured`` … load on first use, keeping ``import llmkit`` light."""
    import importlib

    if name in ("rag", "evals", "structured", "serve", "engine", "prompts", "programs", "train"):
        return importlib.import_module(f".{name}", __name__)
    if name == "prompt":  # lk.prompt("name"): a prompt from the library folder
        from .prompts import prompt

        return prompt
    raise AttributeError(f"module 'llmkit' has no attribute {name!r}")
