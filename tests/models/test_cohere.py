"""The Cohere backend against a loopback server speaking the Chat API v2 wire format."""
import time

import pytest
from pydantic import BaseModel

import llmkit as lk
from llmkit.structured import Typed
from loopback import Loopback, Reply, sse

KEY = "co-test-secret-456"


def cohere(handler):
    """Wrap a handler with the checks every Cohere request must pass."""
    def checked(req):
        assert req.method == "POST", req.method
        assert req.headers.get("authorization") == f"Bearer {KEY}", "Authorization: Bearer missing or wrong"
        assert req.query == {}
        return handler(req)
    return Loopback(checked)


def model(srv, **kw):
    return lk.model("cohere:command-x", base_url=srv.url, api_key=KEY, **kw)


def response(content=None, finish="COMPLETE", usage=(12, 5), tool_calls=None, tool_plan=None, **extra):
    msg = {"role": "assistant", "content": [{"type": "text", "text": t} for t in content or []]}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if tool_plan:
        msg["tool_plan"] = tool_plan
    return {"id": "resp-1", "finish_reason": finish, "message": msg,
            "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2},
                      "tokens": {"input_tokens": usage[0], "output_tokens": usage[1]}}, **extra}


def ev(kind, **fields):
    """One v2 stream event, framed as Cohere frames it (event name and a JSON ``type``)."""
    return sse({"type": kind, **fields}, event=kind)


def text_delta(text):
    return ev("content-delta", index=0, delta={"message": {"content": {"text": text}}})


def message_end(finish="COMPLETE", usage=(9, 3), **delta):
    return ev("message-end", delta={"finish_reason": finish, "usage": {
        "billed_units": {"input_tokens": 1, "output_tokens": 1},
        "tokens": {"input_tokens": usage[0], "output_tokens": usage[1]}}, **delta})


WEATHER = lk.Tool(name="get_weather", description="Current weather in a city",
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
CLOCK = lk.Tool(name="get_time", description="Local time in a city",
                parameters={"type": "object", "properties": {"city": {"type": "string"}}})


def test_chat_sends_v2_messages_and_sampling_and_parses_reply():
    with cohere(lambda req: Reply(200, response(["Paris", "."]))) as srv:
        r = model(srv).chat([lk.system("Be brief."), lk.user("Capital of France?"), lk.assistant("Paris."),
                             lk.user("And Italy?")],
                            temperature=0.3, top_p=0.9, top_k=40, max_tokens=64, stop=["\n\n"], seed=7,
                            frequency_penalty=0.1, presence_penalty=0.2)
    req = srv.requests[0]
    assert req.path == "/v2/chat"
    body = req.json
    assert body["model"] == "command-x"
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Capital of France?"},
                                {"role": "assistant", "content": "Paris."},
                                {"role": "user", "content": "And Italy?"}]
    assert (body["temperature"], body["p"], body["k"], body["max_tokens"], body["stop_sequences"], body["seed"]) == \
        (0.3, 0.9, 40, 64, ["\n\n"], 7)
    assert (body["frequency_penalty"], body["presence_penalty"]) == (0.1, 0.2)
    assert not {"top_p", "top_k", "stop", "stream", "tools", "tool_choice"} & set(body)
    assert r.text == "Paris."
    assert r.finish_reason == "stop"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (12, 5)  # tokens, not billed_units
    assert (r.model, r.provider) == ("command-x", "cohere")
    assert r.raw["id"] == "resp-1"


def test_usage_falls_back_to_billed_units():
    reply = response(["ok"])
    del reply["usage"]["tokens"]
    with cohere(lambda req: Reply(200, reply)) as srv:
        r = model(srv).chat("hi")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (3, 2)


@pytest.mark.parametrize("reason,finish", [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length")])
def test_finish_reasons_map(reason, finish):
    with cohere(lambda req: Reply(200, response(["x"], finish=reason))) as srv:
        assert model(srv).chat("hi").finish_reason == finish


def test_error_finish_reason_is_a_provider_error():
    with cohere(lambda req: Reply(200, response([], finish="ERROR"))) as srv:
        with pytest.raises(lk.ProviderError, match="ERROR"):
            model(srv).chat("hi")


def test_logprobs_are_requested_and_parsed():
    reply = response(["Hi there"], logprobs=[{"token_ids": [1], "text": "Hi", "logprobs": [-0.5]},
                                             {"token_ids": [2, 3], "text": " there", "logprobs": [-0.25, -0.25]}])
    with cohere(lambda req: Reply(200, reply)) as srv:
        r = model(srv).chat("hi", logprobs=True)
    assert srv.requests[0].json["logprobs"] is True
    assert [(t.token, t.logprob) for t in r.logprobs] == [("Hi", -0.5), (" there", -0.5)]


def test_stream_assembles_text_usage_and_finish_reason():
    events = [ev("message-start", id="m1", delta={"message": {"role": "assistant", "content": []}}),
              ev("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}),
              text_delta("Hel"), text_delta("lo"), text_delta("!"),
              ev("content-end", index=0),
              message_end("COMPLETE", (9, 3))]
    with cohere(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream([lk.user("Say hello")], temperature=0))
    body = srv.requests[0].json
    assert srv.requests[0].path == "/v2/chat"
    assert body["stream"] is True and body["temperature"] == 0
    assert "".join(c.text for c in chunks) == "Hello!"
    assert [c.text for c in chunks[:3]] == ["Hel", "lo", "!"]
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert (last.usage.input_tokens, last.usage.output_tokens) == (9, 3)
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_stream_without_message_end_is_an_error():
    with cohere(lambda req: Reply(200, events=[text_delta("Hel")])) as srv:
        with pytest.raises(lk.ProviderError, match="message-end"):
            list(model(srv).stream("hi"))


def test_stream_error_at_message_end_is_a_provider_error():
    with cohere(lambda req: Reply(200, events=[text_delta("Hel"), message_end("ERROR", error="internal failure")])) as srv:
        with pytest.raises(lk.ProviderError, match="internal failure"):
            list(model(srv).stream("hi"))


def test_tool_call_sends_tools_and_returns_calls_with_plan():
    calls = [{"id": "get_weather_abc", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    reply = response(None, finish="TOOL_CALL", tool_calls=calls, tool_plan="I will look up the weather.")
    with cohere(lambda req: Reply(200, reply)) as srv:
        r = model(srv).chat("Weather in Paris?", tools=[WEATHER, CLOCK], tool_choice="required")
    body = srv.requests[0].json
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                                               "parameters": WEATHER.parameters}},
                             {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                                               "parameters": CLOCK.parameters}}]
    assert body["tool_choice"] == "REQUIRED"
    assert r.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [("get_weather_abc", "get_weather", {"city": "Paris"})]
    assert r.text == "I will look up the weather."


@pytest.mark.parametrize("choice,names,wire", [("auto", ["get_weather", "get_time"], None),
                                               ("none", ["get_weather", "get_time"], "NONE"),
                                               ("get_time", ["get_time"], "REQUIRED")])
def test_tool_choice_maps_to_v2(choice, names, wire):
    with cohere(lambda req: Reply(200, response(["ok"]))) as srv:
        model(srv).chat("hi", tools=[WEATHER, CLOCK], tool_choice=choice)
    body = srv.requests[0].json
    assert [t["function"]["name"] for t in body["tools"]] == names
    assert body.get("tool_choice") == wire


def test_streamed_tool_call_arrives_whole():
    start = {"message": {"tool_calls": {"id": "get_weather_abc", "type": "function",
                                        "function": {"name": "get_weather", "arguments": ""}}}}
    events = [ev("message-start", id="m1", delta={"message": {"role": "assistant"}}),
              ev("tool-plan-delta", delta={"message": {"tool_plan": "I will "}}),
              ev("tool-plan-delta", delta={"message": {"tool_plan": "check."}}),
              ev("tool-call-start", index=0, delta=start),
              ev("tool-call-delta", index=0, delta={"message": {"tool_calls": {"function": {"arguments": '{"city": '}}}}),
              ev("tool-call-delta", index=0, delta={"message": {"tool_calls": {"function": {"arguments": '"Paris"}'}}}}),
              ev("tool-call-end", index=0),
              message_end("TOOL_CALL", (30, 12))]
    with cohere(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream("Weather in Paris?", tools=[WEATHER]))
    assert srv.requests[0].json["stream"] is True
    with_calls = [c for c in chunks if c.tool_calls]
    assert len(with_calls) == 1 and len(with_calls[0].tool_calls) == 1  # whole, once
    call = with_calls[0].tool_calls[0]
    assert (call.id, call.name, call.arguments) == ("get_weather_abc", "get_weather", {"city": "Paris"})
    assert "".join(c.text for c in chunks) == "I will check."
    assert chunks[-1].finish_reason == "tool_calls"
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (30, 12)


def test_streamed_tool_call_with_bad_json_is_a_provider_error():
    start = {"message": {"tool_calls": {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}
    events = [ev("tool-call-start", index=0, delta=start),
              ev("tool-call-delta", index=0, delta={"message": {"tool_calls": {"function": {"arguments": '{"city": '}}}}),
              ev("tool-call-end", index=0), message_end("TOOL_CALL")]
    with cohere(lambda req: Reply(200, events=events)) as srv:
        with pytest.raises(lk.ProviderError, match="invalid JSON"):
            list(model(srv).stream("hi", tools=[WEATHER]))


def test_tool_result_round_trip_wire_shape():
    call = lk.ToolCall(id="get_weather_abc", name="get_weather", arguments={"city": "Paris"})
    convo = [lk.user("Weather and time in Paris?"), lk.assistant("I will look it up.", [call]),
             lk.tool('{"temp_c": 21}', "get_weather_abc"), lk.tool("sunny", "get_weather_abc")]
    with cohere(lambda req: Reply(200, response(["21°C and sunny"]))) as srv:
        r = model(srv).chat(convo, tools=[WEATHER])
    assert srv.requests[0].json["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "tool_plan": "I will look it up.", "tool_calls": [
            {"id": "get_weather_abc", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "get_weather_abc",
         "content": [{"type": "document", "document": {"data": '{"temp_c": 21}'}}]},
        {"role": "tool", "tool_call_id": "get_weather_abc",  # non-JSON output wrapped as {"result": ...}
         "content": [{"type": "document", "document": {"data": '{"result": "sunny"}'}}]},
    ]
    assert r.text == "21°C and sunny"


def test_429_with_retry_after_waits_then_succeeds():
    def handler(req):
        if len(srv.requests) == 1:
            return Reply(429, {"message": "You are using a Trial key, which is limited"}, headers={"Retry-After": "1"})
        return Reply(200, response(["ok"]))
    with cohere(handler) as srv:
        t0 = time.perf_counter()
        r = model(srv, backoff=0).chat("hi")
        elapsed = time.perf_counter() - t0
    assert r.text == "ok"
    assert len(srv.requests) == 2
    assert elapsed >= 0.9


def test_persistent_500_is_a_provider_error_after_all_retries():
    with cohere(lambda req: Reply(500, {"message": "internal server error, this has been reported"})) as srv:
        with pytest.raises(lk.ProviderError) as e:
            model(srv, max_retries=2, backoff=0).chat("hi")
    assert len(srv.requests) == 3
    assert e.value.status == 500
    assert e.value.message == "internal server error, this has been reported"
    assert "internal server error" in str(e.value)


@pytest.mark.parametrize("body", ["<html>bad gateway</html>", {"unexpected": True}, {"message": {"content": "nope"}},
                                  response(None, tool_calls=[{"id": "t1", "function": {"name": "f", "arguments": "{bad"}}])])
def test_malformed_body_is_a_provider_error(body):
    with cohere(lambda req: Reply(200, body)) as srv:
        with pytest.raises(lk.ProviderError, match="malformed"):
            model(srv).chat("hi")


def test_malformed_stream_event_is_a_provider_error():
    with cohere(lambda req: Reply(200, events=[sse("{not json", event="content-delta")])) as srv:
        with pytest.raises(lk.ProviderError, match="malformed"):
            list(model(srv).stream("hi"))


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_authentication_errors_and_not_retried(status):
    with cohere(lambda req: Reply(status, {"message": "invalid api token"})) as srv:
        with pytest.raises(lk.AuthenticationError) as e:
            model(srv, backoff=0).chat("hi")
    assert len(srv.requests) == 1
    assert e.value.status == status and e.value.message == "invalid api token"
    assert KEY not in str(e.value) and KEY not in repr(e.value)


def test_missing_key_names_both_env_vars(monkeypatch):
    for var in ("CO_API_KEY", "COHERE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(lk.ConfigError, match="CO_API_KEY or COHERE_API_KEY"):
        lk.model("cohere:command-x")


def test_key_and_base_url_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.setenv("COHERE_API_KEY", KEY)
    with cohere(lambda req: Reply(200, response(["ok"]))) as srv:
        monkeypatch.setenv("CO_API_URL", srv.url)
        assert lk.model("cohere:command-x").chat("hi").text == "ok"
    assert srv.requests[0].path == "/v2/chat"


def test_key_is_not_in_repr_info_or_errors():
    with cohere(lambda req: Reply(500, {"message": "boom"})) as srv:
        m = model(srv, max_retries=0)
        with pytest.raises(lk.ProviderError) as e:
            m.chat("hi")
    assert KEY not in repr(m) and KEY not in str(m.info)
    assert KEY not in str(e.value) and KEY not in repr(e.value)


@pytest.mark.parametrize("field,value", [("min_p", 0.1), ("top_logprobs", 3), ("repetition_penalty", 1.1)])
def test_unsupported_sampling_field_raises_before_any_request(field, value):
    with cohere(lambda req: Reply(200, response(["ok"]))) as srv:
        with pytest.raises(lk.UnsupportedParameterError, match=field):
            model(srv).chat("hi", **{field: value})
    assert srv.requests == []


def test_count_tokens_uses_tokenize():
    with cohere(lambda req: Reply(200, {"tokens": list(range(len(req.json["text"].split()))),
                                        "token_strings": req.json["text"].split()})) as srv:
        m = model(srv)
        assert m.count_tokens("one two three") == 3
        assert m.count_tokens([lk.system("be brief"), lk.user("hi there")]) == 4
    first, second = srv.requests
    assert first.path == "/v1/tokenize"
    assert first.json == {"text": "one two three", "model": "command-x"}
    assert second.json == {"text": "be brief\nhi there", "model": "command-x"}


def test_count_tokens_malformed_reply_is_a_provider_error():
    with cohere(lambda req: Reply(200, {"token_strings": "x"})) as srv:
        with pytest.raises(lk.ProviderError, match="tokenize"):
            model(srv).count_tokens("hi")


def test_stream_hands_over_a_tool_call_left_open_at_message_end():
    start = {"message": {"tool_calls": {"id": "t1", "type": "function",
                                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}}}
    events = [ev("tool-call-start", index=0, delta=start), message_end("TOOL_CALL")]
    with cohere(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream("hi", tools=[WEATHER]))
    assert [(c.id, c.arguments) for c in chunks[-1].tool_calls] == [("t1", {"city": "Oslo"})]
    assert chunks[-1].finish_reason == "tool_calls"


# --- structured output: response_format ----------------------------------------------------
class Pet(BaseModel):
    name: str
    age: int


def test_json_sends_response_format_with_json_schema_and_returns_the_instance():
    with cohere(lambda req: Reply(200, response(['{"name": "Rex", "age": 3}']))) as srv:
        pet = model(srv).json("Invent a dog.", schema=Pet, temperature=0)
    assert pet == Pet(name="Rex", age=3)
    body = srv.requests[0].json
    assert body["response_format"] == {"type": "json_object", "json_schema": Typed(Pet).schema()}
    assert body["temperature"] == 0


def test_json_without_schema_sends_json_object():
    with cohere(lambda req: Reply(200, response(['{"city": "Paris"}']))) as srv:
        assert model(srv).json("Capital of France, as JSON.") == {"city": "Paris"}
    assert srv.requests[0].json["response_format"] == {"type": "json_object"}


def test_stream_json_yields_partial_dicts_then_the_instance():
    events = [text_delta('{"name": "Re'), text_delta('x", "age": 3}'), message_end()]
    with cohere(lambda req: Reply(200, events=events)) as srv:
        got = list(model(srv).stream_json("Invent a dog.", schema=Pet))
    assert got == [{"name": "Re"}, {"name": "Rex", "age": 3}, Pet(name="Rex", age=3)]
    body = srv.requests[0].json
    assert body["stream"] is True and body["response_format"]["json_schema"] == Typed(Pet).schema()


def test_non_object_root_is_wrapped_and_unwrapped():
    with cohere(lambda req: Reply(200, response(['{"value": [1, 2]}']))) as srv:
        assert model(srv).json("Two numbers.", schema=list[int]) == [1, 2]
    wrapped = {"type": "object", "properties": {"value": {"type": "array", "items": {"type": "integer"}}},
               "required": ["value"]}
    assert srv.requests[0].json["response_format"] == {"type": "json_object", "json_schema": wrapped}

    events = [text_delta('{"value": [1, '), text_delta("2]}"), message_end()]
    with cohere(lambda req: Reply(200, events=events)) as srv:
        assert list(model(srv).stream_json("Two numbers.", schema=list[int])) == [[1, 2], [1, 2]]


def test_invalid_json_is_sent_back_with_the_errors():
    replies = iter([response(['{"name": "Rex"}']), response(['{"name": "Rex", "age": 3}'])])
    with cohere(lambda req: Reply(200, next(replies))) as srv:
        assert model(srv).json("Invent a dog.", schema=Pet) == Pet(name="Rex", age=3)
    messages = srv.requests[1].json["messages"]
    assert messages[-2] == {"role": "assistant", "content": '{"name": "Rex"}'}
    assert messages[-1]["role"] == "user" and "age" in messages[-1]["content"]
