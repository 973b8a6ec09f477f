"""A real uvicorn server on 127.0.0.1 for the server tests, and scripted upstreams for gateway mode.

``Live(app, config)`` runs the server in a background thread on a free port, built by the same
``llmkit.serve.app.server`` that ``llmkit serve`` uses (graceful-shutdown settings included).
Clients are the official ``openai`` and ``anthropic`` SDKs.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest

import llmkit as lk
from llmkit.serve import ServeConfig, create_app
from llmkit.serve.app import server


class Live:
    """A running server: ``url``, SDK clients, and the parsed ``/metrics``."""

    def __init__(self, served: lk.Model, key: str | None = None, embedder: Any = None, **config: Any):
        config.setdefault("ui", False)  # the web UI has its own tests (tests/ui); building it costs every server time
        self.config = ServeConfig(api_key=key, **config)
        self.app = create_app(served, self.config, embedder=embedder)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # our own socket: no race for a "free" port
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = server(self.app, self.config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "Live":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def openai(self, key: str = "unused", **kw: Any):
        from openai import OpenAI

        return OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120, **kw)

    def anthropic(self, key: str = "unused", **kw: Any):
        from anthropic import Anthropic

        return Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=120, **kw)

    def metrics(self, key: str | None = None) -> dict[tuple[str, tuple], float]:
        """Every sample of ``/metrics`` as ``{(name, sorted label items): value}``, parsed by
        prometheus_client's own parser (so the text must be valid exposition format)."""
        from prometheus_client.parser import text_string_to_metric_families

        headers = {"authorization": f"Bearer {key}"} if key else {}
        text = httpx.get(self.url + "/metrics", headers=headers).raise_for_status().text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def wait_for(self, metric: str, value: float, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.metrics().get((metric, ()))) != value:
            assert time.monotonic() < deadline, f"{metric} stayed {got}, expected {value}"
            time.sleep(0.05)


# --- OpenAI wire format, as a scripted upstream (tests/loopback.py) answers for gateway tests ----------
def completion(content: str | None = "Hi.", finish: str = "stop", tool_calls: list | None = None,
               usage: tuple[int, int] = (11, 3)) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def tool_call(name: str, arguments: str, id: str = "call_1") -> dict:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


def stream_chunks(pieces: list[str], finish: str = "stop", usage: tuple[int, int] = (11, 3),
                  tool_calls: list | None = None) -> list[dict]:
    """The chunk objects of an OpenAI stream: content pieces, tool-call pieces, finish, usage."""
    ch = lambda delta, fin=None: {"id": "chatcmpl-up", "object": "chat.completion.chunk", "model": "gpt-x",
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]}
    out = [ch({"role": "assistant", "content": ""})] + [ch({"content": p}) for p in pieces]
    for i, call in enumerate(tool_calls or []):
        args = call["function"]["arguments"]
        out.append(ch({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"], "arguments": args[:5]}}]}))
        out.append(ch({"tool_calls": [{"index": i, "function": {"arguments": args[5:]}}]}))  # arguments arrive split
    out.append(ch({}, finish))
    out.append({"id": "chatcmpl-up", "choices": [], "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}})
    return out


def gateway(srv, **options: Any) -> lk.Model:
    """A gateway model: llmkit's OpenAI backend pointed at the scripted upstream ``srv``."""
    return lk.model("openai:gpt-x", base_url=srv.url + "/v1", api_key="sk-upstream-key", max_retries=0, **options)


@pytest.fixture(scope="session")
def live(embedded) -> Live:
    """One server on the embedded model for every integration test (default ServeConfig, no key)."""
    with Live(embedded) as server:
        yield server
