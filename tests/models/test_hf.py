"""The transformers backend on a tiny random llama with the real SmolLM2 tokenizer."""
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402

import llmkit as lk  # noqa: E402
from llmkit import Sampling  # noqa: E402
from llmkit.models.hf import HFModel, embedded_dir  # noqa: E402

PROMPT = "The quick brown fox"


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_dir())  # converted once, cached under LLMKIT_CACHE


@pytest.fixture(scope="session")
def tiny(tokenizer):
    from tiny import tiny_llama

    return tiny_llama(tokenizer)


def prompt_ids(m):
    return m.tokenizer.encode(PROMPT)


def steps(m, s: Sampling, n: int) -> list[int]:
    return [t for t, _ in m.decode_steps(prompt_ids(m), s, n)]


def forward_logits(m, ids: list[int]) -> torch.Tensor:
    """Logits at every position, from a plain forward pass without any cache."""
    with torch.inference_mode():
        return m.model(torch.tensor([ids])).logits[0].float()


# --- decoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("row_matvec", [True, False])
def test_greedy_is_argmax_at_every_step(tiny, row_matvec):
    m = HFModel.from_objects(tiny.model, tiny.tokenizer, row_matvec=row_matvec)
    ids = prompt_ids(m)
    out = steps(m, Sampling(temperature=0, logprobs=True), 10)
    logits = forward_logits(m, ids + out)
    assert out == logits[len(ids) - 1: -1].argmax(-1).tolist()
    c = m.complete(PROMPT, temperature=0, max_tokens=10, logprobs=True)
    assert c.text == m.tokenizer.decode(out, skip_special_tokens=True)
    ref = torch.log_softmax(logits[len(ids) - 1: -1], dim=-1)
    assert [lp.logprob for lp in c.logprobs] == pytest.approx([float(r[t]) for r, t in zip(ref, out)], abs=1e-4)


def test_row_linear_matches_f_linear():
    from llmkit.models.torch_decode import row_linear as _row_linear

    g = torch.Generator().manual_seed(0)
    w, b, x = torch.randn(96, 40, generator=g), torch.randn(96, generator=g), torch.randn(1, 1, 40, generator=g)
    assert torch.allclose(_row_linear(x, w, b), F.linear(x, w, b), atol=1e-5)
    assert _row_linear(x, w).shape == (1, 1, 96)
    assert _row_linear(torch.randn(2, 40), w) is None                 # more than one row: BLAS matmul is fine
    assert _row_linear(x.bfloat16(), w.bfloat16()) is None
    assert _row_linear(x, torch.randn(97, 40)) is None                 # rows do not split evenly


def test_same_seed_reproduces_and_another_seed_differs(tiny):
    a = tiny.complete(PROMPT, temperature=1.0, seed=1, max_tokens=12)
    b = tiny.complete(PROMPT, temperature=1.0, seed=1, max_tokens=12)
    c = tiny.complete(PROMPT, temperature=1.0, seed=2, max_tokens=12)
    assert a.text == b.text and a.text != c.text


def test_max_tokens_gives_length_and_exactly_that_many_tokens(tiny):
    c = tiny.chat("hi", temperature=1.0, seed=0, max_tokens=7)
    assert (c.finish_reason, c.usage.output_tokens) == ("length", 7)
    assert c.usage.input_tokens == tiny.count_tokens([lk.user("hi")])


def test_logprobs_are_log_softmax_of_the_raw_logits(tiny):
    s = Sampling(temperature=0.5, seed=3, max_tokens=6, logprobs=True, top_logprobs=3)
    c = tiny.complete(PROMPT, sampling=s)
    ids = prompt_ids(tiny)
    out = steps(tiny, s, 6)  # same seed → same tokens
    ref = torch.log_softmax(forward_logits(tiny, ids + out)[len(ids) - 1: -1], dim=-1)
    assert len(c.logprobs) == 6
    for lp, t, row in zip(c.logprobs, out, ref):
        assert lp.logprob == pytest.approx(float(row[t]), abs=1e-4)    # raw: temperature 0.5 not applied
        values, idx = row.topk(3)
        assert [v for _, v in lp.top] == pytest.approx(values.tolist(), abs=1e-4)
        assert [tok for tok, _ in lp.top] == [tiny.tokenizer.decode([i]) for i in idx.tolist()]


def test_streamed_text_equals_chat_text_under_greedy(tiny):
    kw = {"temperature": 0, "max_tokens": 24}
    chunks = list(tiny.stream("Say something", **kw))
    c = tiny.chat("Say something", **kw)
    assert "".join(ch.text for ch in chunks) == c.text
    assert chunks[-1].finish_reason == c.finish_reason and chunks[-1].usage == c.usage
    assert all(ch.finish_reason is None for ch in chunks[:-1])


def test_stop_sequence_cuts_exactly(tiny):
    full = tiny.complete(PROMPT, temperature=0, max_tokens=20).text
    stop = full[len(full) // 2: len(full) // 2 + 3]
    want = full[: full.find(stop)]
    c = tiny.complete(PROMPT, temperature=0, max_tokens=20, stop=[stop, "never-appears"])
    assert (c.text, c.finish_reason) == (want, "stop")
    streamed = list(tiny.stream([lk.user("x")], temperature=0, max_tokens=20))
    text = "".join(ch.text for ch in streamed)
    stop = text[5:8]
    cut = list(tiny.stream([lk.user("x")], temperature=0, max_tokens=20, stop=stop))
    assert "".join(ch.text for ch in cut) == text[: text.find(stop)] and cut[-1].finish_reason == "stop"


def test_presence_penalty_changes_generation(tiny):
    plain = steps(tiny, Sampling(temperature=0), 30)
    penalised = steps(tiny, Sampling(temperature=0, presence_penalty=2.0), 30)
    assert len(set(plain)) < len(plain)             # a random model loops…
    assert len(set(penalised)) == len(penalised)    # …until repeats cost more than its logit spread


# --- beam and contrastive search --------------------------------------------------------------
def test_beam_search_equals_transformers_generate(tiny):
    ids = prompt_ids(tiny)
    x = torch.tensor([ids])
    ref = tiny.model.generate(x, attention_mask=torch.ones_like(x), num_beams=3, do_sample=False, max_new_tokens=8,
                              eos_token_id=sorted(tiny.eos_token_ids), pad_token_id=tiny.pad_token_id)
    c = tiny.complete(PROMPT, num_beams=3, max_tokens=8)
    assert c.text == tiny.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
    assert c.text != tiny.complete(PROMPT, temperature=0, max_tokens=8).text   # it is not just greedy
    with pytest.raises(lk.UnsupportedParameterError, match="num_beams"):
        list(tiny.stream("hi", num_beams=3))
    with pytest.raises(lk.UnsupportedParameterError, match="logprobs"):
        tiny.complete(PROMPT, num_beams=3, logprobs=True)


def naive_contrastive(m, ids, k, alpha, n):
    """Su et al. 2022 straight from the formula: full forward passes, no cache, no batching."""
    out = []
    for _ in range(n):
        seq = ids + out
        with torch.inference_mode():
            o = m.model(torch.tensor([seq]), output_hidden_states=True)
            probs, cand = o.logits[0, -1].softmax(-1).topk(k)
            context = o.hidden_states[-1][0]
            scores = []
            for p, v in zip(probs.tolist(), cand.tolist()):
                h = m.model(torch.tensor([seq + [v]]), output_hidden_states=True).hidden_states[-1][0, -1]
                scores.append((1 - alpha) * p - alpha * float(F.cosine_similarity(h[None], context).max()))
        out.append(cand[max(range(k), key=scores.__getitem__)].item())
    return out


def test_contrastive_search(tiny):
    ids = prompt_ids(tiny)
    greedy = steps(tiny, Sampling(temperature=0), 10)
    from llmkit.models.contrastive import contrastive_steps

    zero = [t for t, _ in contrastive_steps(tiny.model, ids, Sampling(penalty_alpha=0.0, top_k=4), 10)]
    assert zero == greedy
    cs = [t for t, _ in contrastive_steps(tiny.model, ids, Sampling(penalty_alpha=0.6, top_k=4), 8)]
    assert cs == naive_contrastive(tiny, ids, 4, 0.6, 8)
    c = tiny.complete(PROMPT, penalty_alpha=0.6, top_k=4, max_tokens=9)
    assert (c.usage.output_tokens, c.finish_reason) == (9, "length")
    assert "".join(ch.text for ch in tiny.stream("hi", penalty_alpha=0.6, top_k=4, max_tokens=9)) == \
        tiny.chat("hi", penalty_alpha=0.6, top_k=4, max_tokens=9).text
    with pytest.raises(lk.ConfigError, match="top_k"):
        tiny.complete(PROMPT, penalty_alpha=0.6)


# --- limits and errors --------------------------------------------------------------------------
def test_context_overflow_raises_with_numbers(tiny):
    long = "word " * 200
    n = tiny.count_tokens(long)
    with pytest.raises(lk.ContextLengthError, match=f"{n + 100}.*256") as e:
        tiny.complete(long, max_tokens=100)
    assert (e.value.tokens, e.value.limit) == (n + 100, 256)
    with pytest.raises(lk.ContextLengthError):
        tiny.complete("word " * 300)                     # no room for even one token
    capped = HFModel.from_objects(tiny.model, tiny.tokenizer, max_context=16)
    assert capped.context_length == 16
    with pytest.raises(lk.ContextLengthError):
        capped.complete(PROMPT, max_tokens=16)


def test_sampling_knobs_that_do_not_apply_are_rejected(tiny):
    with pytest.raises(lk.UnsupportedParameterError, match="temperature with num_beams"):
        tiny.complete(PROMPT, num_beams=2, temperature=0.7)
    with pytest.raises(lk.UnsupportedParameterError, match="top_p with penalty_alpha"):
        tiny.complete(PROMPT, penalty_alpha=0.5, top_k=3, top_p=0.9)
    with pytest.raises(lk.UnsupportedParameterError, match="penalty_alpha with num_beams"):
        tiny.complete(PROMPT, num_beams=2, penalty_alpha=0.5)


def test_static_cache_and_bfloat16_decode_like_the_default(tiny):
    import copy

    greedy = steps(tiny, Sampling(temperature=0), 12)
    static = HFModel.from_objects(tiny.model, tiny.tokenizer, static_cache=True)
    assert steps(static, Sampling(temperature=0), 12) == greedy
    bf16 = HFModel.from_objects(copy.deepcopy(tiny.model), tiny.tokenizer, dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16
    c = bf16.complete(PROMPT, temperature=0, max_tokens=5, logprobs=True)
    assert c.usage.output_tokens == 5 and all(lp.logprob <= 0 for lp in c.logprobs)


def test_loading_errors_name_the_problem(tmp_path):
    with pytest.raises(lk.ConfigError, match="/no/such/model"):
        HFModel("/no/such/model")
    with pytest.raises(lk.ConfigError, match="config.json"):
        HFModel(str(tmp_path))
    with pytest.raises(lk.ConfigError, match="dtype"):
        HFModel("smollm2", dtype="float8")
    with pytest.raises(lk.ConfigError, match="no option 'gpu'"):
        HFModel("smollm2", gpu=True)


def test_info_and_token_counts(tiny):
    assert tiny.info.capabilities == ["chat", "stream", "complete", "logprobs", "tools", "structured"]
    assert tiny.context_length == 256 and tiny.provider == "hf"
    assert tiny.count_tokens(PROMPT) == len(tiny.tokenizer.encode(PROMPT))
    assert 2 in tiny.eos_token_ids   # <|im_end|>


def test_import_llmkit_stays_light():
    code = "import llmkit, llmkit.models.hf, llmkit.models.logits, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]


@pytest.mark.integration
def test_embedded_model_knows_the_capital_of_france():
    m = lk.model("hf:smollm2")
    c = m.chat([lk.user("What is the capital of France?")], temperature=0, max_tokens=32)
    assert "Paris" in c.text
