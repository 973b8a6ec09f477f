"""HTTP plumbing shared by the remote backends: timeouts, retries, SSE, error mapping.

Retries: 408, 409, 429, 5xx and connection failures are retried with exponential backoff
and full jitter, waiting exactly what ``Retry-After`` (or ``retry-after-ms``) asks when the
provider sends it. After the last try the failure becomes a :class:`ProviderError` (or its
subclasses) carrying the status and the provider's own message — never the API key.
"""
from __future__ import annotations

import email.utils
import json
import os
import random
import time
from typing import Any, Iterator

from pydantic import Field, SecretStr

from ..core.errors import AuthenticationError, ConfigError, ContextLengthError, ProviderError, RateLimitError
from .base import Options

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
CONTEXT_HINTS = ("context length", "context_length", "maximum context", "too many tokens", "prompt is too long",
                 "context window", "input is too long")


class RemoteOptions(Options):
    """Options every remote backend accepts (``lk.model("openai:gpt-4o-mini", timeout=30)``)."""

    base_url: str | None = Field(None, description="endpoint; OpenAI-compatible ones end in /v1, others are the host root")
    api_key: SecretStr | None = Field(None, description="overrides the provider's environment variable")
    timeout: float = Field(120.0, gt=0, description="seconds to wait for a response (read timeout)")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to wait for the TCP/TLS connection")
    max_retries: int = Field(3, ge=0, le=20, description="retries on 408/409/429/5xx and connection errors")
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds, doubled each retry, with jitter")
    max_backoff: float = Field(30.0, ge=0, description="cap on one retry delay, Retry-After included")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers sent with every request")


def resolve_key(options: RemoteOptions, env_vars: tuple[str, ...], provider: str, required: bool = True) -> str | None:
    """The API key from the options or the first set environment variable; a clear error if none."""
    if options.api_key is not None:
        return options.api_key.get_secret_value()
    for var in env_vars:
        if os.environ.get(var):
            return os.environ[var]
    if required:
        raise ConfigError(f"{provider} needs an API key: set {' or '.join(env_vars)} (or pass api_key=...)")
    return None


class HTTP:
    """A small JSON-over-HTTP client with retries. One per model instance."""

    def __init__(self, provider: str, base_url: str, headers: dict[str, str], options: RemoteOptions):
        import httpx

        self.provider, self.options = provider, options
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(
            headers={"content-type": "application/json", **headers, **options.headers},
            timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def post(self, path: str, body: dict[str, Any], params: dict[str, str] | None = None) -> dict[str, Any]:
        """POST JSON, return the decoded JSON body (after retries)."""
        r = self._send("POST", path, body, params, stream=False)
        return self._json(r)

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._json(self._send("GET", path, None, params, stream=False))

    def stream(self, path: str, body: dict[str, Any], params: dict[str, str] | None = None) -> Iterator[tuple[str | None, str]]:
        """POST JSON and yield server-sent events as ``(event, data)``; retries happen only
        before the first byte, so no event is ever delivered twice."""
        r = self._send("POST", path, body, params, stream=True)
        try:
            yield from sse_events(r.iter_lines())
        except Exception as e:  # a connection dropped mid-stream
            import httpx

            if isinstance(e, httpx.HTTPError):
                raise ProviderError(f"stream interrupted: {type(e).__name__}: {e}", provider=self.provider) from None
            raise
        finally:
            r.close()

    def _send(self, method: str, path: str, body: Any, params: dict | None, stream: bool):
        import httpx

        attempts = self.options.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                req = self.client.build_request(method, self.url(path), json=body, params=params)
                r = self.client.send(req, stream=stream)
            except (httpx.TransportError,) as e:  # connect/read timeouts, refused, reset
                if last:
                    raise ProviderError(f"cannot reach {self.base_url}: {type(e).__name__}: {e}",
                                        provider=self.provider) from None
                time.sleep(self._delay(attempt, None))
                continue
            if r.status_code < 400:
                return r
            if stream:
                r.read()
                r.close()
            if r.status_code in RETRY_STATUS and not last:
                time.sleep(self._delay(attempt, r.headers))
                continue
            raise self._error(r)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, headers: Any) -> float:
        hint = retry_after(headers) if headers is not None else None
        if hint is not None:
            return min(hint, self.options.max_backoff)
        ceiling = min(self.options.max_backoff, self.options.backoff * 2 ** attempt)
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads clients that failed together

    def _json(self, r) -> dict[str, Any]:
        try:
            data = r.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise ProviderError(f"malformed response body (not JSON): {r.text[:200]!r}", provider=self.provider,
                                status=r.status_code, body=r.text[:2000]) from None
        if not isinstance(data, dict):
            raise ProviderError(f"malformed response body (expected a JSON object): {r.text[:200]!r}",
                                provider=self.provider, status=r.status_code, body=r.text[:2000])
        return data

    def _error(self, r) -> Exception:
        text = r.text
        message = error_message(text) or r.reason_phrase or "error"
        kw = dict(provider=self.provider, status=r.status_code, body=text[:2000])
        if r.status_code in (401, 403):
            return AuthenticationError(message, **kw)
        if r.status_code == 429:
            return RateLimitError(message, retry_after=retry_after(r.headers), **kw)
        if r.status_code in (400, 413) and any(h in message.lower() for h in CONTEXT_HINTS):
            return ContextLengthError(f"{self.provider}: {message}")
        return ProviderError(message, **kw)

    def close(self) -> None:
        self.client.close()


def error_message(text: str) -> str:
    """The provider's own message from an error body (OpenAI, Anthropic, Gemini, Cohere shapes)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text.strip()[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return data["message"]
        if isinstance(data.get("detail"), str):
            return data["detail"]
    return text.strip()[:500]


def retry_after(headers: Any) -> float | None:
    """Seconds asked by ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """Parse a text/event-stream into ``(event, data)`` pairs (multi-line data joined by \\n)."""
    event, data = None, []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith(":"):
            continue  # comment / keep-alive
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def malformed(provider: str, message: str, data: Any) -> ProviderError:
    """A ProviderError for a well-formed HTTP answer whose content is not what the API documents."""
    return ProviderError(message, provider=provider, body=json.dumps(data, default=str)[:2000])


def loads(data: str, provider: str) -> Any:
    """Decode one streamed JSON payload, or say clearly that the provider sent garbage."""
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise ProviderError(f"malformed stream event (not JSON): {data[:200]!r}", provider=provider) from None
