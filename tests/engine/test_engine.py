"""The continuous-batching engine on the real embedded model."""
import threading
import time

import pytest

import llmkit as lk
from llmkit.core.sampling import Sampling
from llmkit.engine import Engine
from llmkit.engine.speculative import NgramIndex
from llmkit.models import embedded_gguf
from greedy import assert_same_up_to_ties, tokens

pytestmark = pytest.mark.integration
GREEDY = Sampling(temperature=0)
TRACED = Sampling(temperature=0, logprobs=True, top_logprobs=2)  # greedy, with what a tie check needs
PARAGRAPH = ("The lighthouse keeper climbed the spiral stairs every evening at dusk. He wiped the salt from "
             "the great lens, trimmed the wick, and watched the beam sweep across the dark water.")


@pytest.fixture(scope="module")
def eng():
    e = Engine(embedded_gguf(), n_ctx=8192, max_concurrency=16, prefix_cache=4)
    yield e
    e.close()


def run(eng, prompt, s=GREEDY, n=24):
    return "".join(c.text for c in eng.submit(eng.runtime.tokenize(prompt), s, max_tokens=n))


def idle(eng, timeout=10.0):
    """True once no request is active (finished ones leave at the end of the engine's step)."""
    deadline = time.time() + timeout
    while eng.stats()["active"] and time.time() < deadline:
        time.sleep(0.01)
    return eng.stats()["active"] == 0


def chat_prompt(text):
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = [chat_prompt(q) for q in ["What is the capital of France?", "Name a color.", "Write a haiku about rain.",
                                     "What is 2+2?", "Say hello.", "List three fruits.", "Who wrote Hamlet?",
                                     "Describe the sea."]]


def test_batched_requests_equal_the_same_requests_alone(eng):
    alone = [tokens(eng.submit(eng.runtime.tokenize(p), TRACED, max_tokens=32)) for p in PROMPTS]
    reqs = [eng.submit(eng.runtime.tokenize(p), TRACED, max_tokens=32) for p in PROMPTS * 2]  # 16 at once
    together = [tokens(r) for r in reqs]
    identical = [assert_same_up_to_ties(a, b) for a, b in zip(alone * 2, together)]
    assert sum(identical) >= 6       # many are bit-identical; the rest part only at a near-tie
    assert idle(eng)


def test_many_decode_together_in_one_step(eng):
    before = eng.stats()["steps"]
    reqs = [eng.submit(eng.runtime.tokenize(p), GREEDY, max_tokens=16) for p in PROMPTS]
    outs = [list(r) for r in reqs]
    steps = eng.stats()["steps"] - before
    assert all(o[-1].finish_reason for o in outs)
    # 8 requests x up to 16 tokens (+ prefill) took far fewer steps than one request after another
    assert steps < 0.5 * sum(o[-1].usage.output_tokens + 1 for o in outs)


def test_prefix_cache_reuses_a_shared_prefix(eng):
    system = "<|im_start|>system\n" + "You are a careful assistant who answers briefly. " * 20 + "<|im_end|>\n"
    p1 = system + "<|im_start|>user\nName a planet.<|im_end|>\n<|im_start|>assistant\n"
    p2 = system + "<|im_start|>user\nName a river.<|im_end|>\n<|im_start|>assistant\n"
    run(eng, p1)
    hits, reused = eng.stats()["prefix_cache_hits"], eng.stats()["prefix_cache_tokens"]
    out = tokens(eng.submit(eng.runtime.tokenize(p2), TRACED, max_tokens=24))
    assert eng.stats()["prefix_cache_hits"] == hits + 1
    assert eng.stats()["prefix_cache_tokens"] - reused >= len(eng.runtime.tokenize(system))
    fresh = Engine(embedded_gguf(), n_ctx=2048, max_concurrency=1, prefix_cache=0)
    try:   # reused cells give the answer computing them gives
        assert_same_up_to_ties(tokens(fresh.submit(fresh.runtime.tokenize(p2), TRACED, max_tokens=24)), out)
    finally:
        fresh.close()


def test_long_prompt_is_prefilled_in_chunks_with_the_same_result():
    prompt = chat_prompt("Summarise: " + PARAGRAPH * 4)
    outs = []
    for n_batch in (32, 512):
        e = Engine(embedded_gguf(), n_ctx=2048, max_concurrency=2, prefix_cache=0, n_batch=n_batch)
        try:
            outs.append(tokens(e.submit(e.runtime.tokenize(prompt), TRACED, max_tokens=16)))
            assert e.stats()["steps"] >= (len(e.runtime.tokenize(prompt)) // n_batch) + 16
        finally:
            e.close()
    assert_same_up_to_ties(*outs)


def test_prompt_lookup_speculation_keeps_greedy_output():
    prompt = chat_prompt("Repeat this paragraph exactly:\n\n" + PARAGRAPH)
    results = {}
    for spec in (None, "ngram"):
        e = Engine(embedded_gguf(), n_ctx=2048, max_concurrency=2, prefix_cache=0, speculative=spec)
        try:
            text = run(e, prompt, n=48)
            results[spec] = (text, e.stats())
        finally:
            e.close()
    (plain, s0), (fast, s1) = results[None], results["ngram"]
    assert fast == plain
    assert s1["accepted"] > 10 and s1["steps"] < s0["steps"]


def test_draft_model_speculation_keeps_greedy_output():
    """Any draft sharing the tokenizer works; the embedded model drafting for itself must agree
    with itself on every token, so nearly every draft is accepted."""
    prompt = chat_prompt("Write a short poem about the moon.")
    plain = run(lk.model(n_ctx=2048, max_concurrency=2).engine, prompt, n=32)
    e = Engine(embedded_gguf(), n_ctx=2048, max_concurrency=2, prefix_cache=0, speculative="draft",
               draft_model=embedded_gguf(), n_draft=4)
    try:
        assert run(e, prompt, n=32) == plain
        s = e.stats()
        assert s["drafted"] > 0 and s["accepted"] >= 0.8 * s["drafted"]
    finally:
        e.close()
    with pytest.raises(lk.ConfigError, match="needs draft_model"):
        Engine(embedded_gguf(), n_ctx=512, speculative="draft")


def test_cancel_frees_the_sequence(eng):
    req = eng.submit(eng.runtime.tokenize(chat_prompt("Tell me a long story.")), GREEDY, max_tokens=400)
    it = iter(req)
    next(it)
    req.cancel()
    assert idle(eng)


def test_full_queue_is_refused_at_once():
    e = Engine(embedded_gguf(), n_ctx=2048, max_concurrency=1, max_queue=1, prefix_cache=0)
    try:
        toks = e.runtime.tokenize(chat_prompt("Tell me a long story."))
        first = e.submit(toks, GREEDY, max_tokens=200)
        next(iter(first))                     # running
        e.submit(toks, GREEDY, max_tokens=5)  # waiting
        with pytest.raises(lk.OverloadedError, match="queue is full"):
            e.submit(toks, GREEDY, max_tokens=5)
        first.cancel()
    finally:
        e.close()


def test_context_limit_is_checked_before_any_work(eng):
    with pytest.raises(lk.ContextLengthError, match="exceeds the context of 8192"):
        eng.submit([1] * 8000, GREEDY, max_tokens=500)


def test_seeded_sampling_in_a_batch_reproduces(eng):
    s = Sampling(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=11)
    reqs = [eng.submit(eng.runtime.tokenize(PROMPTS[2]), s, max_tokens=20) for _ in range(3)]
    texts = ["".join(c.text for c in r) for r in reqs]
    assert texts[0] == texts[1] == texts[2]
    assert texts[0] != run(eng, PROMPTS[2], Sampling(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=12), 20)


def test_threads_share_one_model():
    m = lk.model(n_ctx=4096, max_concurrency=8)
    questions = ["What is the capital of France?", "What is 2+2?", "Name a color.", "Say hello."] * 2

    def ask_one(q):
        return m.chat([lk.system("Be brief."), lk.user(q)], temperature=0, max_tokens=16, logprobs=True,
                      top_logprobs=2).logprobs

    alone = [ask_one(q) for q in questions]
    results = [None] * len(questions)

    def ask(i):
        results[i] = ask_one(questions[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, results):
        assert_same_up_to_ties(a, b)
    assert m.engine.stats()["steps"] < sum(len(a) + 1 for a in alone) * 2   # the threads shared steps
    m.close()


def test_ngram_index_drafts_what_followed():
    ix = NgramIndex([5, 6, 7, 8, 1, 5, 6])
    assert ix.draft(2) == [7, 8]
    ix.append(9)                      # "5 6 9" breaks the pattern; "6 9" never seen
    assert ix.draft(3) == []
    assert NgramIndex([1, 2, 3, 1, 2]).draft(5) == [3, 1, 2]
