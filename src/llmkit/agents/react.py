"""ReAct in plain text (Yao et al., 2022): Thought / Action / Action Input / Observation, for
models without native tool calling. The template is visible and overridable; the prompting
package's ReAct module uses the same format.

    >>> print(REACT_TEMPLATE)
    >>> step = parse_react("Thought: I need to add.\\nAction: add\\nAction Input: {\\"a\\": 2, \\"b\\": 3}")
    >>> step.action, step.arguments
    ('add', {'a': 2, 'b': 3})

A reply that follows neither form (an action, or a final answer) is sent back as an observation
that quotes the expected format, so the model can correct itself on the next step.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

REACT_TEMPLATE = """Answer the question as well as you can. You have these tools:

{tools}

Use exactly this format:

Thought: what to do next
Action: one tool name from [{names}]
Action Input: the tool's arguments as a JSON object
Observation: the tool's result (written for you; do not write it yourself)
... (Thought/Action/Action Input/Observation can repeat)
Thought: I now know the final answer
Final Answer: the answer to the question

Question: {question}"""

STOP = ["\nObservation:"]  # the model must not invent the tool's result
FORMAT_ERROR = ("Invalid format. Reply with either\nThought: ...\nAction: <a tool name>\nAction Input: {{JSON arguments}}\n"
                "or\nThought: ...\nFinal Answer: <the answer>")


@dataclass
class ReactStep:
    """One parsed reply: a ``thought`` and either an ``action`` (+ ``arguments``) or a ``final`` answer;
    ``error`` says what was wrong with a reply that is neither."""

    thought: str = ""
    action: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    final: str | None = None
    error: str | None = None


_ACTION = re.compile(r"Action\s*:\s*(?P<name>[^\n]+?)\s*\n+\s*Action\s*Input\s*:\s*(?P<input>.*)", re.S | re.I)
_FINAL = re.compile(r"Final\s*Answer\s*:\s*(?P<answer>.*)", re.S | re.I)
_THOUGHT = re.compile(r"Thought\s*:\s*(?P<t>.*?)(?=\n\s*(Action|Final\s*Answer)\s*:|\Z)", re.S | re.I)


def render_tools(tools: dict[str, Any]) -> str:
    """One line per tool: ``name: description. Arguments: {json schema properties}``."""
    lines = []
    for t in tools.values():
        props = json.dumps(t.parameters.get("properties", {}), ensure_ascii=False)
        lines.append(f"{t.name}: {t.description} Arguments: {props}")
    return "\n".join(lines)


def react_prompt(question: str, tools: dict[str, Any], template: str = REACT_TEMPLATE) -> str:
    return template.format(tools=render_tools(tools), names=", ".join(tools), question=question)


def parse_react(text: str) -> ReactStep:
    """Read a ReAct reply. An action wins over a final answer written after it (the model must
    wait for the observation); arguments are the first JSON object after ``Action Input:``."""
    thought = (_THOUGHT.search(text).group("t").strip() if _THOUGHT.search(text) else "")
    action = _ACTION.search(text)
    final = _FINAL.search(text)
    if action and (not final or action.start() < final.start()):
        name = action.group("name").strip().strip("`'\"")
        raw = action.group("input").split("\nObservation")[0].strip()
        args = _first_json_object(raw)
        if args is None:
            if raw and not raw.startswith("{"):
                args = {"input": raw.splitlines()[0]}  # a bare string, as in the original ReAct
            else:
                return ReactStep(thought, name, error=f"Action Input is not a JSON object: {raw[:200]!r}")
        return ReactStep(thought, name, args)
    if final:
        return ReactStep(thought, final=final.group("answer").strip())
    return ReactStep(thought, error=FORMAT_ERROR)


def _first_json_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
