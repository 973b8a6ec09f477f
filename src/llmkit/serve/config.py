"""``ServeConfig``: everything ``llmkit serve`` can be told. The command's flags are generated
from it (``llmkit serve --help``), so this is the one list of server options.

Example:
    >>> from llmkit.serve import ServeConfig
    >>> ServeConfig(port=9000, max_concurrency=4, cors_origins=["http://localhost:3000"])
"""
from __future__ import annotations

import os

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def _key_from_env() -> SecretStr | None:
    key = os.environ.get("LLMKIT_API_KEY")
    return SecretStr(key) if key else None


class ServeConfig(BaseModel):
    """How the server listens, whom it lets in, and how much work it takes on at once."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 = every interface)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    model: str = Field("", description="model spec to serve, e.g. 'hf:smollm2' or 'vllm:Qwen/Qwen2.5-7B-Instruct' "
                                       "(a remote spec makes this server a gateway); empty = the embedded model",
                       json_schema_extra={"short": "-m"})
    model_name: str = Field("", description="name clients send as 'model' and see in /v1/models "
                                            "(empty = the model's own name); the spec is accepted too")
    api_key: SecretStr | None = Field(default_factory=_key_from_env,
                                      description="require this key as 'Authorization: Bearer KEY' or 'x-api-key: KEY' "
                                                  "(default: $LLMKIT_API_KEY; none = open)")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API, "
                                                                      "e.g. http://localhost:3000 or * (default: none)")
    ui: bool = Field(True, description="serve the web UI (a Gradio playground) at / beside the API; needs "
                                       "pip install 'llmkit[ui]' (without gradio the API is served alone)")
    max_request_bytes: int = Field(1 << 20, ge=1, description="largest request body accepted; larger ones get 413")
    max_concurrency: int = Field(16, ge=1, description="requests generating at once")
    max_queue: int = Field(64, ge=0, description="requests waiting for a free slot; beyond that, 429 with Retry-After")
    retry_after: int = Field(1, ge=0, description="seconds a client is told to wait (Retry-After) when the server is full")
    shutdown_timeout: float = Field(30.0, ge=0, description="on shutdown, seconds to let in-flight requests finish")
    # The engine's own knobs: they apply when the served model is local (llama.cpp).
    ctx_size: int = Field(16384, ge=256, description="local models: KV cells shared by all requests (a shared prefix is stored once)")
    threads: int | None = Field(None, ge=1, description="local models: CPU threads (default: all cores)")
    speculative: Literal["off", "ngram", "draft"] = Field("off", description="local models: speculative decoding for greedy "
                                                          "requests: 'ngram' drafts from the prompt, 'draft' uses --draft-model")
    draft_model: str | None = Field(None, description="local models: GGUF of a small draft model sharing the tokenizer")

    def engine_options(self) -> dict:
        """Options for ``lk.model`` when the spec is a local (llama.cpp) model."""
        return dict(n_ctx=self.ctx_size, n_threads=self.threads, max_concurrency=self.max_concurrency,
                    max_queue=self.max_queue, speculative=self.speculative, draft_model=self.draft_model)

    def served_name(self, model) -> str:
        """The name clients use for ``model``: ``model_name`` if set, else the model's own."""
        return self.model_name or model.name
