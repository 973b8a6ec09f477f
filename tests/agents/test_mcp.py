"""agents/mcp.py and `llmkit mcp`: llmkit's MCP server as a real subprocess (stdio and streamable
HTTP on 127.0.0.1), driven by llmkit's MCP client and by the official SDK's own client."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("mcp")

from llmkit.agents import ToolArgumentError
from llmkit.agents.mcp import MCPClient, MCPToolError, kb_search_tool, mcp_tools

HERE = Path(__file__).resolve().parent
SERVER = str(HERE / "mcp_fixture_server.py")
sys.path.insert(0, str(HERE))
from mcp_fixture_server import add, distance

# Paragraphs (longer than a chunk, so chunks overlap) joined by blank lines, words by single spaces:
# what reading the document back as a resource must give exactly.
HANDBOOK = "\n\n".join(
    f"Section {i}. " + " ".join(f"Rule {i}.{j}: employees record the {w} in the ledger before noon."
                                  for j, w in enumerate(["date", "amount", "purpose", "approver", "receipt", "project"] * 4))
    for i in range(3))
VACATION = "# Vacation\n\nEmployees get 25 days of paid vacation per year. Unused days carry over until March."


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The documents, the knowledge base path and the server's environment."""
    root = tmp_path_factory.mktemp("mcp")
    docs = root / "docs"
    docs.mkdir()
    (docs / "vacation.md").write_text(VACATION)
    (docs / "handbook.txt").write_text(HANDBOOK)
    env = {"LLMKIT_HOME": str(root / "home")}
    return {"argv": [sys.executable, SERVER, str(root / "kb.db"), str(docs)], "env": env, "docs": docs,
            "kb": root / "kb.db"}


@pytest.fixture(scope="module")
def client(site):
    c = MCPClient.stdio(site["argv"], env=site["env"]).connect()
    yield c
    c.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_tools_keep_llmkit_schemas_exactly(client):
    tools = {t.name: t for t in client.tools()}
    assert list(tools) == ["add", "distance", "fail", "whoami", "search_kb"]
    assert tools["add"].parameters == add.parameters  # descriptions, types, required, additionalProperties
    assert tools["distance"].parameters == distance.parameters  # nested model: $defs and $ref survive
    search = tools["search_kb"].parameters
    assert search["properties"]["k"]["minimum"] == 1 and search["properties"]["k"]["maximum"] == 50
    assert search["properties"]["mode"]["enum"] == ["hybrid", "dense", "bm25"]
    assert search == kb_search_tool(SimpleNamespace(name="kb.db")).parameters
    assert tools["add"].description == "Add two integers."


def test_calls_return_the_text_the_tool_serialised(client):
    tools = {t.name: t for t in client.tools()}
    assert tools["add"].run({"a": 2, "b": 3}) == "5"
    assert tools["add"].run('{"a": 2, "b": "40"}') == "42"  # JSON text from a model; "40" read as pydantic would
    assert tools["add"](a=1, b=1) == "2"  # direct call, as if undecorated
    assert float(tools["distance"].run({"p": {"x": 0, "y": 0}, "q": {"x": 3, "y": 4}})) == 5.0
    hits = json.loads(tools["search_kb"].run({"query": "how many days of paid vacation", "k": 2}))
    assert hits[0]["source"].endswith("vacation.md") and "25 days" in hits[0]["text"]


def test_bad_arguments_and_failures_are_clear_errors(client):
    tools = {t.name: t for t in client.tools()}
    with pytest.raises(ToolArgumentError, match=r"invalid arguments for add: 'b' is a required property"):
        tools["add"].run({"a": 2})  # caught against the inputSchema before any round trip
    with pytest.raises(ToolArgumentError, match=r"search_kb: k: 0 is less than the minimum of 1"):
        tools["search_kb"].run({"query": "x", "k": 0})
    with pytest.raises(ToolArgumentError, match=r"Additional properties are not allowed \('c' was unexpected\)"):
        tools["add"].run({"a": 1, "b": 2, "c": 3})
    # unchecked here, so the server's pydantic model judges them: its message comes back whole
    with pytest.raises(MCPToolError, match=r"MCP tool add: invalid arguments for add: a: Input should be a valid integer"):
        client.call_tool("add", {"a": "two", "b": 1})
    with pytest.raises(MCPToolError, match=r"ValueError: disk on fire"):
        tools["fail"].run({"message": "disk on fire"})
    with pytest.raises(MCPToolError, match=r"unknown tool 'nope'; available: add, distance"):
        client.call_tool("nope", {})


def test_knowledge_base_documents_are_resources(client, site):
    resources = {r.name: r for r in client.list_resources()}
    assert set(resources) == {"handbook.txt", "vacation.md"}
    assert resources["vacation.md"].title == "Vacation"
    handbook = client.read_resource(resources["handbook.txt"].uri)
    assert handbook == HANDBOOK  # stitched back from several overlapping chunks
    with pytest.raises(MCPToolError, match="no document"):
        client.read_resource("kb://kb/%2Fnowhere.txt")


def test_sync_block_ends_the_server(site):
    with mcp_tools("stdio", command=site["argv"], env=site["env"], names=["add", "whoami"], prefix="t_") as tools:
        assert [t.name for t in tools] == ["t_add", "t_whoami"]
        assert tools[0].run({"a": 20, "b": 22}) == "42"
        pid = json.loads(tools[1].run())["pid"]
        assert not gone(pid)
    assert gone(pid)  # the subprocess has exited (and been reaped) when the block ends
    with pytest.raises(MCPToolError, match="is closed"):  # and is not started again behind the user's back
        tools[0].run({"a": 1, "b": 2})


def test_async_use_on_the_callers_loop(site):
    async def main():
        async with mcp_tools("stdio", command=site["argv"], env=site["env"]) as tools:
            by = {t.name: t for t in tools}
            sums = await asyncio.gather(*(by["add"].arun({"a": i, "b": 100}) for i in range(8)))
            assert sums == [str(100 + i) for i in range(8)]
            with pytest.raises(ToolArgumentError):
                await by["add"].arun({"a": 1})
            with pytest.raises(Exception, match="would deadlock"):  # a blocking call on the owning loop
                by["add"].run({"a": 1, "b": 2})
            assert await asyncio.to_thread(by["add"].run, {"a": 1, "b": 2}) == "3"  # from a worker thread it works
            return json.loads(await by["whoami"].arun())["pid"]

    assert gone(asyncio.run(main()))


def test_official_sdk_client_over_stdio(site):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def main():
        params = StdioServerParameters(command=site["argv"][0], args=site["argv"][1:], env=site["env"])
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = {t.name: t for t in (await session.list_tools()).tools}
            assert listed["add"].input_schema == add.parameters
            ok = await session.call_tool("add", {"a": 2, "b": 3})
            assert not ok.is_error and ok.content[0].text == "5"
            bad = await session.call_tool("add", {"a": 2})
            assert bad.is_error and bad.content[0].text == "invalid arguments for add: b: Field required"
            who = await session.call_tool("whoami", {})
            assert who.structured_content == json.loads(who.content[0].text)  # dict results are structured too
            page = await session.read_resource((await session.list_resources()).resources[1].uri)
            assert page.contents[0].text == VACATION

    asyncio.run(main())


def test_streamable_http_round_trip(site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*site["argv"], "--http", str(port)], env={**os.environ, **site["env"]},
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the HTTP server did not start"
                time.sleep(0.1)
        with MCPClient.http(f"http://127.0.0.1:{port}/mcp", headers={"X-Client": "llmkit-test"}) as c:
            tools = {t.name: t for t in c.tools()}
            assert tools["add"].parameters == add.parameters
            assert tools["add"].run({"a": 40, "b": 2}) == "42"
            with pytest.raises(MCPToolError, match="ValueError: over http"):
                tools["fail"].run({"message": "over http"})
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_serves_and_lists_tools(site):
    """`llmkit mcp tools -- llmkit mcp serve --tools module:attr,kb:PATH`: both sub-commands at once."""
    cmd = [sys.executable, "-m", "llmkit", "mcp", "tools", "--json", "--env", f"LLMKIT_HOME={site['env']['LLMKIT_HOME']}",
           "--", sys.executable, "-m", "llmkit", "mcp", "serve", "--tools", f"mcp_fixture_server:TOOLS,kb:{site['kb']}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd=HERE)
    assert r.returncode == 0, r.stderr
    listed = {t["name"]: t for t in json.loads(r.stdout)}
    assert list(listed) == ["add", "distance", "fail", "whoami", "search_kb"]
    assert listed["add"]["inputSchema"] == add.parameters

    r = subprocess.run([sys.executable, "-m", "llmkit", "mcp", "serve", "--transport", "carrier-pigeon", "--tools", "x:y"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: unknown --transport 'carrier-pigeon'; accepted: stdio, http"]
    r = subprocess.run([sys.executable, "-m", "llmkit", "mcp", "tools", "--", "no-such-mcp-server-xyz"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: cannot start MCP server 'no-such-mcp-server-xyz': No such file or directory: no-such-mcp-server-xyz"]
