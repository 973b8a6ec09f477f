"""The continuous-batching engine on the real embedded model."""
import threading
import time

import pytest

import llmkit as lk
from llmkit.core.sampling import Sampling
from llmkit.engine import Engine
from llmkit.engine.speculative import NgramIndex
from llmkit.models import embedded_gguf

pytestmark = pytest.mark.integration
GREEDY = Sampling(temperature=0)
PARAGRAPH = ("The lighthouse keeper climbed the spiral stairs every evening at dusk. He wiped the salt from "
             "the great lens, trimmed the wick, and watched the beam sweep across the dark water.")


@pytest.fixture(scope="module")
def eng():
    e = Engine(embedded_gguf(), n_ctx=8192, max_concurrency=16, prefix_cache=4)
    yield e
    e.close()


def run(eng, prompt, s=GREEDY, n=24):
    return "".join(c.text for c in eng.submit(eng.runtime.tokenize(prompt), s, max_tokens=n))


def chat_prompt(text):
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = [chat_prompt(q) for q in ["What is the capital of France?", "Name a color.", "Write a haiku about rain.",
                                     "What is 2+2?", "Say hello.", "List three fruits.", "Who wrote Hamlet?",
                                     "Describe the sea."]]


def test_batched_requests_equal_the_same_requests_alone(eng):
    alone = [run(eng, p) for p in PROMPTS]
    reqs = [eng.submit(eng.runtime.tokenize(p), GREEDY, max_tokens=24) for p in PROMPTS * 2]  # 16 at once
    together = ["".join(c.text for c in r) for r in reqs]
    assert together == alone * 2
    assert eng.stats()["active"] == 0


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
    out = run(eng, p2)
    assert eng.stats()["prefix_cache_hits"] == hits + 1
    assert eng.stats()["prefix_cache_tokens"] - reused >= len(eng.runtime.tokenize(system))
    fresh = Engine(embedded_gguf(), n_ctx=2048, max_concurrency=1, prefix_cache=0)
    try:
        assert run(fresh, p2) == out   # reused cells give the same answer as computing them
    finally:
        fresh.close()


def test_long_prompt_is_prefilled_in_chunks_with_the_same_result():
    prompt = chat_prompt("Summarise: " + PARAGRAPH * 4)
    outs = []
    for n_batch in (32, 512):
        e = Engine(embedded_gguf(), n_ctx=2048, max_concurrency=2, prefix_cache=0, n_batch=n_batch)
        try:
            outs.append(run(e, prompt, n=16))
        finally:
            e.close()
    assert outs[0] == outs[1]


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


def test_cancel_frees_the_sequence(eng):
    req = eng.submit(eng.runtime.tokenize(chat_prompt("Tell me a long story.")), GREEDY, max_tokens=400)
    it = iter(req)
    next(it)
    req.cancel()
    deadline = time.time() + 10
    while eng.stats()["active"] and time.time() < deadline:
        time.sleep(0.01)
    assert eng.stats()["active"] == 0


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
    alone = [m.chat([lk.system("Be brief."), lk.user(q)], temperature=0, max_tokens=16).text for q in questions]
    results = [None] * len(questions)

    def ask(i):
        results[i] = m.chat([lk.system("Be brief."), lk.user(questions[i])], temperature=0, max_tokens=16).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone
    m.close()


def test_ngram_index_drafts_what_followed():
    ix = NgramIndex([5, 6, 7, 8, 1, 5, 6])
    assert ix.draft(2) == [7, 8]
    ix.append(9)                      # "5 6 9" breaks the pattern; "6 9" never seen
    assert ix.draft(3) == []
    assert NgramIndex([1, 2, 3, 1, 2]).draft(5) == [3, 1, 2]
