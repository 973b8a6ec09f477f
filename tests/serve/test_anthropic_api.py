"""Anthropic's Messages routes on the embedded model, through a live server and the official ``anthropic`` SDK."""
import anthropic
import httpx
import pytest

pytestmark = pytest.mark.integration

SYSTEM = [{"type": "text", "text": "Be brief."}]  # system as blocks; a plain string works too
GREEDY = {"extra_body": {"temperature": 0}}  # this SDK release has no temperature argument; the API still takes it
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_messages_answer_with_usage(live):
    client = live.anthropic()
    m = client.messages.create(model="smollm2-135m-instruct", system=SYSTEM, messages=QUESTION, max_tokens=24, **GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.model == "smollm2-135m-instruct"
    assert "Paris" in m.content[0].text and m.stop_reason == "end_turn"
    counted = client.messages.count_tokens(model="smollm2-135m-instruct", system=SYSTEM, messages=QUESTION)
    assert counted.input_tokens == m.usage.input_tokens > 0
    assert 0 < m.usage.output_tokens <= 24
    same = client.messages.create(model="smollm2-135m-instruct", system="Be brief.", messages=QUESTION, max_tokens=24, **GREEDY)
    assert same.content[0].text == m.content[0].text


def test_stream_events_come_in_anthropic_order_and_match_the_plain_answer(live):
    client = live.anthropic()
    kw = dict(model="smollm2-135m-instruct", system=SYSTEM, messages=QUESTION, max_tokens=6, **GREEDY)
    plain = client.messages.create(**kw)
    events = list(client.messages.create(stream=True, **kw))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert all(e.delta.type == "text_delta" and e.index == 0 for e in events[2:-3])
    assert "".join(e.delta.text for e in events[2:-3]) == plain.content[0].text
    start, delta = events[0], events[-2]
    assert start.message.usage.input_tokens == plain.usage.input_tokens
    assert delta.delta.stop_reason == "max_tokens" == plain.stop_reason
    assert delta.usage.output_tokens == plain.usage.output_tokens == 6
    with client.messages.stream(**kw) as s:  # the SDK's own accumulator agrees
        final = s.get_final_message()
    assert final.content[0].text == plain.content[0].text and final.usage.output_tokens == 6


def test_stop_sequences_and_top_k(live):  # top_k=1 is greedy whatever the temperature
    m = live.anthropic().messages.create(model="smollm2-135m-instruct", system=SYSTEM, messages=QUESTION, max_tokens=24,
                                         stop_sequences=["Paris"], extra_body={"temperature": 0.7, "top_k": 1})
    assert m.content[0].text.startswith("The capital of France is") and "Paris" not in m.content[0].text
    assert m.stop_reason in ("end_turn", "stop_sequence")


@pytest.mark.parametrize("body, needle", [
    ({"messages": QUESTION}, "max_tokens is required"),
    ({"messages": QUESTION, "max_tokens": 0}, "max_tokens=0 is invalid"),
    ({"messages": [], "max_tokens": 8}, "messages is empty"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}], "max_tokens": 8}, "'image' block"),
    ({"messages": QUESTION, "max_tokens": 8, "model": "claude-x"}, "'claude-x' is not served here"),
    ({"messages": QUESTION, "max_tokens": 8, "tools": [{"name": "f", "input_schema": {"type": "object"}}],
      "tool_choice": {"type": "tool", "name": "g"}}, "'g'"),
])
def test_bad_requests_get_anthropic_shaped_errors(live, body, needle):
    r = httpx.post(live.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["type"] == "error" and needle in r.json()["error"]["message"]
    assert r.json()["error"]["type"] in ("invalid_request_error", "not_found_error")


def test_sdk_raises_typed_errors(live):
    with pytest.raises(anthropic.NotFoundError):
        live.anthropic().messages.create(model="claude-x", messages=QUESTION, max_tokens=8)
    with pytest.raises(anthropic.BadRequestError) as e:
        live.anthropic().messages.create(model="smollm2-135m-instruct", messages=QUESTION, max_tokens=0)
    assert "max_tokens" in e.value.message


def test_models_list_in_anthropic_shape(live):
    assert [m.id for m in live.anthropic().models.list()] == ["smollm2-135m-instruct", "all-MiniLM-L6-v2"]
