"""Structured output and tool calls on the embedded model, through a live server and the official SDKs.

The SDKs' own helpers (``chat.completions.parse``, ``chat.completions.stream``,
``pydantic_function_tool``, Anthropic's ``messages.stream``) parse what the server sends, so
these tests also cross-check our wire format against the clients people use.
"""
import json
import re

import anthropic
import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
BRIEF = {"role": "system", "content": "Be brief."}
PARIS = [BRIEF, {"role": "user", "content": "What is the capital of France? Answer with its name and country."}]
WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris?"}]
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.",
                                            "parameters": CITY_SCHEMA}}
PALETTE = {  # an enum, an array with bounds, no extra keys: the parts a grammar must get right
    "type": "object", "additionalProperties": False, "required": ["mood", "colors"],
    "properties": {"mood": {"enum": ["happy", "sad"]},
                   "colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3}}}
PALETTE_Q = [BRIEF, {"role": "user", "content": "Describe a sunny beach day: its mood and up to three colors."}]
# Each tool reply here fits in 128 tokens: the model repeats its call until the grammar's limit of 4 (deduplicated).
TOOL_TOKENS = 128


class City(BaseModel):
    name: str
    country: str


class GetWeather(BaseModel):
    city: str


def ask(client, messages=PARIS, **kw):
    return client.chat.completions.create(messages=messages, **{"model": MODEL, "temperature": 0, "max_tokens": 64, **kw})


def stream_text(client, messages, **kw) -> tuple[str, str | None]:
    """The concatenated content and the finish reason of a streamed answer."""
    text, finish = [], None
    for chunk in ask(client, messages, stream=True, **kw):
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return "".join(text), finish


def still_serving(live) -> None:
    r = ask(live.openai(), max_tokens=8, response_format={"type": "json_object"})
    assert r.choices[0].message.content.startswith("{")


def weather_call(message) -> dict:
    """The one get_weather call of ``message``, its arguments parsed (they must be a JSON string)."""
    (call,) = message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, CITY_SCHEMA)
    return args


# --- response_format -----------------------------------------------------------------------------
def test_sdk_parse_helper_returns_a_validated_instance(live):
    r = live.openai().chat.completions.parse(model=MODEL, messages=PARIS, response_format=City, temperature=0,
                                             max_tokens=64)
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, City) and message.parsed == City(**json.loads(message.content))
    assert message.parsed.name  # what the 135M model puts there shifts with the batch; the shape may not


def test_sdk_stream_helper_parses_the_streamed_json(live):
    kw = {"model": MODEL, "messages": PARIS, "response_format": City, "temperature": 0, "max_tokens": 64}
    plain = live.openai().chat.completions.parse(**kw).choices[0].message
    with live.openai().chat.completions.stream(**kw) as s:
        final = s.get_final_completion().choices[0].message
    # both parse and validate; not compared token for token: a repeated greedy request may take the
    # other branch of a near-tie when the prefix cache changes the kernels' shapes (see tests/greedy.py)
    assert isinstance(final.parsed, City) and isinstance(plain.parsed, City)
    assert final.parsed == City(**json.loads(final.content))


def test_json_object_is_a_json_object(live):
    r = ask(live.openai(), [BRIEF, {"role": "user", "content": "Give a person's name and age as JSON."}],
            response_format={"type": "json_object"})
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_with_enum_and_array_validates_plain_and_streamed(live):
    fmt = {"type": "json_schema", "json_schema": {"name": "palette", "schema": PALETTE, "strict": True}}
    r = ask(live.openai(), PALETTE_Q, response_format=fmt)
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), PALETTE)
    text, finish = stream_text(live.openai(), PALETTE_Q, response_format=fmt)
    assert finish == "stop"
    jsonschema.validate(json.loads(text), PALETTE)


@pytest.mark.parametrize("fmt, question, check", [
    ({"type": "regex", "pattern": r"\d{4}-\d{2}-\d{2}"}, "On what date did World War II end?",
     lambda text: re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)),
    ({"type": "choice", "choices": ["positive", "negative", "neutral"]}, "Sentiment of 'I loved this film!'?",
     lambda text: text in ("positive", "negative", "neutral")),
    ({"type": "grammar", "grammar": 'start: "yes" | "no"'}, "Is Paris in France?",
     lambda text: text in ("yes", "no")),
], ids=["regex", "choice", "grammar"])
def test_llmkit_response_formats_through_extra_body_and_raw_http(live, fmt, question, check):
    messages = [BRIEF, {"role": "user", "content": question}]
    r = ask(live.openai(), messages, max_tokens=24, extra_body={"response_format": fmt})
    text = r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and check(text), text
    raw = httpx.post(live.url + "/v1/chat/completions", timeout=120, json={
        "messages": messages, "temperature": 0, "max_tokens": 24, "response_format": fmt}).raise_for_status().json()
    assert check(raw["choices"][0]["message"]["content"]), raw


def test_a_truncated_constrained_answer_is_a_length_finish_not_an_error(live):
    fmt = {"type": "json_schema", "json_schema": {"name": "palette", "schema": PALETTE}}
    r = ask(live.openai(), PALETTE_Q, max_tokens=3, response_format=fmt)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3
    text = r.choices[0].message.content
    assert text.startswith("{") and text != "{}"  # the prefix of an answer, cut where OpenAI would cut it
    streamed, finish = stream_text(live.openai(), PALETTE_Q, max_tokens=3, response_format=fmt)
    assert finish == "length" and streamed.startswith("{")
    still_serving(live)


# --- tools ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_choice_calls_the_tool_with_valid_arguments(live, tool_choice):
    r = ask(live.openai(), WEATHER_Q, tools=[WEATHER], tool_choice=tool_choice, max_tokens=TOOL_TOKENS)
    assert r.choices[0].finish_reason == "tool_calls"
    assert weather_call(r.choices[0].message)["city"] == "Paris"
    assert not r.choices[0].message.content  # OpenAI sends null beside tool calls


def test_tool_choice_none_answers_in_text(live):
    r = ask(live.openai(), WEATHER_Q, tools=[WEATHER], tool_choice="none", max_tokens=32)
    message = r.choices[0].message
    assert message.tool_calls is None and message.content and "<tool_call>" not in message.content
    assert r.choices[0].finish_reason in ("stop", "length")


def test_sdk_parses_arguments_of_a_pydantic_function_tool(live):
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")  # strict: additionalProperties false
    r = live.openai().chat.completions.parse(model=MODEL, messages=WEATHER_Q, tools=[tool], tool_choice="required",
                                             temperature=0, max_tokens=TOOL_TOKENS)
    (call,) = r.choices[0].message.tool_calls
    assert call.function.parsed_arguments == GetWeather(city="Paris")


def test_streamed_tool_calls_arrive_as_deltas_and_accumulate(live):
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    deltas = []
    with live.openai().chat.completions.stream(model=MODEL, messages=WEATHER_Q, tools=[tool], tool_choice="required",
                                               temperature=0, max_tokens=TOOL_TOKENS) as s:
        for event in s:
            if event.type == "chunk":
                deltas += [c.delta.tool_calls for c in event.chunk.choices if c.delta.tool_calls]
        final = s.get_final_completion().choices[0]
    assert deltas and deltas[0][0].index == 0 and deltas[0][0].function.name == "get_weather"
    assert final.finish_reason == "tool_calls"
    assert weather_call(final.message) == {"city": "Paris"}
    assert final.message.tool_calls[0].function.parsed_arguments == GetWeather(city="Paris")


def test_a_tool_result_sent_back_gets_a_text_answer(live):
    client = live.openai()
    first = ask(client, WEATHER_Q, tools=[WEATHER], tool_choice="required", max_tokens=TOOL_TOKENS)
    called = first.choices[0].message
    result = {"role": "tool", "tool_call_id": called.tool_calls[0].id, "content": '{"temperature_c": 21, "sky": "sunny"}'}
    r = ask(client, [*WEATHER_Q, called, result], tools=[WEATHER], tool_choice="none", max_tokens=32)
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content.strip()


def test_a_reply_cut_inside_a_second_call_keeps_only_the_complete_calls(live):
    r = ask(live.openai(), WEATHER_Q, tools=[WEATHER], tool_choice="required", max_tokens=48)
    assert weather_call(r.choices[0].message) == {"city": "Paris"}
    assert not r.choices[0].message.content, r.choices[0].message.content


def test_parallel_tool_calls_false_makes_one_call_and_stops(live):
    r = ask(live.openai(), WEATHER_Q, tools=[WEATHER], tool_choice="required", max_tokens=TOOL_TOKENS,
            parallel_tool_calls=False)
    assert r.choices[0].finish_reason == "tool_calls" and len(r.choices[0].message.tool_calls) == 1
    both = ask(live.openai(), WEATHER_Q, tools=[WEATHER], tool_choice="required", max_tokens=TOOL_TOKENS)
    assert r.usage.completion_tokens < both.usage.completion_tokens  # no stuttered repeats to generate
    m = live.anthropic().messages.create(
        model=MODEL, messages=WEATHER_Q, max_tokens=TOOL_TOKENS, extra_body={"temperature": 0},
        tools=[{"name": "get_weather", "input_schema": CITY_SCHEMA}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert [b.type for b in m.content] == ["tool_use"] and m.usage.output_tokens == r.usage.completion_tokens


def test_anthropic_output_config_json_schema(live):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"],
              "additionalProperties": False}
    kw = dict(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Capital of France, as JSON?"}],
              extra_body={"temperature": 0, "output_config": {"format": {"type": "json_schema", "schema": schema}}})
    m = live.anthropic().messages.create(**kw)
    value = json.loads(m.content[0].text)
    jsonschema.validate(value, schema)
    with live.anthropic().messages.stream(**kw) as st:
        jsonschema.validate(json.loads(st.get_final_message().content[0].text), schema)
    bad = {**kw, "extra_body": {"output_config": {"format": {"type": "json_schema", "schema": {"type": "objekt"}}}}}
    with pytest.raises(anthropic.BadRequestError, match="objekt"):
        live.anthropic().messages.create(**bad)


def test_required_tool_choice_without_tools_is_a_400(live):
    with pytest.raises(openai.BadRequestError, match="needs tools"):
        ask(live.openai(), tool_choice="required")


def test_anthropic_tool_choice_any_is_a_tool_use(live):
    client = live.anthropic()
    tool = {"name": "get_weather", "description": "Get the current weather in a city.", "input_schema": CITY_SCHEMA}
    kw = {"model": MODEL, "messages": WEATHER_Q, "max_tokens": TOOL_TOKENS, "tools": [tool],
          "tool_choice": {"type": "any"}, "extra_body": {"temperature": 0}}
    m = client.messages.create(**kw)
    assert m.stop_reason == "tool_use" and [b.type for b in m.content] == ["tool_use"]
    assert m.content[0].name == "get_weather" and m.content[0].input == {"city": "Paris"}
    with client.messages.stream(**kw) as s:  # input_json_delta, accumulated by the SDK
        final = s.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].input == {"city": "Paris"}


# --- errors --------------------------------------------------------------------------------------
def test_an_invalid_schema_is_a_400_naming_response_format(live):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}
    with pytest.raises(openai.BadRequestError) as e:
        ask(live.openai(), response_format=bad)
    assert e.value.param == "response_format" and "objekt" in e.value.message
    still_serving(live)


def test_response_format_with_tools_is_a_400(live):
    with pytest.raises(openai.BadRequestError) as e:
        ask(live.openai(), WEATHER_Q, tools=[WEATHER], response_format={"type": "json_object"})
    assert e.value.param == "response_format" and "not both" in e.value.message
    still_serving(live)
