"""The OpenAI-compatible backend against a loopback server speaking OpenAI's wire format.

Each handler returns what OpenAI documents; the tests assert both what llmkit sent (auth,
body shape, sampling names) and what it made of the reply.
"""
import json
import time

import pytest
from pydantic import BaseModel, ConfigDict
from loopback import Loopback, Reply, sse

import llmkit as lk
from llmkit.structured import Typed
from llmkit.structured import StructuredOutputError
from llmkit.core import tracing

KEY = "sk-test"


def completion(content="Paris.", finish="stop", **message):
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x-2025",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}


def chunk(delta=None, finish=None, **extra):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-x-2025",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish, **extra}]}


def openai(srv, **options):
    return lk.model("openai:gpt-x", base_url=srv.url + "/v1", api_key=KEY, **options)


WEATHER = lk.Tool(name="get_weather", description="Weather in a city",
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def test_plain_chat_sends_openai_body_and_reads_reply():
    with Loopback(lambda req: Reply(200, completion())) as srv:
        r = openai(srv).chat([lk.system("Be brief."), lk.user("Capital of France?")],
                             temperature=0.2, top_p=0.9, seed=7, stop="\n", max_tokens=16,
                             frequency_penalty=0.5, presence_penalty=-0.5)
    req = srv.requests[0]
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.json == {"model": "gpt-x", "messages": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "Capital of France?"}],
                        "temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["\n"],
                        "max_completion_tokens": 16,  # the openai preset uses OpenAI's newer name
                        "frequency_penalty": 0.5, "presence_penalty": -0.5}
    assert (r.text, r.finish_reason, r.model, r.provider) == ("Paris.", "stop", "gpt-x-2025", "openai")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (12, 3)
    assert r.raw["id"] == "chatcmpl-1"


def test_finish_reasons_are_mapped():
    cases = [("length", "length"), ("content_filter", "content_filter"), ("function_call", "tool_calls"),
             ("eos_token", "stop")]
    wires = iter(wire for wire, _ in cases)
    with Loopback(lambda req: Reply(200, completion(finish=next(wires)))) as srv:
        m = openai(srv)
        assert [m.chat("hi").finish_reason for _ in cases] == [ours for _, ours in cases]


def test_stream_assembles_text_and_ends_with_usage():
    events = [sse(chunk({"role": "assistant", "content": ""})), sse(chunk({"content": "Hel"})),
              sse(chunk({"content": "lo"})), sse(chunk({}, finish="length")),
              sse({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
              sse("[DONE]")]
    with Loopback(lambda req: Reply(200, events=events)) as srv:
        chunks = list(openai(srv).stream("hi", max_tokens=2))
    body = srv.requests[0].json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert [c.text for c in chunks] == ["Hel", "lo", ""]
    last = chunks[-1]
    assert last.finish_reason == "length"
    assert (last.usage.input_tokens, last.usage.output_tokens) == (5, 2)
    assert all(c.usage is None and c.finish_reason is None for c in chunks[:-1])


def test_error_inside_stream_raises_provider_error():
    events = [sse(chunk({"content": "Hel"})), sse({"error": {"message": "model overloaded", "type": "server_error"}})]
    with Loopback(lambda req: Reply(200, events=events)) as srv:
        with pytest.raises(lk.ProviderError, match="model overloaded"):
            list(openai(srv).stream("hi"))


def test_stream_cut_off_before_done_raises():
    with Loopback(lambda req: Reply(200, events=[sse(chunk({"content": "Hel"}))])) as srv:
        with pytest.raises(lk.ProviderError, match="ended before"):
            list(openai(srv).stream("hi"))


def test_tool_call_round_trip():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    with Loopback(lambda req: Reply(200, completion(None, "tool_calls", tool_calls=[call]))) as srv:
        r = openai(srv).chat("Weather in Paris?", tools=[WEATHER], tool_choice="get_weather")
    sent = srv.requests[0].json
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                               "parameters": WEATHER.parameters}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert r.finish_reason == "tool_calls" and r.text == ""
    assert r.tool_calls == [lk.ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})]

    # send the result back: the assistant turn keeps its tool_calls, the tool turn answers call_1
    with Loopback(lambda req: Reply(200, completion("18 °C in Paris."))) as srv:
        r2 = openai(srv).chat([lk.user("Weather in Paris?"), r.message(), lk.tool("18 °C", "call_1", "get_weather")],
                              tools=[WEATHER], tool_choice="required")
    sent = srv.requests[0].json
    assistant, result = sent["messages"][1], sent["messages"][2]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert assistant["tool_calls"][0]["id"] == "call_1" and assistant["tool_calls"][0]["type"] == "function"
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert result == {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"}
    assert sent["tool_choice"] == "required"
    assert r2.text == "18 °C in Paris."


def test_streamed_tool_calls_are_assembled_by_index():
    def piece(index, args=None, **first):
        fn = {"arguments": args} if args is not None else {"name": first.pop("name"), "arguments": ""}
        return {"index": index, **first, "function": fn}

    events = [sse(chunk({"role": "assistant", "tool_calls": [piece(0, id="call_a", type="function", name="get_weather")]})),
              sse(chunk({"tool_calls": [piece(0, '{"ci')]})),
              sse(chunk({"tool_calls": [piece(1, id="call_b", type="function", name="get_weather")]})),
              sse(chunk({"tool_calls": [piece(0, 'ty": "Par')]})),
              sse(chunk({"tool_calls": [piece(1, '{"city": "Oslo"}')]})),
              sse(chunk({"tool_calls": [piece(0, 'is"}')]})),
              sse(chunk({}, finish="tool_calls")),
              sse({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 9}}), sse("[DONE]")]
    with Loopback(lambda req: Reply(200, events=events)) as srv:
        chunks = list(openai(srv).stream("Weather in Paris and Oslo?", tools=[WEATHER]))
    assert all(not c.tool_calls for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == "tool_calls" and last.usage.output_tokens == 9
    assert last.tool_calls == [lk.ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
                               lk.ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"})]


def test_unparseable_tool_arguments_name_the_tool():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": Par'}}
    with Loopback(lambda req: Reply(200, completion(None, "tool_calls", tool_calls=[call]))) as srv:
        with pytest.raises(lk.ProviderError, match="get_weather"):
            openai(srv).chat("hi", tools=[WEATHER])


def test_429_waits_retry_after_then_succeeds():
    replies = iter([Reply(429, {"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "1"}),
                    Reply(200, completion("ok"))])
    with Loopback(lambda req: next(replies)) as srv:
        t0 = time.perf_counter()
        r = openai(srv, backoff=0).chat("hi")
        elapsed = time.perf_counter() - t0
    assert r.text == "ok"
    assert len(srv.requests) == 2
    assert elapsed >= 0.9


def test_persistent_500_becomes_provider_error_after_all_retries():
    with Loopback(lambda req: Reply(500, {"error": {"message": "The server had an error", "type": "server_error"}})) as srv:
        with pytest.raises(lk.ProviderError) as e:
            openai(srv, max_retries=2, backoff=0).chat("hi")
    assert e.value.status == 500 and e.value.message == "The server had an error"
    assert len(srv.requests) == 3


def test_malformed_bodies_raise_provider_error():
    with Loopback(lambda req: Reply(200, "<html>gateway</html>")) as srv:
        with pytest.raises(lk.ProviderError, match="not JSON"):
            openai(srv).chat("hi")
    with Loopback(lambda req: Reply(200, {"id": "x", "object": "chat.completion"})) as srv:
        with pytest.raises(lk.ProviderError, match="malformed response"):
            openai(srv).chat("hi")


def test_401_is_authentication_error_and_never_shows_the_key():
    secret = "sk-test-very-secret-123"
    # some proxies echo the key they rejected; llmkit must not pass it on
    with Loopback(lambda req: Reply(401, {"error": {"message": f"Incorrect API key provided: {secret}"}})) as srv:
        m = lk.model("openai:gpt-x", base_url=srv.url + "/v1", api_key=secret)
        with pytest.raises(lk.AuthenticationError) as e:
            m.chat("hi")
    assert srv.requests[0].headers["authorization"] == f"Bearer {secret}"
    assert e.value.status == 401 and len(srv.requests) == 1  # not retried
    assert secret not in str(e.value) and secret not in e.value.message and secret not in e.value.body
    assert "Incorrect API key provided" in str(e.value)
    assert secret not in repr(m)
    assert secret not in json.dumps(tracing.TraceStore().list(limit=10))


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(lk.ConfigError, match="OPENAI_API_KEY"):
        lk.model("openai:gpt-x")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with Loopback(lambda req: Reply(200, completion())) as srv:
        lk.model("openai:gpt-x", base_url=srv.url + "/v1").chat("hi")
    assert srv.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_unknown_option_is_config_error():
    with pytest.raises(lk.ConfigError, match="temprature"):
        lk.model("openai:gpt-x", api_key=KEY, temprature=0.1)


def test_vllm_preset_sends_extra_sampling_and_no_auth(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with Loopback(lambda req: Reply(200, completion())) as srv:
        m = lk.model("vllm:x", base_url=srv.url + "/v1")
        r = m.chat("hi", top_k=20, min_p=0.05, repetition_penalty=1.1, max_tokens=8)
    body = srv.requests[0].json
    assert (body["top_k"], body["min_p"], body["repetition_penalty"], body["max_tokens"]) == (20, 0.05, 1.1, 8)
    assert "max_completion_tokens" not in body
    assert "authorization" not in srv.requests[0].headers
    assert r.provider == "vllm" and m.provider == "vllm"
    with pytest.raises(lk.UnsupportedParameterError, match="typical_p"):
        m.chat("hi", typical_p=0.9)


def test_preset_base_url_from_environment(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with Loopback(lambda req: Reply(200, completion())) as srv:
        monkeypatch.setenv("VLLM_BASE_URL", srv.url + "/v1")
        assert lk.model("vllm:x").chat("hi").text == "Paris."
    assert srv.requests[0].path == "/v1/chat/completions"


def test_llama_server_uses_its_native_penalty_name(monkeypatch):
    monkeypatch.delenv("LLAMA_API_KEY", raising=False)
    with Loopback(lambda req: Reply(200, completion())) as srv:
        lk.model("llama-server:x", base_url=srv.url + "/v1").chat("hi", repetition_penalty=1.2, typical_p=0.8)
    body = srv.requests[0].json
    assert body["repeat_penalty"] == 1.2 and body["typical_p"] == 0.8 and "repetition_penalty" not in body


def test_openai_preset_rejects_fields_outside_its_api():
    with Loopback(lambda req: Reply(200, completion())) as srv:
        m = openai(srv)
        for field, value in [("top_k", 20), ("min_p", 0.1), ("repetition_penalty", 1.1), ("num_beams", 4)]:
            with pytest.raises(lk.UnsupportedParameterError, match=field):
                m.chat("hi", **{field: value})
    assert srv.requests == []  # rejected before anything was sent


def test_logprobs_are_mapped():
    lp = {"content": [
        {"token": "Par", "logprob": -0.1, "bytes": [80, 97, 114],
         "top_logprobs": [{"token": "Par", "logprob": -0.1, "bytes": None}, {"token": "Lyon", "logprob": -2.5, "bytes": None}]},
        {"token": "is", "logprob": -0.01, "bytes": None, "top_logprobs": []}]}
    reply = completion("Paris")
    reply["choices"][0]["logprobs"] = lp
    with Loopback(lambda req: Reply(200, reply)) as srv:
        r = openai(srv).chat("hi", logprobs=True, top_logprobs=2)
    body = srv.requests[0].json
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert r.logprobs == [lk.TokenLogprob(token="Par", logprob=-0.1, top=[("Par", -0.1), ("Lyon", -2.5)]),
                          lk.TokenLogprob(token="is", logprob=-0.01, top=[])]

    events = [sse(chunk({"content": "Par"}, logprobs={"content": lp["content"][:1]})), sse(chunk({}, finish="stop")),
              sse("[DONE]")]
    with Loopback(lambda req: Reply(200, events=events)) as srv:
        chunks = list(openai(srv).stream("hi", logprobs=True))
    assert chunks[0].logprobs[0].top == [("Par", -0.1), ("Lyon", -2.5)]


def test_complete_uses_legacy_completions(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    reply = {"id": "cmpl-1", "object": "text_completion", "model": "x",
             "choices": [{"index": 0, "text": " blue.", "finish_reason": "length",
                          "logprobs": {"tokens": [" blue", "."], "token_logprobs": [-0.3, -0.05],
                                       "top_logprobs": [{" blue": -0.3, " grey": -1.9}, {".": -0.05}]}}],
             "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    with Loopback(lambda req: Reply(200, reply)) as srv:
        r = lk.model("vllm:x", base_url=srv.url + "/v1").complete("The sky is", max_tokens=2, logprobs=True,
                                                                  top_logprobs=2, top_k=5)
    req = srv.requests[0]
    assert req.path == "/v1/completions"
    assert req.json == {"model": "x", "prompt": "The sky is", "max_tokens": 2, "logprobs": 2, "top_k": 5}
    assert (r.text, r.finish_reason, r.usage.output_tokens) == (" blue.", "length", 2)
    assert r.logprobs[0] == lk.TokenLogprob(token=" blue", logprob=-0.3, top=[(" blue", -0.3), (" grey", -1.9)])


def test_count_tokens_with_or_without_tiktoken():
    m = lk.model("openai:gpt-4o-mini", api_key=KEY)
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        with pytest.raises(lk.UnsupportedParameterError, match="tiktoken"):
            m.count_tokens("hello world")
        return
    try:
        n = m.count_tokens("hello world")
    except lk.UnsupportedParameterError as e:  # installed, but its BPE file is not cached and we are offline
        assert "TIKTOKEN_CACHE_DIR" in str(e)
        return
    assert n == 2
    assert m.count_tokens([lk.user("hello world")]) > m.count_tokens("hello world")


# --- structured output ---------------------------------------------------------------------
class Pet(BaseModel):
    name: str
    age: int
    nickname: str | None = None  # optional: strict mode wants every property required


class StrictPet(BaseModel):
    model_config = ConfigDict(extra="forbid")  # additionalProperties: false, as strict mode requires
    name: str
    tags: list[str]


def test_json_sends_response_format_json_schema_and_returns_the_instance():
    with Loopback(lambda req: Reply(200, completion('{"name": "Rex", "age": 3}'))) as srv:
        pet = openai(srv).json("Invent a dog.", schema=Pet, temperature=0)
    assert pet == Pet(name="Rex", age=3)
    body = srv.requests[0].json
    # Pet has an optional field, so strict mode would reject it: sent as llmkit compiles it, strict false
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Pet", "schema": Typed(Pet).schema(), "strict": False}}
    assert body["temperature"] == 0


def test_json_schema_that_qualifies_is_sent_strict():
    with Loopback(lambda req: Reply(200, completion('{"name": "Rex", "tags": ["good"]}'))) as srv:
        assert openai(srv).json("Invent a dog.", schema=StrictPet) == StrictPet(name="Rex", tags=["good"])
    fmt = srv.requests[0].json["response_format"]["json_schema"]
    assert fmt["strict"] is True and fmt["schema"] == StrictPet.model_json_schema()  # not rewritten


def test_strict_ok_walks_nested_schemas():
    from llmkit.models.openai import strict_ok

    closed = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    assert strict_ok(closed)
    assert not strict_ok({**closed, "required": []})                       # a property left optional
    assert not strict_ok({"type": "array", "items": closed})                # root not an object
    assert not strict_ok({**closed, "properties": {"a": {"type": "string", "default": "x"}}})  # not in the subset
    nested = {**closed, "properties": {"a": {"$ref": "#/$defs/B"}},
              "$defs": {"B": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}
    assert not strict_ok(nested)                                            # $defs/B is open
    nested["$defs"]["B"]["additionalProperties"] = False
    assert strict_ok(nested)
    assert not strict_ok({**closed, "properties": {"a": {"anyOf": [{"type": "object"}, {"type": "null"}]}}})


def test_json_without_schema_sends_json_object():
    with Loopback(lambda req: Reply(200, completion('{"city": "Paris"}'))) as srv:
        assert openai(srv).json("Capital of France, as JSON.") == {"city": "Paris"}
    body = srv.requests[0].json
    assert body["response_format"] == {"type": "json_object"}
    assert "JSON object" in body["messages"][-1]["content"]  # the instructions name JSON, as OpenAI requires


def test_stream_json_yields_partial_dicts_then_the_instance():
    pieces = ['{"name": "Re', 'x", "ag', 'e": 3}']
    events = [sse(chunk({"content": p})) for p in pieces] + [sse(chunk({}, finish="stop")), sse("[DONE]")]
    with Loopback(lambda req: Reply(200, events=events)) as srv:
        got = list(openai(srv).stream_json("Invent a dog.", schema=Pet))
    assert got == [{"name": "Re"}, {"name": "Rex"}, {"name": "Rex", "age": 3}, Pet(name="Rex", age=3)]
    body = srv.requests[0].json
    assert body["stream"] is True and body["response_format"]["type"] == "json_schema"


def test_invalid_output_is_sent_back_with_the_errors_then_validates():
    replies = iter([completion('{"name": "Rex"}'), completion('{"name": "Rex", "age": 3}')])
    with Loopback(lambda req: Reply(200, next(replies))) as srv:
        pet = openai(srv).json("Invent a dog.", schema=Pet)
    assert pet == Pet(name="Rex", age=3) and len(srv.requests) == 2
    first, second = (r.json["messages"] for r in srv.requests)
    assert second[:len(first)] == first
    assert second[-2] == {"role": "assistant", "content": '{"name": "Rex"}'}
    repair = second[-1]
    assert repair["role"] == "user" and "age" in repair["content"] and "not valid" in repair["content"]
    assert srv.requests[1].json["response_format"] == srv.requests[0].json["response_format"]


def test_output_that_never_validates_raises_after_max_retries():
    replies = iter([completion("not json"), completion('{"name": "Rex"}')])
    with Loopback(lambda req: Reply(200, next(replies))) as srv:
        with pytest.raises(StructuredOutputError) as e:
            openai(srv).json("Invent a dog.", schema=Pet, max_retries=1)
    assert len(srv.requests) == 2
    assert e.value.text == '{"name": "Rex"}'
    assert e.value.errors and any("age" in err for err in e.value.errors)


def test_regex_is_asked_for_in_words_and_retried_until_it_matches():
    from llmkit.structured import Regex

    c = Regex(r"\d{4}-\d{2}-\d{2}")
    replies = iter([completion("July 14th, 1789"), completion("1789-07-14")])
    with Loopback(lambda req: Reply(200, next(replies))) as srv:
        r = openai(srv).chat("When was the Bastille stormed?", constraint=c)
    assert r.parsed == "1789-07-14" and len(srv.requests) == 2
    first = srv.requests[0].json
    assert "response_format" not in first  # not an OpenAI mechanism: asked in words, validated after
    assert first["messages"][-1]["content"] == f"When was the Bastille stormed?\n\n{c.instructions()}"
    assert "does not match" in srv.requests[1].json["messages"][-1]["content"]


def test_choose_is_asked_for_in_words_and_validated():
    replies = iter([completion("Maybe."), completion("Positive.")])
    with Loopback(lambda req: Reply(200, next(replies))) as srv:
        label = openai(srv).choose("Is 'I loved it' positive or negative?", ["positive", "negative"])
    assert label == "positive" and len(srv.requests) == 2
    first = srv.requests[0].json
    assert "response_format" not in first
    assert "Reply with exactly one of: positive, negative." in first["messages"][-1]["content"]


def test_grammar_on_a_remote_model_is_refused_before_any_request():
    from llmkit.structured import Grammar

    with Loopback(lambda req: Reply(200, completion())) as srv:
        with pytest.raises(lk.UnsupportedParameterError, match="Grammar"):
            openai(srv).chat("hi", constraint=Grammar('start: "yes" | "no"'))
    assert srv.requests == []


def test_parallel_tool_calls_is_sent_when_given():
    with Loopback(lambda req: Reply(200, completion("ok"))) as srv:
        openai(srv).chat("hi", tools=[WEATHER], parallel_tool_calls=False)
        openai(srv).chat("hi", tools=[WEATHER])
    assert srv.requests[0].json["parallel_tool_calls"] is False and "parallel_tool_calls" not in srv.requests[1].json
