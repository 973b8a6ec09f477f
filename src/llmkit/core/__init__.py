"""Types shared by everything in llmkit. Imports nothing else of llmkit."""
from .errors import (AuthenticationError, ConfigError, ConstraintError, StructuredOutputError, ContextLengthError, LLMKitError, OverloadedError, ProviderError,
                     RateLimitError, UnsupportedParameterError)
from .sampling import Sampling, make_sampling
from .settings import home
from .types import (Chunk, Completion, Message, ModelInfo, TokenLogprob, Tool, ToolCall, Usage, as_messages,
                    assistant, system, tool, user)

__all__ = [
    "Message", "ToolCall", "Tool", "Sampling", "Completion", "Chunk", "Usage", "TokenLogprob", "ModelInfo",
    "system", "user", "assistant", "tool", "as_messages", "make_sampling", "home",
    "LLMKitError", "ConfigError", "ProviderError", "AuthenticationError", "RateLimitError",
    "ContextLengthError", "OverloadedError", "UnsupportedParameterError", "ConstraintError", "StructuredOutputError",
]
