"""``llmkit mcp``: serve llmkit tools and knowledge bases over MCP, list another server's tools.

    llmkit mcp serve --tools calculator,kb:handbook                 # stdio, for Claude Desktop / Cursor
    llmkit mcp serve --tools mypkg.tools:toolkit --transport http   # http://127.0.0.1:8000/mcp
    llmkit mcp tools -- npx -y @modelcontextprotocol/server-everything
    llmkit mcp tools --url http://127.0.0.1:8000/mcp --json
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

import typer

mcp_app = typer.Typer(help="MCP (Model Context Protocol): serve llmkit tools and knowledge bases, list a server's "
                           "tools.", no_args_is_help=True)


@mcp_app.command("serve")
def serve(tools: str = typer.Option("", "--tools", help="comma-separated: built-in tools (calculator, python, …), "
                                    "kb:NAME for a knowledge base (a search tool and its documents as resources), "
                                    "module:attr for your own tools (a tool, a list of tools or a Toolkit)"),
          transport: str = typer.Option("stdio", "--transport", help="stdio (a client starts this command) or http"),
          host: str = typer.Option("127.0.0.1", "--host", help="http: the address to listen on"),
          port: int = typer.Option(8000, "--port", min=1, max=65535, help="http: the port"),
          path: str = typer.Option("/mcp", "--path", help="http: the endpoint's path"),
          name: str = typer.Option("llmkit", "--name", help="the server name clients see")):
    """Serve tools and knowledge bases to any MCP client, over stdio (default) or streamable HTTP."""
    from ..agents.mcp import TRANSPORTS
    from ..agents.mcp import serve as run
    from ..core.errors import ConfigError

    if transport not in TRANSPORTS:
        raise ConfigError(f"unknown --transport {transport!r}; accepted: {', '.join(TRANSPORTS)}")
    found, kbs = resolve(tools)
    if not found and not kbs:
        raise ConfigError("nothing to serve: give --tools, e.g. --tools calculator,kb:NAME or --tools mypkg.tools:add")
    try:
        run(tools=found, kbs=kbs, name=name, transport=transport, host=host, port=port, path=path)
    finally:
        for kb in kbs:
            kb.close()


def resolve(spec: str) -> tuple[list[Any], list[Any]]:
    """``"calculator,kb:NAME,pkg.mod:attr"`` → (tools, knowledge bases)."""
    from ..core.errors import ConfigError

    tools: list[Any] = []
    kbs: list[Any] = []
    builtin: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.startswith("kb:"):
            from ..rag import KnowledgeBase
            from .rag_cmd import _existing

            kbs.append(KnowledgeBase(_existing(item[3:])))
        elif ":" in item:
            tools += _imported(item)
        else:
            builtin.append(item)
    if builtin:
        try:
            from ..agents.builtin import builtin_tools
        except ImportError:
            raise ConfigError(f"built-in tools ({', '.join(builtin)}) are not available in this llmkit; "
                              "use kb:NAME or module:attr") from None
        tools += list(builtin_tools(",".join(builtin)))
    return tools, kbs


def _imported(ref: str) -> list[Any]:
    """Tools from ``module:attr`` (the current directory is importable, as for uvicorn)."""
    import importlib

    from ..agents.tools import Toolkit
    from ..core.errors import ConfigError

    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--tools {ref!r}: cannot import {module_name!r} ({e})") from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"--tools {ref!r}: module {module_name!r} has no {attr!r}") from None
    if isinstance(value, Toolkit):
        return list(value)
    return list(value) if isinstance(value, (list, tuple)) else [value]


@mcp_app.command("tools")
def tools(command: Optional[list[str]] = typer.Argument(None, help="the server command, after --: "
                                                        "llmkit mcp tools -- python server.py"),
          url: Optional[str] = typer.Option(None, "--url", help="a streamable-HTTP endpoint instead of a command"),
          env: Optional[list[str]] = typer.Option(None, "--env", help="KEY=VALUE for the server process (repeatable)"),
          as_json: bool = typer.Option(False, "--json", help="print the tools as JSON (name, description, inputSchema)")):
    """List the tools an MCP server offers, with their arguments."""
    from ..agents.mcp import MCPClient
    from ..core.errors import ConfigError

    if bool(command) == bool(url):
        raise ConfigError("give a server command after -- (llmkit mcp tools -- python server.py) or --url, not both")
    extra = {}
    for pair in env or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {pair!r} must be KEY=VALUE")
        extra[key] = value
    client = MCPClient.http(url) if url else MCPClient.stdio(command, env=extra or None)
    with client:
        specs = client.list_tools()
    if as_json:
        print(json.dumps([{"name": s.name, "description": s.description, "inputSchema": s.input_schema} for s in specs],
                         ensure_ascii=False, indent=1))
        return
    for s in specs:
        props = s.input_schema.get("properties", {})
        required = set(s.input_schema.get("required", []))
        args = ", ".join(f"{k}{'' if k in required else '?'}: {_kind(v)}" for k, v in props.items())
        print(f"{s.name}({args})")
        if s.description:
            print(f"    {' '.join(s.description.split())[:200]}")


def _kind(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    kind = schema.get("type")
    if kind == "array":
        return f"{_kind(schema.get('items', {}))}[]"
    if isinstance(kind, list):
        return "|".join(kind)
    if "anyOf" in schema:
        return "|".join(_kind(s) for s in schema["anyOf"])
    return kind or "any"
