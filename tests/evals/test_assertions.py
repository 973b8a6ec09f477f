"""Assertions (evals/assertions.py): every type passes, fails and inverts; errors fail, never skip."""
import json
import math

import pytest
from pydantic import ValidationError

import llmkit as lk
from llmkit.core.types import Completion, Usage
from llmkit.evals.assertions import TYPES, Assertion, evaluate, score_case
from llmkit.evals.types import Output, Result
from llmkit.models.base import Model


class Scripted(Model):
    """A judge that answers from a list of JSON verdicts and records the prompts it was sent."""

    provider = "scripted"
    supported = frozenset({"temperature", "max_tokens"})
    constraint_kinds = frozenset({"json", "json_schema"})

    def __init__(self, replies):
        super().__init__("judge")
        self.replies, self.sent = list(replies), []

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        self.sent.append(messages[-1].content)
        text = self.replies.pop(0)
        return Completion(text=text, finish_reason="stop", usage=Usage(output_tokens=len(text)))


class Vectors:
    """An embedder with fixed vectors per text (the real MiniLM is in the integration test)."""

    def __init__(self, table):
        self.table, self.calls = table, 0

    def embed(self, texts):
        self.calls += 1
        return [self.table[t] for t in texts]


class Unusable:
    """A judge or embedder that must not be touched."""

    def __getattr__(self, name):
        raise AssertionError(f"{name} was used")


def verdict(score, reasoning="Because."):
    return json.dumps({"reasoning": reasoning, "score": score})


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name"]}

# (assertion, output, passes) — each type once passing and once failing
CASES = [
    ({"type": "equals", "value": "Paris"}, "Paris", True),
    ({"type": "equals", "value": "Paris"}, "Paris.", False),
    ({"type": "equals", "value": {"a": [1, 2]}}, '{"a": [1, 2]}', True),
    ({"type": "equals", "value": {"a": [1, 2]}}, '{"a": [2, 1]}', False),
    ({"type": "contains", "value": "Paris"}, "The capital is Paris.", True),
    ({"type": "contains", "value": "Paris"}, "The capital is paris.", False),
    ({"type": "icontains", "value": "PARIS"}, "The capital is paris.", True),
    ({"type": "icontains", "value": "Paris"}, "The capital is Lyon.", False),
    ({"type": "contains-any", "value": ["Paris", "Lyon"]}, "Lyon, I think.", True),
    ({"type": "contains-any", "value": "Paris, Lyon"}, "Marseille.", False),
    ({"type": "contains-all", "value": ["Paris", "France"]}, "Paris is in France.", True),
    ({"type": "contains-all", "value": ["Paris", "France"]}, "Paris is nice.", False),
    ({"type": "regex", "value": r"\b\d{4}\b"}, "Built in 1889.", True),
    ({"type": "regex", "value": r"^\d+$"}, "12 apples", False),
    ({"type": "starts-with", "value": "Yes"}, "Yes, it is.", True),
    ({"type": "starts-with", "value": "Yes"}, " Yes, it is.", False),
    ({"type": "is-json"}, '{"a": 1}', True),
    ({"type": "is-json"}, "{'a': 1}", False),
    ({"type": "is-json", "value": SCHEMA}, '{"name": "Ann", "age": 3}', True),
    ({"type": "is-json", "value": SCHEMA}, '{"age": 3}', False),
    ({"type": "json-schema", "value": SCHEMA}, '{"name": "Ann"}', True),
    ({"type": "json-schema", "value": SCHEMA}, '{"name": "Ann", "age": "three"}', False),
    ({"type": "one-of", "value": ["yes", "no"]}, " no\n", True),
    ({"type": "one-of", "value": ["yes", "no"]}, "maybe", False),
    ({"type": "python", "value": "len(output) < 10 and vars['n'] == 1"}, "short", True),
    ({"type": "python", "value": "len(output) < 10"}, "much too long", False),
    ({"type": "latency", "value": 500}, Output("x", latency_ms=120), True),
    ({"type": "latency", "threshold": 500}, Output("x", latency_ms=900), False),  # promptfoo's spelling
    ({"type": "max-tokens", "value": 10}, Output("x", output_tokens=5), True),
    ({"type": "max-tokens", "value": 10}, Output("x", output_tokens=11), False),
    ({"type": "cost", "value": 0.01}, Output("x", cost=0.004), True),
    ({"type": "cost", "value": 0.01}, Output("x", cost=0.02), False),
]


def test_every_type_has_a_passing_and_a_failing_case():
    covered = {(spec["type"], passes) for spec, _, passes in CASES}
    for t in set(TYPES) - {"similar", "llm-rubric"}:  # those two have tests of their own below
        assert (t, True) in covered and (t, False) in covered, t


@pytest.mark.parametrize("spec,output,passes", CASES, ids=[f"{c[0]['type']}-{'pass' if c[2] else 'fail'}" for c in CASES])
def test_type_and_its_not_form(spec, output, passes):
    r = evaluate(Assertion(**spec), output, {"n": 1})
    assert r.passed is passes and r.reason.startswith("expected to "), r.reason
    assert r.score == float(passes) or spec["type"] == "contains-all"  # a fraction there
    n = evaluate(Assertion(**{**spec, "type": "not-" + spec["type"]}), output, {"n": 1})
    assert n.passed is (not passes) and n.type == "not-" + spec["type"]
    assert n.score == pytest.approx(1 - r.score) and n.reason.startswith("expected not to "), n.reason


def test_reasons_read_as_sentences_and_clip_long_outputs():
    r = evaluate(Assertion(type="contains", value="Paris"), Output("The capital is Lyon."))
    assert r.reason == "expected to contain 'Paris'; got 'The capital is Lyon.'"
    long = evaluate(Assertion(type="contains", value="Paris"), Output("Lyon " * 5000))
    assert not long.passed and len(long.reason) < 200 and long.reason.endswith("…'")
    bad = evaluate(Assertion(type="json-schema", value=SCHEMA), '{"age": "x"}')
    assert "'name' is a required property" in bad.reason and "$.age" in bad.reason and bad.details["errors"]


def test_contains_all_scores_the_fraction_found():
    r = evaluate(Assertion(type="contains-all", value=["a", "b", "c", "d"]), "a b c")
    assert not r.passed and r.score == 0.75 and "missing ['d']" in r.reason


def test_variables_render_in_string_values():
    vars = {"city": "Paris", "country": "France"}
    assert evaluate(Assertion(type="contains", value="{{city}}"), "It is Paris.", vars).passed
    assert not evaluate(Assertion(type="contains", value="{{ city }}"), "It is Lyon.", vars).passed
    assert evaluate(Assertion(type="contains-all", value=["{{city}}", "{{country|upper}}"]), "Paris, FRANCE", vars).passed
    assert evaluate(Assertion(type="regex", value="^{{city}}$"), "Paris", vars).passed
    r = evaluate(Assertion(type="contains", value="{{town}}"), "Paris", vars)  # a missing variable fails, named
    assert not r.passed and "'town' is undefined" in r.reason
    r = evaluate(Assertion(type="not-contains", value="{{town}}"), "Paris", vars)  # ... in the not- form too
    assert not r.passed


def test_python_forms(tmp_path, monkeypatch):
    a = Assertion(type="python", value="len(output) / 10")  # a number is a score: passes above 0
    r = evaluate(a, "abcde")
    assert r.passed and r.score == 0.5
    assert not evaluate(Assertion(type="python", value="len(output) / 10", threshold=0.6), "abcde").passed
    body = "words = output.split()\nif len(words) > 2:\n    return {'pass': False, 'score': 0.2, 'reason': 'too wordy'}\nreturn True"
    r = evaluate(Assertion(type="python", value=body), "one two three")
    assert not r.passed and r.score == 0.2 and r.reason.endswith("got too wordy")
    assert evaluate(Assertion(type="python", value=body), "one two").passed
    (tmp_path / "mychecks.py").write_text("def short(output, vars):\n    return len(output) <= vars['limit']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    a = Assertion(type="python", value="mychecks:short")
    assert evaluate(a, "abc", {"limit": 3}).passed and not evaluate(a, "abcd", {"limit": 3}).passed


@pytest.mark.parametrize("code,message", [
    ("1 / 0", "ZeroDivisionError: division by zero"),
    ("open('/etc/passwd').read()", "NameError: name 'open' is not defined"),  # a restricted namespace
    ("'a string'", "returned str"),
    ("float('nan')", "expected a number"),
    ("{'reason': 'no verdict'}", "without 'pass' or 'score'"),
])
def test_python_that_raises_or_returns_nonsense_fails_in_both_forms(code, message):
    for t in ("python", "not-python"):
        r = evaluate(Assertion(type=t, value=code), "x")
        assert not r.passed and r.score == 0.0 and message in r.reason, r.reason


def test_unknown_cost_and_token_count_fail_in_both_forms():
    for t in ("cost", "not-cost"):
        r = evaluate(Assertion(type=t, value=1.0), Output("x", cost=None))
        assert not r.passed and "cost is unknown" in r.reason
    r = evaluate(Assertion(type="not-max-tokens", value=3), Output("a long answer", output_tokens=0))
    assert not r.passed and "token count is unknown" in r.reason


ONE_OF_EACH = [
    {"type": "equals", "value": "x"}, {"type": "contains", "value": "x"}, {"type": "icontains", "value": "x"},
    {"type": "contains-any", "value": ["x"]}, {"type": "contains-all", "value": ["x"]}, {"type": "regex", "value": "x"},
    {"type": "starts-with", "value": "x"}, {"type": "is-json"}, {"type": "json-schema", "value": {"type": "string"}},
    {"type": "one-of", "value": ["x"]}, {"type": "python", "value": "True"}, {"type": "similar", "value": "x"},
    {"type": "llm-rubric", "value": "Is x."}, {"type": "latency", "value": 1e9}, {"type": "max-tokens", "value": 1e9},
    {"type": "cost", "value": 1e9},
]


def test_an_errored_output_fails_every_assertion_with_the_error():
    assert {s["type"] for s in ONE_OF_EACH} == set(TYPES)
    out = Output("", error="ProviderError: HTTP 503: overloaded")
    for spec in ONE_OF_EACH:
        for t in (spec["type"], "not-" + spec["type"]):
            r = evaluate(Assertion(**{**spec, "type": t}), out, judge=Unusable(), embedder=Unusable())
            assert not r.passed and r.score == 0.0 and not math.isnan(r.score), t
            assert r.reason == "the model call failed: ProviderError: HTTP 503: overloaded"


def test_similar_with_scripted_vectors():
    e = Vectors({"out": [1.0, 0.0], "near": [0.8, 0.6], "far": [0.0, 1.0]})
    r = evaluate(Assertion(type="similar", value="near"), "out", embedder=e)
    assert r.passed and r.score == pytest.approx(0.8) and r.details["similarity"] == pytest.approx(0.8)
    assert not evaluate(Assertion(type="similar", value="near", threshold=0.9), "out", embedder=e).passed
    r = evaluate(Assertion(type="similar", value=["far", "near"]), "out", embedder=e)  # the best of a list
    assert r.passed and r.details["reference"] == "near"
    r = evaluate(Assertion(type="not-similar", value="far"), "out", embedder=e)
    assert r.passed and r.score == 1.0 and "expected not to be similar to 'far' (cosine >= 0.75)" in r.reason


@pytest.mark.integration
def test_similar_with_the_embedded_minilm_matches_sentence_transformers():
    from sentence_transformers import util

    from llmkit.rag.embedders import Embedder

    e = Embedder()
    out = "The capital of France is Paris."
    close = evaluate(Assertion(type="similar", value="Paris is the capital city of France."), out, embedder=e)
    far = evaluate(Assertion(type="similar", value="I enjoy baking banana bread on Sundays."), out, embedder=e)
    assert close.passed and not far.passed and close.score > 0.75 > far.score
    assert evaluate(Assertion(type="not-similar", value="I enjoy baking banana bread on Sundays."), out,
                    embedder=e).passed
    reference = util.cos_sim(*e.model.encode([out, "Paris is the capital city of France."])).item()
    assert close.details["similarity"] == pytest.approx(reference, abs=1e-5)


def test_llm_rubric_with_a_scripted_judge():
    judge = Scripted([verdict(5, "Names Paris correctly."), verdict(1, "It says Lyon, which is wrong.")])
    a = Assertion(type="llm-rubric", value="Names {{city}} as the capital.")
    good = evaluate(a, "The capital is Paris.", {"city": "Paris"}, judge=judge)
    assert good.passed and good.score == 1.0 and good.details["reasoning"] == "Names Paris correctly."
    assert "Names Paris as the capital." in judge.sent[0] and "The capital is Paris." in judge.sent[0]
    bad = evaluate(a, "The capital is Lyon.", {"city": "Paris"}, judge=judge)
    assert not bad.passed and bad.score == 0.0 and bad.details["score"] == 1
    assert "the judge scored 1 on 1-5 (0.00): It says Lyon, which is wrong." in bad.reason
    n = evaluate(Assertion(type="not-llm-rubric", value="Is rude."), "Hello!", judge=Scripted([verdict(1)]))
    assert n.passed and n.score == 1.0


def test_llm_rubric_threshold_template_and_a_failing_judge():
    a = Assertion(type="llm-rubric", value="Is concise.", threshold=0.5)
    assert evaluate(a, "Yes.", judge=Scripted([verdict(3)])).passed  # 3 on 1-5 = 0.5, below the default pass mark 4
    judge = Scripted([verdict(5)])
    a = Assertion(type="llm-rubric", value="Is concise.",
                  template="RULE: {{ rubric }}\nTEXT: {{ answer }}\nScore {{ low }}-{{ high }}.")
    assert evaluate(a, "Yes.", judge=judge).passed and judge.sent[0].startswith("RULE: Is concise.\nTEXT: Yes.")
    for t in ("llm-rubric", "not-llm-rubric"):  # no valid verdict after every retry: no pass either way
        r = evaluate(Assertion(type=t, value="Is concise."), "Yes.", judge=Scripted(["no", "nope", "never"]))
        assert not r.passed and "the judge failed: StructuredOutputError" in r.reason


def test_score_case_weights_and_thresholds():
    def res(passed, score, weight=1.0):
        return Result(type="t", passed=passed, score=score, reason="", weight=weight)

    rs = [res(True, 1.0, 3), res(False, 0.0, 1)]
    assert score_case(rs) == (False, 0.75)  # no threshold: every assertion must pass
    assert score_case(rs, threshold=0.7) == (True, 0.75)
    assert score_case(rs, threshold=0.8) == (False, 0.75)
    assert score_case([res(True, 1.0), res(False, 0.2, 0)]) == (True, 1.0)  # weight 0: reported only
    assert score_case([res(False, 0.4, 0), res(True, 0.8, 0)]) == (False, pytest.approx(0.6))  # all 0: plain mean
    assert score_case([]) == (True, 1.0)
    out = Output("", error="timeout")  # an errored output scores 0 whatever the threshold
    results = [evaluate(Assertion(type="not-contains", value="x"), out)]
    assert score_case(results, threshold=0.1) == (False, 0.0)


@pytest.mark.parametrize("spec,field,words", [
    ({"type": "contain", "value": "x"}, "type", ["'contain'", "accepted:", "contains", "llm-rubric", "not-<type>"]),
    ({"type": "regex", "value": "(unclosed"}, "", ["value of 'regex'", "not a valid regular expression"]),
    ({"type": "json-schema", "value": {"type": "strng"}}, "", ["value of 'json-schema'", "not a valid JSON Schema"]),
    ({"type": "json-schema"}, "", ["value of 'json-schema'", "must be a JSON Schema"]),
    ({"type": "one-of", "value": "yes"}, "", ["value of 'one-of'", "list of strings"]),
    ({"type": "python", "value": 3}, "", ["value of 'python'", "must be Python code"]),
    ({"type": "python", "value": "len(output) <"}, "", ["value of 'python'", "not valid Python"]),
    ({"type": "llm-rubric", "value": ""}, "", ["value of 'llm-rubric'", "rubric"]),
    ({"type": "latency", "value": "fast"}, "", ["value of 'latency'", "number >= 0"]),
    ({"type": "cost", "value": 1, "threshold": 2}, "", ["value of 'cost'", "both set"]),
    ({"type": "contains", "value": "x", "threshold": 0.5}, "", ["threshold:", "'contains' has no threshold"]),
    ({"type": "contains", "value": "x", "judge": "local"}, "", ["judge:", "only llm-rubric"]),
    ({"type": "contains", "value": "x", "weight": -1}, "weight", ["greater than or equal to 0"]),
    ({"type": "contains", "value": "x", "provider": "openai:gpt-4o"}, "provider", ["Extra inputs"]),
])
def test_bad_specs_raise_naming_the_field(spec, field, words):
    with pytest.raises(ValidationError) as e:
        Assertion(**spec)
    err = e.value.errors()[0]
    assert ".".join(map(str, err["loc"])) == field and all(w in err["msg"] for w in words), err
    with pytest.raises(lk.ConfigError) as e:  # parse(): one line, the field first
        Assertion.parse(spec)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words)
    assert str(e.value).startswith(f"assertion {field}: " if field else "assertion ")


def test_comma_separated_contains_any_and_limits_from_strings():
    assert Assertion(type="contains-any", value="a, b ,c").value == ["a", "b", "c"]
    a = Assertion(type="latency", value="500")  # a CSV case's shorthand "latency:500"
    assert a.value == 500.0 and evaluate(a, Output("x", latency_ms=499)).passed
