"""models/scripted.py: the scripted model that tests of programs and agents are built on."""
import pytest

import llmkit as lk
from llmkit.core.types import Completion, ToolCall
from llmkit.models.scripted import ScriptedModel, ScriptExhausted

ADD = {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}


def test_replies_come_in_order_and_every_call_is_recorded():
    m = ScriptedModel(["first", {"name": "add", "arguments": {"a": 1}}, ToolCall(id="c9", name="add")])
    assert m.chat("one", temperature=0.3).text == "first"
    r = m.chat("two", tools=[ADD])
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].name == "add" and r.tool_calls[0].arguments == {"a": 1}
    assert m.chat("three", tools=[ADD]).tool_calls[0].id == "c9"
    assert m.prompts == ["one", "two", "three"]
    assert m.calls[0][1].temperature == 0.3 and m.calls[1][2][0].name == "add"


def test_a_callable_reply_sees_the_messages_and_streams_word_by_word():
    m = ScriptedModel(lambda msgs, tools: msgs[-1].content.upper(), repeat=True)
    chunks = list(m.stream("shout it"))
    assert [c.text for c in chunks[:-1]] == ["SHOUT ", "IT"] and chunks[-1].finish_reason == "stop"
    assert m.chat("again").text == "AGAIN"


def test_an_exhausted_script_fails_loudly_naming_the_call():
    m = lk.model("scripted", replies=["only"])
    m.chat("a")
    with pytest.raises(ScriptExhausted, match="1 replies and got call 2: 'b'"):
        m.chat("b")


def test_structured_output_is_validated_and_repaired_like_any_backend():
    m = ScriptedModel(['{"a": "x"}', '{"a": 2}'])
    assert m.json("give", schema={"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}) == {"a": 2}
    assert "a" in m.prompts[1] and len(m.calls) == 2  # the second call carried the validation errors


def test_a_completion_reply_keeps_its_logprobs():
    lp = [lk.TokenLogprob(token="yes", logprob=-0.1, top=[("yes", -0.1), ("no", -2.4)])]
    m = ScriptedModel([Completion(text="yes", logprobs=lp, finish_reason="stop")])
    assert m.chat("relevant?").logprobs[0].top[1] == ("no", -2.4)
