"""agents/builtin.py: each built-in tool does its job and refuses what it was not given."""
import json
import math
import os
import sqlite3
import sys
import time

import pytest

from llmkit.agents import FunctionTool, ToolArgumentError, serialize
from llmkit.agents.builtin import (
    BUILTINS,
    CalculatorError,
    ToolPermissionError,
    builtin_tools,
    calculator,
    evaluate,
    file_tools,
    http_get_tool,
    kb_search_tool,
    python_sandbox,
    sql_tool,
)
from llmkit.core.errors import ConfigError

# ------------------------------------------------------------------------------------ calculator


@pytest.mark.parametrize("expression, expected", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ** 10", 1024), ("-2 ** 2", -4), ("(-2) ** 2", 4),
    ("7 // 2", 3), ("-7 // 2", -4), ("7 % 3", 1), ("7 / 2", 3.5), ("2 ** -1", 0.5), ("10 - -3", 13),
    ("sqrt(16) + abs(-3)", 7.0), ("round(pi, 3)", 3.142), ("max(1, 5, 3) - min(4, 2)", 3),
    ("log(8, 2)", 3.0), ("factorial(20)", 2432902008176640000), ("2 ** 100", 1267650600228229401496703205376),
    ("sin(pi / 2) + cos(0)", 2.0), ("e ** 1", math.e), ("1.5e3 * 2", 3000.0), ("gcd(12, 18)", 6),
])
def test_calculator_computes(expression, expected):
    value = evaluate(expression)
    assert value == pytest.approx(expected) and type(value) is type(expected)


def test_calculator_as_a_tool():
    assert calculator.name == "calculator" and "sqrt" in calculator.description
    assert calculator.parameters["required"] == ["expression"]
    assert calculator.run({"expression": "6 * 7"}) == 42
    assert calculator.run('{"expression": "2 ** 0.5"}') == pytest.approx(math.sqrt(2))
    with pytest.raises(ToolArgumentError, match="at most 500 characters"):
        calculator.run({"expression": "1+" * 300 + "1"})


@pytest.mark.parametrize("expression, message", [
    ("__import__('os')", "__import__ is not an allowed function"),
    ("__import__('os').system('true')", "attribute access"),
    ("os.system('ls')", "attribute access \\(os.system\\)"),
    ("().__class__", "attribute access"),
    ("x + 1", "unknown name 'x'"),
    ("open('/etc/passwd')", "open is not an allowed function"),
    ("'a' * 3", "only numbers"),
    ("[1, 2][0]", "indexing"),
    ("1 if 1 else 0", "IfExp"),
    ("lambda: 1", "lambda"),
    ("1 < 2", "comparison"),
    ("True + 1", "only numbers"),
    ("2 << 3", "the operator"),
    ("1 / 0", "division by zero in 1 / 0"),
    ("sqrt(-1)", "sqrt\\(-1\\): math domain error"),
    ("(-8) ** 0.5", "no real value"),
    ("2.0 ** 10000", "too large"),
    ("1e308 * 10", "not a finite number"),
    ("factorial(10000)", "factorial is limited"),
    ("max(x=1)", "positional arguments"),
    ("2 +", "cannot parse"),
    ("1" * 600, "the limit is 500"),
])
def test_calculator_refuses(expression, message):
    with pytest.raises(CalculatorError, match=message):
        evaluate(expression)


@pytest.mark.parametrize("expression", ["9 ** 9 ** 9", "10 ** 10 ** 10", "2 ** 100000", "(10 ** 3000) * (10 ** 3000)",
                                        "(-3) ** 99999999", "factorial(1000) ** 100"])
def test_calculator_refuses_huge_results_quickly(expression):
    start = time.perf_counter()
    with pytest.raises(CalculatorError, match="bits; the limit is 10,000"):
        evaluate(expression)
    assert time.perf_counter() - start < 0.1


def test_calculator_errors_reach_the_model_as_tool_argument_errors():
    with pytest.raises(ToolArgumentError, match="9 \\*\\* 9 \\*\\* 9 would have about"):
        calculator.run({"expression": "9 ** 9 ** 9"})


# ----------------------------------------------------------------------------------------- python

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")
def test_python_tool_runs_code_in_the_sandbox():
    py = python_sandbox(timeout=5, memory_mb=128)
    assert py.name == "python" and "5 s" in py.description and "128 MB" in py.description
    assert py.run({"code": "print(sum(range(10)))"}) == {"exit_code": 0, "stdout": "45\n", "stderr": ""}
    refused = py.run({"code": "import socket; socket.create_connection(('127.0.0.1', 9))"})
    assert refused["exit_code"] == 1 and "network access" in refused["stopped"]
    assert "network access" in refused["refused"][0]
    assert json.loads(serialize(refused))["exit_code"] == 1


# -------------------------------------------------------------------------------------------- sql

@pytest.fixture
def shop(tmp_path):
    pytest.importorskip("sqlglot")
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as c:
        c.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
            INSERT INTO users VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Linus');
        """)
    c.close()
    return path


def test_sql_tool_reads_with_a_row_limit(shop):
    from llmkit.rag.sql import Database

    db = Database(f"sqlite:///{shop}")
    t = sql_tool(db, row_limit=2)
    assert t.name == "sql" and 'CREATE TABLE "users"' in t.description
    out = t.run({"query": "SELECT name FROM users ORDER BY id"})
    assert out == {"sql": "SELECT name FROM users ORDER BY id LIMIT 2", "columns": ["name"],
                   "rows": [["Ada"], ["Grace"]], "truncated": True}
    assert sql_tool(f"sqlite:///{shop}").run({"query": "SELECT count(*) AS n FROM users"})["rows"] == [[3]]


@pytest.mark.parametrize("query", ["DROP TABLE users", "UPDATE users SET name = 'x'", "DELETE FROM users",
                                   "SELECT 1; DROP TABLE users", "INSERT INTO users VALUES (9, 'Eve')",
                                   "ATTACH DATABASE '/tmp/x.db' AS x", "PRAGMA writable_schema = 1"])
def test_sql_tool_refuses_writes_and_stacked_statements(shop, query):
    from llmkit.rag.sql import UnsafeSQLError

    t = sql_tool(f"sqlite:///{shop}")
    with pytest.raises(UnsafeSQLError):
        t.run({"query": query})
    with sqlite3.connect(shop) as c:
        assert c.execute("SELECT name FROM users ORDER BY id").fetchall() == [("Ada",), ("Grace",), ("Linus",)]
    c.close()


# --------------------------------------------------------------------------------------------- kb

def test_kb_search_tool(tmp_path):
    from hash_embedder import HashEmbedder

    from llmkit.rag import Document, KnowledgeBase

    kb = KnowledgeBase(tmp_path / "handbook.db", embedder=HashEmbedder())
    kb.add_documents([Document("Vacation policy: 25 days of paid leave a year.", {"source": "vacation.md"}),
                      Document("Expenses are reimbursed within 30 days.", {"source": "expenses.md"}),
                      Document("The office opens at 9 am.", {"source": "office.md"})])
    t = kb_search_tool(kb, k=2, max_k=3)
    assert t.name == "search_handbook"
    assert t.parameters["properties"]["k"]["maximum"] == 3
    hits = t.run({"query": "how many vacation days of paid leave"})
    assert len(hits) == 2 and set(hits[0]) == {"text", "source", "score"}
    assert hits[0]["source"].endswith("vacation.md") and "25 days" in hits[0]["text"]
    assert len(t.run({"query": "office", "k": 1})) == 1
    assert json.loads(serialize(hits))[0]["source"] == hits[0]["source"]
    with pytest.raises(ToolArgumentError, match="k"):
        t.run({"query": "office", "k": 50})
    with pytest.raises(ConfigError, match="no knowledge base"):
        kb_search_tool(str(tmp_path / "missing.db"))


# ------------------------------------------------------------------------------------------ files

@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("hello from the root")
    (root / "docs" / "guide.md").write_text("the guide")
    (root / "big.txt").write_text("x" * 5000)
    (root / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    (tmp_path / "secret.txt").write_text("the secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "key.txt").write_text("another secret")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")        # a file symlink out of the root
    os.symlink(tmp_path / "outside", root / "docs" / "escape")    # a directory symlink out of the root
    os.symlink(root / "docs" / "guide.md", root / "guide-link.md")  # a symlink that stays inside
    return root


def test_file_tools_read_and_list_inside_the_root(tree):
    read_file, list_files = file_tools(tree, max_bytes=1000)
    assert (read_file.name, list_files.name) == ("read_file", "list_files")
    assert read_file.run({"path": "README.md"}) == "hello from the root"
    assert read_file.run({"path": "docs/guide.md"}) == "the guide"
    assert read_file.run({"path": "guide-link.md"}) == "the guide"
    assert read_file.run({"path": "docs/../README.md"}) == "hello from the root"
    assert read_file.run({"path": str(tree / "README.md")}) == "hello from the root"  # absolute, but inside
    big = read_file.run({"path": "big.txt"})
    assert big.startswith("x" * 1000) and "the file has 5000 bytes" in big
    assert list_files.run({}) == ["README.md", "big.txt", "blob.bin", "docs/", "guide-link.md"]
    assert list_files.run({"path": "docs"}) == ["docs/guide.md"]


@pytest.mark.parametrize("path", ["../secret.txt", "docs/../../secret.txt", "leak.txt", "docs/escape/key.txt",
                                  "/etc/passwd", "SECRET", "~/.ssh/id_rsa"])
def test_file_tools_refuse_escapes(tree, path):
    read_file, _ = file_tools(tree)
    path = str(tree.parent / "secret.txt") if path == "SECRET" else path
    with pytest.raises(ToolPermissionError, match="outside the folder"):
        read_file.run({"path": path})


def test_file_tools_refuse_listing_outside_and_explain_mistakes(tree):
    read_file, list_files = file_tools(tree)
    for path in ("..", "docs/escape", "/"):
        with pytest.raises(ToolPermissionError, match="outside the folder"):
            list_files.run({"path": path})
    with pytest.raises(ToolPermissionError, match="is a directory"):
        read_file.run({"path": "docs"})
    with pytest.raises(ToolPermissionError, match="no file"):
        read_file.run({"path": "nope.md"})
    with pytest.raises(ToolPermissionError, match="binary"):
        read_file.run({"path": "blob.bin"})
    with pytest.raises(ConfigError, match="not a directory"):
        file_tools(tree / "README.md")


# ------------------------------------------------------------------------------------------- http

@pytest.fixture
def web():
    from loopback import Loopback, Reply

    def handler(req):
        if req.path == "/redirect-out":
            return Reply(302, "", headers={"location": "http://example.com/"})
        if req.path == "/redirect-in":
            return Reply(302, "", headers={"location": "/api/data"})
        if req.path == "/big":
            return Reply(200, "y" * 10_000)
        return Reply(200, {"path": req.path, "host": req.headers.get("host")})

    with Loopback(handler) as srv:
        yield srv


def test_http_get_follows_the_allow_list(web):
    port = web.server.server_address[1]
    get = http_get_tool([f"127.0.0.1:{port}"], max_bytes=1000)
    assert get.name == "http_get" and f"127.0.0.1:{port}" in get.description
    out = get.run({"url": f"{web.url}/api/data"})
    assert out["status"] == 200 and json.loads(out["text"]) == {"path": "/api/data", "host": f"127.0.0.1:{port}"}
    moved = get.run({"url": f"{web.url}/redirect-in"})
    assert moved["url"] == f"{web.url}/api/data" and json.loads(moved["text"])["path"] == "/api/data"
    big = get.run({"url": f"{web.url}/big"})
    assert big["truncated"] and len(big["text"]) == 1000


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:{other}/", "not on this tool's allow-list"),
    ("http://localhost:{port}/", "not on this tool's allow-list"),
    ("http://example.com/", "not on this tool's allow-list"),
    ("ftp://127.0.0.1:{port}/", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http://user:pw@127.0.0.1:{port}/", "credentials"),
    ("http://127.0.0.1:{port}/redirect-out", "example.com:80/ is not on this tool's allow-list"),
])
def test_http_get_refuses_off_list(web, url, message):
    port = web.server.server_address[1]
    get = http_get_tool([f"127.0.0.1:{port}"])
    with pytest.raises(ToolPermissionError, match=message):
        get.run({"url": url.format(port=port, other=port + 1 if port < 65535 else port - 1)})
    # refused before connecting; only the redirecting page itself was fetched
    assert [r.path for r in web.requests] == (["/redirect-out"] if "redirect" in url else [])


def test_http_get_url_prefixes_and_private_names(web):
    port = web.server.server_address[1]
    api = http_get_tool([f"http://127.0.0.1:{port}/api/"])
    assert api.run({"url": f"{web.url}/api/v1"})["status"] == 200
    for path in ("/admin", "/apix", "/api/../admin", "/api/%2e%2e/admin"):
        with pytest.raises(ToolPermissionError):
            api.run({"url": web.url + path})
    # a listed *name* that resolves to a loopback address needs allow_private=True
    with pytest.raises(ToolPermissionError, match="private or loopback"):
        http_get_tool([f"localhost:{port}"]).run({"url": f"http://localhost:{port}/x"})
    out = http_get_tool([f"localhost:{port}"], allow_private=True).run({"url": f"http://localhost:{port}/x"})
    assert out["status"] == 200 and json.loads(out["text"])["host"] == f"localhost:{port}"


def test_http_get_is_off_without_an_allow_list():
    for allow in ([], "", [" "]):
        with pytest.raises(ConfigError, match="needs an allow-list"):
            http_get_tool(allow)


# --------------------------------------------------------------------------------------- registry

def test_builtin_tools_from_a_cli_spec(tree, shop):
    tools = builtin_tools(f"calculator, python, files:{tree}, sql:sqlite:///{shop}, http:127.0.0.1:8000, "
                          "http:https://api.example.com/v1/", python={"timeout": 3})
    assert all(isinstance(t, FunctionTool) for t in tools)
    assert [t.name for t in tools] == ["calculator", "python", "read_file", "list_files", "sql", "http_get"]
    assert tools[1].meta["limits"]["timeout"] == 3
    assert tools[-1].meta["allow"] == ["127.0.0.1:8000", "https://api.example.com/v1/"]
    assert set(BUILTINS) == {"calculator", "python", "kb", "sql", "files", "http"}


@pytest.mark.parametrize("spec, message", [
    ("calculator,shell", "unknown built-in tool 'shell'; accepted: calculator, python, kb:NAME, sql:URL, files:DIR, http:HOST"),
    ("kb", "kb needs an argument: kb:NAME"),
    ("files:", "files needs an argument: files:DIR"),
    ("calculator:x", "calculator takes no argument"),
    ("files:/no/such/dir", "not a directory"),
    ("calculator,calculator", "two built-in tools would be named 'calculator'"),
])
def test_builtin_tools_refuse_bad_specs(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
        builtin_tools(spec)
    with pytest.raises(ConfigError, match="options for unknown built-in tool"):
        builtin_tools("calculator", shell={})
