"""Regex, choice, Lark and GBNF grammars, streaming and sampling under constraints, on the embedded
model (llama.cpp engine) and the same weights in torch (hf). Outputs are checked with Python's own
tools (re, ast), never with the constraint that produced them."""
import ast
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import BaseModel, Field

import llmkit as lk
from llmkit.structured import JSON, Choice, Grammar, Regex

pytestmark = pytest.mark.integration

SEEDS = range(6)
ISO_DATE = r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
PHONE = r"\+1 \(\d{3}\) \d{3}-\d{4}"
ARITHMETIC = r"""
start: expr
expr: term (("+" | "-") term) ~ 0..3
term: factor (("*" | "/") factor) ~ 0..2
factor: NUMBER | "(" expr ")"
NUMBER: /[1-9][0-9]{0,2}/
"""
YES_NO_GBNF = 'root ::= ("yes" | "no") " because " [a-z ]{3,20} "."'


class Pet(BaseModel):
    name: str = Field(max_length=20)
    species: str = Field(max_length=20)
    age: int = Field(ge=0, le=30)


def sampled(m, prompt, c, **kw):
    """One output per seed at a high temperature, all at once (the engine batches them)."""
    def one(seed):
        return m.chat(prompt, constraint=c, temperature=1.0, seed=seed, max_tokens=48, max_retries=0, **kw).text
    with ThreadPoolExecutor(len(SEEDS)) as pool:
        return list(pool.map(one, SEEDS))


@pytest.mark.parametrize("pattern, prompt", [(ISO_DATE, "When did the Berlin wall fall?"),
                                             (PHONE, "Give me a US phone number.")])
def test_regex_outputs_match(embedded, pattern, prompt):
    outs = sampled(embedded, prompt, Regex(pattern)) + [embedded.chat(prompt, constraint=Regex(pattern), temperature=0).text]
    for text in outs:
        assert re.fullmatch(pattern, text), text
    assert len(set(outs)) > 1  # sampling still samples inside the language


def test_choice_is_a_classifier(embedded):
    labels = ["positive", "negative", "neutral"]
    reviews = ["I loved this film, wonderful!", "Terrible, a waste of money.", "It was a film."]
    got = [embedded.choose(f"Sentiment of this review: {r}", labels, temperature=0) for r in reviews]
    assert all(g in labels for g in got)
    assert all(t in labels for t in sampled(embedded, "Sentiment: 'great!'", Choice(labels)))


def test_lark_grammar_yields_arithmetic_expressions(embedded):
    outs = sampled(embedded, "Write an arithmetic expression.", Grammar(ARITHMETIC))
    for text in outs:
        tree = ast.parse(text, mode="eval")  # Python's parser agrees it is an expression...
        assert all(isinstance(n, (ast.Expression, ast.BinOp, ast.Constant, ast.operator)) for n in ast.walk(tree)), text
        assert re.fullmatch(r"[0-9+\-*/()]+", text), text  # ...of numbers and + - * / only


def test_gbnf_grammar(embedded):
    for text in sampled(embedded, "Is the sky blue?", Grammar(YES_NO_GBNF)):
        assert re.fullmatch(r"(yes|no) because [a-z ]{3,20}\.", text), text


def test_json_returns_a_validated_instance_greedy_and_sampled(embedded):
    pet = embedded.json("Describe a pet cat.", schema=Pet, temperature=0)
    assert isinstance(pet, Pet)
    for seed in range(3):
        assert isinstance(embedded.json("Describe a pet dog.", schema=Pet, temperature=0.9, seed=seed), Pet)
    anything = embedded.json("Give a JSON object with a key 'a' set to 1.", temperature=0, max_tokens=64)
    assert isinstance(anything, dict)


def test_the_grammar_ends_generation_without_an_eos_step(embedded):
    c = embedded.chat("Is water wet?", constraint=Choice(["yes", "no"]), temperature=0)
    assert c.parsed in ("yes", "no") and c.finish_reason == "stop"
    assert c.usage.output_tokens == len(embedded.tokenize(c.text))  # no token spent after the grammar closed


def test_stream_json_grows_then_validates(embedded):
    values = list(embedded.stream_json("Describe a pet cat.", schema=Pet, temperature=0))
    *partials, final = values
    assert isinstance(final, Pet) and len(partials) >= 3
    assert all(isinstance(p, dict) for p in partials)
    keys = [len(p) for p in partials]
    assert keys == sorted(keys) and partials[-1] == final.model_dump()  # fields only ever appear, never vanish


def test_stream_enforces_the_constraint(embedded):
    text = "".join(ch.text for ch in embedded.stream("A date?", constraint=Regex(ISO_DATE), temperature=0))
    assert re.fullmatch(ISO_DATE, text)


def test_sampling_fields_apply_within_the_allowed_set(embedded):
    prompt, c = "Name a colour.", Choice(["red", "green", "blue", "yellow", "purple"])
    greedy = embedded.chat(prompt, constraint=c, temperature=0).text
    # top_k=1 keeps only the best allowed token: the greedy answer at any temperature and seed
    assert {embedded.chat(prompt, constraint=c, temperature=1.5, top_k=1, seed=s).text for s in SEEDS} == {greedy}
    # logprobs are the model's own (before the mask, as vLLM reports them): the alternatives the
    # grammar forbade still show, and they match an unconstrained run's first token
    lp = embedded.chat(prompt, constraint=c, temperature=0, logprobs=True, top_logprobs=3)
    free = embedded.chat(prompt, temperature=0, logprobs=True, top_logprobs=3, max_tokens=1)
    assert lp.logprobs and all(t.logprob > float("-inf") for t in lp.logprobs)
    options = ("red", "green", "blue", "yellow", "purple")
    assert any(not any(o.startswith(a.strip().lower()) for o in options) for a, _ in lp.logprobs[0].top if a.strip())
    free_top = dict(free.logprobs[0].top)   # same distribution, up to the kernels' batch-shape noise
    assert all(abs(v - free_top[a]) < 0.2 for a, v in lp.logprobs[0].top if a in free_top)


def test_constrained_requests_do_not_change_others_in_the_batch(embedded):
    """Masks apply per sequence: an unconstrained request batched with constrained ones answers as
    it does alone (up to the kernels' near-ties, see tests/greedy.py)."""
    from greedy import assert_same_up_to_ties

    q = [lk.system("Be brief."), lk.user("What is the capital of France?")]
    alone = embedded.chat(q, temperature=0, max_tokens=24, logprobs=True, top_logprobs=2)
    with ThreadPoolExecutor(5) as pool:
        cons = [pool.submit(embedded.json, "Describe a pet.", schema=Pet, temperature=0) for _ in range(4)]
        mixed = pool.submit(embedded.chat, q, temperature=0, max_tokens=24, logprobs=True, top_logprobs=2).result()
        assert all(isinstance(f.result(), Pet) for f in cons)
    assert_same_up_to_ties(alone.logprobs, mixed.logprobs)


def test_bad_constraints_fail_before_generation(embedded):
    before = embedded.engine.stats()["requests"]
    for bad, needle in [({"type": "object", "properties": {"a": {"type": "strin"}}}, "properties/a/type"),
                        ({"type": "string", "format": "no-such-format"}, "Unknown format"),
                        ({"type": "object", "if": {}}, "Unimplemented keys")]:
        with pytest.raises(lk.ConstraintError, match=needle):
            embedded.json("x", schema=bad)
    with pytest.raises(lk.ConstraintError, match="unclosed group"):
        embedded.chat("x", constraint=Regex("(ab"))
    with pytest.raises(lk.ConstraintError, match="unknown name"):
        embedded.chat("x", constraint=Grammar("start: missing_rule"))
    assert embedded.engine.stats()["requests"] == before


def test_truncated_output_is_a_clear_error(embedded):
    with pytest.raises(lk.StructuredOutputError, match="token limit") as e:
        embedded.json("Describe a pet cat.", schema=Pet, temperature=0, max_tokens=4, max_retries=0)

    assert e.value.text.startswith("{")


def test_a_reasoning_that_does_not_stop_is_refitted_to_the_token_limit(embedded):
    """The chain-of-thought failure: a free string the model keeps writing until max_tokens cuts the
    JSON. The retry runs under a schema whose string fits, so the answer parses."""
    schema = {"type": "object", "required": ["reasoning", "topic"], "properties": {
        "reasoning": {"type": "string"}, "topic": {"enum": ["sports", "food", "weather", "technology"]}}}
    ask = "Think step by step at great length about the topic of: The club signed the midfielder."
    with pytest.raises(lk.StructuredOutputError, match="token limit"):
        embedded.json(ask, schema=schema, temperature=0, max_tokens=48, max_retries=0)
    before = embedded.engine.stats()["requests"]
    value = embedded.json(ask, schema=schema, temperature=0, max_tokens=48, max_retries=1)
    assert value["topic"] in schema["properties"]["topic"]["enum"] and value["reasoning"]
    assert embedded.engine.stats()["requests"] == before + 2


@pytest.fixture(scope="module")
def hf():
    return lk.model("hf:smollm2")


def test_hf_backend_enforces_the_same_constraints(hf):
    assert isinstance(hf.json("Describe a pet cat.", schema=Pet, temperature=0), Pet)
    assert re.fullmatch(ISO_DATE, hf.chat("A date?", constraint=Regex(ISO_DATE), temperature=0.9, seed=1).text)
    assert hf.choose("Is fire hot?", ["yes", "no"], temperature=0) in ("yes", "no")
    text = hf.chat("Write an arithmetic expression.", constraint=Grammar(ARITHMETIC), temperature=1.0, seed=2).text
    ast.parse(text, mode="eval")
    assert isinstance(hf.json("An object with key a.", schema=None, temperature=0, max_tokens=64), dict)
    assert JSON().check('{"a": 1}') == {"a": 1}
