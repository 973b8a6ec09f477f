"""The benchmark harness: log-likelihoods checked against plain forward passes and transformers'
own loss, tasks run end to end on a tiny random llama (real SmolLM2 tokenizer), and on the
embedded model in the integration tests."""
import json
import math

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import llmkit as lk
from llmkit.evals import harness as h
from llmkit.models.hf import embedded_dir

TEXT = " ".join(d["text"] for d in h.load_task("wiki_ppl").docs()[:2])   # ~240 tokens of prose


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_dir())


@pytest.fixture(scope="module")
def tiny(tokenizer):
    from tiny import tiny_llama

    return tiny_llama(tokenizer)


@pytest.fixture(scope="module")
def smollm2():
    return lk.model("hf:smollm2")


def enc(m, text):
    return m.tokenizer.encode(text, add_special_tokens=False)


def logprobs(m, ids):
    """log_softmax at every position of one unpadded forward pass."""
    with torch.inference_mode():
        return torch.log_softmax(m.model(torch.tensor([ids])).logits[0].float(), dim=-1)


def direct_ll(m, context, continuation):
    """Sum of the continuation's token logprobs, from scratch (contexts here split cleanly)."""
    ctx = enc(m, context) if context else [m.tokenizer.bos_token_id]
    whole = ctx + enc(m, continuation) if not context else enc(m, context + continuation)
    assert whole[: len(ctx)] == ctx
    lp = logprobs(m, whole)
    return sum(float(lp[p - 1, whole[p]]) for p in range(len(ctx), len(whole)))


def reference_rolling(m, text, window):
    """lm-eval's windows written out by hand, each scored by transformers' own loss: the first window
    is BOS + the first `window` tokens; each next chunk of `window` tokens is scored with the tokens
    just before it filling the window (labels -100 on them, as in HF's perplexity guide)."""
    ids, total = enc(m, text), 0.0
    for start in range(0, len(ids), window):
        end = min(start + window, len(ids))
        x = [m.tokenizer.bos_token_id] + ids[:end] if start == 0 else ids[end - window - 1: end]
        x = torch.tensor([x])
        labels = x.clone()
        labels[0, : -(end - start)] = -100
        with torch.inference_mode():
            total -= float(m.model(x, labels=labels).loss) * (end - start)
    return total


# --- log-likelihoods ------------------------------------------------------------------------------
REQUESTS = [("The quick brown fox", " jumps over the lazy dog"), ("Question: What is 2 plus 2?\nAnswer:", " 4"),
            ("A", " b"), ("", "Hello world"), ("One two three four five six seven eight nine ten", " eleven")]


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_loglikelihood_equals_log_softmax_of_a_plain_forward(tiny, batch_size):
    got = h.loglikelihood(tiny, REQUESTS, batch_size=batch_size)   # rows of different lengths share padded batches
    assert [ll for ll, _ in got] == pytest.approx([direct_ll(tiny, c, x) for c, x in REQUESTS], abs=1e-4)
    assert all(ll < 0 for ll, _ in got)


def test_is_greedy_on_the_models_own_argmax(tiny):
    ctx = enc(tiny, "The quick brown fox")
    greedy = []
    for _ in range(3):
        greedy.append(int(logprobs(tiny, ctx + greedy)[-1].argmax()))
    other = (greedy[2] + 1) % len(tiny.tokenizer)
    (ll, is_greedy), (_, not_greedy) = h.loglikelihood_tokens(tiny, [(ctx, greedy), (ctx, greedy[:2] + [other])])
    assert (is_greedy, not_greedy) == (True, False)
    lp = logprobs(tiny, ctx + greedy)
    assert ll == pytest.approx(sum(float(lp[len(ctx) - 1 + i].max()) for i in range(3)), abs=1e-4)


def test_token_boundary_and_whitespace_as_lm_eval(tiny):
    # trailing spaces of the context go to the continuation, where the tokenizer glues them to the word
    assert h.encode_pair(tiny, "Answer: ", "4") == h.encode_pair(tiny, "Answer:", " 4") == (enc(tiny, "Answer:"), enc(tiny, " 4"))
    assert h.loglikelihood(tiny, [("Answer: ", "4")]) == h.loglikelihood(tiny, [("Answer:", " 4")])
    # where the boundary merges ("Hel" + "lo" -> "Hello"), the scored tokens still spell the continuation
    assert enc(tiny, "Hello")[: len(enc(tiny, "Hel"))] != enc(tiny, "Hel")
    ctx, cont = h.encode_pair(tiny, "Hel", "lo")
    assert (ctx, tiny.tokenizer.decode(cont)) == (enc(tiny, "Hel"), "lo")
    assert h.encode_pair(tiny, "", "hi") == ([tiny.tokenizer.bos_token_id], enc(tiny, "hi"))
    assert h.loglikelihood(tiny, [("anything", "")]) == [(0.0, True)]   # log P(empty string) = log 1


def test_context_is_cut_on_the_left_and_long_continuations_raise(tiny):
    long = " ".join(["word"] * 300)                        # > 256 tokens of context
    (ll, _), = h.loglikelihood(tiny, [(long, " end")])
    ids = enc(tiny, long) + enc(tiny, " end")
    assert enc(tiny, long + " end") == ids and len(enc(tiny, " end")) == 1
    lp = logprobs(tiny, ids[-257:-1])                     # the last 256 tokens as input
    assert ll == pytest.approx(float(lp[-1, ids[-1]]), abs=1e-4)
    with pytest.raises(lk.ContextLengthError, match="256"):
        h.loglikelihood(tiny, [("a", " b" * 300)])


def test_rolling_windows_score_every_token_once():
    tokens = list(range(100, 137))
    for max_len in (1, 5, 10, 37, 50):
        windows = h.rolling_windows(tokens, 0, max_len)
        assert [t for _, cont in windows for t in cont] == tokens
        assert windows[0][0] == [0]
        for ctx, cont in windows:
            assert len(ctx) + len(cont) - 1 <= max_len               # what the model sees fits the window
            i = tokens.index(cont[0])
            assert ctx == ([0] if i == 0 else tokens[i - len(ctx): i])   # the context is what comes right before
        if len(tokens) > max_len > 1:
            assert len(windows[-1][0]) + len(windows[-1][1]) - 1 == max_len   # the last window is filled back
    assert h.rolling_windows([], 0, 8) == []


@pytest.mark.parametrize("window", [16, 64, 256])
def test_loglikelihood_rolling_equals_transformers_loss_over_the_same_windows(tiny, window):
    got = h.loglikelihood_rolling(tiny, TEXT, max_length=window)
    assert got == pytest.approx(reference_rolling(tiny, TEXT, window), rel=1e-4)


def test_perplexity_units(tiny):
    texts = [TEXT, "A short one."]
    p = h.perplexity(tiny, texts, max_length=64)
    ll = sum(h.loglikelihood_rolling(tiny, t, max_length=64) for t in texts)
    n = sum(len(enc(tiny, t)) for t in texts)
    assert (p.loglikelihood, p.tokens) == (pytest.approx(ll, rel=1e-5), n)
    assert p.token_perplexity == pytest.approx(math.exp(-ll / n))
    assert p.word_perplexity == pytest.approx(math.exp(-ll / (len(TEXT.split()) + 3)))
    assert p.bits_per_byte == pytest.approx(-ll / sum(len(t.encode()) for t in texts) / math.log(2))
    assert p.token_perplexity > 1000          # a random model: close to the vocabulary size (49152)
    with pytest.raises(lk.ConfigError, match="max_length=512"):
        h.perplexity(tiny, TEXT, max_length=512)
    with pytest.raises(lk.ConfigError, match="non-empty"):
        h.perplexity(tiny, ["", " "])


def test_other_backends_say_why_they_cannot_score():
    remote = lk.model("openai:gpt-x", base_url="http://127.0.0.1:9/v1", api_key="k")
    with pytest.raises(lk.UnsupportedParameterError, match="openai does not support 'loglikelihood'.*hf"):
        h.loglikelihood(remote, [("a", " b")])
    from llmkit.models.local import LocalModel

    local = LocalModel.__new__(LocalModel)   # the class alone: the check needs no loaded engine
    with pytest.raises(lk.UnsupportedParameterError, match="llama.cpp.*prompt logprobs.*hf:smollm2"):
        h.perplexity(local, "text")


# --- metrics ----------------------------------------------------------------------------------------
def test_exact_match_and_f1_as_squad():
    assert h.normalize_answer("  The Eiffel-Tower, in PARIS! ") == "eiffeltower in paris"
    assert h.exact_match("The Paris.", ["paris"]) == 1.0
    assert h.exact_match("Paris, France", "Paris") == 0.0
    assert h.exact_match("Washington", ["Washington, D.C.", "Washington"]) == 1.0
    assert h.f1_score("Paris, France", "Paris") == pytest.approx(2 / 3)          # P 1/2, R 1
    assert h.f1_score("the city of Paris", ["London", "Paris city"]) == pytest.approx(0.8)   # P 2/3, R 1
    assert h.f1_score("Rome", "Paris") == 0.0
    assert h.f1_score("the", "a") == 1.0                      # both empty after normalising
    assert h.f1_score("Paris", "the") == 0.0


def test_bootstrap_stderr_is_near_the_analytic_one():
    values = [1.0] * 30 + [0.0] * 70
    analytic = math.sqrt(0.3 * 0.7 / 100)
    assert h.bootstrap_stderr(values, iters=2000) == pytest.approx(analytic, rel=0.1)
    assert h.bootstrap_stderr(values, iters=200, seed=1) == h.bootstrap_stderr(values, iters=200, seed=1)
    assert math.isnan(h.bootstrap_stderr([1.0]))


# --- tasks ------------------------------------------------------------------------------------------
def test_shipped_tasks_load_with_their_data_and_licence():
    assert h.list_tasks() == ["arithmetic_mc", "capitals_gen", "wiki_ppl"]
    sizes = {"arithmetic_mc": (50, 10), "capitals_gen": (30, 6), "wiki_ppl": (6, 0)}
    for name, (n, shots) in sizes.items():
        t = h.load_task(name)
        assert (len(t.docs()), len(t.fewshot_docs())) == (n, shots)
        assert "Apache-2.0" in t.license
    arith = h.load_task("arithmetic_mc")
    for d in arith.docs():   # the gold answer is the arithmetic truth
        a, op, b = d["question"].removeprefix("What is ").rstrip("?").split()
        assert int(d["choices"][d["answer"]]) == {"plus": int(a) + int(b), "minus": int(a) - int(b),
                                                  "times": int(a) * int(b)}[op]


def test_multiple_choice_end_to_end(tiny):
    r = h.run_task(tiny, "arithmetic_mc", limit=5, num_fewshot=2, progress=False)
    assert (r.output_type, len(r.samples), r.num_fewshot) == ("multiple_choice", 5, 2)
    assert set(r.metrics) == {"acc", "acc_norm"} and all(0 <= v <= 1 for v in r.metrics.values())
    assert all(0 <= v <= 0.5 for v in r.stderr.values())
    s = r.samples[3]
    assert s.prompt.count("Question:") == 3 and s.prompt.endswith(s.doc["question"] + "\nAnswer:")
    direct = h.loglikelihood(tiny, [(s.prompt, " " + c) for c in s.doc["choices"]])
    assert s.lls == pytest.approx([ll for ll, _ in direct], abs=1e-4)
    for x in r.samples:
        best = max(range(4), key=x.lls.__getitem__)
        assert x.metrics["acc"] == float(best == x.doc["answer"]) and x.prediction == x.doc["choices"][best]
    assert r.metrics["acc"] == sum(x.correct for x in r.samples) / 5
    assert "arithmetic_mc on tiny (5 docs, 2-shot): acc" in str(r)


def test_few_shot_examples_are_seeded_and_drawn_from_the_fewshot_split(tiny):
    def prompts(seed):
        return [s.prompt for s in h.run_task(tiny, "arithmetic_mc", limit=3, num_fewshot=3, seed=seed,
                                             progress=False).samples]

    a, b, c = prompts(0), prompts(0), prompts(1)
    assert a == b and a != c
    task = h.load_task("arithmetic_mc")
    shots = {d["question"] for d in task.fewshot_docs()}
    for p, doc in zip(a, task.docs()):
        asked = [line.removeprefix("Question: ") for line in p.split("\n") if line.startswith("Question:")]
        assert len(asked) == 4 and set(asked[:3]) <= shots and asked[3] == doc["question"]
    assert len({p.split("\n\n")[0] for p in a}) > 1          # each doc draws its own examples
    with pytest.raises(lk.ConfigError, match="num_fewshot=11.*at least 11"):
        h.run_task(tiny, "arithmetic_mc", limit=1, num_fewshot=11)


def write_task(tmp_path, docs, **fields):
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    fields = {"data": "docs.jsonl", **fields}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def test_acc_norm_parts_from_acc_when_choice_lengths_differ(tiny, tmp_path):
    short, long = "Q", "internationalization internationalization"
    (l_short, _), (l_long, _) = h.loglikelihood(tiny, [("Pick one:", " " + short), ("Pick one:", " " + long)])
    assert l_short > l_long                                           # more tokens, less likely in total…
    assert l_short / len(short) < l_long / len(long)                  # …but likelier per byte
    path = write_task(tmp_path, [{"choices": [short, long], "gold": 1}], output_type="multiple_choice",
                      doc_to_text="Pick one:", doc_to_choice="choices", doc_to_target="gold")
    r = h.run_task(tiny, path, progress=False)
    assert (r.metrics["acc"], r.metrics["acc_norm"]) == (0.0, 1.0)


def test_generate_until_end_to_end(tiny, tmp_path):
    r = h.run_task(tiny, "capitals_gen", limit=5, progress=False)
    assert set(r.metrics) == {"exact_match", "f1"} and all(0 <= v <= 1 for v in r.metrics.values())
    s = r.samples[0]
    assert s.prompt == "Q: What is the capital of France?\nA:" and s.target == ["Paris"]
    assert s.prediction == tiny.complete(s.prompt, temperature=0, max_tokens=16, stop=["\n", "Q:"]).text
    # answers that are the model's own greedy output for 3 docs of 5: both metrics are exactly 3/5
    prompts = [f"Say {w}:" for w in ("one", "two", "three", "four", "five")]
    outs = [tiny.complete(p, temperature=0, max_tokens=6).text for p in prompts]
    docs = [{"w": p[4:-1], "answer": o if i < 3 else "zzzz"} for i, (p, o) in enumerate(zip(prompts, outs))]
    path = write_task(tmp_path, docs, output_type="generate_until", doc_to_text="Say {{ w }}:",
                      doc_to_target="answer", until=[], max_tokens=6)
    r = h.run_task(tiny, path, progress=False)
    assert [s.prediction for s in r.samples] == outs
    assert r.metrics == {"exact_match": pytest.approx(0.6), "f1": pytest.approx(0.6)}
    assert [s.correct for s in r.samples] == [True, True, True, False, False]


def test_perplexity_task_end_to_end(tiny):
    r = h.run_task(tiny, "wiki_ppl", limit=5, progress=False)
    texts = [d["text"] for d in h.load_task("wiki_ppl").docs()[:5]]
    p = h.perplexity(tiny, texts)
    assert r.metrics["token_perplexity"] == pytest.approx(p.token_perplexity, rel=1e-5)
    assert r.metrics["word_perplexity"] == pytest.approx(p.word_perplexity, rel=1e-5)
    assert 0 < r.metrics["bits_per_byte"] == pytest.approx(p.bits_per_byte, rel=1e-5)
    assert r.metrics["byte_perplexity"] == pytest.approx(2 ** p.bits_per_byte, rel=1e-5)
    assert [s.prompt for s in r.samples] == texts and r.stderr["bits_per_byte"] > 0
    with pytest.raises(lk.ConfigError, match="num_fewshot=1"):
        h.run_task(tiny, "wiki_ppl", num_fewshot=1)


@pytest.mark.parametrize("fields, match", [
    ({"output_type": "ranking", "doc_to_text": "x"}, "t.yaml: field 'output_type': Input should be 'multiple_choice'"),
    ({"output_type": "generate_until"}, "t.yaml: field 'doc_to_text': Field required"),
    ({"output_type": "multiple_choice", "doc_to_text": "x", "doc_to_target": "a"},
     "t.yaml: field 'doc_to_choice' is required for output_type multiple_choice"),
    ({"output_type": "generate_until", "doc_to_text": "x", "doc_to_target": "a", "stop": ["\n"]},
     "t.yaml: field 'stop': unknown field"),
    ({"output_type": "generate_until", "doc_to_text": "{{ x", "doc_to_target": "a"}, "t.yaml: field 'doc_to_text': template syntax error"),
    ({"output_type": "generate_until", "doc_to_text": "x", "doc_to_target": "a", "fewshot_data": "nope.jsonl"},
     "t.yaml: field 'fewshot_data': data file .*nope.jsonl' does not exist"),
])
def test_malformed_task_yaml_names_the_file_and_field(tmp_path, fields, match):
    with pytest.raises(lk.ConfigError, match=match):
        h.load_task(write_task(tmp_path, [{"a": "b"}], **fields))


def test_bad_docs_name_the_field(tiny, tmp_path):
    path = write_task(tmp_path, [{"q": "x"}], output_type="generate_until", doc_to_text="{{ question }}", doc_to_target="q")
    with pytest.raises(lk.ConfigError, match="field 'doc_to_text': 'question' is undefined"):
        h.run_task(tiny, path)
    path = write_task(tmp_path, [{"q": "x", "choices": ["a", "b"], "gold": 5}], output_type="multiple_choice",
                      doc_to_text="{{ q }}", doc_to_choice="choices", doc_to_target="gold")
    with pytest.raises(lk.ConfigError, match="field 'doc_to_target': 5 is neither an index into nor one of"):
        h.run_task(tiny, path)
    with pytest.raises(lk.ConfigError, match="no task 'nope'; shipped tasks: arithmetic_mc, capitals_gen, wiki_ppl"):
        h.load_task("nope")


# --- the embedded model -------------------------------------------------------------------------------
@pytest.mark.integration
def test_embedded_perplexity_equals_transformers_loss(smollm2):
    for window in (64, None):                            # several windows; one window over the whole text
        p = h.perplexity(smollm2, TEXT, max_length=window)
        ref = reference_rolling(smollm2, TEXT, window or len(enc(smollm2, TEXT)))
        assert p.loglikelihood == pytest.approx(ref, rel=1e-3)
        assert p.token_perplexity == pytest.approx(math.exp(-ref / len(enc(smollm2, TEXT))), rel=1e-3)
    assert p.token_perplexity < 100        # real prose is far likelier to SmolLM2 than to a random model


@pytest.mark.integration
def test_embedded_arithmetic_mc_is_scored_from_real_lls(smollm2):
    r = h.run_task(smollm2, "arithmetic_mc", limit=20, progress=False)
    assert len(r.samples) == 20 and 0 <= r.metrics["acc"] <= 1 and 0 <= r.metrics["acc_norm"] <= 1
    s = r.samples[0]
    direct = h.loglikelihood(smollm2, [(s.prompt, " " + c) for c in s.doc["choices"]], batch_size=1)
    assert s.lls == pytest.approx([ll for ll, _ in direct], abs=1e-3)
    assert r.metrics["acc"] == sum(max(range(4), key=x.lls.__getitem__) == x.doc["answer"] for x in r.samples) / 20
    print(r)
