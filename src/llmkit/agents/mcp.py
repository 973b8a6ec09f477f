"""MCP (Model Context Protocol): any MCP server's tools in an llmkit agent, and llmkit's tools and
knowledge bases served to any MCP client (Claude Desktop, Cursor, IDEs, other agents).

Client — an MCP server's tools become ordinary :class:`FunctionTool` s:

    >>> from llmkit.agents.mcp import MCPClient, mcp_tools
    >>> with mcp_tools("stdio", command=["python", "server.py"]) as tools:      # sync code
    ...     agent = lk.Agent(m, tools=tools)
    >>> client = MCPClient.http("http://127.0.0.1:8000/mcp")                    # or keep one open
    >>> client.call_tool("add", {"a": 2, "b": 3})                               # '5'
    >>> client.close()                                                          # the server process ends
    >>> async with MCPClient.stdio(["python", "server.py"]) as client:          # async code
    ...     tools = await client.atools()

Server — llmkit tools (arguments validated by each tool's pydantic model, results serialised)
and knowledge bases (a ``search_<kb>`` tool each, documents as ``kb://`` resources):

    >>> serve(tools=[add], kbs=[lk.rag.KnowledgeBase("handbook")])                  # stdio
    >>> serve(tools=[add], transport="http", port=8000)                             # http://127.0.0.1:8000/mcp

Why a background thread: the SDK is async (anyio) and an MCP session lives inside one task that
must also end it. The client runs that task on an event loop of its own thread in sync code, or as
a task on the caller's loop in async code, and every call is handed to that loop, so the same
client (and its tools) works from sync code, from ``asyncio`` code and from worker threads.

Needs the optional extra: ``pip install 'llmkit[mcp]'`` (the official ``mcp`` SDK, 2.x).
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import ConfigError, LLMKitError
from .tools import FunctionTool, ToolArgumentError, as_tools, serialize, tool_from_model

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

TRANSPORTS = ("stdio", "http")
log = logging.getLogger(__name__)


class MCPToolError(LLMKitError):
    """An MCP server answered a tool call with an error (``isError``, or a protocol error);
    the message is the server's own."""

    def __init__(self, message: str, *, tool: str = "", code: int | None = None):
        self.tool, self.code = tool, code
        super().__init__(f"MCP tool {tool}: {message}" if tool else message)


def _sdk():
    try:
        import mcp
    except ImportError:
        raise ConfigError("MCP needs the official SDK: pip install 'llmkit[mcp]' (or pip install mcp)") from None
    return mcp


# --- client ------------------------------------------------------------------------------------

class MCPClient:
    """One connection to an MCP server, usable from sync and async code.

    Args:
        server: an ``mcp.StdioServerParameters`` (a command to spawn) or the URL of a streamable-HTTP
            endpoint; :meth:`stdio` and :meth:`http` build them.
        headers: HTTP only: headers sent with every request (e.g. ``Authorization``).
        timeout: seconds to wait for each answer from the server (None: wait forever).
        validate: check arguments against each tool's ``inputSchema`` before sending them, so a
            model's mistake is caught (and explained) without a round trip.

    Example:
        >>> with MCPClient.stdio(["python", "server.py"], env={"TOKEN": "…"}) as c:
        ...     [t.name for t in c.tools()]
    """

    def __init__(self, server: Any, *, headers: dict[str, str] | None = None, timeout: float | None = 60.0,
                 validate: bool = True):
        self.server, self.headers, self.timeout, self.validate = server, headers, timeout, validate
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owner: int | None = None  # the thread running self._loop
        self._thread: threading.Thread | None = None  # only when we made the loop (sync use)
        self._link = _Link()
        self._finalizer: weakref.finalize | None = None
        self._closed = False  # closed on purpose: calls raise instead of starting the server again
        self._lock = threading.Lock()

    @classmethod
    def stdio(cls, command: str | Sequence[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
              **kw: Any) -> MCPClient:
        """A server started as a subprocess speaking MCP on stdin/stdout.

        Args:
            command: the program and its arguments (``["npx", "-y", "@modelcontextprotocol/server-everything"]``),
                or one string split like a shell would.
            env: extra environment variables (the SDK passes only a safe default set, e.g. PATH and HOME).
            cwd: the working directory of the server.
        """
        import shlex

        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ConfigError("MCPClient.stdio needs a command, e.g. ['python', 'server.py']")
        params = _sdk().StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=cwd)
        return cls(params, **kw)

    @classmethod
    def http(cls, url: str, *, headers: dict[str, str] | None = None, **kw: Any) -> MCPClient:
        """A server reachable over streamable HTTP, e.g. ``http://127.0.0.1:8000/mcp``."""
        if not re.match(r"^https?://", url):
            raise ConfigError(f"an MCP HTTP endpoint is an http(s):// URL, got {url!r}")
        return cls(url, headers=headers, **kw)

    @property
    def connected(self) -> bool:
        return self._link.session is not None

    def __repr__(self) -> str:
        s = self.server
        where = s if isinstance(s, str) else " ".join([s.command, *s.args])
        return f"MCPClient({where!r}, connected={self.connected})"

    # -- the task that owns the session (see _hold)

    async def _start(self) -> None:
        self._link = link = _Link(stop=asyncio.Event())
        ready = asyncio.get_running_loop().create_future()
        link.task = asyncio.create_task(_hold(link, self.server, self.headers, self.timeout, ready))
        await ready

    async def _finish(self) -> None:
        await _end(self._link)

    # -- sync use

    def connect(self) -> MCPClient:
        """Start the server (stdio) or open the session (HTTP) on a background loop; idempotent."""
        with self._lock:
            if self._loop is not None:
                return self
            self._closed = False
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="llmkit-mcp", daemon=True)
            thread.start()
            self._loop, self._owner, self._thread = loop, thread.ident, thread
            try:
                asyncio.run_coroutine_threadsafe(self._start(), loop).result()
            except BaseException:
                _shutdown(loop, thread, self._link)
                self._loop = self._owner = self._thread = None
                raise
            # a client dropped without close() still ends its server, at the latest when Python exits;
            # the finalizer holds the loop side only, so it does not keep the client alive
            self._finalizer = weakref.finalize(self, _shutdown, loop, thread, self._link)
        return self

    def close(self) -> None:
        """End the session; a stdio server is asked to exit (and killed if it does not)."""
        with self._lock:
            if self._loop is None:
                return
            if self._thread is None:  # connected from async code: that loop owns it
                if self._on_owner_thread():
                    raise ConfigError("this MCPClient was opened in async code: use `await client.aclose()` there")
                asyncio.run_coroutine_threadsafe(self._finish(), self._loop).result()
            else:
                self._finalizer()
            self._loop = self._owner = self._thread = None
            self._closed = True

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_owner_thread(self) -> bool:
        return self._owner == threading.get_ident()

    def _sync(self, make: Callable[[], Awaitable[Any]]) -> Any:
        if self._loop is None:
            self._check_open()
            self.connect()
        if self._on_owner_thread():
            raise ConfigError("a blocking MCP call inside the event loop that owns the session would deadlock; "
                              "use the async twin (await client.acall_tool(...), await tool.arun(...))")
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    # -- async use

    async def aconnect(self) -> MCPClient:
        """Open the session as a task on the running event loop; idempotent."""
        if self._loop is not None:
            return self
        self._closed = False
        self._loop, self._owner, self._thread = asyncio.get_running_loop(), threading.get_ident(), None
        try:
            await self._start()
        except BaseException:
            self._loop = self._owner = None
            raise
        return self

    async def aclose(self) -> None:
        """End the session (see :meth:`close`)."""
        if self._loop is None:
            return
        if self._thread is not None:
            await asyncio.to_thread(self.close)
            return
        if asyncio.get_running_loop() is self._loop:
            await self._finish()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._finish(), self._loop))
        self._loop = self._owner = None
        self._closed = True

    async def __aenter__(self) -> Self:
        await self.aconnect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _async(self, make: Callable[[], Awaitable[Any]]) -> Any:
        if self._loop is None:
            self._check_open()
            await self.aconnect()
        if asyncio.get_running_loop() is self._loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), self._loop))

    def _check_open(self) -> None:
        if self._closed:
            raise MCPToolError(f"{self!r} is closed; call .connect() (or use a new client) to reconnect")

    @property
    def _mcp(self) -> Any:
        """The SDK client; a clear error once the connection has ended (server exited, or closed)."""
        if self._link.session is None:
            raise MCPToolError(f"the connection to {self!r} has ended; open a new client")
        return self._link.session

    # -- the protocol, async first; each has a sync twin

    async def _list_tools(self) -> list[Any]:
        out, cursor = [], None
        while True:
            page = await self._mcp.list_tools(cursor=cursor)
            out += page.tools
            cursor = page.next_cursor
            if not cursor:
                return out

    async def _call_tool(self, name: str, arguments: dict[str, Any] | None) -> str:
        from mcp import MCPError

        try:
            result = await self._mcp.call_tool(name, arguments or {})
        except MCPError as e:
            raise MCPToolError(e.message, tool=name, code=e.code) from None
        text = _text(result)
        if result.is_error:
            raise MCPToolError(text or "the server reported an error without a message", tool=name)
        return text

    async def _list_resources(self) -> list[Any]:
        out, cursor = [], None
        while True:
            page = await self._mcp.list_resources(cursor=cursor)
            out += page.resources
            cursor = page.next_cursor
            if not cursor:
                return out

    async def _read_resource(self, uri: str) -> str:
        from mcp import MCPError

        try:
            result = await self._mcp.read_resource(uri)
        except MCPError as e:
            raise MCPToolError(f"cannot read {uri}: {e.message}", code=e.code) from None
        return "\n".join(getattr(c, "text", "") for c in result.contents)

    def list_tools(self) -> list[Any]:
        """The server's tool specs (``mcp.types.Tool``: name, description, input_schema…)."""
        return self._sync(self._list_tools)

    async def alist_tools(self) -> list[Any]:
        return await self._async(self._list_tools)

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        """Call a tool by its server-side name; returns its text content, raises :class:`MCPToolError`."""
        return self._sync(lambda: self._call_tool(name, arguments))

    async def acall_tool(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        return await self._async(lambda: self._call_tool(name, arguments))

    def list_resources(self) -> list[Any]:
        """The server's resources (``mcp.types.Resource``: uri, name, title, mime_type…)."""
        return self._sync(self._list_resources)

    async def alist_resources(self) -> list[Any]:
        return await self._async(self._list_resources)

    def read_resource(self, uri: str) -> str:
        """A resource's text (text parts joined)."""
        return self._sync(lambda: self._read_resource(uri))

    async def aread_resource(self, uri: str) -> str:
        return await self._async(lambda: self._read_resource(uri))

    def tools(self, names: Iterable[str] | None = None, *, prefix: str = "") -> list[FunctionTool]:
        """The server's tools as llmkit tools (connects if needed); they call back through this client.

        Args:
            names: keep only these (server-side names); None keeps all.
            prefix: put before each name, to keep two servers' tools apart (``prefix="fs_"``).
        """
        return self._wrap(self.list_tools(), names, prefix)

    async def atools(self, names: Iterable[str] | None = None, *, prefix: str = "") -> list[FunctionTool]:
        return self._wrap(await self.alist_tools(), names, prefix)

    def _wrap(self, specs: list[Any], names: Iterable[str] | None, prefix: str) -> list[FunctionTool]:
        keep = set(names) if names is not None else None
        if keep is not None and (missing := keep - {s.name for s in specs}):
            raise ConfigError(f"the MCP server has no tool {sorted(missing)}; it has: {', '.join(s.name for s in specs)}")
        return [MCPTool.from_spec(self, s, prefix) for s in specs if keep is None or s.name in keep]


@dataclass
class _Link:
    """The event-loop side of a connection. It is kept apart from MCPClient so that nothing on the
    loop refers to the client: a client nobody holds is collected, and its finalizer ends the server."""

    session: Any = None  # the SDK's mcp.Client while connected
    stop: asyncio.Event | None = None
    task: asyncio.Task | None = None


async def _hold(link: _Link, server: Any, headers: dict[str, str] | None, timeout: float | None,
                ready: asyncio.Future) -> None:
    """Open the session, report on ``ready``, keep it open until ``link.stop`` — all in one task,
    as anyio requires of the SDK's task groups."""
    mcp = _sdk()
    from llmkit import __version__

    try:
        async with AsyncExitStack() as stack:
            target = server
            if isinstance(server, str) and headers:
                import httpx2  # the SDK's HTTP client
                from mcp.client.streamable_http import streamable_http_client

                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0)))
                target = streamable_http_client(server, http_client=http)
            client = mcp.Client(target, read_timeout_seconds=timeout,
                                client_info=mcp.types.Implementation(name="llmkit", version=__version__))
            link.session = await stack.enter_async_context(client)
            ready.set_result(None)
            await link.stop.wait()
    except Exception as e:  # noqa: BLE001 — a failed start is raised by whoever waits on `ready`;
        if not ready.done():  # a session that dies later fails its pending and later calls instead
            ready.set_exception(_connect_error(server, e))
    finally:
        link.session = None
        if not ready.done():
            ready.cancel()


async def _end(link: _Link) -> None:
    if link.stop is not None:
        link.stop.set()
    if link.task is not None:
        await asyncio.gather(link.task, return_exceptions=True)  # the subprocess has ended when this returns


def _shutdown(loop: asyncio.AbstractEventLoop, thread: threading.Thread, link: _Link) -> None:
    """End the session on its background loop, then the loop and its thread."""
    if loop.is_closed():
        return
    if thread is threading.current_thread():  # collected on its own loop: cannot wait for it there
        loop.create_task(_end(link)).add_done_callback(lambda _: loop.stop())
        return
    try:
        asyncio.run_coroutine_threadsafe(_end(link), loop).result(timeout=30)
    except Exception as e:  # noqa: BLE001 — shutting down: the process is gone or going either way
        log.debug("MCP session shutdown: %r", e)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    if not thread.is_alive():
        loop.close()


def _connect_error(s: Any, e: BaseException) -> BaseException:
    """The first real cause inside the SDK's exception groups, as an error a person can act on."""
    while getattr(e, "exceptions", None):  # an exception group (a builtin from Python 3.11)
        e = e.exceptions[0]
    if isinstance(e, (LLMKitError, asyncio.CancelledError)):
        return e
    where = s if isinstance(s, str) else " ".join([s.command, *s.args])
    if isinstance(e, FileNotFoundError):
        return ConfigError(f"cannot start MCP server {where!r}: {e.strerror}: {e.filename or s.command}")
    detail = str(e) or type(e).__name__
    hint = " (is it an MCP server? its stderr is above)" if not isinstance(s, str) else ""
    return ConfigError(f"cannot connect to MCP server {where!r}: {detail}{hint}")


def _text(result: Any) -> str:
    """A CallToolResult as text: text blocks joined; structured content as JSON when there is no text."""
    parts = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(block.resource, "text"):
            parts.append(block.resource.text)
        else:  # images, audio, links: the model reads text, so say what was left out
            parts.append(f"[{kind} content: {getattr(block, 'mime_type', None) or getattr(block, 'uri', '')}]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _number(text: str, default: Any) -> Any:
    try:
        return float(text) if re.fullmatch(r"\s*-?\d+(\.\d*)?([eE][-+]?\d+)?\s*", text) else default
    except ValueError:
        return default


_LAX = {  # lossless readings of a string where the schema wants a scalar
    "integer": lambda s, d: int(s) if re.fullmatch(r"\s*-?\d+\s*", s) else d,
    "number": _number,
    "boolean": lambda s, d: {"true": True, "false": False}.get(s.strip().lower(), d),
}


class _Arguments(BaseModel):
    """Any JSON object: an MCP tool's arguments are checked against its JSON Schema instead."""

    model_config = ConfigDict(extra="allow")


@dataclass
class MCPTool(FunctionTool):
    """A tool of an MCP server. ``name`` is what the model sees (made safe for every provider),
    ``server_name`` what the server calls it; calling it calls the server through ``client``."""

    server_name: str = ""
    client: MCPClient | None = field(default=None, repr=False)
    _validator: Any = field(default=None, repr=False)

    @classmethod
    def from_spec(cls, client: MCPClient, spec: Any, prefix: str = "") -> MCPTool:
        schema = dict(spec.input_schema or {})
        schema["type"] = "object"
        schema.setdefault("properties", {})
        name = re.sub(r"[^A-Za-z0-9_\-]", "_", f"{prefix}{spec.name}")[:64]  # OpenAI's rule is the strictest

        def call(**arguments: Any) -> str:
            return client.call_tool(spec.name, arguments)

        validator = None
        if client.validate:
            from jsonschema.exceptions import SchemaError
            from jsonschema.validators import Draft202012Validator, validator_for

            kind = validator_for(schema, default=Draft202012Validator)
            try:
                kind.check_schema(schema)
                validator = kind(schema)
            except SchemaError:
                validator = None  # a server with a broken schema: let the server judge the arguments
        return cls(name=name, description=spec.description or spec.title or spec.name, parameters=schema, fn=call,
                   args_model=_Arguments, server_name=spec.name, client=client, _validator=validator,
                   meta={"mcp": {"annotations": spec.annotations.model_dump(exclude_none=True)
                                 if spec.annotations else None}})

    def validate(self, arguments: dict[str, Any] | str | None) -> BaseModel:
        obj = super().validate(arguments)  # JSON text parsed, "an object" checked
        if self._validator is not None:
            values = obj.model_extra or {}
            for key, value in values.items():  # "3" for an integer: a small model's usual slip, fixed as pydantic would
                kind = self.parameters["properties"].get(key, {}).get("type") if isinstance(value, str) else None
                if kind in _LAX:
                    values[key] = _LAX[kind](value, value)
            errors = sorted(self._validator.iter_errors(values), key=lambda e: list(e.absolute_path))
            if errors:
                problems = "; ".join(f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" if e.absolute_path
                                     else e.message for e in errors)
                raise ToolArgumentError(f"invalid arguments for {self.name}: {problems}")
        return obj

    def _call_args(self, arguments: Any) -> tuple[tuple, dict]:
        return (), dict(self.validate(arguments).model_extra or {})

    async def arun(self, arguments: dict[str, Any] | str | None = None) -> Any:
        """Validate, then await the server (no worker thread)."""
        _, kwargs = self._call_args(arguments or {})
        return await self.client.acall_tool(self.server_name, kwargs)


class _Tools:
    """What :func:`mcp_tools` returns: ``with`` gives the tools (sync), ``async with`` too (async)."""

    def __init__(self, client: MCPClient, names: Iterable[str] | None, prefix: str):
        self.client, self.names, self.prefix = client, names, prefix

    def __enter__(self) -> list[FunctionTool]:
        self.client.connect()
        try:
            return self.client.tools(self.names, prefix=self.prefix)
        except BaseException:
            self.client.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    async def __aenter__(self) -> list[FunctionTool]:
        await self.client.aconnect()
        try:
            return await self.client.atools(self.names, prefix=self.prefix)
        except BaseException:
            await self.client.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()


def mcp_tools(transport: str = "stdio", *, command: str | Sequence[str] | None = None, url: str | None = None,
              env: dict[str, str] | None = None, cwd: str | Path | None = None, headers: dict[str, str] | None = None,
              names: Iterable[str] | None = None, prefix: str = "", timeout: float | None = 60.0,
              validate: bool = True) -> _Tools:
    """An MCP server's tools for the length of a ``with`` (or ``async with``) block.

    Example:
        >>> with mcp_tools("stdio", command=["python", "-m", "llmkit", "mcp", "serve"]) as tools:
        ...     print([t.name for t in tools])
        >>> async with mcp_tools("http", url="http://127.0.0.1:8000/mcp") as tools:
        ...     print(await tools[0].arun({"expression": "2+2"}))
    """
    if transport == "stdio":
        if not command:
            raise ConfigError("mcp_tools('stdio') needs command=[program, args...]")
        client = MCPClient.stdio(command, env=env, cwd=cwd, timeout=timeout, validate=validate)
    elif transport == "http":
        if not url:
            raise ConfigError("mcp_tools('http') needs url='http://host:port/mcp'")
        client = MCPClient.http(url, headers=headers, timeout=timeout, validate=validate)
    else:
        raise ConfigError(f"unknown MCP transport {transport!r}; accepted: {', '.join(TRANSPORTS)}")
    return _Tools(client, names, prefix)


# --- server ------------------------------------------------------------------------------------

class KBSearch(BaseModel):
    """Search a knowledge base by meaning and keywords."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="the question or keywords to look for")
    k: int = Field(5, ge=1, le=50, description="how many passages to return")
    mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="hybrid (meaning and keywords), dense (meaning) or bm25 (keywords)")


def kb_search_tool(kb: Any, *, name: str | None = None) -> FunctionTool:
    """A ``search_<kb>`` tool over a :class:`~llmkit.rag.KnowledgeBase` (hybrid search by default)."""
    stem = _slug(Path(kb.name).stem)

    def search(args: KBSearch) -> list[dict[str, Any]]:
        return [{"text": h.text, "source": h.source, "score": round(h.score, 4), "chunk_id": h.chunk_id}
                for h in kb.search(args.query, k=args.k, mode=args.mode)]

    return tool_from_model(KBSearch, search, name=name or f"search_{stem}"[:64],
                           description=f"Search the knowledge base '{stem}': the passages that best answer a query, "
                                       "best first, each with its source file and score.")


def build_server(tools: Iterable[Any] = (), kbs: Iterable[Any] = (), *, name: str = "llmkit",
                 resources: bool = True, instructions: str | None = None) -> Any:
    """An ``mcp.server.lowlevel.Server`` exposing llmkit tools and knowledge bases.

    The low-level server is used (not FastMCP) so each tool's JSON Schema is sent exactly as llmkit
    built it from the signature or pydantic model, and arguments are validated by that model.

    Args:
        tools: ``FunctionTool`` s, ``Toolkit`` s or plain functions.
        kbs: knowledge bases; each adds a ``search_<name>`` tool.
        resources: also list each knowledge-base document as a resource ``kb://<kb>/<source>``.
        instructions: what the server tells clients about itself.
    """
    mcp = _sdk()
    from mcp import MCPError
    from mcp.server.lowlevel import Server
    from mcp.types import INVALID_PARAMS

    types = mcp.types
    kbs = list(kbs)
    by_name = as_tools([*tools, *(kb_search_tool(kb) for kb in kbs)])
    bases = {_slug(Path(kb.name).stem): kb for kb in kbs}
    listing = [types.Tool(name=t.name, description=t.description, input_schema=t.parameters) for t in by_name.values()]

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=listing)

    async def call_tool(ctx: Any, params: Any) -> Any:
        t = by_name.get(params.name)
        if t is None:
            raise MCPError(code=INVALID_PARAMS, message=f"unknown tool {params.name!r}; available: {', '.join(by_name)}")
        try:
            result = await t.arun(params.arguments or {})
        except ToolArgumentError as e:  # the model's mistake: an error result it can read and correct
            return types.CallToolResult(content=[types.TextContent(text=str(e))], is_error=True)
        except Exception as e:  # noqa: BLE001 — a tool failure is reported to the caller, not a server crash
            return types.CallToolResult(content=[types.TextContent(text=f"{type(e).__name__}: {e}")], is_error=True)
        text = serialize(result)
        structured = json.loads(text) if isinstance(result, (dict, BaseModel)) else None  # a JSON object
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured)

    def documents() -> list[Any]:
        out = []
        for stem, kb in bases.items():
            for source, doc in sorted(kb.store.documents().items()):
                out.append(types.Resource(uri=f"kb://{stem}/{quote(source, safe='')}", name=Path(source).name or source,
                                          title=doc.get("title") or None, mime_type="text/plain",
                                          description=f"a document of the knowledge base '{stem}'"))
        return out

    async def list_resources(ctx: Any, params: Any) -> Any:
        return types.ListResourcesResult(resources=await asyncio.to_thread(documents))

    async def read_resource(ctx: Any, params: Any) -> Any:
        m = re.match(r"^kb://([^/]+)/(.+)$", str(params.uri))
        kb = bases.get(m.group(1)) if m else None
        chunks = await asyncio.to_thread(kb.store.chunks, unquote(m.group(2))) if kb else []
        if not chunks:
            raise MCPError(code=INVALID_PARAMS, message=f"no document {params.uri!r}; resources/list names them")
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=str(params.uri), mime_type="text/plain", text=_stitch(chunks))])

    handlers: dict[str, Any] = {"on_list_tools": list_tools, "on_call_tool": call_tool}
    if resources and bases:
        handlers |= {"on_list_resources": list_resources, "on_read_resource": read_resource}
    from llmkit import __version__

    return Server(name, version=__version__, instructions=instructions, **handlers)


def _stitch(chunks: list[Any]) -> str:
    """A document's text back from its chunks, overlaps removed by their ``start``/``end`` offsets
    (whitespace between chunks, stripped by the splitter, comes back as one space or a blank line)."""
    out: list[str] = []
    prev = end = None
    for c in chunks:
        a, b = c.metadata.get("start"), c.metadata.get("end")
        if a is None or b is None or end is None or a < prev:  # no offsets, or a new page / record
            out.append(("\n\n" if out else "") + c.text)
        elif a >= end:
            out.append((" " if a - end == 1 else "\n\n" if a > end else "") + c.text)
        elif b > end:
            out.append(c.text[end - a:])
        else:
            continue  # inside the text already
        prev, end = a, b
    return "".join(out)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "kb"


async def aserve(tools: Iterable[Any] = (), kbs: Iterable[Any] = (), *, name: str = "llmkit",
                 transport: str = "stdio", host: str = "127.0.0.1", port: int = 8000, path: str = "/mcp",
                 resources: bool = True) -> None:
    """:func:`serve` on the running event loop."""
    server = build_server(tools, kbs, name=name, resources=resources)
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    elif transport == "http":
        import uvicorn

        app = server.streamable_http_app(streamable_http_path=path, host=host)
        print(f"llmkit MCP server at http://{host}:{port}{path}", file=sys.stderr, flush=True)
        await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()
    else:
        raise ConfigError(f"unknown MCP transport {transport!r}; accepted: {', '.join(TRANSPORTS)}")


def serve(tools: Iterable[Any] = (), kbs: Iterable[Any] = (), *, name: str = "llmkit", transport: str = "stdio",
          host: str = "127.0.0.1", port: int = 8000, path: str = "/mcp", resources: bool = True) -> None:
    """Serve llmkit tools and knowledge bases over MCP until the client leaves (stdio) or Ctrl-C (http).

    Example:
        >>> serve(tools=[add, multiply], kbs=[KnowledgeBase("handbook")])       # for Claude Desktop, Cursor…
        >>> serve(tools=[add], transport="http", port=8765)                     # http://127.0.0.1:8765/mcp
    """
    if transport not in TRANSPORTS:
        raise ConfigError(f"unknown MCP transport {transport!r}; accepted: {', '.join(TRANSPORTS)}")
    asyncio.run(aserve(tools, kbs, name=name, transport=transport, host=host, port=port, path=path,
                       resources=resources))
