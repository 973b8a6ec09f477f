"""Every model call is one OpenTelemetry span with the GenAI attributes, stored in SQLite
and exportable over OTLP."""
import json
import subprocess
import sys

import pytest

import llmkit as lk
from llmkit.core import tracing
from loopback import Loopback, Reply

FRANCE = [lk.system("Answer with one word."), lk.user("What is the capital of France?")]  # no near-tie greedy tokens (tests/greedy.py)


def chat_reply(text="Paris.", usage=(11, 3)):
    return {"id": "c1", "object": "chat.completion", "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def test_call_writes_one_span_with_genai_attributes():
    with Loopback(lambda req: Reply(200, chat_reply())) as srv:
        m = lk.model("openai:gpt-x", base_url=srv.url + "/v1", api_key="sk-secret-1234")
        m.chat(FRANCE, temperature=0.2, max_tokens=9, seed=5)
    [span] = tracing.TraceStore().list()
    a = span["attributes"]
    assert span["name"] == "chat gpt-x" and span["status"] == "UNSET"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-x"
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 9
    assert a["gen_ai.request.seed"] == 5
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 3)
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert json.loads(a["gen_ai.input.messages"])[1]["content"] == "What is the capital of France?"
    assert json.loads(a["gen_ai.output.messages"])[0]["content"] == "Paris."
    assert a["llmkit.latency_s"] > 0
    assert "sk-secret-1234" not in json.dumps(span)


def test_failing_call_records_the_error():
    with Loopback(lambda req: Reply(500, {"error": {"message": "the GPU caught fire"}})) as srv:
        m = lk.model("openai:gpt-x", base_url=srv.url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(lk.ProviderError):
            m.chat("hi")
    [span] = tracing.TraceStore().list()
    assert span["status"] == "ERROR"
    assert "the GPU caught fire" in span["error"]
    assert span["attributes"]["error.type"] == "ProviderError"
    assert span["events"][0]["name"] == "exception"


def test_stream_is_one_span_with_time_to_first_token():
    m = lk.model()
    text = "".join(c.text for c in m.stream(FRANCE, temperature=0, max_tokens=12))
    [span] = tracing.TraceStore().list()
    a = span["attributes"]
    assert json.loads(a["gen_ai.output.messages"])[0]["content"] == text
    assert 0 < a["llmkit.time_to_first_token_s"] <= a["llmkit.latency_s"]
    assert a["gen_ai.usage.output_tokens"] > 0


def test_spans_nest_under_the_callers_span():
    m = lk.model()
    with tracing.span("my pipeline", {"step": 1}):
        m.complete("Hello", max_tokens=2)
        m.complete("Hello", max_tokens=2)
    spans = tracing.TraceStore().list()
    parent = next(s for s in spans if s["name"] == "my pipeline")
    children = [s for s in spans if s["parent_id"] == parent["span_id"]]
    assert len(children) == 2 and all(s["name"] == "text_completion smollm2-135m-instruct" for s in children)
    assert {s["trace_id"] for s in spans} == {parent["trace_id"]}


def test_switch_off(monkeypatch):
    monkeypatch.setenv("LLMKIT_TRACE", "0")
    lk.model().complete("Hi", max_tokens=2)
    assert tracing.TraceStore().list() == []


def test_content_can_be_kept_out(monkeypatch):
    monkeypatch.setenv("LLMKIT_TRACE_CONTENT", "0")
    lk.model().chat(FRANCE, max_tokens=2)
    [span] = tracing.TraceStore().list()
    assert "gen_ai.input.messages" not in span["attributes"]
    assert "gen_ai.output.messages" not in span["attributes"]


def test_otlp_export_reaches_a_collector(monkeypatch):
    """The OTLP/HTTP exporter posts protobuf spans to <endpoint>/v1/traces, as Langfuse or
    Phoenix receive them."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    with Loopback(lambda req: Reply(200, b"")) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        tracing.reset()
        try:
            lk.model().complete("Hi", max_tokens=2)
            assert tracing.flush()
        finally:
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
            tracing.reset()
        posts = [r for r in collector.requests if r.path == "/v1/traces"]
    assert posts and posts[0].headers["content-type"] == "application/x-protobuf"
    req = ExportTraceServiceRequest.FromString(posts[0].body)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert span.name == "text_completion smollm2-135m-instruct"
    assert attrs["gen_ai.operation.name"].string_value == "text_completion"


def test_trace_cli_lists_and_shows(llmkit_home):
    lk.model().chat(FRANCE, temperature=0, max_tokens=12)
    [span] = tracing.TraceStore().list()
    env = {"LLMKIT_HOME": str(llmkit_home), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    ls = subprocess.run([sys.executable, "-m", "llmkit", "trace", "ls"], capture_output=True, text=True, env=env)
    assert ls.returncode == 0 and span["span_id"] in ls.stdout
    show = subprocess.run([sys.executable, "-m", "llmkit", "trace", "show", span["span_id"][:8]],
                          capture_output=True, text=True, env=env)
    assert show.returncode == 0
    assert "gen_ai.usage.output_tokens" in show.stdout and "What is the capital of France?" in show.stdout
