"""Few-shot selection: budgets (model tokens or the approximation), seeded random picks, the
semantically closest examples, MMR's diversity, and the formats the examples are sent in."""
import pytest

import llmkit as lk
from hash_embedder import HashEmbedder
from llmkit.models.scripted import ScriptedModel
from llmkit.prompts import (EXAMPLE_TEMPLATE, Example, FewShot, approx_tokens, count_tokens, example_turns,
                            format_examples, select_examples)

SHOTS = [
    Example("What is 2 plus 2?", "4"),
    Example("Name the capital city of France.", "Paris"),
    Example("What is 3 times 3?", "9"),
    Example("Name the capital city of Italy.", "Rome"),
    Example("Translate the word cat into French.", "chat"),
    Example("What is 10 minus 4?", "6"),
]


def test_fixed_keeps_order_and_k():
    assert select_examples(SHOTS, k=3) == SHOTS[:3]
    assert select_examples(SHOTS, k=0) == []


def test_budget_counted_with_the_models_tokenizer():
    m = ScriptedModel()  # counts words, +1 a message
    costs = [m.count_tokens(example_turns([ex])) for ex in SHOTS]
    fs = FewShot(SHOTS, k=10, budget=costs[0] + costs[1] + costs[2], model=m)
    assert [fs.cost(ex) for ex in SHOTS] == costs
    assert fs.select() == SHOTS[:3]
    # one token short of the third: it is skipped, and a cheaper later one fits in its place
    fs = FewShot(SHOTS, k=10, budget=costs[0] + costs[1] + costs[2] - 1, model=m)
    picked = fs.select()
    assert picked[:2] == SHOTS[:2] and SHOTS[2] not in picked
    assert sum(fs.cost(ex) for ex in picked) <= fs.budget


def test_budget_without_a_model_uses_the_approximation():
    inline = FewShot(SHOTS, k=10, budget=40, style="inline")
    picked = inline.select()
    used = sum(approx_tokens(EXAMPLE_TEMPLATE.format(input=e.input, output=e.output) + "\n\n") for e in picked)
    assert 0 < used <= 40 and len(picked) < len(SHOTS)
    assert count_tokens("abcdefgh") == 2 == approx_tokens("abcdefgh")
    assert count_tokens([lk.user("abcd")]) == 1 + 4               # text + the per-message overhead
    assert FewShot(SHOTS, k=10, budget=0).select() == []


def test_random_is_seeded():
    a = select_examples(SHOTS, strategy="random", k=3, seed=7)
    assert a == select_examples(SHOTS, strategy="random", k=3, seed=7)
    picks = {tuple(e.input for e in select_examples(SHOTS, strategy="random", k=3, seed=s)) for s in range(6)}
    assert len(picks) > 1                                          # the seed changes the pick


def test_semantic_picks_the_closest_within_budget():
    e = HashEmbedder()
    got = select_examples(SHOTS, "Name the capital city of Spain.", strategy="semantic", k=2, embedder=e)
    assert {x.output for x in got} == {"Paris", "Rome"}
    got = select_examples(SHOTS, "What is 7 times 3?", strategy="semantic", k=1, embedder=e)
    assert got[0].output == "9"
    # the budget still rules: only the cheaper of the two capital examples fits
    m = ScriptedModel()
    budget = min(m.count_tokens(example_turns([s])) for s in SHOTS[1::2][:2])
    got = select_examples(SHOTS, "Name the capital city of Spain.", strategy="semantic", k=2, budget=budget,
                          model=m, embedder=e)
    assert len(got) == 1 and m.count_tokens(example_turns(got)) <= budget


def test_example_vectors_are_embedded_once():
    e = HashEmbedder()
    fs = FewShot(SHOTS, strategy="semantic", k=2, embedder=e)
    fs.select("capital of Spain")
    fs.select("7 times 3")
    assert e.calls == 3                                            # examples once, each query once


def test_mmr_trades_relevance_for_diversity():
    shots = [Example("reset my password please", "Use the reset link."),
             Example("please reset my password", "Use the reset link."),      # a twin of the first
             Example("how do I unlock an account", "Ask an admin."),
             Example("what is the weather today", "Sunny.")]
    q = "how do I reset my password"
    e = HashEmbedder()
    semantic = select_examples(shots, q, strategy="semantic", k=2, embedder=e)
    assert semantic == shots[:2]                                   # both twins: redundant
    mmr = select_examples(shots, q, strategy="mmr", k=2, embedder=e)
    assert mmr == [shots[0], shots[2]]                             # the twin gives way to a different, relevant one
    assert select_examples(shots, q, strategy="mmr", k=2, embedder=e, lambda_=1.0) == semantic


def test_messages_in_turns_and_inline():
    shots = [Example("2 + 2", "4"), Example("Roger has 5 balls and buys 6 more. How many?", "11",
                                            rationale="5 + 6 = 11.")]
    fs = FewShot(shots, k=2)
    msgs = fs.messages("3 + 3", system="Answer briefly.")
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "Answer briefly."), ("user", "2 + 2"), ("assistant", "4"),
        ("user", shots[1].input), ("assistant", "5 + 6 = 11. The answer is 11."), ("user", "3 + 3")]
    inline = FewShot(shots, k=2, style="inline").messages("3 + 3")
    assert len(inline) == 1 and inline[0].content == (
        "Input: 2 + 2\nOutput: 4\n\nInput: Roger has 5 balls and buys 6 more. How many?\n"
        "Output: 5 + 6 = 11. The answer is 11.\n\nInput: 3 + 3\nOutput:")
    assert format_examples([("a", "b")], style="inline", template="Q: {input} A: {output}") == "Q: a A: b"
    assert format_examples([{"question": "a", "answer": "b"}])[1].content == "b"


@pytest.mark.parametrize("kw, match", [
    ({"strategy": "best"}, "strategy='best' is not one of fixed, random, semantic, mmr"),
    ({"style": "xml"}, "style='xml' is not one of turns, inline"),
    ({"budget": -1}, "budget=-1"),
    ({"k": -2}, "k=-2"),
])
def test_bad_options_are_named(kw, match):
    with pytest.raises(lk.ConfigError, match=match):
        FewShot(SHOTS, **kw)


def test_semantic_needs_a_query_and_examples_need_fields():
    with pytest.raises(lk.ConfigError, match="needs the query"):
        FewShot(SHOTS, strategy="semantic", embedder=HashEmbedder()).select()
    with pytest.raises(lk.ConfigError, match="needs 'input' and 'output'"):
        FewShot([{"input": "x"}])


@pytest.mark.integration
def test_semantic_with_the_embedded_minilm():
    got = select_examples(SHOTS, "Which city is Germany's capital?", strategy="semantic", k=2)
    assert {x.output for x in got} == {"Paris", "Rome"}
