"""The llama.cpp backend on the real embedded SmolLM2-135M-Instruct."""
import asyncio

import pytest

import llmkit as lk
from llmkit.models import embedded_gguf

pytestmark = pytest.mark.integration
FRANCE = [lk.system("Answer with one word."), lk.user("What is the capital of France?")]  # no near-tie greedy tokens (tests/greedy.py)


@pytest.fixture(scope="module")
def m():
    return lk.model()


def test_greedy_answers_paris(m):
    r = m.chat(FRANCE, temperature=0.0, max_tokens=32)
    assert "Paris" in r.text
    assert r.finish_reason == "stop"
    assert r.usage.input_tokens == m.count_tokens(FRANCE)
    assert 0 < r.usage.output_tokens < 32
    assert (r.provider, r.model) == ("local", "smollm2-135m-instruct")


def test_stream_equals_chat_under_greedy(m):
    full = m.chat(FRANCE, temperature=0, max_tokens=40).text
    chunks = list(m.stream(FRANCE, temperature=0, max_tokens=40))
    assert "".join(c.text for c in chunks) == full
    assert len(chunks) > 3                                  # really streamed, token by token
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.output_tokens > 0


def test_async_twins(m):
    async def go():
        r = await m.achat(FRANCE, temperature=0, max_tokens=16)
        parts = [c.text async for c in m.astream(FRANCE, temperature=0, max_tokens=16)]
        return r.text, "".join(parts)

    a, b = asyncio.run(go())
    assert a == b and "Paris" in a


def test_seeded_sampling_reproduces(m):
    kw = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=24)
    a = m.chat("Tell me a story.", seed=7, **kw).text
    b = m.chat("Tell me a story.", seed=7, **kw).text
    c = m.chat("Tell me a story.", seed=8, **kw).text
    assert a == b
    assert a != c


def test_max_tokens_gives_length(m):
    r = m.complete("Once upon a time", temperature=0, max_tokens=5)
    assert r.finish_reason == "length" and r.usage.output_tokens == 5


def test_stop_sequence_cuts_exactly(m):
    free = m.complete("1, 2, 3, 4,", temperature=0, max_tokens=12).text
    assert " 6" in free                                      # the model counts on...
    r = m.complete("1, 2, 3, 4,", temperature=0, max_tokens=12, stop=[" 6"])
    assert r.text == free[: free.index(" 6")]               # ...and is cut right before the stop
    assert r.finish_reason == "stop"


def test_logprobs_are_log_probabilities(m):
    r = m.chat(FRANCE, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    assert len(r.logprobs) == r.usage.output_tokens
    for lp in r.logprobs:
        assert lp.logprob <= 0
        assert len(lp.top) == 3
        assert lp.top[0][1] >= lp.top[1][1] >= lp.top[2][1]
        assert lp.top[0] == (lp.token, lp.logprob)            # greedy picks the top token
    assert "".join(lp.token for lp in r.logprobs) == r.text


def test_context_overflow_is_clear(m):
    with pytest.raises(lk.ContextLengthError, match="exceeds the context of 8192"):
        m.chat("hi", max_tokens=9000)


def test_unsupported_field_is_named(m):
    with pytest.raises(lk.UnsupportedParameterError, match="num_beams"):
        m.chat("hi", num_beams=3)


def test_any_gguf_by_path():
    m = lk.model(f"llamacpp:{embedded_gguf()}", n_ctx=1024)
    assert m.provider == "llamacpp" and m.context_length == 1024
    assert "Paris" in m.chat(FRANCE, temperature=0, max_tokens=24).text


def test_bad_path_and_option():
    with pytest.raises(lk.ConfigError, match="nope.gguf"):
        lk.model("llamacpp:/nope.gguf")
    with pytest.raises(lk.ConfigError, match="no option 'n_gpu'"):
        lk.model(n_gpu=1)
