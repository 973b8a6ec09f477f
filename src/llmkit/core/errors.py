"""One error hierarchy for all of llmkit.

Every error names the bad value and what would be accepted, so the CLI can print it
on one line and a server can return it as a 4xx JSON body.
"""
from __future__ import annotations


class LLMKitError(Exception):
    """Base of every error llmkit raises on purpose."""


class ConfigError(LLMKitError, ValueError):
    """Bad user input: an unknown provider, a missing key, an out-of-range option."""


class UnsupportedParameterError(ConfigError):
    """A backend was asked for something it cannot honour (never silently ignored)."""

    def __init__(self, param: str, backend: str, hint: str = ""):
        self.param, self.backend = param, backend
        msg = f"{backend} does not support {param!r}"
        super().__init__(f"{msg}: {hint}" if hint else msg)


class ProviderError(LLMKitError):
    """A provider answered with an error, or with a body llmkit cannot read.

    Attributes:
        status: the HTTP status (None for a connection failure or a malformed body).
        provider: the backend name, e.g. ``"anthropic"``.
        message: the provider's own error message.
    """

    def __init__(self, message: str, *, provider: str = "", status: int | None = None, body: str = ""):
        self.message, self.provider, self.status, self.body = message, provider, status, body
        where = f"{provider} " if provider else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{where}error: {code}{message}")


class AuthenticationError(ProviderError):
    """401/403: the key is missing, wrong or lacks permission."""


class RateLimitError(ProviderError):
    """429 after every retry; ``retry_after`` is the provider's last hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ContextLengthError(LLMKitError, ValueError):
    """The prompt (plus the requested output) does not fit the model's context window."""

    def __init__(self, message: str, *, tokens: int | None = None, limit: int | None = None):
        self.tokens, self.limit = tokens, limit
        super().__init__(message)


class OverloadedError(LLMKitError):
    """The engine's admission queue is full; try again after ``retry_after`` seconds
    (a server answers 429 or 503 with ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after: float = 1.0):
        self.retry_after = retry_after
        super().__init__(message)


class ConstraintError(ConfigError):
    """A constraint (JSON Schema, regex, grammar, choices) is invalid or uses a feature the grammar
    engine does not support; raised when it is compiled, before any generation."""


class StructuredOutputError(LLMKitError):
    """A model's output did not validate against the constraint after every retry.

    Attributes:
        text: the last raw output.
        errors: what was wrong with it, one line per problem.
    """

    def __init__(self, message: str, *, text: str = "", errors: list[str] | None = None):
        self.text, self.errors = text, list(errors or [])
        super().__init__(message)


__all__ = [
    "LLMKitError", "ConfigError", "UnsupportedParameterError", "ProviderError",
    "AuthenticationError", "RateLimitError", "ContextLengthError", "OverloadedError", "ConstraintError", "StructuredOutputError",
]
