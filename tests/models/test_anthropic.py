"""The Anthropic backend against a loopback server speaking the Messages API wire format."""
import json
import time

import pytest
from pydantic import BaseModel

import llmkit as lk
from llmkit.structured import Typed
from llmkit.structured import StructuredOutputError
from llmkit.core import tracing
from loopback import Loopback, Reply, sse

KEY = "sk-ant-test"


def anthropic(handler):
    """Wrap a handler with the checks every Messages API request must pass."""
    def checked(req):
        assert req.method == "POST", req.method
        assert req.headers.get("x-api-key") == KEY, "x-api-key missing or wrong"
        assert req.headers.get("anthropic-version") == "2023-06-01"
        assert "authorization" not in req.headers  # Anthropic takes the key in x-api-key only
        return handler(req)
    return Loopback(checked)


def model(srv, **kw):
    return lk.model("anthropic:claude-x", base_url=srv.url, api_key=KEY, **kw)


def message(content, stop_reason="end_turn", usage=(12, 5)):
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x-20250101",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}


def error_body(kind, msg):
    return {"type": "error", "error": {"type": kind, "message": msg}}


def ev(kind, **fields):
    """One Messages API stream event: the SSE ``event:`` name repeats the payload's ``type``."""
    return sse({"type": kind, **fields}, kind)


def start(input_tokens, output_tokens=1):
    return ev("message_start", message={"id": "msg_s", "type": "message", "role": "assistant", "content": [],
                                        "model": "claude-x", "stop_reason": None, "stop_sequence": None,
                                        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}})


def text_block(i, text):
    return [ev("content_block_start", index=i, content_block={"type": "text", "text": ""}),
            ev("content_block_delta", index=i, delta={"type": "text_delta", "text": text})]


def tool_start(i, id, name="get_weather"):
    return ev("content_block_start", index=i, content_block={"type": "tool_use", "id": id, "name": name, "input": {}})


def json_piece(i, piece):
    return ev("content_block_delta", index=i, delta={"type": "input_json_delta", "partial_json": piece})


def finish(stop_reason, output_tokens):
    return [ev("message_delta", delta={"stop_reason": stop_reason, "stop_sequence": None},
               usage={"output_tokens": output_tokens}), ev("message_stop")]


WEATHER = lk.Tool(name="get_weather", description="Current weather in a city",
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def test_chat_sends_system_top_level_and_parses_reply():
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "Paris"}, {"type": "text", "text": "."}]))) as srv:
        r = model(srv).chat([lk.system("Be brief."), lk.system("Answer in English."), lk.user("Capital of France?")],
                            temperature=0.2, top_p=0.9, top_k=40, stop=["\n\n"])
    req = srv.requests[0]
    assert req.path == "/v1/messages"
    body = req.json
    assert body["model"] == "claude-x"
    assert body["system"] == "Be brief.\n\nAnswer in English."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}]
    assert body["max_tokens"] == 1024  # required by the API, defaulted when unset
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 40)
    assert body["stop_sequences"] == ["\n\n"] and "stop" not in body and "stream" not in body
    assert r.text == "Paris."
    assert r.finish_reason == "stop"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (12, 5)
    assert (r.model, r.provider) == ("claude-x-20250101", "anthropic")
    assert r.raw["id"] == "msg_01"


def test_max_tokens_and_consecutive_same_role_merge():
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "ok"}]))) as srv:
        model(srv).chat([lk.user("a"), lk.user("b"), lk.assistant("c")], max_tokens=7)
    body = srv.requests[0].json
    assert body["max_tokens"] == 7 and "system" not in body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
    ]


@pytest.mark.parametrize("stop_reason,finish", [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                                ("tool_use", "tool_calls"), ("refusal", "content_filter")])
def test_stop_reasons_map_to_finish_reasons(stop_reason, finish):
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "x"}], stop_reason))) as srv:
        assert model(srv).chat("hi").finish_reason == finish


def test_stream_assembles_text_usage_and_finish_reason():
    events = [start(25), *text_block(0, "Hello"), ev("ping"),
              ev("content_block_delta", index=0, delta={"type": "text_delta", "text": ", world"}),
              ev("content_block_stop", index=0), *finish("end_turn", 15)]
    with anthropic(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream([lk.system("Greet."), lk.user("hi")], max_tokens=50))
    body = srv.requests[0].json
    assert body["stream"] is True and body["system"] == "Greet." and body["max_tokens"] == 50
    assert [c.text for c in chunks if c.text] == ["Hello", ", world"]
    assert "".join(c.text for c in chunks) == "Hello, world"
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert (last.usage.input_tokens, last.usage.output_tokens) == (25, 15)


def test_usage_counts_cached_prompt_tokens():
    # Anthropic's input_tokens leaves out cache reads and writes; llmkit's counts the whole prompt
    body = message([{"type": "text", "text": "x"}])
    body["usage"] = {"input_tokens": 4, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000,
                     "output_tokens": 9}
    events = [ev("message_start", message={"id": "m", "usage": {"input_tokens": 4, "cache_creation_input_tokens": None,
                                                                "cache_read_input_tokens": 2000, "output_tokens": 1}}),
              *text_block(0, "x"), ev("content_block_stop", index=0), *finish("end_turn", 9)]
    with anthropic(lambda req: Reply(200, events=events) if req.json.get("stream") else Reply(200, body)) as srv:
        r = model(srv).chat("hi")
        last = list(model(srv).stream("hi"))[-1]
    assert (r.usage.input_tokens, r.usage.output_tokens) == (2104, 9)
    assert (last.usage.input_tokens, last.usage.output_tokens) == (2004, 9)


def test_base_url_must_be_http():
    with pytest.raises(lk.ConfigError, match="base_url"):
        lk.model("anthropic:claude-x", base_url="api.anthropic.com", api_key=KEY)


def test_stream_ending_without_message_stop_is_an_error():
    events = [start(3), *text_block(0, "Hel")]
    with anthropic(lambda req: Reply(200, events=events)) as srv:
        with pytest.raises(lk.ProviderError, match="message_stop"):
            list(model(srv).stream("hi"))


def test_tool_call_non_streamed():
    content = [{"type": "text", "text": "Let me check."},
               {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]
    with anthropic(lambda req: Reply(200, message(content, "tool_use"))) as srv:
        r = model(srv).chat("Weather in Paris?", tools=[WEATHER], tool_choice="get_weather")
    body = srv.requests[0].json
    assert body["tools"] == [{"name": "get_weather", "description": "Current weather in a city",
                              "input_schema": WEATHER.parameters}]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert r.text == "Let me check."
    assert r.finish_reason == "tool_calls"
    assert r.tool_calls == [lk.ToolCall(id="toolu_01", name="get_weather", arguments={"city": "Paris"})]


@pytest.mark.parametrize("choice,wire", [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})])
def test_tool_choice_wire_shapes(choice, wire):
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "x"}]))) as srv:
        model(srv).chat("hi", tools=[WEATHER], tool_choice=choice)
    assert srv.requests[0].json["tool_choice"] == wire


def test_tool_call_streamed_with_split_json():
    events = [start(40), *text_block(0, "Checking."), ev("content_block_stop", index=0),
              tool_start(1, "toolu_02"), json_piece(1, ""), json_piece(1, '{"ci'), json_piece(1, 'ty": "Pa'),
              json_piece(1, 'ris"}'), ev("content_block_stop", index=1), *finish("tool_use", 22)]
    with anthropic(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream("Weather in Paris?", tools=[WEATHER]))
    assert srv.requests[0].json["tools"][0]["input_schema"] == WEATHER.parameters
    with_calls = [c for c in chunks if c.tool_calls]
    assert len(with_calls) == 1  # emitted once, whole, when its block stopped — not held for the end
    assert with_calls[0] is not chunks[-1] and chunks[-1].tool_calls == []
    assert with_calls[0].tool_calls == [lk.ToolCall(id="toolu_02", name="get_weather", arguments={"city": "Paris"})]
    assert "".join(c.text for c in chunks) == "Checking."
    assert chunks[-1].finish_reason == "tool_calls"
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (40, 22)


def test_tool_result_round_trip_wire_shape():
    call_a = lk.ToolCall(id="toolu_a", name="get_weather", arguments={"city": "Paris"})
    call_b = lk.ToolCall(id="toolu_b", name="get_weather", arguments={"city": "Rome"})
    convo = [lk.system("Use tools."), lk.user("Weather in Paris and Rome?"),
             lk.assistant("", [call_a, call_b]),
             lk.tool("18C sunny", "toolu_a", "get_weather"), lk.tool("25C clear", "toolu_b", "get_weather"),
             lk.user("Answer in one line.")]
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "Paris 18C, Rome 25C."}]))) as srv:
        r = model(srv).chat(convo, tools=[WEATHER])
    msgs = srv.requests[0].json["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]  # alternation kept
    assert msgs[1]["content"] == [  # no blank text block beside the tool calls
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert msgs[2]["content"] == [  # both results merged into one user turn
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_b", "content": "25C clear"},
        {"type": "text", "text": "Answer in one line."},
    ]
    assert r.text == "Paris 18C, Rome 25C."


def test_tool_results_go_before_text_in_a_merged_user_turn():
    # the API rejects a user turn whose text precedes its tool_result blocks
    call = lk.ToolCall(id="toolu_c", name="get_weather", arguments={"city": "Oslo"})
    convo = [lk.user("Weather in Oslo?"), lk.assistant("Checking.", [call]), lk.user("Be quick."),
             lk.tool("-3C snow", "toolu_c")]
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "-3C."}]))) as srv:
        model(srv).chat(convo, tools=[WEATHER])
    msgs = srv.requests[0].json["messages"]
    assert msgs[1]["content"][0] == {"type": "text", "text": "Checking."}
    assert msgs[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_c", "content": "-3C snow"},
                                                   {"type": "text", "text": "Be quick."}]}


def test_unclosed_tool_block_is_emitted_whole_on_the_last_chunk():
    events = [start(9), tool_start(0, "toolu_d"), json_piece(0, '{"city": '), json_piece(0, '"Lima"}'),
              *finish("tool_use", 8)]
    with anthropic(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream("Weather in Lima?", tools=[WEATHER]))
    assert [c.tool_calls for c in chunks[:-1]] == [[]] * (len(chunks) - 1)
    assert chunks[-1].tool_calls == [lk.ToolCall(id="toolu_d", name="get_weather", arguments={"city": "Lima"})]
    assert chunks[-1].finish_reason == "tool_calls"


def test_429_honours_retry_after_then_succeeds():
    replies = [Reply(429, error_body("rate_limit_error", "slow down"), {"Retry-After": "1"}),
               Reply(200, message([{"type": "text", "text": "ok"}]))]
    with anthropic(lambda req: replies.pop(0)) as srv:
        t0 = time.perf_counter()
        r = model(srv, backoff=0).chat("hi")
        elapsed = time.perf_counter() - t0
    assert r.text == "ok"
    assert len(srv.requests) == 2
    assert elapsed >= 0.9  # waited what Retry-After asked, not backoff=0


@pytest.mark.parametrize("status,kind,msg", [(500, "api_error", "Internal server error"),
                                             (529, "overloaded_error", "Overloaded")])
def test_persistent_server_error_becomes_provider_error(status, kind, msg):
    with anthropic(lambda req: Reply(status, error_body(kind, msg))) as srv:
        with pytest.raises(lk.ProviderError) as e:
            model(srv, max_retries=2, backoff=0).chat("hi")
    assert len(srv.requests) == 3  # max_retries + 1 attempts
    assert e.value.status == status
    assert e.value.message == msg
    assert e.value.provider == "anthropic"


def test_malformed_bodies_become_provider_errors():
    bodies = iter(["<html>bad gateway</html>", {"id": "msg", "content": "not a list", "usage": {}},
                   {"content": [{"type": "text", "text": "hi"}]}])  # not JSON; wrong shape; no usage
    with anthropic(lambda req: Reply(200, next(bodies))) as srv:
        m = model(srv)
        for _ in range(3):
            with pytest.raises(lk.ProviderError, match="malformed"):
                m.chat("hi")
    assert len(srv.requests) == 3


def test_error_event_in_stream_becomes_provider_error():
    events = [start(3), *text_block(0, "Hi"), sse(error_body("overloaded_error", "Overloaded mid-stream"), "error")]
    seen = []
    with anthropic(lambda req: Reply(200, events=events)) as srv:
        with pytest.raises(lk.ProviderError, match="Overloaded mid-stream"):
            for chunk in model(srv).stream("hi"):
                seen.append(chunk.text)
    assert seen == ["Hi"]  # text before the error was delivered, then the error surfaced


def test_401_is_authentication_error_without_retry_or_key():
    # some proxies echo the key they rejected; llmkit must not pass it on
    echo = error_body("authentication_error", f"invalid x-api-key: {KEY}")
    with anthropic(lambda req: Reply(401, echo)) as srv:
        m = model(srv, backoff=0)
        with pytest.raises(lk.AuthenticationError) as e:
            m.chat("hi")
        with pytest.raises(lk.AuthenticationError) as e_stream:
            list(m.stream("hi"))
    assert len(srv.requests) == 2  # one each: a 401 is not retried
    for err in (e.value, e_stream.value):
        assert err.status == 401 and "invalid x-api-key" in str(err)
        assert KEY not in str(err) and KEY not in err.message and KEY not in err.body
    assert KEY not in repr(m) and KEY not in str(m)
    assert KEY not in json.dumps(tracing.TraceStore().list(limit=10))


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(lk.ConfigError, match="ANTHROPIC_API_KEY"):
        lk.model("anthropic:claude-x", base_url="http://127.0.0.1:9")


def test_key_and_base_url_from_environment(monkeypatch):
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "env ok"}]))) as srv:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        assert lk.model("anthropic:claude-x").chat("hi").text == "env ok"
    assert srv.requests[0].path == "/v1/messages"


def test_count_tokens():
    with anthropic(lambda req: Reply(200, {"input_tokens": 14})) as srv:
        n = model(srv).count_tokens([lk.system("Be brief."), lk.user("Hello there")])
    assert n == 14
    req = srv.requests[0]
    assert req.path == "/v1/messages/count_tokens"
    assert req.json == {"model": "claude-x", "system": "Be brief.",
                        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]}


def test_unsupported_and_out_of_range_sampling_fail_before_sending():
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "x"}]))) as srv:
        m = model(srv)
        with pytest.raises(lk.UnsupportedParameterError, match="frequency_penalty"):
            m.chat("hi", frequency_penalty=0.5)
        with pytest.raises(lk.ConfigError, match="temperature=1.5"):
            m.chat("hi", temperature=1.5)
    assert srv.requests == []


def test_info_and_no_raw_completion():
    with anthropic(lambda req: Reply(200, {})) as srv:
        m = model(srv)
        assert m.info.capabilities == ["chat", "stream", "tools"]
        with pytest.raises(lk.UnsupportedParameterError, match="complete"):
            m.complete("Once upon a time")
    assert srv.requests == []


# --- structured output: forced tool use ---------------------------------------------------
class Pet(BaseModel):
    name: str
    age: int


def answered(value, name="Pet", stop_reason="tool_use"):
    """A reply whose only block is the forced tool's call, as Claude answers with tool_choice "tool"."""
    return message([{"type": "tool_use", "id": "toolu_1", "name": name, "input": value}], stop_reason)


def test_json_forces_a_tool_whose_input_is_the_instance():
    with anthropic(lambda req: Reply(200, answered({"name": "Rex", "age": 3}))) as srv:
        pet = model(srv).json("Invent a dog.", schema=Pet)
    assert pet == Pet(name="Rex", age=3)
    body = srv.requests[0].json
    assert body["tools"] == [{"name": "Pet", "description": "Reply with the structured output.",
                              "input_schema": Typed(Pet).schema()}]
    assert body["tool_choice"] == {"type": "tool", "name": "Pet"}


def test_constrained_chat_reports_the_answer_as_text_and_stop():
    with anthropic(lambda req: Reply(200, answered({"name": "Rex", "age": 3}))) as srv:
        r = model(srv).chat("Invent a dog.", constraint=Pet)
    assert json.loads(r.text) == {"name": "Rex", "age": 3} and r.parsed == Pet(name="Rex", age=3)
    assert r.finish_reason == "stop" and r.tool_calls == []  # the tool call IS the answer, not a call to run


def test_json_without_schema_forces_an_open_object():
    with anthropic(lambda req: Reply(200, answered({"city": "Paris"}, name="respond"))) as srv:
        assert model(srv).json("Capital of France, as JSON.") == {"city": "Paris"}
    body = srv.requests[0].json
    assert body["tools"][0]["name"] == "respond" and body["tools"][0]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}


def test_non_object_root_is_wrapped_and_unwrapped():
    with anthropic(lambda req: Reply(200, answered({"value": [{"name": "Rex", "age": 3}]}, name="list"))) as srv:
        pets = model(srv).json("Invent one dog.", schema=list[Pet])
    assert pets == [Pet(name="Rex", age=3)]
    schema = srv.requests[0].json["tools"][0]["input_schema"]
    full = Typed(list[Pet]).schema()
    # $defs move up to the wrapper, so "#/$defs/Pet" still resolves
    assert schema == {"type": "object", "properties": {"value": {"type": "array", "items": {"$ref": "#/$defs/Pet"}}},
                      "required": ["value"], "$defs": full["$defs"]}


def test_stream_json_emits_the_tool_input_as_it_grows():
    events = [start(20), ev("content_block_start", index=0, content_block={"type": "tool_use", "id": "toolu_1",
                                                                           "name": "Pet", "input": {}}),
              json_piece(0, ""), json_piece(0, '{"name": "Re'), json_piece(0, 'x", "age": 3}'),
              ev("content_block_stop", index=0), *finish("tool_use", 12)]
    with anthropic(lambda req: Reply(200, events=events)) as srv:
        got = list(model(srv).stream_json("Invent a dog.", schema=Pet))
    assert got == [{"name": "Re"}, {"name": "Rex", "age": 3}, Pet(name="Rex", age=3)]
    body = srv.requests[0].json
    assert body["stream"] is True and body["tool_choice"] == {"type": "tool", "name": "Pet"}

    with anthropic(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream("Invent a dog.", constraint=Pet))
    assert "".join(c.text for c in chunks) == '{"name": "Rex", "age": 3}'
    assert chunks[-1].finish_reason == "stop" and not any(c.tool_calls for c in chunks)


def test_stream_of_a_wrapped_root_emits_the_unwrapped_value():
    events = [start(20), ev("content_block_start", index=0, content_block={"type": "tool_use", "id": "toolu_1",
                                                                           "name": "list", "input": {}}),
              json_piece(0, '{"value": [1, '), json_piece(0, "2]}"), ev("content_block_stop", index=0),
              *finish("tool_use", 9)]
    with anthropic(lambda req: Reply(200, events=events)) as srv:
        got = list(model(srv).stream_json("Two numbers.", schema=list[int]))
    assert got == [[1, 2], [1, 2]]  # the partial list, then the validated one


def test_invalid_tool_input_is_sent_back_with_the_errors_then_validates():
    replies = iter([answered({"name": "Rex"}), answered({"name": "Rex", "age": 3})])
    with anthropic(lambda req: Reply(200, next(replies))) as srv:
        pet = model(srv).json("Invent a dog.", schema=Pet)
    assert pet == Pet(name="Rex", age=3) and len(srv.requests) == 2
    turns = srv.requests[1].json["messages"]
    assert turns[-2] == {"role": "assistant", "content": [{"type": "text", "text": '{"name": "Rex"}'}]}
    assert turns[-1]["role"] == "user" and "age" in turns[-1]["content"][0]["text"]
    assert srv.requests[1].json["tool_choice"] == {"type": "tool", "name": "Pet"}


def test_tool_input_that_never_validates_raises_after_max_retries():
    with anthropic(lambda req: Reply(200, answered({"name": "Rex", "age": "old"}))) as srv:
        with pytest.raises(StructuredOutputError) as e:
            model(srv).json("Invent a dog.", schema=Pet, max_retries=2)
    assert len(srv.requests) == 3
    assert json.loads(e.value.text) == {"name": "Rex", "age": "old"}
    assert any("age" in err for err in e.value.errors)


def test_parallel_tool_calls_false_disables_parallel_tool_use():
    with anthropic(lambda req: Reply(200, message([{"type": "text", "text": "x"}]))) as srv:
        model(srv).chat("hi", tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
        model(srv).chat("hi", tools=[WEATHER], parallel_tool_calls=False)
    assert srv.requests[0].json["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert srv.requests[1].json["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
