"""Core types, the Sampling contract, the registry and the shared HTTP helpers."""
import subprocess
import sys
import time

import pytest

import llmkit as lk
from llmkit.core.sampling import make_sampling
from llmkit.models._http import retry_after, sse_events


def test_message_helpers_and_tool_calls():
    call = lk.ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}')  # OpenAI sends a JSON string
    assert call.arguments == {"a": 1, "b": 2}
    conv = [lk.system("s"), lk.user("u"), lk.assistant("", [call]), lk.tool("3", tool_call_id="c1", name="add")]
    assert [m.role for m in conv] == ["system", "user", "assistant", "tool"]
    assert conv[3].tool_call_id == "c1"
    with pytest.raises(ValueError):
        lk.Message(role="robot", content="x")


def test_completion_becomes_a_message():
    c = lk.Completion(text="hi", tool_calls=[lk.ToolCall(id="1", name="f")])
    assert c.message() == lk.assistant("hi", [lk.ToolCall(id="1", name="f")])
    assert lk.Usage(input_tokens=3, output_tokens=4).total_tokens == 7


def test_sampling_validation_names_the_field_and_value():
    assert make_sampling(None, stop="\n").stop == ["\n"]
    assert make_sampling(lk.Sampling(temperature=0.5), top_k=3).set_fields() == {"temperature": 0.5, "top_k": 3}
    for bad, needle in [({"temperature": -1}, "temperature=-1"), ({"top_p": 0}, "top_p=0"),
                        ({"max_tokens": 0}, "max_tokens=0"), ({"top_logprobs": 50}, "top_logprobs=50"),
                        ({"presence_penalty": 3}, "presence_penalty=3")]:
        with pytest.raises(lk.ConfigError, match=needle):
            make_sampling(None, **bad)
    with pytest.raises(lk.ConfigError, match="unknown sampling option 'temprature'"):
        make_sampling(None, temprature=1)


def test_unsupported_fields_are_refused_not_ignored():
    s = lk.Sampling(top_k=5, temperature=0.3)
    s.check("x", {"temperature", "top_k"})
    with pytest.raises(lk.UnsupportedParameterError, match="x does not support 'top_k'"):
        s.check("x", {"temperature"})
    lk.Sampling(num_beams=1).check("x", set())  # one beam is plain decoding


def test_registry_errors():
    with pytest.raises(lk.ConfigError, match="unknown provider 'foo'"):
        lk.model("foo:bar")
    with pytest.raises(lk.ConfigError, match="names no model"):
        lk.model("openai:")
    with pytest.raises(lk.ConfigError, match="has no provider"):
        lk.model("gpt-4o")
    with pytest.raises(lk.ConfigError, match="spec must be a string"):
        lk.model(42)


def test_retry_after_forms():
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after({"retry-after": future}) <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_sse_parsing():
    lines = ["event: a", "data: {\"x\": 1}", "", ": keep-alive", "data: line1", "data: line2", "", "data: [DONE]"]
    assert list(sse_events(iter(lines))) == [("a", '{"x": 1}'), (None, "line1\nline2"), (None, "[DONE]")]


def test_import_stays_light():
    code = ("import sys, llmkit; heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'sentence_transformers',"
            " 'opentelemetry.sdk', 'httpx') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
