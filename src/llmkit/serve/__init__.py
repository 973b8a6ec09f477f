"""``llmkit serve``: one llmkit model behind the OpenAI and Anthropic HTTP APIs.

    config.py         ServeConfig: every server option (the CLI flags are generated from it)
    app.py            create_app(model, config): middleware (tracing, CORS, auth), /health, uvicorn
    runner.py         admission control, model calls in worker threads, streams as SSE
    openai_api.py     /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models
    anthropic_api.py  /v1/messages, /v1/messages/count_tokens
    metrics.py        /metrics (Prometheus)
    errors.py         exceptions → status codes and each API's error shape

FastAPI and uvicorn are imported only by ``create_app`` / ``serve``, so reading the config
(``llmkit serve --help``) stays light.

Example:
    >>> import llmkit as lk
    >>> from llmkit.serve import ServeConfig, create_app, serve
    >>> serve(ServeConfig(model="hf:smollm2", port=9000))        # blocks, like `llmkit serve`
"""
from .config import ServeConfig

__all__ = ["ServeConfig", "create_app", "serve"]


def __getattr__(name: str):
    if name in ("create_app", "serve"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
