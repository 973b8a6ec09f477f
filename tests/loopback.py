"""A real HTTP server on 127.0.0.1 for testing remote backends against a provider's wire format.

A test gives it a handler ``handler(req) -> Reply``; the server records every request so
the test can assert on what the backend sent (path, headers, JSON body).

Example:
    def handler(req):
        assert req.headers["authorization"] == "Bearer sk-test"
        return Reply(200, {"choices": [...]})
    with Loopback(handler) as srv:
        m = lk.model("openai:gpt-x", base_url=srv.url + "/v1", api_key="sk-test")
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str                      # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]        # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None                               # dict/list → JSON; str/bytes sent as-is
    headers: dict[str, str] = field(default_factory=dict)
    events: Iterable[str] | None = None            # raw SSE text pieces, sent as a stream


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event, as a provider would write it."""
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


class Loopback:
    def __init__(self, handler: Callable[[Request], Reply]):
        self.handler = handler
        self.requests: list[Request] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _do(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path, parse_qs(parts.query),
                              {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(n))
                outer.requests.append(req)
                try:
                    reply = outer.handler(req)
                except AssertionError as e:  # a wire-format check failed: make the test see it
                    reply = Reply(418, {"error": {"message": f"loopback assertion: {e}"}})
                if reply.events is not None:
                    self.send_response(reply.status)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    for piece in reply.events:
                        self.wfile.write(piece.encode())
                        self.wfile.flush()
                    self.close_connection = True
                    return
                body = reply.body
                if isinstance(body, (dict, list)):
                    data, ctype = json.dumps(body).encode(), "application/json"
                else:
                    data = body.encode() if isinstance(body, str) else (body or b"")
                    ctype = "text/plain"
                self.send_response(reply.status)
                self.send_header("content-type", reply.headers.pop("content-type", ctype))
                self.send_header("content-length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _do

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "Loopback":
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
