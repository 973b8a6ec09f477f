"""agents/agent.py: the tool-calling loop and ReAct, on a scripted model (replies fixed in advance)."""
import json
import threading
import time

import pytest
from pydantic import BaseModel

import llmkit as lk
from llmkit.agents import REACT_TEMPLATE, parse_react
from llmkit.core import tracing
from llmkit.core.errors import ConfigError
from llmkit.models.scripted import ScriptedModel


@lk.tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first addend.
        b: the second addend.
    """
    return a + b


@lk.tool
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


def test_the_loop_runs_a_tool_and_feeds_its_result_back():
    m = ScriptedModel([call("add", a=2, b=3), lambda msgs, tools: f"The sum is {msgs[-1].content}."])
    r = lk.Agent(m, tools=[add]).run("What is 2 + 3?")
    assert r.output == "The sum is 5." and r.stopped == "done"
    assert [s.kind for s in r.steps] == ["model", "tool", "model", "final"]
    assert r.tool_steps[0].result == "5" and r.tool_steps[0].arguments == {"a": 2, "b": 3}
    sent_tools = m.calls[0][2]
    assert [t.name for t in sent_tools] == ["add"] and sent_tools[0].parameters["required"] == ["a", "b"]
    # the second call saw the assistant's tool call and the tool message answering it
    second = m.calls[1][0]
    assert second[-2].tool_calls[0].name == "add" and second[-1].role == "tool"
    assert second[-1].tool_call_id == second[-2].tool_calls[0].id


def test_a_failing_tool_comes_back_as_an_observation_and_the_model_recovers():
    m = ScriptedModel([call("divide", a=1, b=0), call("divide", a=1, b=4), "0.25"])
    r = lk.Agent(m, tools=[divide]).run("1/0, then 1/4")
    first, second = r.tool_steps
    assert first.error == "ZeroDivisionError: float division by zero" and first.result is None
    assert m.calls[1][0][-1].content == "Error: ZeroDivisionError: float division by zero"
    assert second.result == "0.25" and r.output == "0.25"


def test_bad_arguments_are_rejected_before_the_tool_runs_and_the_error_names_the_field():
    ran = []

    @lk.tool
    def record(n: int) -> str:
        """Record a number."""
        ran.append(n)
        return "ok"

    m = ScriptedModel([call("record", n="many"), call("record", m=1), call("nope"), "gave up"])
    r = lk.Agent(m, tools=[record]).run("record")
    errors = [s.error for s in r.tool_steps]
    assert ran == []
    assert "invalid arguments for record: n: Input should be a valid integer" in errors[0]
    assert "n: Field required" in errors[1] and "m: Extra inputs are not permitted" in errors[1]
    assert errors[2] == "unknown tool 'nope'; the tools are: record"
    assert m.calls[3][0][-1].content.startswith("Error: unknown tool")


def test_max_steps_stops_a_model_that_never_answers():
    m = ScriptedModel(call("add", a=1, b=1), repeat=True)
    r = lk.Agent(m, tools=[add], max_steps=3).run("loop")
    assert r.stopped == "max_steps" and len(m.calls) == 3 and len(r.tool_steps) == 3 and r.output == ""


def test_answer_on_limit_asks_once_more_without_tools():
    m = ScriptedModel([call("add", a=1, b=1), "It is 2."])
    r = lk.Agent(m, tools=[add], max_steps=1, answer_on_limit=True).run("1+1")
    assert r.stopped == "max_steps" and r.output == "It is 2."
    assert m.calls[1][2] is None and m.prompts[1].startswith("Stop using tools")


def test_tool_choice_applies_to_the_first_step_only():
    m = ScriptedModel([call("add", a=1, b=1), "2"])
    lk.Agent(m, tools=[add], tool_choice="add").run("1+1")
    assert m.tool_choices == ["add", None]
    with pytest.raises(ConfigError, match="tool_choice='mul' is not"):
        lk.Agent(m, tools=[add], tool_choice="mul")


def test_token_and_time_budgets():
    m = ScriptedModel(lk.Completion(text="", tool_calls=[lk.ToolCall(id="c", name="add", arguments={"a": 1, "b": 1})],
                                    usage=lk.Usage(input_tokens=60, output_tokens=10)), repeat=True)
    r = lk.Agent(m, tools=[add], max_steps=50, max_total_tokens=200).run("spend")
    assert r.stopped == "max_total_tokens" and len(m.calls) == 3 and r.usage == (180, 30)

    @lk.tool
    def slow() -> str:
        """Take a while."""
        time.sleep(0.2)
        return "done"

    m = ScriptedModel(call("slow"), repeat=True)
    r = lk.Agent(m, tools=[slow], max_steps=50, max_seconds=0.5).run("wait")
    assert r.stopped == "max_seconds" and 2 <= len(m.calls) <= 4


def test_parallel_calls_run_concurrently_and_answer_in_order():
    barrier = threading.Barrier(3, timeout=5)  # all three must be running at once to pass

    @lk.tool
    def meet(who: str) -> str:
        """Wait for the others."""
        barrier.wait()
        return f"met {who}"

    m = ScriptedModel([[call("meet", who="a"), call("meet", who="b"), call("meet", who="c")], "all met"])
    r = lk.Agent(m, tools=[meet]).run("meet")
    assert [s.result for s in r.tool_steps] == ["met a", "met b", "met c"]
    tool_msgs = m.calls[1][0][-3:]
    assert [t.content for t in tool_msgs] == ["met a", "met b", "met c"]
    assert [t.tool_call_id for t in tool_msgs] == [c.id for c in m.calls[1][0][-4].tool_calls]


def test_parallel_tool_calls_false_reaches_the_model():
    m = ScriptedModel(["fine"])
    lk.Agent(m, tools=[add], parallel_tool_calls=False).run("x")
    assert m.calls[0][2] is not None  # tools sent; the backend received parallel_tool_calls=False without error


def test_dangerous_tools_run_only_when_approved():
    deleted = []

    @lk.tool(dangerous=True)
    def delete(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return "deleted"

    script = [call("delete", path="/etc/passwd"), call("delete", path="tmp.txt"), "ok"]
    r = lk.Agent(ScriptedModel(script), tools=[delete]).run("clean up")
    assert deleted == [] and r.tool_steps[0].error == "calling delete was not approved"
    asked = []
    approve = lambda c, t: asked.append(c.arguments["path"]) or c.arguments["path"].startswith("tmp")  # noqa: E731
    r = lk.Agent(ScriptedModel(script), tools=[delete], approve=approve).run("clean up")
    assert asked == ["/etc/passwd", "tmp.txt"] and deleted == ["tmp.txt"]


def test_output_schema_returns_a_validated_object():
    class Answer(BaseModel):
        value: int
        unit: str

    m = ScriptedModel([call("add", a=40, b=2), "It is 42 metres.", '{"value": 42, "unit": "m"}'])
    r = lk.Agent(m, tools=[add], output_schema=Answer).run("How far?")
    assert r.output == Answer(value=42, unit="m") and json.loads(r.text) == {"value": 42, "unit": "m"}


def test_every_step_is_a_span_under_the_run():
    m = ScriptedModel([call("add", a=1, b=2), "3"])
    lk.Agent(m, tools=[add]).run("1+2")
    tracing.flush()
    run = tracing.TraceStore().list(limit=1, name_like="agent.run")[0]
    spans = tracing.TraceStore().get(run["trace_id"])
    names = [s["name"] for s in spans]
    assert "tool add" in names and sum(n.startswith("chat scripted") for n in names) == 2
    tool_span = next(s for s in spans if s["name"] == "tool add")
    assert tool_span["parent_id"] == run["span_id"] and tool_span["attributes"]["llmkit.tool.result"] == "3"


def test_stream_yields_steps_as_they_happen(capsys):
    m = ScriptedModel([call("add", a=1, b=2), "3"])
    events = list(lk.Agent(m, tools=[add]).stream("1+2"))
    assert [getattr(e, "kind", "result") for e in events] == ["model", "tool", "model", "result"]
    events[-1].print()
    out = capsys.readouterr().out
    assert "add({\"a\": 1, \"b\": 2}) = 3" in out and "stopped: done" in out


def test_arun():
    import asyncio

    m = ScriptedModel([call("add", a=1, b=2), "3"])
    assert asyncio.run(lk.Agent(m, tools=[add]).arun("1+2")).output == "3"


def test_react_mode_parses_actions_and_feeds_observations():
    m = ScriptedModel(["Thought: add them\nAction: add\nAction Input: {\"a\": 2, \"b\": 5}",
                       "Thought: wrong format", "Thought: done\nFinal Answer: 7"])
    r = lk.Agent(m, tools=[add], mode="react").run("2+5?")
    assert r.output == "7" and r.tool_steps[0].result == "7"
    assert m.calls[0][1].stop == ["\nObservation:"]
    second_prompt = m.prompts[1]
    assert second_prompt.startswith(REACT_TEMPLATE.split("{tools}")[0]) and second_prompt.endswith("Observation: 7")
    assert "Invalid format" in m.prompts[2]


def test_parse_react_forms():
    s = parse_react("Thought: x\nAction: search\nAction Input: {\"q\": \"a\"}\nObservation: made up\nFinal Answer: y")
    assert (s.action, s.arguments, s.final) == ("search", {"q": "a"}, None)  # an action waits for its observation
    assert parse_react("Action: search\nAction Input: cats").arguments == {"input": "cats"}
    assert parse_react("Action: search\nAction Input: {broken").error.startswith("Action Input is not a JSON object")
    assert parse_react("Final Answer: 42").final == "42"


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError, match="mode='plan' is not one of"):
        lk.Agent(ScriptedModel(), mode="plan")
    with pytest.raises(ConfigError, match="two tools are named 'add'"):
        lk.Agent(ScriptedModel(), tools=[add, add])
    with pytest.raises(ConfigError, match="is not a tool"):
        lk.Agent(ScriptedModel(), tools=["add"])


@pytest.mark.integration
def test_embedded_model_forced_calculator_call_is_valid_and_used(embedded):
    from llmkit.agents import builtin

    m = embedded
    # required: the grammar forces a well-formed call to the one tool; then the model answers from the result
    c = m.chat([lk.user("What is 17 * 23? Use the calculator.")], tools=[builtin.calculator.spec],
               tool_choice="required", temperature=0, max_tokens=64)
    assert len(c.tool_calls) >= 1 and c.tool_calls[0].name == "calculator"
    builtin.calculator.validate(c.tool_calls[0].arguments)  # valid against the schema, always
    # one forced step, then (answer_on_limit) one call without tools that must answer from the result
    r = lk.Agent(m, tools=[builtin.calculator], max_steps=1, tool_choice="calculator", answer_on_limit=True,
                 temperature=0, max_tokens=64).run("What is 17 * 23?")
    first = r.tool_steps[0]
    assert first.error is None and first.result == "391", first  # the forced call was valid and right
    assert "391" in r.text  # the answer uses the tool's result
