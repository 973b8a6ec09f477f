"""structured/tools.py: with a token budget, every free string of a tool call is capped so the
call can close within the budget (a small model can loop inside a string until cut off mid-JSON)."""
import json

from llmkit.core.types import Tool
from llmkit.structured.tools import CALL_OVERHEAD, ToolCalls, _cap_strings

SEARCH = Tool(name="search", parameters={"type": "object", "required": ["q"], "properties": {
    "q": {"type": "string"},
    "lang": {"type": "string", "enum": ["en", "fr"]},
    "day": {"type": "string", "format": "date"},
    "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 500}},
    "long": {"type": "string", "minLength": 300}}})


def test_free_strings_are_capped_and_the_rest_keep_their_own_limits():
    props = _cap_strings(SEARCH.parameters, 100)["properties"]
    assert props["q"]["maxLength"] == 100 and props["tags"]["items"]["maxLength"] == 100
    assert "maxLength" not in props["lang"] and "maxLength" not in props["day"] and "maxLength" not in props["code"]
    assert props["long"]["maxLength"] == 300  # never below the schema's own minLength
    assert _cap_strings(SEARCH.parameters, None) is SEARCH.parameters


def test_the_grammar_follows_the_budget():
    """The budget left after the call's overhead is shared by the free strings at two tokens a character."""
    one = Tool(name="one", parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    capped = ToolCalls([one], "required", max_tokens=CALL_OVERHEAD + 80)
    free = ToolCalls([one], "required")
    assert '"maxLength":40' in capped.grammar().replace(" ", "") and capped.grammar() != free.grammar()
    ok = '<tool_call>\n' + json.dumps({"name": "one", "arguments": {"q": "x" * 40}}) + '\n</tool_call>'
    assert capped.check(ok)[1][0].arguments["q"] == "x" * 40
    three = ToolCalls([SEARCH], "required", max_tokens=CALL_OVERHEAD + 120)  # q, tags' items, long: 120 // 6
    assert '"maxLength":20' in three.grammar().replace(" ", "")


def test_capped_strings_fit_the_budget_even_fully_escaped():
    """Worst case: every character of every free string escaped as \\n (two JSON characters each,
    so at most two tokens); the strings' JSON still fits what the budget leaves after the call's
    fixed overhead (tags, name, keys, punctuation: CALL_OVERHEAD tokens)."""
    tool = Tool(name="search", parameters={"type": "object", "properties": {
        "q": {"type": "string"}, "where": {"type": "string"}, "note": {"type": "string"}}})
    for max_tokens in (160, 600):
        schema = json.loads(ToolCalls([tool], "required", max_tokens=max_tokens).grammar().split("%json", 1)[1].strip())
        props = schema["anyOf"][0]["properties"]["arguments"]["properties"]
        caps = [props[k]["maxLength"] for k in ("q", "where", "note")]
        assert len(set(caps)) == 1
        assert sum(len(json.dumps("\n" * c)) - 2 for c in caps) <= max_tokens - CALL_OVERHEAD, (max_tokens, caps)
