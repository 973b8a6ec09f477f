"""The Gemini backend against a loopback server speaking the Gemini API's generateContent wire format."""
import datetime
import time
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, ConfigDict, Field

import llmkit as lk
from loopback import Loopback, Reply, sse

KEY = "g-test-secret-123"
GENERATE = "/v1beta/models/gemini-x:generateContent"
STREAM = "/v1beta/models/gemini-x:streamGenerateContent"


def gemini(handler):
    """Wrap a handler with the checks every Gemini API request must pass."""
    def checked(req):
        assert req.method == "POST", req.method
        assert req.headers.get("x-goog-api-key") == KEY, "x-goog-api-key missing or wrong"
        assert "key" not in req.query, "the API key must never be in the URL"
        assert "authorization" not in req.headers
        return handler(req)
    return Loopback(checked)


def model(srv, name="gemini-x", **kw):
    return lk.model(f"gemini:{name}", base_url=srv.url, api_key=KEY, **kw)


def response(parts, finish="STOP", usage=(11, 4), **extra):
    cand = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "usageMetadata": {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                                                     "totalTokenCount": sum(usage)},
            "modelVersion": "gemini-x-001", **extra}


def error_body(code, status, msg):
    return {"error": {"code": code, "message": msg, "status": status}}


WEATHER = lk.Tool(name="get_weather", description="Current weather in a city",
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                              "additionalProperties": False})


def test_chat_sends_system_instruction_and_generation_config():
    with gemini(lambda req: Reply(200, response([{"text": "Paris"}, {"text": "."}]))) as srv:
        r = model(srv).chat([lk.system("Be brief."), lk.user("Capital of France?"), lk.assistant("Paris."),
                             lk.user("And Italy?")],
                            temperature=0.2, top_p=0.9, top_k=40, max_tokens=64, stop=["\n\n"], seed=7,
                            presence_penalty=0.5, frequency_penalty=0.25)
    req = srv.requests[0]
    assert req.path == GENERATE and req.query == {}
    body = req.json
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Capital of France?"}]},
        {"role": "model", "parts": [{"text": "Paris."}]},
        {"role": "user", "parts": [{"text": "And Italy?"}]},
    ]
    assert body["generationConfig"] == {"temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 64,
                                        "stopSequences": ["\n\n"], "seed": 7, "presencePenalty": 0.5,
                                        "frequencyPenalty": 0.25}
    assert "tools" not in body and "toolConfig" not in body
    assert r.text == "Paris."
    assert r.finish_reason == "stop"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (11, 4)
    assert (r.model, r.provider) == ("gemini-x-001", "gemini")
    assert r.raw["modelVersion"] == "gemini-x-001"


def test_plain_chat_sends_no_generation_config_and_counts_thinking_tokens():
    reply = response([{"text": "thinking…", "thought": True}, {"text": "Hi!"}])
    reply["usageMetadata"]["thoughtsTokenCount"] = 20
    with gemini(lambda req: Reply(200, reply)) as srv:
        r = model(srv).chat("Hello")
    body = srv.requests[0].json
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    assert r.text == "Hi!"  # thought summaries are not the answer
    assert r.usage.output_tokens == 24


@pytest.mark.parametrize("reason,finish", [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                           ("RECITATION", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"),
                                           ("MALFORMED_FUNCTION_CALL", "error")])
def test_finish_reasons_map(reason, finish):
    with gemini(lambda req: Reply(200, response([{"text": "x"}], finish=reason))) as srv:
        assert model(srv).chat("hi").finish_reason == finish


def test_logprobs_are_requested_and_parsed():
    reply = response([{"text": "Hi"}])
    reply["candidates"][0]["logprobsResult"] = {
        "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
        "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Hey", "logProbability": -2.5}]}]}
    with gemini(lambda req: Reply(200, reply)) as srv:
        r = model(srv).chat("hi", logprobs=True, top_logprobs=2)
    assert srv.requests[0].json["generationConfig"] == {"responseLogprobs": True, "logprobs": 2}
    assert r.logprobs[0].token == "Hi" and r.logprobs[0].logprob == pytest.approx(-0.1)
    assert r.logprobs[0].top == [("Hi", -0.1), ("Hey", -2.5)]


def test_stream_assembles_text_usage_and_finish_reason():
    events = [
        sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
             "usageMetadata": {"promptTokenCount": 9}}),
        sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}}]}),
        sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "!"}]}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12}}),
    ]
    with gemini(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream([lk.system("Be brief."), lk.user("Say hello")], temperature=0))
    req = srv.requests[0]
    assert req.path == STREAM and req.query == {"alt": ["sse"]}
    assert req.json["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert req.json["generationConfig"] == {"temperature": 0}
    assert "".join(c.text for c in chunks) == "Hello!"
    assert [c.text for c in chunks[:3]] == ["Hel", "lo", "!"]
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert (last.usage.input_tokens, last.usage.output_tokens) == (9, 3)
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_stream_cut_off_before_finish_reason_is_an_error():
    events = [sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]})]
    with gemini(lambda req: Reply(200, events=events)) as srv:
        with pytest.raises(lk.ProviderError, match="finishReason"):
            list(model(srv).stream("hi"))


def test_tool_call_sends_declarations_and_returns_calls_with_ids():
    parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
             {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]
    with gemini(lambda req: Reply(200, response(parts))) as srv:
        r = model(srv).chat("Weather in Paris and Rome?", tools=[WEATHER], tool_choice="required")
    body = srv.requests[0].json
    assert body["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": "Current weather in a city",
                                                        "parametersJsonSchema": WEATHER.parameters}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert r.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [("call_0", "get_weather", {"city": "Paris"}),
                                                                   ("call_1", "get_weather", {"city": "Rome"})]


@pytest.mark.parametrize("choice,config", [("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}),
                                           ("get_weather", {"mode": "ANY", "allowedFunctionNames": ["get_weather"]})])
def test_tool_choice_maps_to_function_calling_config(choice, config):
    with gemini(lambda req: Reply(200, response([{"text": "ok"}]))) as srv:
        model(srv).chat("hi", tools=[WEATHER], tool_choice=choice)
    assert srv.requests[0].json["toolConfig"] == {"functionCallingConfig": config}


def test_streamed_tool_call_arrives_whole_with_finish_reason():
    events = [
        sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me check. "}]}}]}),
        sse({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 8}}),
    ]
    with gemini(lambda req: Reply(200, events=events)) as srv:
        chunks = list(model(srv).stream("Weather in Paris?", tools=[WEATHER]))
    assert srv.requests[0].json["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    calls = [c for ch in chunks for c in ch.tool_calls]
    assert [(c.id, c.name, c.arguments) for c in calls] == [("call_0", "get_weather", {"city": "Paris"})]
    assert "".join(c.text for c in chunks) == "Let me check. "
    assert chunks[-1].finish_reason == "tool_calls"
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (20, 8)


def test_tool_result_round_trip_wire_shape():
    calls = [lk.ToolCall(id="call_0", name="get_weather", arguments={"city": "Paris"}),
             lk.ToolCall(id="call_1", name="get_time", arguments={})]
    convo = [lk.user("Weather and time in Paris?"), lk.assistant("", calls),
             lk.tool('{"temp_c": 21}', "call_0"),   # name looked up from the call
             lk.tool("14:05", "call_1", name="get_time"),
             lk.user("Thanks")]
    with gemini(lambda req: Reply(200, response([{"text": "21°C at 14:05"}]))) as srv:
        r = model(srv).chat(convo)
    assert srv.requests[0].json["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                                    {"functionCall": {"name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [  # both answers in one turn; non-JSON output wrapped as {"result": ...}
            {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
            {"functionResponse": {"name": "get_time", "response": {"result": "14:05"}}}]},
        {"role": "user", "parts": [{"text": "Thanks"}]},
    ]
    assert r.text == "21°C at 14:05"


def test_tool_result_name_comes_from_the_latest_call_with_that_id():
    convo = [lk.user("q"), lk.assistant("", [lk.ToolCall(id="call_0", name="first")]), lk.tool("1", "call_0"),
             lk.assistant("", [lk.ToolCall(id="call_0", name="second")]), lk.tool("2", "call_0")]
    with gemini(lambda req: Reply(200, response([{"text": "ok"}]))) as srv:
        model(srv).chat(convo)
    names = [p["functionResponse"]["name"] for c in srv.requests[0].json["contents"] for p in c["parts"]
             if "functionResponse" in p]
    assert names == ["first", "second"]


def test_tool_result_without_a_known_call_is_a_config_error():
    with gemini(lambda req: Reply(200, response([{"text": "ok"}]))) as srv:
        with pytest.raises(lk.ConfigError, match="call_9"):
            model(srv).chat([lk.user("q"), lk.tool("1", "call_9")])
    assert srv.requests == []


def test_thought_signature_is_replayed_with_its_call():
    first = response([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-abc"}])
    replies = iter([first, response([{"text": "21°C"}])])
    with gemini(lambda req: Reply(200, next(replies))) as srv:
        m = model(srv, name="gemini-3-pro")
        r = m.chat("Weather in Paris?", tools=[WEATHER])
        m.chat([lk.user("Weather in Paris?"), r.message(), lk.tool('{"temp_c": 21}', r.tool_calls[0].id)], tools=[WEATHER])
    replayed = srv.requests[1].json["contents"][1]["parts"][0]
    assert replayed == {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-abc"}


def test_unknown_signature_on_gemini_3_uses_the_documented_skip_value():
    convo = [lk.user("q"), lk.assistant("", [lk.ToolCall(id="call_0", name="get_weather", arguments={"city": "Oslo"}),
                                             lk.ToolCall(id="call_1", name="get_weather", arguments={"city": "Rome"})]),
             lk.tool("1", "call_0"), lk.tool("2", "call_1")]
    with gemini(lambda req: Reply(200, response([{"text": "ok"}]))) as srv:
        model(srv, name="gemini-3-flash").chat(convo)
        model(srv, name="gemini-2.5-flash").chat(convo)
    new, old = (r.json["contents"][1]["parts"] for r in srv.requests)
    assert [p.get("thoughtSignature") for p in new] == ["skip_thought_signature_validator", None]
    assert all("thoughtSignature" not in p for p in old)  # older models never required one


def test_blocked_prompt_names_the_reason():
    with gemini(lambda req: Reply(200, {"promptFeedback": {"blockReason": "SAFETY"}})) as srv:
        with pytest.raises(lk.ProviderError, match="blocked: SAFETY"):
            model(srv).chat("something bad")


def test_429_with_retry_after_waits_then_succeeds():
    def handler(req):
        if len(srv.requests) == 1:
            return Reply(429, error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"),
                         headers={"Retry-After": "1"})
        return Reply(200, response([{"text": "ok"}]))
    with gemini(handler) as srv:
        t0 = time.perf_counter()
        r = model(srv, backoff=0).chat("hi")
        elapsed = time.perf_counter() - t0
    assert r.text == "ok"
    assert len(srv.requests) == 2
    assert elapsed >= 0.9


def test_persistent_500_is_a_provider_error_after_all_retries():
    with gemini(lambda req: Reply(500, error_body(500, "INTERNAL", "An internal error has occurred"))) as srv:
        with pytest.raises(lk.ProviderError) as e:
            model(srv, max_retries=2, backoff=0).chat("hi")
    assert len(srv.requests) == 3
    assert e.value.status == 500
    assert e.value.message == "An internal error has occurred"
    assert "An internal error has occurred" in str(e.value)


@pytest.mark.parametrize("body", ["<html>bad gateway</html>", {"candidates": "nope"}, {"unexpected": True},
                                  {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}])
def test_malformed_body_is_a_provider_error(body):
    with gemini(lambda req: Reply(200, body)) as srv:
        with pytest.raises(lk.ProviderError, match="malformed"):
            model(srv).chat("hi")


def test_malformed_stream_event_is_a_provider_error():
    with gemini(lambda req: Reply(200, events=[sse("{not json")])) as srv:
        with pytest.raises(lk.ProviderError, match="malformed"):
            list(model(srv).stream("hi"))


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_authentication_errors_and_not_retried(status):
    msg = "API key not valid. Please pass a valid API key."
    with gemini(lambda req: Reply(status, error_body(status, "PERMISSION_DENIED", msg))) as srv:
        with pytest.raises(lk.AuthenticationError) as e:
            model(srv, backoff=0).chat("hi")
    assert len(srv.requests) == 1
    assert e.value.status == status and e.value.message == msg
    assert KEY not in str(e.value) and KEY not in repr(e.value)


def test_missing_key_names_both_env_vars(monkeypatch):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(lk.ConfigError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        lk.model("gemini:gemini-x")


def test_key_and_base_url_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    with gemini(lambda req: Reply(200, response([{"text": "ok"}]))) as srv:
        monkeypatch.setenv("GEMINI_BASE_URL", srv.url)
        assert lk.model("gemini:gemini-x").chat("hi").text == "ok"
    assert srv.requests[0].path == GENERATE


def test_key_is_not_in_repr_info_or_errors():
    with gemini(lambda req: Reply(500, error_body(500, "INTERNAL", "boom"))) as srv:
        m = model(srv, max_retries=0)
        with pytest.raises(lk.ProviderError) as e:
            m.chat("hi")
    assert KEY not in repr(m) and KEY not in str(m.info)
    assert KEY not in str(e.value) and KEY not in repr(e.value)
    assert KEY not in srv.requests[0].path  # only in the header, checked by gemini()


@pytest.mark.parametrize("field,value", [("min_p", 0.1), ("repetition_penalty", 1.1), ("typical_p", 0.9)])
def test_unsupported_sampling_field_raises_before_any_request(field, value):
    with gemini(lambda req: Reply(200, response([{"text": "ok"}]))) as srv:
        with pytest.raises(lk.UnsupportedParameterError, match=field):
            model(srv).chat("hi", **{field: value})
    assert srv.requests == []


def test_count_tokens_for_text_and_conversation():
    with gemini(lambda req: Reply(200, {"totalTokens": 7 if "contents" in req.json else 15})) as srv:
        m = model(srv)
        assert m.count_tokens("Hello there") == 7
        assert m.count_tokens([lk.system("Be brief."), lk.user("Hello there")]) == 15
    first, second = srv.requests
    assert first.path == "/v1beta/models/gemini-x:countTokens"
    assert first.json == {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}
    assert second.json == {"generateContentRequest": {
        "model": "models/gemini-x", "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]}}}


def test_count_tokens_malformed_reply_is_a_provider_error():
    with gemini(lambda req: Reply(200, {"total": "7"})) as srv:
        with pytest.raises(lk.ProviderError, match="countTokens"):
            model(srv).count_tokens("hi")


def test_error_event_mid_stream_is_a_provider_error():
    events = [sse({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]}),
              sse(error_body(503, "UNAVAILABLE", "The model is overloaded"))]
    with gemini(lambda req: Reply(200, events=events)) as srv:
        with pytest.raises(lk.ProviderError, match="overloaded"):
            list(model(srv).stream("hi"))


# --- structured output: responseMimeType + responseSchema ----------------------------------
class Pet(BaseModel):
    name: str
    age: int


class Owner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    who: str = Field(description="full name")
    pets: list[Pet]
    nick: Optional[str] = None
    kind: Literal["person", "company"]
    born: datetime.datetime


PET = {"type": "OBJECT", "properties": {"name": {"type": "STRING"}, "age": {"type": "INTEGER"}},
       "required": ["name", "age"]}


def test_json_sends_response_schema_and_returns_the_instance():
    with gemini(lambda req: Reply(200, response([{"text": '{"name": "Rex", '}, {"text": '"age": 3}'}]))) as srv:
        pet = model(srv).json("Invent a dog.", schema=Pet, temperature=0)
    assert pet == Pet(name="Rex", age=3)
    assert srv.requests[0].json["generationConfig"] == {"temperature": 0, "responseMimeType": "application/json",
                                                        "responseSchema": PET}


def test_json_without_schema_sends_only_the_mime_type():
    with gemini(lambda req: Reply(200, response([{"text": '{"city": "Paris"}'}]))) as srv:
        assert model(srv).json("Capital of France, as JSON.") == {"city": "Paris"}
    assert srv.requests[0].json["generationConfig"] == {"responseMimeType": "application/json"}


def test_choose_sends_text_x_enum():
    with gemini(lambda req: Reply(200, response([{"text": "negative"}]))) as srv:
        assert model(srv).choose("Is 'awful' positive?", ["positive", "negative"]) == "negative"
    assert srv.requests[0].json["generationConfig"] == {
        "responseMimeType": "text/x.enum", "responseSchema": {"type": "STRING", "enum": ["positive", "negative"]}}


def test_stream_json_yields_partial_dicts_then_the_instance():
    events = [sse({"candidates": [{"content": {"role": "model", "parts": [{"text": '{"name": "Re'}]}}]}),
              sse({"candidates": [{"content": {"role": "model", "parts": [{"text": 'x", "age": 3}'}]},
                                   "finishReason": "STOP"}]})]
    with gemini(lambda req: Reply(200, events=events)) as srv:
        got = list(model(srv).stream_json("Invent a dog.", schema=Pet))
    assert got == [{"name": "Re"}, {"name": "Rex", "age": 3}, Pet(name="Rex", age=3)]
    req = srv.requests[0]
    assert req.path == STREAM and req.json["generationConfig"]["responseSchema"] == PET


def test_invalid_json_is_sent_back_with_the_errors():
    replies = iter([response([{"text": '{"name": "Rex"}'}]), response([{"text": '{"name": "Rex", "age": 3}'}])])
    with gemini(lambda req: Reply(200, next(replies))) as srv:
        assert model(srv).json("Invent a dog.", schema=Pet) == Pet(name="Rex", age=3)
    contents = srv.requests[1].json["contents"]
    assert contents[-2] == {"role": "model", "parts": [{"text": '{"name": "Rex"}'}]}
    assert "age" in contents[-1]["parts"][0]["text"]


def test_json_schema_becomes_geminis_openapi_subset():
    from llmkit.models.gemini import gemini_schema

    assert gemini_schema(Owner.model_json_schema()) == {
        "type": "OBJECT",
        "properties": {
            "who": {"type": "STRING", "description": "full name"},
            "pets": {"type": "ARRAY", "items": PET},                       # $ref inlined
            "nick": {"type": "STRING", "nullable": True},                  # anyOf [X, null]; default dropped
            "kind": {"type": "STRING", "enum": ["person", "company"]},
            "born": {"type": "STRING", "format": "date-time"},
        },
        "required": ["who", "pets", "kind", "born"],                       # additionalProperties and titles dropped
    }
    assert gemini_schema({"type": ["integer", "null"], "exclusiveMinimum": 0}) == {"type": "INTEGER", "nullable": True}
    assert gemini_schema({"const": "yes"}) == {"type": "STRING", "enum": ["yes"]}
    assert gemini_schema({"type": "string", "format": "email", "pattern": "@", "maxLength": 9}) == {
        "type": "STRING", "maxLength": 9}                                  # formats the API rejects are dropped
    assert gemini_schema({"type": ["string", "integer"]}) == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}


def test_schema_the_subset_cannot_carry_falls_back_to_json_mode():
    class Node(BaseModel):
        label: str
        children: list["Node"]

    replies = [response([{"text": '{"label": "a", "children": []}'}]), response([{"text": '{"a": 1}'}])]
    with gemini(lambda req: Reply(200, replies[len(srv.requests) - 1])) as srv:
        assert model(srv).json("A tree.", schema=Node) == Node(label="a", children=[])  # recursive $ref
        assert model(srv).json("Counts.", schema=dict[str, int]) == {"a": 1}           # object without properties
    assert [r.json["generationConfig"] for r in srv.requests] == [{"responseMimeType": "application/json"}] * 2


def test_parallel_tool_calls_false_cannot_be_honoured():
    with gemini(lambda req: Reply(200, response([{"text": "x"}]))) as srv:
        with pytest.raises(lk.UnsupportedParameterError, match="parallel_tool_calls=False"):
            model(srv).chat("hi", tools=[WEATHER], parallel_tool_calls=False)
        model(srv).chat("hi", tools=[WEATHER], parallel_tool_calls=True)  # what Gemini does anyway
    assert len(srv.requests) == 1
