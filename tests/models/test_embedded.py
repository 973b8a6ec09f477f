"""The same embedded weights on both runtimes: llama.cpp (Q4_1) and transformers (dequantized).

llama.cpp quantizes activations to 8 bits for its Q4_1 dot products while transformers runs
the dequantized weights in float32, so the two drift apart on near-ties after a few tokens;
the first greedy tokens and the first token's log-probabilities must agree.
"""
import pytest

import llmkit as lk

pytestmark = pytest.mark.integration

PROMPTS = [
    ("chat", [lk.system("Be brief."), lk.user("What is the capital of France?")]),
    ("chat", [lk.user("List three primary colors.")]),
    ("complete", "The capital of France is"),
    ("complete", "def fibonacci(n):"),
]


@pytest.fixture(scope="module")
def pair():
    return lk.model(), lk.model("hf:smollm2")


def first_tokens(m, kind, prompt, n):
    r = getattr(m, kind)(prompt, temperature=0, max_tokens=n, logprobs=True, top_logprobs=3)
    return [lp.token for lp in r.logprobs], r.logprobs


@pytest.mark.parametrize("kind, prompt", PROMPTS)
def test_local_and_hf_agree_on_the_first_greedy_tokens(pair, kind, prompt):
    (a, lpa), (b, lpb) = (first_tokens(m, kind, prompt, 5) for m in pair)
    assert a == b
    # same distribution, up to 8-bit activation noise: the chosen token's log-prob within 0.35 nats
    assert abs(lpa[0].logprob - lpb[0].logprob) < 0.35
    assert [t for t, _ in lpa[0].top[:2]] == [t for t, _ in lpb[0].top[:2]]


def test_hf_answers_paris_too(pair):
    r = pair[1].chat(PROMPTS[0][1], temperature=0, max_tokens=32)
    assert "Paris" in r.text and r.finish_reason == "stop"
