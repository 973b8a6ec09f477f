"""The server in gateway mode: llmkit's OpenAI backend behind it, a scripted upstream (tests/loopback.py)
behind that, and the official SDKs in front. Covers what needs a deterministic model: tool-call
round trips in both APIs, admission control (429), overload (503), auth, size limits, CORS,
metrics, tracing and graceful shutdown. No embedded model here, so these run in seconds.
"""
import json
import threading
import time

import httpx
import pytest
from conftest import Live, completion, gateway, stream_chunks, tool_call
from loopback import Loopback, Reply, sse

import llmkit as lk
from llmkit.core import tracing
from llmkit.models.base import Model

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def weather_upstream(stream: bool = False):
    """Upstream script: no tool result yet → call get_weather(Paris); with the result → answer."""

    def handler(req):
        body = req.json
        assert body["tools"][0]["function"]["name"] == "get_weather", body
        results = [m for m in body["messages"] if m["role"] == "tool"]
        if not results:
            call = tool_call("get_weather", '{"city": "Paris"}')
            if body.get("stream"):
                return Reply(200, events=[sse(c) for c in stream_chunks([], "tool_calls", tool_calls=[call])] + [sse("[DONE]")])
            return Reply(200, completion(None, "tool_calls", [call]))
        # the tool result must arrive answering the call, after the assistant turn that made it
        asked = [m for m in body["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
        assert asked and asked[-1]["tool_calls"][0]["id"] == "call_1", body["messages"]
        assert json.loads(asked[-1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
        assert results[0] == {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"}, results
        return Reply(200, completion("It is 18°C and sunny in Paris."))

    return handler


def test_openai_sdk_tool_call_round_trip():
    with Loopback(weather_upstream()) as up, Live(gateway(up)) as live:
        client = live.openai()
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        r = client.chat.completions.create(model="gpt-x", messages=messages, tools=[WEATHER], tool_choice="auto")
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls
        assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_1", "get_weather", {"city": "Paris"})
        messages += [choice.message.model_dump(exclude_none=True),  # what SDK users append
                     {"role": "tool", "tool_call_id": call.id, "content": "18°C and sunny"}]
        final = client.chat.completions.create(model="gpt-x", messages=messages, tools=[WEATHER])
    assert final.choices[0].message.content == "It is 18°C and sunny in Paris."
    first = up.requests[0].json
    assert first["tool_choice"] == "auto" and first["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert len(up.requests) == 2


def test_openai_sdk_streamed_tool_call():
    with Loopback(weather_upstream()) as up, Live(gateway(up)) as live:
        chunks = list(live.openai().chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER], stream=True))
    deltas = [d for c in chunks for ch in c.choices for d in ch.delta.tool_calls or []]
    assert [(d.index, d.id, d.function.name) for d in deltas] == [(0, "call_1", "get_weather")]
    assert json.loads(deltas[0].function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_use_round_trip(stream):
    tools = [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER["function"]["parameters"]}]
    with Loopback(weather_upstream()) as up, Live(gateway(up)) as live:
        client = live.anthropic()
        messages = [{"role": "user", "content": "Weather in Paris?"}]
        kw = dict(model="gpt-x", max_tokens=64, tools=tools, tool_choice={"type": "any"})
        if stream:
            with client.messages.stream(messages=messages, **kw) as s:
                kinds = [e.type for e in s]
                first = s.get_final_message()
            assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
            assert "input_json" in kinds  # the SDK's name for a parsed input_json_delta
        else:
            first = client.messages.create(messages=messages, **kw)
        assert first.stop_reason == "tool_use"
        (use,) = [b for b in first.content if b.type == "tool_use"]
        assert (use.id, use.name, use.input) == ("call_1", "get_weather", {"city": "Paris"})
        messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": [{"type": "text", "text": "18°C and sunny"}]}]}]
        final = client.messages.create(messages=messages, **kw)
    assert final.content[0].text == "It is 18°C and sunny in Paris." and final.stop_reason == "end_turn"
    assert up.requests[0].json["tool_choice"] == "required"  # Anthropic's "any"
    assert up.requests[0].json["max_completion_tokens"] == 64


def test_full_queue_gets_429_with_retry_after_then_serves_again():
    release, arrived = threading.Event(), threading.Event()

    def slow(req):
        arrived.set()
        release.wait(30)
        return Reply(200, completion("done"))

    with Loopback(slow) as up, Live(gateway(up), max_concurrency=1, max_queue=0, retry_after=7) as live:
        client = live.openai()
        first = {}
        t = threading.Thread(target=lambda: first.update(r=client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "hi"}])))
        t.start()
        assert arrived.wait(10)
        assert live.metrics()[("llmkit_requests_in_flight", ())] == 1
        r = httpx.post(live.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert r.json()["error"]["code"] == "queue_full" and "capacity" in r.json()["error"]["message"]
        a = httpx.post(live.url + "/v1/messages", json={"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        assert a.status_code == 429 and a.json()["error"]["type"] == "rate_limit_error"  # Anthropic's shape
        release.set()
        t.join(10)
        assert first["r"].choices[0].message.content == "done"
        again = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        assert again.choices[0].message.content == "done"
        assert live.metrics()[("llmkit_requests_total", (("route", "/v1/chat/completions"), ("status", "429")))] == 1


class Overloaded(Model):
    """A backend whose engine queue is full: every call raises OverloadedError (as the engine will)."""

    provider = "overloaded"
    capabilities = ("chat", "stream")
    supported = frozenset(lk.Sampling.model_fields)

    def _chat(self, messages, s, tools, tool_choice):
        raise lk.OverloadedError("engine queue is full (64 waiting)", retry_after=3)

    def _stream(self, messages, s, tools, tool_choice):
        raise lk.OverloadedError("engine queue is full (64 waiting)", retry_after=3)
        yield  # a generator: the error comes with the first chunk, as a real engine's would


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}),
    ("/v1/messages", {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "stream": True}),
])
def test_engine_overload_is_503_with_retry_after_even_when_streaming(path, body):
    with Live(Overloaded("busy")) as live:
        r = httpx.post(live.url + path, json=body)
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert r.headers["content-type"].startswith("application/json")  # a JSON error, not a broken stream
    err = r.json()["error"]
    assert err["type"] == "overloaded_error" and "queue is full" in err["message"]


def test_api_key_is_required_except_for_health():
    import anthropic
    import openai

    with Loopback(lambda req: Reply(200, completion("ok"))) as up, Live(gateway(up), key="sk-server-secret") as live:
        ask = lambda client: client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.AuthenticationError) as e:
            ask(live.openai(key="wrong"))
        assert e.value.status_code == 401 and "invalid API key" in str(e.value)
        r = httpx.post(live.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
        assert ask(live.openai(key="sk-server-secret")).choices[0].message.content == "ok"
        m = live.anthropic(key="sk-server-secret").messages.create(  # x-api-key, as Anthropic's SDK sends it
            model="gpt-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        assert m.content[0].text == "ok"
        with pytest.raises(anthropic.AuthenticationError):
            live.anthropic(key="wrong").messages.create(model="gpt-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        assert httpx.get(live.url + "/health").json() == {"status": "ok", "model": "gpt-x"}
        assert httpx.get(live.url + "/metrics").status_code == 401
    # the server's own key for the upstream never reaches clients, and clients' keys never go upstream
    assert all(r.headers["authorization"] == "Bearer sk-upstream-key" for r in up.requests)


def test_oversized_body_is_413_and_the_server_keeps_serving():
    with Loopback(lambda req: Reply(200, completion("ok"))) as up, Live(gateway(up), max_request_bytes=4000) as live:
        big = {"messages": [{"role": "user", "content": "x" * 5000}]}
        r = httpx.post(live.url + "/v1/chat/completions", json=big)
        assert r.status_code == 413 and "4000 bytes" in r.json()["error"]["message"]
        r = httpx.post(live.url + "/v1/messages", json={"max_tokens": 8, **big})
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
        chunked = iter([b'{"messages": [{"role": "user", "content": "', b"x" * 5000, b'"}]}'])  # no Content-Length
        r = httpx.post(live.url + "/v1/chat/completions", content=chunked, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        ok = httpx.post(live.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200
    assert len(up.requests) == 1  # the oversized requests never reached the model


def test_cors_preflight_allows_only_configured_origins():
    with Loopback(lambda req: Reply(200, completion("ok"))) as up, \
            Live(gateway(up), key="k" * 12, cors_origins=["http://ui.example"]) as live:
        pre = {"access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type"}
        ok = httpx.options(live.url + "/v1/chat/completions", headers={"origin": "http://ui.example", **pre})
        bad = httpx.options(live.url + "/v1/chat/completions", headers={"origin": "http://evil.example", **pre})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://ui.example"
    assert "access-control-allow-origin" not in bad.headers


@pytest.mark.parametrize("status, body, want_status, needle", [
    (401, {"error": {"message": "bad upstream key"}}, 502, "refused this server's credentials"),
    (400, {"error": {"message": "temperature too high for this model"}}, 400, "temperature too high"),
    (500, {"error": {"message": "upstream exploded"}}, 502, "upstream exploded"),
])
def test_upstream_errors_map_to_gateway_statuses(status, body, want_status, needle):
    with Loopback(lambda req: Reply(status, body)) as up, Live(gateway(up)) as live:
        r = httpx.post(live.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == want_status and needle in r.json()["error"]["message"]
    assert "sk-upstream-key" not in r.text


def test_metrics_count_requests_tokens_and_first_token_latency():
    def handler(req):
        if req.json.get("stream"):
            return Reply(200, events=[sse(c) for c in stream_chunks(["Hel", "lo"], usage=(5, 2))] + [sse("[DONE]")])
        return Reply(200, completion("Hello", usage=(11, 3)))

    with Loopback(handler) as up, Live(gateway(up)) as live:
        client = live.openai()
        before = live.metrics()
        for _ in range(3):
            client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        list(client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True))
        httpx.post(live.url + "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
        httpx.get(live.url + "/no/such/path")
        after = live.metrics()
    delta = lambda key: after.get(key, 0) - before.get(key, 0)
    route = lambda status: ("llmkit_requests_total", (("route", "/v1/chat/completions"), ("status", status)))
    assert delta(route("200")) == 4 and delta(route("404")) == 1
    assert delta(("llmkit_requests_total", (("route", "other"), ("status", "404")))) == 1
    assert delta(("llmkit_input_tokens_total", ())) == 3 * 11 + 5
    assert delta(("llmkit_output_tokens_total", ())) == 3 * 3 + 2
    assert delta(("llmkit_time_to_first_token_seconds_count", ())) == 1
    assert delta(("llmkit_inter_token_latency_seconds_count", ())) == 1  # "Hel" → "lo"
    assert after[("llmkit_requests_in_flight", ())] == 0 and after[("llmkit_queue_depth", ())] == 0


class EngineBacked(Overloaded):
    """A model with an ``engine`` whose ``stats()`` the metrics must report at scrape time."""

    class engine:
        numbers = {"active": 5, "queued": 2, "prefix_cache_hits": 9, "prefix_cache_tokens": 1200}

        @classmethod
        def stats(cls):
            return dict(cls.numbers)


def test_metrics_read_engine_stats_at_scrape_time():
    with Live(EngineBacked("e")) as live:
        m = live.metrics()
        assert m[("llmkit_active_sequences", ())] == 5 and m[("llmkit_queue_depth", ())] == 2
        assert m[("llmkit_prefix_cache_hits_total", ())] == 9 and m[("llmkit_prefix_cache_tokens_total", ())] == 1200
        EngineBacked.engine.numbers["prefix_cache_hits"] = 10
        assert live.metrics()[("llmkit_prefix_cache_hits_total", ())] == 10


@pytest.mark.parametrize("stream", [False, True])
def test_model_span_nests_under_the_server_span(stream):
    def handler(req):
        if req.json.get("stream"):
            return Reply(200, events=[sse(c) for c in stream_chunks(["Hi"])] + [sse("[DONE]")])
        return Reply(200, completion("Hi"))

    with Loopback(handler) as up, Live(gateway(up)) as live:
        r = live.openai().chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=stream)
        list(r) if stream else None
    spans = {s["name"]: s for s in tracing.TraceStore().list(limit=10)}
    server, call = spans["POST /v1/chat/completions"], spans["chat gpt-x"]
    assert call["parent_id"] == server["span_id"] and call["trace_id"] == server["trace_id"]
    assert server["attributes"]["http.response.status_code"] == 200
    assert call["end_ns"] <= server["end_ns"]  # the request span covers the whole (streamed) answer


def test_graceful_shutdown_finishes_the_stream_in_flight():
    pieces = [f"p{i} " for i in range(8)]

    def slow_events():
        for c in stream_chunks(pieces):
            time.sleep(0.15)
            yield sse(c)
        yield sse("[DONE]")

    with Loopback(lambda req: Reply(200, events=slow_events())) as up:
        live = Live(gateway(up), shutdown_timeout=20).__enter__()
        got = []
        stream = live.openai().chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}],
                                                       stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if not got:
                    live.server.should_exit = True  # as SIGTERM does
                got.append(chunk.choices[0].delta.content)
        live.thread.join(20)
        assert not live.thread.is_alive()
    assert "".join(got) == "".join(pieces)
    with pytest.raises(httpx.ConnectError):
        httpx.get(live.url + "/health")


def test_served_name_and_spec_are_accepted_other_names_are_404():
    import openai

    with Loopback(lambda req: Reply(200, completion("ok"))) as up, \
            Live(gateway(up), model="openai:gpt-x", model_name="team-model") as live:
        client = live.openai()
        assert [m.id for m in client.models.list()][0] == "team-model"
        for name in ("team-model", "openai:gpt-x"):
            r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
            assert r.model == "team-model"
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert e.value.body["code"] == "model_not_found" and "team-model" in e.value.body["message"]
    assert all(r.json["model"] == "gpt-x" for r in up.requests)  # upstream sees its own name
