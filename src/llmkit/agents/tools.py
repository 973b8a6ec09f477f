"""Tools from typed Python functions: a JSON Schema from the signature and docstring, arguments
validated by pydantic before the function runs, results serialised for the model.

    >>> import llmkit as lk
    >>> @lk.tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: the first addend.
    ...         b: the second addend.
    ...     '''
    ...     return a + b
    >>> add.parameters["properties"]["a"]
    {'type': 'integer', 'description': 'the first addend.'}
    >>> add.run({"a": 2, "b": "3"})          # validated (and coerced) first
    5
    >>> add.run({"a": 2})                     # ToolArgumentError: b: Field required

``lk.tool`` is also the tool-result message constructor it always was: ``lk.tool("5",
tool_call_id="call_1")`` still returns a ``Message``; given a function (or only keyword options,
as ``@lk.tool(dangerous=True)``), it makes a tool.

Least power: a tool marked ``dangerous=True`` runs only after the agent's approval hook says yes.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..core.errors import ConfigError
from ..core.types import Message, Tool
from ..core.types import tool as tool_message

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")  # what OpenAI, Anthropic and Gemini all accept


class ToolArgumentError(ConfigError):
    """The model's arguments do not fit the tool's schema; the message is what the model is shown."""


@dataclass
class FunctionTool:
    """A callable the model may call. Build one with ``@lk.tool`` or :func:`tool_from_model`.

    Attributes:
        name, description, parameters: what the model sees (``parameters`` is a JSON Schema object).
        fn: the Python function (sync or async), called with validated keyword arguments.
        dangerous: runs only after the agent's ``approve`` hook allows the call.
        args_model: the pydantic model the arguments are validated with.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    dangerous: bool = False
    unpack: bool = True  # False: fn takes the validated pydantic object as its one argument
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> Tool:
        """The tool as a model sees it (``lk.Tool``), for ``m.chat(tools=[...])``."""
        return Tool(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: dict[str, Any] | str | None) -> BaseModel:
        """The arguments checked against the schema; ``ToolArgumentError`` names each bad field."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as e:
                raise ToolArgumentError(f"arguments for {self.name} are not valid JSON ({e.msg}): {arguments[:200]!r}") from None
        if not isinstance(arguments, dict):
            raise ToolArgumentError(f"arguments for {self.name} must be a JSON object, got {arguments!r}")
        try:
            return self.args_model.model_validate(arguments)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                                 for err in e.errors())
            raise ToolArgumentError(f"invalid arguments for {self.name}: {problems}") from None

    def _call_args(self, arguments: Any) -> tuple[tuple, dict]:
        obj = self.validate(arguments)
        if not self.unpack:
            return (obj,), {}
        return (), {name: getattr(obj, name) for name in type(obj).model_fields}

    def run(self, arguments: dict[str, Any] | str | None = None) -> Any:
        """Validate, then call the function (an async one runs to completion)."""
        args, kwargs = self._call_args(arguments or {})
        out = self.fn(*args, **kwargs)
        if inspect.isawaitable(out):
            out = _run_coroutine(out)
        return out

    async def arun(self, arguments: dict[str, Any] | str | None = None) -> Any:
        """Validate, then call: awaited if async, in a worker thread if not (the loop stays free)."""
        args, kwargs = self._call_args(arguments or {})
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*args, **kwargs)
        out = await asyncio.to_thread(self.fn, *args, **kwargs)
        return await out if inspect.isawaitable(out) else out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly, as if undecorated."""
        return self.fn(*args, **kwargs)


def serialize(result: Any) -> str:
    """A tool result as the text a model reads: strings as they are, everything else as JSON."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    try:
        return json.dumps(result, ensure_ascii=False, default=_default)
    except (TypeError, ValueError):
        return str(result)


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def _run_coroutine(coro: Any) -> Any:
    """Run a coroutine from sync code, also when the caller is already inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- building tools ----------------------------------------------------------------------------

def _docstring(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The summary (text before ``Args:``) and per-argument descriptions of a Google-style docstring."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section, indent, current = "summary", None, None
    for line in (inspect.getdoc(fn) or "").splitlines():
        stripped = line.strip()
        if re.fullmatch(r"(Args|Arguments|Parameters):", stripped):
            section = "args"
        elif re.fullmatch(r"(Returns|Raises|Yields|Examples?|Notes?):", stripped):
            section = "other"
        elif section == "summary":
            summary.append(stripped)
        elif section == "args" and stripped:
            depth = len(line) - len(line.lstrip())
            m = re.match(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", stripped)
            if m and (indent is None or depth <= indent):  # a new argument, not a wrapped description line
                indent, current = depth, m.group(1)
                args[current] = m.group(2)
            elif current:
                args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(" ".join(summary).split()), args


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["type"] = "object"
    return schema


def _make(fn: Callable[..., Any], name: str | None, description: str | None, dangerous: bool) -> FunctionTool:
    if not callable(fn):
        raise ConfigError(f"@lk.tool needs a function, got {fn!r}")
    name = name or fn.__name__
    if not _NAME.match(name):
        raise ConfigError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter or '_'")
    summary, arg_docs = _docstring(fn)
    fields: dict[str, Any] = {}
    hints = _hints(fn)
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(f"tool {name}: *{p.name} / **{p.name} cannot be described to a model; use named parameters")
        if p.name in ("self", "cls"):
            continue
        annotation = hints.get(p.name, Any)
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (annotation, Field(default, description=arg_docs.get(p.name) or None))
    args_model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return FunctionTool(name=name, description=description or summary or name, parameters=_schema(args_model),
                        fn=fn, args_model=args_model, dangerous=dangerous)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        import typing

        return typing.get_type_hints(fn, include_extras=True)  # keep Annotated[int, Field(ge=1)] constraints
    except Exception as e:  # a forward reference that cannot be resolved
        raise ConfigError(f"tool {getattr(fn, '__name__', fn)}: cannot read its type hints ({e})") from None


def tool(fn: Callable[..., Any] | str | None = None, tool_call_id: str | None = None, name: str | None = None, *,
         description: str | None = None, dangerous: bool = False) -> Any:
    """Make a tool from a typed function — or, given a string, a tool-result ``Message``.

    Forms:
        ``@lk.tool`` / ``lk.tool(fn)``: a :class:`FunctionTool` named after the function, its
        description from the docstring's summary, argument descriptions from ``Args:``.
        ``@lk.tool(name="search", description="…", dangerous=True)``: the same, with options.
        ``lk.tool("5", tool_call_id="call_1", name="add")``: a tool-result message (as before).
    """
    if isinstance(fn, str):
        if tool_call_id is None:
            raise ConfigError("a tool message needs the tool_call_id it answers: lk.tool(content, tool_call_id)")
        return tool_message(fn, tool_call_id, name)
    if fn is None:
        return lambda f: _make(f, name, description, dangerous)
    return _make(fn, name, description, dangerous)


def tool_from_model(args: type[BaseModel], fn: Callable[[Any], Any], *, name: str | None = None,
                    description: str | None = None, dangerous: bool = False) -> FunctionTool:
    """A tool whose arguments are a pydantic model; ``fn`` receives the validated instance.

    Example:
        >>> class Search(BaseModel):
        ...     '''Search the handbook.'''
        ...     query: str = Field(description="keywords")
        >>> t = tool_from_model(Search, lambda a: kb.search(a.query))
    """
    if not (isinstance(args, type) and issubclass(args, BaseModel)):
        raise ConfigError(f"tool_from_model needs a pydantic model class, got {args!r}")
    name = name or _snake(args.__name__)
    if not _NAME.match(name):
        raise ConfigError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
    return FunctionTool(name=name, description=description or " ".join((args.__doc__ or name).split()),
                        parameters=_schema(args), fn=fn, args_model=args, dangerous=dangerous, unpack=False)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class Toolkit:
    """A named group of tools, passed to an agent as one item (``tools=[math_kit, search]``)."""

    name: str
    tools: list[FunctionTool]
    description: str = ""

    def __iter__(self):
        return iter(self.tools)


def as_tools(items: Iterable[Any]) -> dict[str, FunctionTool]:
    """Tools, toolkits and plain functions flattened to ``{name: FunctionTool}``; duplicate names refused."""
    out: dict[str, FunctionTool] = {}
    for item in items:
        group = list(item) if isinstance(item, Toolkit) else [item]
        for t in group:
            if not isinstance(t, FunctionTool):
                if callable(t) and not isinstance(t, (type, Tool, Message)):
                    t = _make(t, None, None, False)
                else:
                    raise ConfigError(f"{t!r} is not a tool: decorate a function with @lk.tool, or pass a Toolkit")
            if t.name in out:
                raise ConfigError(f"two tools are named {t.name!r}; tool names must be unique")
            out[t.name] = t
    return out

