"""Agents: tools from typed functions, the tool-calling loop, ReAct, sandboxed built-in tools, MCP.

    >>> import llmkit as lk
    >>> @lk.tool
    ... def add(a: int, b: int) -> int:
    ...     "Add two integers."
    ...     return a + b
    >>> lk.Agent(lk.model(), tools=[add]).run("What is 2 + 3?").output

Built-in tools are in ``agents.builtin`` and MCP in ``agents.mcp`` (imported when used).
"""
from .agent import ANSWER_NOW_PROMPT, FINAL_JSON_PROMPT, Agent, AgentResult, Step
from .react import REACT_TEMPLATE, parse_react
from .tools import FunctionTool, ToolArgumentError, Toolkit, as_tools, serialize, tool, tool_from_model

__all__ = ["Agent", "AgentResult", "Step", "FINAL_JSON_PROMPT", "ANSWER_NOW_PROMPT", "REACT_TEMPLATE", "parse_react",
           "tool", "tool_from_model", "FunctionTool", "Toolkit", "ToolArgumentError", "as_tools", "serialize"]
