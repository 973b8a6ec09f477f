"""Validate-and-retry (structured/generate.py) with a scripted model: replies fixed in advance."""
import pytest
from pydantic import BaseModel

import llmkit as lk
from llmkit.core.types import Completion, Usage
from llmkit.models.base import Model
from llmkit.structured import JSON, Choice, Grammar, Regex, as_constraint, generate


class City(BaseModel):
    name: str
    population: int


class Scripted(Model):
    """Answers from a list; records what it was sent. ``kinds`` plays a backend's native mechanism."""

    provider = "scripted"
    supported = frozenset({"temperature", "max_tokens"})

    def __init__(self, replies, kinds=()):
        super().__init__("scripted")
        self.replies, self.sent, self.constraint_kinds = list(replies), [], frozenset(kinds)

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        self.sent.append((messages, constraint))
        text, finish = self.replies.pop(0) if isinstance(self.replies[0], tuple) else (self.replies.pop(0), "stop")
        return Completion(text=text, finish_reason=finish, usage=Usage(output_tokens=len(text)))

    def _stream(self, messages, s, tools, tool_choice, constraint=None):
        from llmkit.core.types import Chunk

        c = self._chat(messages, s, tools, tool_choice, constraint)
        for i in range(0, len(c.text), 5):
            yield Chunk(text=c.text[i:i + 5])
        yield Chunk(finish_reason=c.finish_reason, usage=c.usage)


def test_invalid_then_valid_feeds_the_errors_back():
    m = Scripted(['{"name": "Paris"}', '{"name": "Paris", "population": 2100000}'])
    assert m.json("Capital of France?", schema=City) == City(name="Paris", population=2100000)
    (first, _), (second, _) = m.sent
    assert first[-1].content.count("JSON Schema") == 1  # the instructions, once
    assert second[-2].content == '{"name": "Paris"}' and "population" in second[-1].content
    assert second[-1].content.startswith(generate.REPAIR_PROMPT.split("{")[0])


def test_gives_up_with_the_last_text_and_errors():
    m = Scripted(["nope", "still no", "no!"])
    with pytest.raises(lk.StructuredOutputError) as e:
        m.json("?", schema=City, max_retries=2)
    assert e.value.text == "no!" and e.value.errors and "invalid json" in e.value.errors[0].lower() and len(m.sent) == 3


def test_native_backends_get_the_constraint_and_no_extra_words():
    m = Scripted(['"a"'.strip('"')], kinds={"choice"})
    c = m.chat("Pick.", constraint=Choice(["a", "b"]))
    (msgs, sent), = m.sent
    assert c.parsed == "a" and isinstance(sent, Choice) and msgs[-1].content == "Pick."
    m = Scripted(["b"])  # not native: asked in words, checked after
    assert m.chat("Pick.", constraint=Choice(["a", "b"])).parsed == "b"
    (msgs, sent), = m.sent
    assert sent is None and msgs[-1].content.endswith("Reply with exactly one of: a, b.")


def test_json_mode_always_mentions_json():
    m = Scripted(['{"a": 1}', '{"a": 1}'], kinds={"json"})
    m.chat("Give me an object.", constraint=JSON())
    m.chat("Give me a JSON object.", constraint=JSON())
    assert "JSON object" in m.sent[0][0][-1].content and m.sent[1][0][-1].content == "Give me a JSON object."


def test_truncation_is_reported_and_retried():
    m = Scripted([('{"name": "Pa', "length"), '{"name": "Paris", "population": 1}'])
    assert m.json("?", schema=City).name == "Paris"
    assert "token limit" in m.sent[1][0][-1].content


def test_a_cut_free_string_is_retried_under_a_schema_that_fits_not_in_words():
    """A backend that enforces the schema gets the same question again under a grammar whose free
    strings are capped to fit max_tokens (half the budget, at this output's characters per token);
    a second cut halves the cap. The value is still checked against the schema as given."""
    m = Scripted([('{"name": "Pa', "length"), ('{"name": "P', "length"), '{"name": "Pa", "population": 1}'],
                 kinds={"json_schema", "grammar"})  # a local backend: token masks
    assert m.json("?", schema=City, max_tokens=12) == City(name="Pa", population=1)
    (first, c1), (second, c2), (third, c3) = m.sent
    assert first == second == third                      # no repair prompt: the grammar does the work
    assert "maxLength" not in c1.schema()["properties"]["name"]
    assert c2.schema()["properties"]["name"]["maxLength"] == 6   # 0.5 x 12 tokens x 1 character a token
    assert c3.schema()["properties"]["name"]["maxLength"] == 3   # cut again: halved
    assert "maxLength" not in c2.schema()["properties"]["population"]
    # Nothing to cap (no free string): the words, as before.
    m = Scripted([('{"population": 12', "length"), '{"population": 1}'], kinds={"json_schema", "grammar"})
    assert m.json("?", schema={"type": "object", "properties": {"population": {"type": "integer"}}}, max_tokens=5)
    assert "token limit" in m.sent[1][0][-1].content
    # A provider's schema mode (no token masks): the words too, and the schema as given.
    m = Scripted([('{"name": "Pa', "length"), '{"name": "Pa", "population": 1}'], kinds={"json_schema"})
    assert m.json("?", schema=City, max_tokens=12).name == "Pa"
    assert "token limit" in m.sent[1][0][-1].content and m.sent[1][1] is m.sent[0][1]


def test_stream_json_refits_a_cut_string_too():
    m = Scripted([('{"name": "Paris is', "length"), '{"name": "Pa", "population": 1}'], kinds={"json_schema", "grammar"})
    assert list(m.stream_json("?", schema=City, max_tokens=18))[-1] == City(name="Pa", population=1)
    assert m.sent[1][1].schema()["properties"]["name"]["maxLength"] == 9 and m.sent[0][0] == m.sent[1][0]


def test_stream_json_partials_then_value():
    m = Scripted(['{"name": "Paris", "population": 2100000}'])
    *partials, final = list(m.stream_json("?", schema=City))
    assert final == City(name="Paris", population=2100000)
    assert partials[0] == {} or partials[0] == {"name": ""} or "name" in partials[0]
    assert partials[-1] == {"name": "Paris", "population": 2100000}


def test_grammar_needs_a_local_model_and_bad_arguments_are_named():
    with pytest.raises(lk.UnsupportedParameterError, match="Grammar is enforced only on local"):
        Scripted(["x"]).chat("?", constraint=Grammar('start: "x"'))
    with pytest.raises(lk.ConfigError, match="max_retries=-1"):
        Scripted(["x"]).json("?", max_retries=-1)
    with pytest.raises(lk.ConstraintError, match="not a constraint"):
        as_constraint(42)
    with pytest.raises(lk.ConstraintError, match="repeat"):
        Choice(["a", "a"])


def test_choice_tolerates_remote_decoration():
    c = Choice(["Positive", "Negative"])
    assert c.check('"positive."') == "Positive"
    assert Regex(r"\d+").check("42") == "42"


def test_async_twins():
    import asyncio

    m = Scripted(['{"name": "Paris", "population": 1}', "b"])
    assert asyncio.run(m.ajson("?", schema=City)).name == "Paris"
    assert asyncio.run(m.achoose("?", ["a", "b"])) == "b"


# --- bounded generation (constraints._bounded), checked with llguidance's byte-level tokenizer ------
def _accepts(c, text: str) -> bool:
    import llguidance

    m = llguidance.LLMatcher(llguidance.LLTokenizer("byte"), c.grammar(), log_level=0)
    toks = list(text.encode())
    return m.try_consume_tokens(toks) == len(toks) and m.is_accepting()


def test_bounded_generation_is_a_subset_of_the_schema():
    from llmkit.structured import JSONSchema

    schema = {"type": "object", "properties": {"x": {"type": "number"}, "n": {"type": "integer"},
                                               "t": {"type": "string", "format": "date-time"}}, "required": ["x"]}
    bounded, raw = JSONSchema(schema), JSONSchema(schema, bounded=False)
    for ok in ['{"x": 1.5}', '{"x": -2, "n": 9007199254740991}', '{"x": 0, "t": "2026-11-26T10:16:49.123456+01:00"}']:
        assert _accepts(bounded, ok) and bounded.check(ok)
    for runaway in ['{"x": 44.6153113913333354836}', '{"x": 1, "n": 123456789012345678901}', '{"x": 1, "extra": 2}',
                    '{"x": 1, "t": "2026-11-26T10:16:49.0000000000000000000000000000Z"}']:
        assert not _accepts(bounded, runaway) and _accepts(raw, runaway)   # the raw schema allows them
        assert raw.check(runaway) is not None                             # and they validate: a subset, not a change


def test_a_date_is_generated_only_if_it_is_on_the_calendar():
    """llguidance's ``date`` format admits February 29 of any year; the validator does not. The
    bounded schema generates exactly the dates the validator accepts (checked day by day)."""
    import datetime
    import re

    from llmkit.structured import JSONSchema
    from llmkit.structured.constraints import DATE_PATTERN

    c, raw = JSONSchema({"type": "string", "format": "date"}), JSONSchema({"type": "string", "format": "date"}, bounded=False)
    assert _accepts(raw, '"2022-02-29"')                                   # the gap
    assert not _accepts(c, '"2022-02-29"') and _accepts(c, '"2024-02-29"') and _accepts(c, '"2000-02-29"')
    assert not _accepts(c, '"1900-02-29"') and not _accepts(c, '"2026-04-31"') and _accepts(c, '"2026-11-26"')

    def real(text):
        try:
            return bool(datetime.date.fromisoformat(text))
        except ValueError:
            return False

    days = [f"{y:04d}-{m:02d}-{d:02d}" for y in (*range(0, 2101), 2400, 9999) for m in range(0, 14) for d in range(0, 33)]
    assert [t for t in days if bool(re.match(DATE_PATTERN, t)) != real(t)] == []


def test_bounds_respect_what_the_schema_says():
    from llmkit.structured.constraints import _bounded

    assert _bounded({"type": "number", "multipleOf": 0.5, "maximum": 3}) == {
        "type": "number", "multipleOf": 0.5, "maximum": 3, "minimum": -1e15}
    assert _bounded({"type": "object", "properties": {}, "additionalProperties": True})["additionalProperties"] is True
    split = _bounded({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]})
    assert all("additionalProperties" not in s for s in split["allOf"])   # siblings add properties: left open
