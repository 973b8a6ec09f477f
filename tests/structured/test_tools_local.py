"""Tool calls on local models: a grammar built from the tool schemas (structured/tools.py)."""
import json

import pytest

import llmkit as lk
from llmkit.core.types import Chunk, Message, Tool, ToolCall
from llmkit.structured import tools as tool_format

ADD = Tool(name="add", description="Add two numbers.", parameters={
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"],
    "additionalProperties": False})
WEATHER = Tool(name="get_weather", description="Current weather in a city.", parameters={
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                     "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]})


# --- the format, without a model ---------------------------------------------------------------
def test_parse_splits_text_and_calls_and_drops_stutters():
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    text, calls = tool_format.parse(f"{call}\n{call}\n" + call.replace("1", "5"))
    assert text == "" and [(c.name, c.arguments) for c in calls] == [("add", {"a": 1, "b": 2}), ("add", {"a": 5, "b": 2})]
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")
    assert tool_format.parse("Just text.") == ("Just text.", [])
    cut = tool_format.parse(call + '\n<tool_call>\n{"name": "add", "argu')  # the second call hit max_tokens
    assert cut[0] == "" and len(cut[1]) == 1


def test_conversation_is_rewritten_for_templates_without_tools():
    msgs = [lk.system("Be brief."), lk.user("2+3?"),
            lk.assistant(tool_calls=[ToolCall(id="c1", name="add", arguments={"a": 2, "b": 3})]),
            Message(role="tool", content="5", tool_call_id="c1", name="add")]
    out = tool_format.as_template_messages(msgs, [ADD])
    assert out[0].role == "system" and out[0].content.startswith("Be brief.") and '"name": "add"' in out[0].content
    assert out[2].content == '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    assert out[3].role == "user" and out[3].content == "<tool_response>\n5\n</tool_response>"
    assert "{tools}" in tool_format.TOOLS_PROMPT  # the visible, overridable template


def test_stream_calls_holds_a_call_and_passes_text_through():
    pieces = ["<tool", '_call>\n{"name": "add", ', '"arguments": {"a": 1, "b": 2}}\n</tool_call>']
    chunks = [Chunk(text=p) for p in pieces] + [Chunk(text="", finish_reason="stop")]
    out = list(tool_format.stream_calls(iter(chunks)))
    assert len(out) == 1 and out[0].finish_reason == "tool_calls" and out[0].tool_calls[0].arguments == {"a": 1, "b": 2}
    text = [Chunk(text="Hel"), Chunk(text="lo"), Chunk(text="", finish_reason="stop")]
    assert [c.text for c in tool_format.stream_calls(iter(text))] == ["Hel", "lo", ""]


def test_bad_tool_choice_is_named():
    with pytest.raises(lk.ConfigError, match="'mul'"):
        tool_format.ToolCalls([ADD], "mul")


# --- the embedded model ----------------------------------------------------------------------
pytestmark_integration = pytest.mark.integration


@pytestmark_integration
@pytest.mark.parametrize("choice", ["required", "add"])
def test_forced_calls_are_valid(embedded, choice):
    r = embedded.chat("What is 2 plus 3?", tools=[ADD, WEATHER], tool_choice=choice, temperature=0)
    assert r.finish_reason == "tool_calls" and r.tool_calls
    for call in r.tool_calls:
        assert call.name in ("add", "get_weather")
        if choice == "add":
            assert call.name == "add"
        if call.name == "add":
            assert set(call.arguments) == {"a", "b"} and all(isinstance(v, (int, float)) for v in call.arguments.values())


@pytestmark_integration
def test_named_tool_with_enum_argument_sampled(embedded):
    for seed in range(4):
        r = embedded.chat("Weather in Paris?", tools=[ADD, WEATHER], tool_choice="get_weather", temperature=1.0,
                          seed=seed, max_tokens=96)
        assert [c.name for c in r.tool_calls][:1] == ["get_weather"], r.text
        args = r.tool_calls[0].arguments
        assert isinstance(args["city"], str) and args.get("unit", "celsius") in ("celsius", "fahrenheit")


@pytestmark_integration
def test_auto_and_none(embedded):
    auto = embedded.chat([lk.system("Be brief."), lk.user("Say hello.")], tools=[ADD], tool_choice="auto", temperature=0)
    assert (auto.tool_calls and auto.finish_reason == "tool_calls") or (auto.text and not auto.text.startswith("<"))
    none = embedded.chat([lk.system("Be brief."), lk.user("What is 2 plus 3?")], tools=[ADD], tool_choice="none",
                         temperature=0, max_tokens=32)
    assert not none.tool_calls and none.finish_reason in ("stop", "length")


@pytestmark_integration
def test_streamed_call_and_the_result_fed_back(embedded):
    chunks = list(embedded.stream("What is 2 plus 3?", tools=[ADD], tool_choice="required", temperature=0))
    calls = [c for ch in chunks for c in ch.tool_calls]
    assert chunks[-1].finish_reason == "tool_calls" and calls and calls[0].name == "add"
    convo = [lk.user("What is 2 plus 3?"), lk.assistant(tool_calls=calls[:1]),
             Message(role="tool", content=json.dumps({"result": 5}), tool_call_id=calls[0].id, name="add")]
    final = embedded.chat(convo, tools=[ADD], tool_choice="none", temperature=0, max_tokens=32)
    assert final.text and not final.tool_calls


def test_call_arguments_are_generated_within_bounds():
    import llguidance

    def accepts(c, text):
        m = llguidance.LLMatcher(llguidance.LLTokenizer("byte"), c.grammar(), log_level=0)
        toks = list(text.encode())
        return m.try_consume_tokens(toks) == len(toks) and m.is_accepting()

    c = tool_format.ToolCalls([WEATHER], "required")
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"%s}}\n</tool_call>'
    assert accepts(c, call % "") and accepts(c, call % ', "unit": "celsius"')
    assert not accepts(c, call % ', "units": {"temp": 1}')   # invented keys: the small model's runaway
