"""Every failure becomes an HTTP status and a JSON body a client SDK understands.

The status comes from the error (bad input 400, unknown model 404, body too large 413, queue
full 429, engine overloaded 503, a provider behind a gateway failing 502); the body's shape
comes from the route: Anthropic's ``{"type": "error", "error": {"type", "message"}}`` under
``/v1/messages``, OpenAI's ``{"error": {"message", "type", "param", "code"}}`` everywhere else.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..core.errors import (AuthenticationError, ConfigError, ContextLengthError, LLMKitError, OverloadedError,
                           ProviderError, RateLimitError, UnsupportedParameterError)
from ..core.sampling import Sampling

log = logging.getLogger("llmkit.serve")

# Anthropic's error types; OpenAI's SDK reads only the status, so both shapes share them.
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
         502: "api_error", 503: "overloaded_error"}


class APIError(Exception):
    """An error with everything its HTTP response needs.

    Args:
        status: the HTTP status.
        message: what went wrong and what would be accepted.
        param: the request field at fault (OpenAI's ``param``), if one is.
        code: a machine-readable code such as ``"model_not_found"``.
        retry_after: seconds for the ``Retry-After`` header (429/503).
    """

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: float | None = None):
        self.status, self.message, self.param, self.code, self.retry_after = status, message, param, code, retry_after
        super().__init__(message)


class QueueFull(APIError):
    """Every generation slot is busy and the waiting line is full."""

    def __init__(self, max_concurrency: int, max_queue: int, retry_after: float):
        super().__init__(429, f"the server is at capacity ({max_concurrency} requests generating, {max_queue} "
                              f"waiting); retry after {retry_after:g} s", code="queue_full", retry_after=retry_after)


def too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than this server accepts ({limit} bytes, --max-request-bytes)",
                    code="request_too_large")


def as_api_error(e: BaseException, retry_after: float = 1) -> APIError:
    """Map any exception to the APIError a client should see (``retry_after``: the default hint)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, RequestValidationError):
        return _validation(e)
    if isinstance(e, HTTPException):
        if e.status_code == 404:
            return APIError(404, "no such route; the API lives under /v1 (see /v1/models)", code="not_found")
        return APIError(e.status_code, str(e.detail))
    if isinstance(e, OverloadedError):
        return APIError(503, str(e), code="overloaded", retry_after=e.retry_after)
    if isinstance(e, ContextLengthError):
        return APIError(400, str(e), param="messages", code="context_length_exceeded")
    if isinstance(e, UnsupportedParameterError):
        return APIError(400, str(e), param=e.param, code="unsupported_parameter")
    if isinstance(e, ConfigError):
        return APIError(400, str(e))
    # A gateway: the provider behind this server failed. Its key is the server's, not the client's.
    if isinstance(e, RateLimitError):
        return APIError(429, str(e), code="upstream_rate_limited", retry_after=e.retry_after or retry_after)
    if isinstance(e, AuthenticationError):
        return APIError(502, f"the upstream provider refused this server's credentials: {e.message}", code="upstream_auth")
    if isinstance(e, ProviderError):
        if e.status in (503, 529):
            return APIError(503, str(e), code="upstream_overloaded", retry_after=retry_after)
        if e.status in (400, 404, 409, 422):  # the request itself was refused: the client can fix it
            return APIError(e.status, str(e), code="upstream_rejected")
        return APIError(502, str(e), code="upstream_error")
    if isinstance(e, LLMKitError):
        return APIError(500, str(e))
    return APIError(500, f"internal server error: {type(e).__name__}")


def sampling(**fields: Any) -> Sampling:
    """A ``Sampling`` from request fields (None = unset); a bad value is a 400 naming the field."""
    try:
        return Sampling(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0])
        raise APIError(400, f"{field}={err.get('input')!r} is invalid: {err['msg']}", param=field,
                       code="invalid_value") from None


def _field_path(loc: tuple) -> list[str]:
    """The request field named by a pydantic error location, without the body marker and the
    union-member tags pydantic adds (``str``, ``list[str]``, ``NamedToolChoice``)."""
    tags = {"str", "int", "float", "bool", "none", "list", "dict"}
    return [str(p) for p in loc if p != "body" and not (isinstance(p, str) and (
        p in tags or "[" in p or "-" in p or p[:1].isupper()))]


def _validation(e: RequestValidationError) -> APIError:
    err = e.errors()[0]
    loc = _field_path(err.get("loc", ()))
    if err.get("type") == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        return APIError(400, f"the request body is not valid JSON ({detail} at character {loc[0] if loc else '?'})",
                        code="invalid_json")
    if not loc:  # the body as a whole: missing, or not an object
        return APIError(400, f"the request body must be a JSON object: {err['msg']}")
    field = ".".join(loc)
    if err.get("type") == "missing":
        return APIError(400, f"{field} is required", param=field, code="missing_field")
    if err.get("type") == "extra_forbidden":
        return APIError(400, f"{field} is not a field this endpoint accepts", param=field, code="unknown_field")
    return APIError(400, f"{field}={err.get('input')!r} is invalid: {err['msg']}", param=field, code="invalid_value")


def anthropic_route(path: str) -> bool:
    return path.startswith("/v1/messages")


def error_response(path: str, err: APIError) -> JSONResponse:
    """``err`` as a JSON response in the shape the route's SDK expects."""
    kind = TYPES.get(err.status, "invalid_request_error" if err.status < 500 else "api_error")
    if anthropic_route(path):
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": err.message}}
    else:
        body = {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}}
    headers = {"retry-after": str(math.ceil(err.retry_after))} if err.retry_after is not None else None
    return JSONResponse(body, status_code=err.status, headers=headers)


def stream_error(path: str, e: BaseException) -> dict[str, Any]:
    """The event payload for an error after a stream's headers went out (only a body is left)."""
    err = as_api_error(e)
    if err.status == 500:
        log.error("stream failed", exc_info=e)
    if anthropic_route(path):
        return {"type": "error", "error": {"type": TYPES.get(err.status, "api_error"), "message": err.message}}
    return {"error": {"message": err.message, "type": TYPES.get(err.status, "api_error"), "param": err.param,
                      "code": err.code}}


def install(app: FastAPI, config: Any) -> None:
    """Route every exception through :func:`as_api_error` (FastAPI's 422 included: it becomes 400).

    A bare ``Exception`` goes to Starlette's last-resort handler, which answers with our body
    and then re-raises so the server logs the traceback."""

    async def handle(request: Request, e: Exception) -> JSONResponse:
        if isinstance(e, HTTPException) and e.status_code == 413:  # a chunked body outgrew the limit while read
            e = too_large(config.max_request_bytes)
        return error_response(request.url.path, as_api_error(e, config.retry_after))

    for kind in (APIError, LLMKitError, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, handle)
