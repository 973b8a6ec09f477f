"""serve/ui/agents.py: the agent's steps as a transcript that grows while it runs, and the tools
picked by checkbox — the functions, then the tab in a real browser."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from browser import Live, open_ui, screenshot
from hash_embedder import HashEmbedder

import llmkit as lk
from llmkit.core.errors import LLMKitError
from llmkit.models.scripted import ScriptedModel
from llmkit.rag import Document
from llmkit.serve.ui.agents import make_tools, run, tool_choices
from llmkit.serve.ui.rag import open_kb


def calculator_model() -> ScriptedModel:
    """Asks for the calculator with a thought, then answers with the tool's result."""
    def reply(msgs, tools):
        if msgs[-1].role == "tool":
            return f"The answer is {msgs[-1].content}."
        return lk.Completion(text="I will compute it.", finish_reason="tool_calls",
                             tool_calls=[lk.ToolCall(id="c1", name="calculator", arguments={"expression": "17 * 23 + 5"})])
    return ScriptedModel(reply, repeat=True)


def ctx(host: str = "127.0.0.1", key: bool = False):
    emb = HashEmbedder()
    return SimpleNamespace(served=SimpleNamespace(embedder=lambda: emb, config=SimpleNamespace(host=host)),
                           api_key_required=key)


def test_each_step_appears_as_it_happens_and_the_final_answer_last():
    agent = lk.Agent(calculator_model(), make_tools(ctx(), ["calculator"]), max_steps=4)
    shots = list(run(agent, "What is 17 * 23 + 5?"))
    assert len(shots) > 3 and [len(m) for m, _ in shots] == sorted(len(m) for m, _ in shots)  # it only grows
    messages, final = shots[-1]
    assert messages[0] == {"role": "user", "content": "What is 17 * 23 + 5?"}
    thought, tool, answer = messages[1:]
    assert thought["content"] == "I will compute it." and thought["metadata"]["title"].startswith("💭 step 1")
    assert tool["metadata"]["title"] == "🛠️ calculator" and tool["metadata"]["status"] == "done"
    assert '"expression": "17 * 23 + 5"' in tool["content"] and "**result**\n```\n396\n```" in tool["content"]
    assert answer == {"role": "assistant", "content": "The answer is 396."}
    assert final.startswith("**Final answer:** The answer is 396.") and "`done`" in final and "1 tool run(s)" in final
    pending = next(m for m, _ in shots if len(m) == 3)  # shown before the tool ran
    assert pending[2]["metadata"]["status"] == "pending" and "result" not in pending[2]["content"]


def test_a_failing_tool_shows_its_error():
    bad = ScriptedModel([{"name": "calculator", "arguments": {"expression": "__import__('os')"}}, "Sorry."])
    messages, _ = list(run(lk.Agent(bad, make_tools(ctx(), ["calculator"]), max_steps=3), "x"))[-1]
    tool = messages[1]
    assert tool["metadata"]["title"] == "⚠️ calculator" and "**error**" in tool["content"]
    assert messages[-1]["content"] == "Sorry."


def test_tools_from_checkboxes_kb_tools_and_the_extra_spec_guard(tmp_path):
    c = ctx()
    open_kb(c.served, "atlas", create=True).add_documents([Document("Paris is in France.", {"source": "fr"})])
    assert tool_choices() == ["calculator", "python", "kb:atlas"]
    tools = make_tools(c, ["calculator", "kb:atlas"], f"files:{tmp_path}")
    assert [t.name for t in tools] == ["calculator", "read_file", "list_files", "search_atlas"]
    hits = tools[-1].run({"query": "Paris"})
    assert hits[0]["source"] == "fr"  # searched with the server's embedder
    with pytest.raises(LLMKitError, match="extra tools refused.*--api-key"):
        make_tools(ctx(host="0.0.0.0"), ["calculator"], f"files:{tmp_path}")
    assert [t.name for t in make_tools(ctx(host="0.0.0.0", key=True), [], f"files:{tmp_path}")] == ["read_file", "list_files"]


def test_browser_runs_an_agent_and_shows_its_steps(page, shots):
    from playwright.sync_api import expect

    with Live(calculator_model(), ui=True, shutdown_timeout=1) as srv:
        open_ui(page, srv.url, "Agents")
        page.locator("#agents-run").click()
        expect(page.locator("#agents-final")).to_contain_text("Final answer: The answer is 396.", timeout=60_000)
        chat = page.locator("#agents-chat")
        expect(chat).to_contain_text("calculator")
        expect(chat).to_contain_text("The answer is 396.")
        screenshot(page, shots, "agents")
