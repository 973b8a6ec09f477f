"""Scripted replies for the program tests: models whose answers depend on what the prompt shows
(the demonstrations, the instructions), so a test can prove an optimiser chose well."""
from __future__ import annotations

import json
import re

from llmkit.core.types import Message


def field(text: str, name: str) -> str:
    """The value of ``name: value`` in a rendered input block."""
    m = re.search(rf"^{re.escape(name)}: (.*)$", text, re.MULTILINE)
    assert m, f"no {name!r} in {text!r}"
    return m.group(1).strip()


def demos(msgs: list[Message]) -> list[tuple[str, dict]]:
    """(user text, assistant JSON) of each demonstration pair before the final user turn."""
    body = msgs[1:-1]
    return [(u.content, json.loads(a.content)) for u, a in zip(body[::2], body[1::2])]


def reverse_when_shown(msgs: list[Message], tools=None) -> str:
    """Task: reverse the word. The model gets it right only when a demo shows a reversed word and no
    demo shows a wrong (unreversed) answer; with no demos it gets short words right on its own."""
    word = field(msgs[-1].content, "word")
    shown = [(field(u, "word"), d.get("answer", "")) for u, d in demos(msgs)]
    if any(a == w and w != w[::-1] for w, a in shown):
        out = word                  # a bad demonstration misleads it
    elif any(a == w[::-1] for w, a in shown) or len(word) <= 3:
        out = word[::-1]
    else:
        out = word
    reasoning = {"reasoning": "backwards, as shown"} if "- reasoning (str)" in msgs[0].content else {}
    return json.dumps({**reasoning, "answer": out})
