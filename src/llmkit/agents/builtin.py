"""Built-in tools, each with the least power that does its job (OWASP LLM06, "excessive agency").

    >>> from llmkit.agents.builtin import builtin_tools, calculator, file_tools
    >>> calculator.run({"expression": "2 ** 10 + sqrt(16)"})
    1028.0
    >>> tools = builtin_tools("calculator,python,files:docs,http:api.example.com")
    >>> [t.name for t in tools]
    ['calculator', 'python', 'read_file', 'list_files', 'http_get']

| tool | can | cannot |
|---|---|---|
| ``calculator`` | arithmetic on numbers, a few math functions | names, attributes, calls outside its list, results over ~3,000 digits |
| ``python_sandbox()`` → ``python`` | run stdlib Python in ``sandbox.run_python`` | network, processes, files outside a scratch dir, more than its time and memory |
| ``sql_tool(db)`` → ``sql`` | one read-only SELECT, row-limited (``rag.sql.run``) | write, stack statements, touch files |
| ``kb_search_tool(kb)`` → ``search_<name>`` | search one knowledge base | anything else |
| ``file_tools(root)`` → ``read_file``, ``list_files`` | read and list under ``root`` | write; leave ``root`` by ``..``, absolute paths or symlinks |
| ``http_get_tool(allow)`` → ``http_get`` | GET URLs on the allow-list | other hosts, ports, schemes; private addresses (unless allowed); redirects off the list |

Refusals raise :class:`ToolPermissionError` (a ``ToolArgumentError``: its message is meant for the
model), so an agent can show the model what it may do instead.
"""
from __future__ import annotations

import ast
import ipaddress
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ConfigDict, Field, create_model

from ..core.errors import ConfigError
from .tools import FunctionTool, ToolArgumentError, Toolkit, tool, tool_from_model

if TYPE_CHECKING:
    from ..rag.kb import KnowledgeBase
    from ..rag.sql import Database


class ToolPermissionError(ToolArgumentError):
    """A built-in tool refused a call that is outside what it was given (a path outside its root, a
    host off its allow-list, an expression it does not evaluate); the message says what is allowed."""


# ------------------------------------------------------------------------------------- calculator

MAX_EXPRESSION = 500   # characters
MAX_INT_BITS = 10_000  # ~3,000 decimal digits: big enough for arithmetic, far too small to hurt
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "atan2": math.atan2, "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh, "hypot": math.hypot,
    "degrees": math.degrees, "radians": math.radians, "floor": math.floor, "ceil": math.ceil,
    "abs": abs, "round": round, "min": min, "max": max, "factorial": math.factorial, "gcd": math.gcd,
}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
              ast.Pow: lambda a, b: a ** b}


class CalculatorError(ToolPermissionError):
    """An expression the calculator will not or cannot evaluate; the message names the part."""


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression, computed by walking its syntax tree (never ``eval``).

    Accepted: int and float literals, ``+ - * / // % **``, unary ``-``/``+``, parentheses, the
    functions in ``FUNCTIONS`` and the constants in ``CONSTANTS``. Integers stay exact up to
    ``MAX_INT_BITS`` bits; anything bigger is refused before it is computed.

    Example:
        >>> evaluate("(1 + 2) * 3 ** 2 - sqrt(16)")
        23.0
        >>> evaluate("9 ** 9 ** 9")
        CalculatorError: 9 ** 9 ** 9 would have about 1,228,093,894 bits; the limit is 10,000
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("give an arithmetic expression, e.g. '2 * (3 + 4)'")
    if len(expression) > MAX_EXPRESSION:
        raise CalculatorError(f"the expression has {len(expression)} characters; the limit is {MAX_EXPRESSION}")
    source = expression.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise CalculatorError(f"cannot parse {source!r}: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError):  # NUL bytes, absurd nesting
        raise CalculatorError(f"cannot parse {source[:80]!r}") from None
    try:
        value = _eval(tree.body, source)
    except RecursionError:
        raise CalculatorError("the expression is nested too deeply") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError(f"{source!r} is not a finite number ({value})")
    return value


def _eval(node: ast.AST, source: str) -> int | float:
    part = ast.get_source_segment(source, node) or type(node).__name__
    if isinstance(node, ast.Constant):
        if type(node.value) in (int, float):  # not bool, str, complex, bytes, None
            return node.value
        raise CalculatorError(f"only numbers are allowed, not {part}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        a, b = _eval(node.left, source), _eval(node.right, source)
        _check_size(node.op, a, b, part)
        return _checked(part, _OPERATORS[type(node.op)], a, b)
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r}; constants: {', '.join(CONSTANTS)}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            _eval(node.func, source)  # names what is wrong with it (attribute access, indexing, ...)
            raise CalculatorError(f"{part}: only the listed functions can be called; functions: {', '.join(FUNCTIONS)}")
        name = node.func.id
        if name not in FUNCTIONS:
            raise CalculatorError(f"{ast.get_source_segment(source, node.func) or 'that'} is not an allowed function "
                                  f"(in {part}); functions: {', '.join(FUNCTIONS)}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise CalculatorError(f"{part}: functions take plain positional arguments")
        args = [_eval(a, source) for a in node.args]
        if name == "factorial" and args and isinstance(args[0], int) and args[0] > 1000:
            raise CalculatorError(f"{part}: factorial is limited to n <= 1000")
        if name == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > 100:
            raise CalculatorError(f"{part}: round to at most 100 digits")
        return _checked(part, FUNCTIONS[name], *args)
    if isinstance(node, ast.Attribute):
        raise CalculatorError(f"attribute access ({part}) is not allowed")
    what = {ast.BinOp: "the operator", ast.UnaryOp: "the operator", ast.Compare: "comparison",
            ast.BoolOp: "boolean logic", ast.Subscript: "indexing", ast.Lambda: "lambda"}.get(type(node), "")
    raise CalculatorError(f"{what or type(node).__name__} ({part}) is not allowed; use numbers, "
                          "+ - * / // % **, parentheses, functions and constants")


def _check_size(op: ast.operator, a: float, b: float, part: str) -> None:
    """Refuse integer results too big to compute quickly, before computing them."""
    if not (isinstance(a, int) and isinstance(b, int)):
        return
    if isinstance(op, ast.Pow) and b > 0 and abs(a) > 1:
        bits = b * math.log2(abs(a))
    elif isinstance(op, ast.Mult):
        bits = a.bit_length() + b.bit_length()
    else:
        return
    if bits > MAX_INT_BITS:
        raise CalculatorError(f"{part} would have about {int(bits):,} bits; the limit is {MAX_INT_BITS:,}")


def _checked(part: str, fn: Callable[..., Any], *args: Any) -> int | float:
    try:
        value = fn(*args)
    except ZeroDivisionError:
        raise CalculatorError(f"division by zero in {part}") from None
    except OverflowError:
        raise CalculatorError(f"{part} is too large to compute") from None
    except (ValueError, TypeError) as e:
        raise CalculatorError(f"{part}: {e}") from None
    if isinstance(value, complex):
        raise CalculatorError(f"{part} has no real value")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"{part} has {value.bit_length():,} bits; the limit is {MAX_INT_BITS:,}")
    return value


def _calculator(expression: Annotated[str, Field(max_length=MAX_EXPRESSION)]) -> int | float:
    """Evaluate an arithmetic expression.

    Args:
        expression: the expression, e.g. "2 * (3 + 4) ** 2" or "sqrt(2) * pi".
    """
    return evaluate(expression)


calculator = tool(_calculator, name="calculator", description=(
    "Evaluate an arithmetic expression exactly: numbers, + - * / // % **, parentheses, functions "
    f"{', '.join(FUNCTIONS)} and constants {', '.join(CONSTANTS)}."))


# ----------------------------------------------------------------------------------------- python

def python_sandbox(timeout: float = 10.0, memory_mb: int = 256, *, max_output: int = 20_000,
                   file_size_mb: int = 16, read_paths: Iterable[str] = (), site_packages: bool = False,
                   require: Iterable[str] = ()) -> FunctionTool:
    """A ``python(code)`` tool that runs code in :func:`llmkit.agents.sandbox.run_python`.

    Args:
        timeout, memory_mb, max_output, file_size_mb, read_paths, site_packages, require: passed to
            ``run_python`` for every call (see there).

    Example:
        >>> py = python_sandbox(timeout=5)
        >>> py.run({"code": "print(sum(range(10)))"})
        {'exit_code': 0, 'stdout': '45\\n', 'stderr': ''}
    """
    from .sandbox import run_python

    limits = {"timeout": timeout, "memory_mb": memory_mb, "max_output": max_output, "file_size_mb": file_size_mb,
              "read_paths": tuple(read_paths), "site_packages": site_packages, "require": tuple(require)}

    def python(code: Annotated[str, Field(max_length=100_000)]) -> dict[str, Any]:
        """Run Python code.

        Args:
            code: a complete Python 3 program; print what you want to see.
        """
        return run_python(code, **limits).for_model()

    packages = "installed packages" if site_packages else "the standard library only"
    t = tool(python, description=(
        f"Run Python 3 code in a sandbox and get its stdout, stderr and exit code; print the results you "
        f"need. Limits: {timeout:g} s, {memory_mb} MB, {packages}, no network, no subprocesses, files "
        f"only in a scratch directory that is deleted afterwards."))
    t.meta["limits"] = limits
    return t


# -------------------------------------------------------------------------------------------- sql

def sql_tool(db: Database | str, *, row_limit: int = 50, timeout_s: float = 5.0, name: str = "sql") -> FunctionTool:
    """A ``sql(query)`` tool: one read-only SELECT through ``rag.sql.run`` (its guard, read-only
    connection, timeout and row limit). The description lists the tables and columns.

    Args:
        db: a :class:`~llmkit.rag.sql.Database` or its URL (``sqlite:///shop.db``, ``postgresql://…``).
        row_limit: the most rows returned (``truncated`` says when there were more).
        timeout_s: the query timeout.
        name: the tool's name.

    Example:
        >>> t = sql_tool("sqlite:///shop.db")
        >>> t.run({"query": "SELECT name FROM users ORDER BY name"})["rows"]
        [['Ada'], ['Grace']]
    """
    from ..rag.sql import Database, run

    if isinstance(db, str):
        db = Database(db)
    schema = db.schema(sample_rows=0)
    if len(schema) > 3000:
        schema = schema[:3000] + "\n…"

    def sql(query: Annotated[str, Field(max_length=10_000)]) -> dict[str, Any]:
        """Run one SQL query.

        Args:
            query: a single read-only SELECT statement (WITH … SELECT is fine).
        """
        r = run(db, query, row_limit=row_limit, timeout_s=timeout_s)
        return {"sql": r.sql, "columns": r.columns, "rows": [list(row) for row in r.rows], "truncated": r.truncated}

    return tool(sql, name=name, description=(
        f"Run one read-only SQL SELECT on a {db.dialect} database (at most {row_limit} rows). Tables:\n{schema}"))


# ------------------------------------------------------------------------------------------ kb

def kb_search_tool(kb: KnowledgeBase | str, k: int = 5, *, max_k: int = 20, mode: str = "hybrid",
                   name: str | None = None) -> FunctionTool:
    """A ``search_<name>(query, k)`` tool over one knowledge base; hits come back as
    ``[{"text", "source", "score"}]``, best first.

    Args:
        kb: a :class:`~llmkit.rag.KnowledgeBase`, or the name/path of an existing one.
        k: the default number of hits; the model may ask for 1 to ``max_k``.
        mode: ``"hybrid"``, ``"dense"`` or ``"bm25"`` (see ``KnowledgeBase.search``).
        name: the ``<name>`` part; default: the knowledge base's name.

    Example:
        >>> t = kb_search_tool("handbook", k=3)
        >>> t.name, t.run({"query": "vacation policy"})[0]["source"]
        ('search_handbook', '/docs/vacation.md')
    """
    from ..rag.kb import KnowledgeBase, kb_path

    if isinstance(kb, (str, Path)):
        if not kb_path(kb).exists():
            raise ConfigError(f"no knowledge base {str(kb)!r} (looked for {kb_path(kb)}); create it with "
                              "`llmkit rag ingest`")
        kb = KnowledgeBase(kb)
    label = name or re.sub(r"\W+", "_", Path(kb.name).stem).strip("_")[:50] or "kb"
    if not 1 <= k <= max_k:
        raise ConfigError(f"k={k} must be between 1 and max_k={max_k}")

    args = create_model(f"search_{label}_arguments", __config__=ConfigDict(extra="forbid"),
                        query=(str, Field(min_length=1, max_length=2000, description="what to look for, in words")),
                        k=(int, Field(k, ge=1, le=max_k, description="how many passages to return")))

    def search(a: Any) -> list[dict[str, Any]]:
        hits = kb.search(a.query, k=a.k, mode=mode)
        return [{"text": h.text, "source": h.source, "score": round(float(h.score), 4)} for h in hits]

    return tool_from_model(args, search, name=f"search_{label}", description=(
        f"Search the {label!r} knowledge base; returns the best-matching passages with their source file and score."))


# ---------------------------------------------------------------------------------------- files

def file_tools(root: str | os.PathLike, *, max_bytes: int = 100_000, max_entries: int = 200) -> Toolkit:
    """``read_file(path)`` and ``list_files(path=".")``, confined to ``root`` (read-only).

    A path is resolved (``..`` and every symlink followed) and must stay under ``root`` resolved;
    absolute paths outside, ``../`` escapes and symlinks that point outside are refused.

    Args:
        root: the directory the tools may read.
        max_bytes: ``read_file`` returns at most this many bytes of a file (and says it cut).
        max_entries: ``list_files`` returns at most this many entries.

    Example:
        >>> read_file, list_files = file_tools("docs")
        >>> list_files.run({})
        ['guide/', 'README.md']
    """
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise ConfigError(f"files: {str(root)!r} is not a directory")

    def locate(path: str) -> Path:
        if "\x00" in path:
            raise ToolPermissionError(f"{path!r}: NUL bytes are not allowed in paths")
        given = Path(path).expanduser() if path.startswith("~") else Path(path)
        real = (given if given.is_absolute() else base / given).resolve()
        if not real.is_relative_to(base):
            raise ToolPermissionError(f"{path!r} is outside the folder these tools may read; "
                                      "give a path relative to it (see list_files)")
        return real

    def read_file(path: Annotated[str, Field(min_length=1, max_length=4096)]) -> str:
        """Read a text file.

        Args:
            path: the file, relative to the folder, e.g. "notes/todo.md".
        """
        real = locate(path)
        if real.is_dir():
            raise ToolPermissionError(f"{path!r} is a directory; use list_files to see what it holds")
        if not real.is_file():
            raise ToolPermissionError(f"no file {path!r}; use list_files to see what exists")
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))  # real has no symlinks left
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(max_bytes)
        if b"\x00" in data[:8192]:
            raise ToolPermissionError(f"{path!r} is a binary file ({size} bytes); only text files can be read")
        text = data.decode("utf-8", "replace")
        if size > max_bytes:
            text += f"\n[... cut: the file has {size} bytes, these are the first {max_bytes}]"
        return text

    def list_files(path: Annotated[str, Field(max_length=4096)] = ".") -> list[str]:
        """List a directory: its files, and its sub-directories ending in '/'.

        Args:
            path: the directory, relative to the folder ("." for the folder itself).
        """
        real = locate(path or ".")
        if not real.is_dir():
            raise ToolPermissionError(f"{path!r} is not a directory" + (" (it is a file: use read_file)" if real.is_file() else ""))
        entries = []
        for child in sorted(real.iterdir(), key=lambda p: p.name):
            target = child.resolve()
            if not target.is_relative_to(base):
                continue  # a symlink to outside: not shown, and read_file would refuse it
            entries.append(child.relative_to(base).as_posix() + ("/" if target.is_dir() else ""))
        if len(entries) > max_entries:
            entries = entries[:max_entries] + [f"[... {len(entries) - max_entries} more entries]"]
        return entries

    return Toolkit("files", [tool(read_file, description=f"Read a text file (at most {max_bytes:,} bytes) from the folder."),
                             tool(list_files, description="List the files and sub-directories of a directory in the folder.")],
                   description=f"read-only access to {base}")


# ----------------------------------------------------------------------------------------- http

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _parse_rule(entry: str) -> dict[str, Any]:
    """An allow-list entry: ``host``, ``host:port``, ``*.domain`` or a URL prefix ``https://host/path``."""
    import httpx

    text = entry.strip()
    wildcard = False
    if "://" not in text and text.startswith("*."):
        wildcard, text = True, text[2:]
    try:
        url = httpx.URL(text if "://" in text else "http://" + text)
    except (httpx.InvalidURL, ValueError) as e:
        raise ConfigError(f"http allow-list entry {entry!r} is not a host or URL ({e})") from None
    if not url.host or url.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"http allow-list entry {entry!r}: expected host, host:port, *.domain or an http(s) URL prefix")
    prefix = "://" in text
    return {"entry": entry, "scheme": url.scheme if prefix else None, "host": url.host.lower(), "wildcard": wildcard,
            "port": url.port, "path": url.path if prefix and url.path not in ("", "/") else "/"}


def _matches(rule: dict[str, Any], scheme: str, host: str, port: int, path: str) -> bool:
    if rule["scheme"] and rule["scheme"] != scheme:
        return False
    if not (host == rule["host"] or rule["wildcard"] and host.endswith("." + rule["host"])):
        return False
    if port != (rule["port"] or _DEFAULT_PORTS[rule["scheme"] or scheme]):
        return False  # no port in the entry: the scheme's default port only
    prefix = rule["path"].rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
                or ip.is_unspecified)


def http_get_tool(allow: Iterable[str] | str, *, timeout: float = 10.0, max_bytes: int = 100_000,
                  max_redirects: int = 5, allow_private: bool = False) -> FunctionTool:
    """An ``http_get(url)`` tool that fetches only URLs on ``allow``.

    Refused: other hosts or ports (an entry without a port allows the scheme's default port only),
    schemes other than http/https, ``..`` in paths, redirects that leave the list, and hosts that
    resolve to private, loopback or link-local addresses, unless the entry is that IP literally or
    ``allow_private=True``. The connection goes to the address that was checked (no DNS rebinding).
    GET only, no cookies, no proxies from the environment, ``max_bytes`` of body, ``timeout`` seconds
    in all.

    Args:
        allow: hosts (``"api.example.com"``, ``"127.0.0.1:8000"``, ``"*.example.org"``) or URL
            prefixes (``"https://api.example.com/v1/"``). Required: there is no open default.
        timeout: seconds for the whole fetch, redirects included.
        max_bytes: the most body bytes kept (``truncated`` says when there were more).
        max_redirects: redirects followed, each checked against the list.
        allow_private: let listed host *names* resolve to private or loopback addresses (intranets).

    Example:
        >>> get = http_get_tool(["docs.python.org"])
        >>> get.run({"url": "https://docs.python.org/3/"})["status"]
        200
        >>> get.run({"url": "https://example.com/"})
        ToolPermissionError: 'example.com' is not on this tool's allow-list (docs.python.org)
    """
    entries = [allow] if isinstance(allow, str) else list(allow)
    entries = [e for e in entries if e and e.strip()]
    if not entries:
        raise ConfigError("http_get needs an allow-list of hosts or URL prefixes, e.g. "
                          "http_get_tool(['api.example.com']); there is no open default")
    rules = [_parse_rule(e) for e in entries]
    listed = ", ".join(entries)

    def check(url_text: str) -> tuple[Any, str]:
        """The URL to connect to (pinned to a checked address) and the original host."""
        import httpx

        try:
            url = httpx.URL(url_text)
        except (httpx.InvalidURL, ValueError) as e:
            raise ToolPermissionError(f"{url_text!r} is not a valid URL ({e})") from None
        if url.scheme not in _DEFAULT_PORTS:
            raise ToolPermissionError(f"{url_text!r}: only http and https URLs are allowed")
        host = (url.host or "").lower()
        port = url.port or _DEFAULT_PORTS[url.scheme]
        if ".." in url.path.split("/"):
            raise ToolPermissionError(f"{url_text!r}: '..' is not allowed in the path")
        if url.userinfo:
            raise ToolPermissionError(f"{url_text!r}: credentials in URLs are not allowed")
        rule = next((r for r in rules if _matches(r, url.scheme, host, port, url.path)), None)
        if rule is None:
            raise ToolPermissionError(f"{url_text!r}: {host}:{port}{url.path} is not on this tool's allow-list ({listed})")
        literal = _ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                raise ToolPermissionError(f"cannot resolve {host!r}: {e}") from None
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        # an IP written in the allow-list is an explicit allowance; a name must resolve to public addresses
        explicit = _ip_literal(rule["host"]) is not None or allow_private
        private = [str(a) for a in addresses if not _public(a)]
        if private and not explicit:
            raise ToolPermissionError(f"{host!r} resolves to a private or loopback address ({', '.join(private)}); "
                                      "allow it with allow_private=True")
        pinned = url if literal is not None else url.copy_with(host=str(addresses[0]))
        return pinned, host

    def http_get(url: Annotated[str, Field(min_length=1, max_length=4096)]) -> dict[str, Any]:
        """Fetch a URL with GET.

        Args:
            url: an http(s) URL on the allowed hosts.
        """
        import httpx

        deadline = time.monotonic() + timeout
        current = url
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(max_redirects + 1):
                target, host = check(current)
                headers = {"host": httpx.URL(current).netloc.decode("ascii"), "user-agent": "llmkit-http-get",
                           "accept-encoding": "identity"}  # no compressed bodies: max_bytes means bytes read
                try:
                    with client.stream("GET", target, headers=headers,
                                       extensions={"sni_hostname": host}) as response:
                        if response.is_redirect and "location" in response.headers:
                            current = str(httpx.URL(current).join(response.headers["location"]))
                            continue
                        return _read(response, current, max_bytes, deadline)
                except httpx.HTTPError as e:
                    return {"url": current, "error": f"{type(e).__name__}: {e}"}
        return {"url": current, "error": f"more than {max_redirects} redirects"}

    t = tool(http_get, description=(f"Fetch a web page or API response with HTTP GET (text, at most {max_bytes:,} bytes). "
                                    f"Only these hosts are allowed: {listed}."))
    t.meta["allow"] = entries
    return t


def _read(response: Any, url: str, max_bytes: int, deadline: float) -> dict[str, Any]:
    body, truncated = bytearray(), False
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > max_bytes:
            body, truncated = body[:max_bytes], True
            break
        if time.monotonic() > deadline:
            truncated = True
            break
    ctype = response.headers.get("content-type", "")
    out: dict[str, Any] = {"url": url, "status": response.status_code, "content_type": ctype}
    textual = not ctype or ctype.startswith("text/") or any(k in ctype for k in ("json", "xml", "javascript", "yaml"))
    if textual and response.headers.get("content-encoding", "identity") == "identity":
        out["text"] = bytes(body).decode(response.charset_encoding or "utf-8", "replace")
    else:
        out["text"] = f"[{ctype or 'binary'} body, {len(body)} bytes, not shown]"
    out["truncated"] = truncated
    return out


# ------------------------------------------------------------------------------------- registry

BUILTINS: dict[str, Any] = {
    "calculator": calculator,       # a tool
    "python": python_sandbox,       # the rest are factories; the CLI spec's ARG is their first argument
    "kb": kb_search_tool,
    "sql": sql_tool,
    "files": file_tools,
    "http": http_get_tool,
}
_ARGS = {"kb": "NAME", "sql": "URL", "files": "DIR", "http": "HOST"}  # the specs that need an argument
SPEC_HELP = "calculator, python, kb:NAME, sql:URL, files:DIR, http:HOST"


def builtin_tools(spec: str | Iterable[str], **options: dict[str, Any]) -> list[FunctionTool]:
    """Tools from a CLI spec such as ``"calculator,python,kb:handbook,sql:sqlite:///shop.db,files:docs,http:api.example.com"``.

    Several ``http:`` entries make one ``http_get`` tool with all the hosts.

    Args:
        spec: comma-separated names (or a list of them): ``calculator``, ``python``, ``kb:NAME``,
            ``sql:URL``, ``files:DIR``, ``http:HOST`` (a host, ``host:port`` or URL prefix).
        options: keyword options per factory, by name: ``python={"timeout": 30}``,
            ``http={"allow_private": True}``, ``files={"max_bytes": 10_000}``.

    Example:
        >>> [t.name for t in builtin_tools("calculator,kb:handbook", kb={"k": 3})]
        ['calculator', 'search_handbook']
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    unknown = sorted(set(options) - set(BUILTINS))
    if unknown:
        raise ConfigError(f"options for unknown built-in tool(s) {', '.join(unknown)}; accepted: {', '.join(BUILTINS)}")
    tools: list[FunctionTool] = []
    hosts: list[str] = []
    for item in items:
        name, sep, arg = item.partition(":")
        name = name.strip().lower()
        if name not in BUILTINS:
            raise ConfigError(f"unknown built-in tool {item!r}; accepted: {SPEC_HELP}")
        if name in _ARGS and not arg.strip():
            raise ConfigError(f"{name} needs an argument: {name}:{_ARGS[name]}")
        if name not in _ARGS and sep:
            raise ConfigError(f"{name} takes no argument, got {item!r}; accepted: {SPEC_HELP}")
        if name == "http":
            hosts.append(arg.strip())
        elif name == "calculator":
            tools.append(calculator)
        elif name == "python":
            tools.append(python_sandbox(**options.get("python", {})))
        elif name == "files":
            tools.extend(file_tools(arg.strip(), **options.get("files", {})))
        else:
            tools.append(BUILTINS[name](arg.strip(), **options.get(name, {})))
    if hosts:
        tools.append(http_get_tool(hosts, **options.get("http", {})))
    seen: set[str] = set()
    for t in tools:
        if t.name in seen:
            raise ConfigError(f"two built-in tools would be named {t.name!r} (from {', '.join(items)}); "
                              "give each kb or sql its own entry only once")
        seen.add(t.name)
    return tools
