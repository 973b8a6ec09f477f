"""agents/tools.py: @lk.tool — schemas from type hints and docstrings, validation, serialisation."""
import asyncio
from enum import Enum
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, Field

import llmkit as lk
from llmkit.agents import Toolkit, ToolArgumentError, as_tools, serialize, tool_from_model
from llmkit.core.errors import ConfigError


class Unit(str, Enum):
    c = "celsius"
    f = "fahrenheit"


@lk.tool
def weather(city: str, unit: Unit = Unit.c, days: int = 1, detail: Optional[Literal["short", "long"]] = None) -> dict:
    """Get the forecast for a city.

    Looks it up in the almanac.

    Args:
        city: the city's name,
            as people write it.
        unit (Unit): the temperature unit.
        days: how many days ahead.

    Returns:
        the forecast.
    """
    return {"city": city, "unit": unit.value, "days": days}


def test_schema_comes_from_hints_and_docstring():
    assert weather.name == "weather"
    assert weather.description == "Get the forecast for a city. Looks it up in the almanac."
    p = weather.parameters
    assert p["type"] == "object" and p["required"] == ["city"] and p["additionalProperties"] is False
    assert p["properties"]["city"] == {"type": "string", "description": "the city's name, as people write it."}
    assert p["properties"]["days"]["default"] == 1 and p["properties"]["days"]["description"] == "how many days ahead."
    assert "detail" in p["properties"] and "description" not in p["properties"]["detail"]
    assert lk.Tool(**weather.spec.model_dump()).name == "weather"


def test_arguments_are_validated_coerced_and_errors_name_the_field():
    assert weather.run({"city": "Oslo", "unit": "fahrenheit", "days": "3"}) == {"city": "Oslo", "unit": "fahrenheit", "days": 3}
    assert weather.run('{"city": "Oslo"}')["unit"] == "celsius"  # JSON text, as OpenAI's wire format sends it
    with pytest.raises(ToolArgumentError, match=r"unit: Input should be 'celsius' or 'fahrenheit'"):
        weather.run({"city": "Oslo", "unit": "kelvin"})
    with pytest.raises(ToolArgumentError, match="not valid JSON"):
        weather.run("{city")
    with pytest.raises(ToolArgumentError, match="must be a JSON object"):
        weather.run([1, 2])


def test_async_tools_run_from_sync_and_async_code():
    @lk.tool
    async def slow_add(a: int, b: int) -> int:
        """Add, asynchronously."""
        await asyncio.sleep(0)
        return a + b

    assert slow_add.run({"a": 1, "b": 2}) == 3
    assert asyncio.run(slow_add.arun({"a": 2, "b": 2})) == 4

    async def inside_a_loop():
        return slow_add.run({"a": 3, "b": 3})  # a sync call from inside a running loop still works

    assert asyncio.run(inside_a_loop()) == 6


def test_options_pydantic_tools_and_toolkits():
    @lk.tool(name="search-docs", description="Search the docs.", dangerous=True)
    def search(q: str) -> list:
        return [q]

    assert (search.name, search.description, search.dangerous) == ("search-docs", "Search the docs.", True)
    assert search("x") == ["x"]  # still callable as the plain function

    class CreateTicket(BaseModel):
        """Open a support ticket."""
        title: str = Field(max_length=80, description="one line")
        priority: int = Field(1, ge=1, le=3)

    t = tool_from_model(CreateTicket, lambda a: f"#{a.priority} {a.title}")
    assert t.name == "create_ticket" and t.description == "Open a support ticket."
    assert t.parameters["properties"]["title"]["maxLength"] == 80
    assert t.run({"title": "broken"}) == "#1 broken"
    with pytest.raises(ToolArgumentError, match="priority: Input should be less than or equal to 3"):
        t.run({"title": "x", "priority": 9})
    kit = Toolkit("support", [t, search])
    assert list(as_tools([kit, weather])) == ["create_ticket", "search-docs", "weather"]


def test_lk_tool_still_builds_tool_messages():
    m = lk.tool("5", tool_call_id="call_1", name="add")
    assert (m.role, m.content, m.tool_call_id, m.name) == ("tool", "5", "call_1", "add")
    m = lk.tool("5", "call_2")
    assert m.tool_call_id == "call_2"
    with pytest.raises(ConfigError, match="needs the tool_call_id"):
        lk.tool("5")


def test_bad_tools_are_refused_clearly():
    with pytest.raises(ConfigError, match=r"\*args"):
        lk.tool(name="many")(lambda *args: None)
    with pytest.raises(ConfigError, match="tool name 'has space'"):
        lk.tool(name="has space")(lambda: None)


def test_serialize():
    class P(BaseModel):
        x: int

    assert serialize("text") == "text" and serialize(3) == "3" and serialize({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert serialize(P(x=1)) == '{"x":1}' and serialize({"p": P(x=2), "s": {1}}) == '{"p": {"x": 2}, "s": [1]}'
