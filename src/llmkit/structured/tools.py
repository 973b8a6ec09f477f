"""Tool calls for local models: a visible prompt, a grammar built from the tool schemas, a parser.

Local chat templates rarely know about tools (SmolLM2's does not), so llmkit uses one format for
every local model, the Hermes ``<tool_call>`` style that many open models are trained on:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

``TOOLS_PROMPT`` (printable, overridable per call) lists the tools in the system message;
:class:`ToolCalls` is the grammar: with ``tool_choice="required"`` (or a tool's name) the reply
must be one or more calls whose arguments validate against that tool's parameters; with
``"auto"`` it may instead be plain text (which then cannot start with ``<``). Arguments are
generated within practical bounds (``constraints._bounded``: no invented keys, bounded numbers),
always valid for the tool's schema. Past calls and
tool results are written back into the conversation in the same format.
"""
from __future__ import annotations

import json
import uuid
from typing import Iterator

from ..core.errors import ConfigError
from ..core.types import Chunk, Message, Tool, ToolCall
from .constraints import JSON_OPTIONS, Constraint, Invalid, _bounded, _cap_strings, _free_strings, _validated

#: The system prompt that describes the tools (``{tools}``: one JSON line per tool).
TOOLS_PROMPT = """You can call functions. Their signatures, as JSON Schema, are:
{tools}
To call a function, reply with its name and arguments as JSON between tags, like:
<tool_call>
{{"name": "function_name", "arguments": {{"arg": "value"}}}}
</tool_call>
You may make several calls, one block each. Function results come back in <tool_response> tags."""

OPEN, CLOSE = "<tool_call>\n", "\n</tool_call>"
MAX_CALLS = 4  # calls in one reply: small models otherwise repeat the same call until max_tokens


class ToolCalls(Constraint):
    """Replies that are tool calls for ``tools`` (or, under ``"auto"``, plain text instead).

    Args:
        tools: the tools the model may call.
        tool_choice: ``"auto"``, ``"required"``, or the name of the one tool to call.
        parallel: allow several calls in one reply.
        max_tokens: the reply's token budget, when known: every free string argument is then capped
            so that a call can close within it (a small model can loop inside a string, "1000…",
            until the budget cuts the call off mid-JSON). Strings with an ``enum``, ``const``,
            ``pattern`` or ``format`` keep their own limits.
    """

    kind = "grammar"

    def __init__(self, tools: list[Tool], tool_choice: str = "auto", parallel: bool = True,
                 max_tokens: int | None = None):
        import llguidance

        names = [t.name for t in tools]
        if tool_choice not in ("auto", "required") and tool_choice not in names:
            raise ConfigError(f"tool_choice={tool_choice!r} is not 'auto', 'required' or one of {names}")
        self.tools, self.tool_choice = tools, tool_choice
        parallel = parallel and tool_choice in ("auto", "required")  # a named tool: one call, as OpenAI answers it
        chosen = [t for t in tools if tool_choice in ("auto", "required") or t.name == tool_choice]
        schema = {"x-guidance": JSON_OPTIONS,  # no free whitespace: a small model pads with newlines until max_tokens
                  "anyOf": [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                             "properties": {"name": {"const": t.name},
                                            "arguments": _capped_arguments(t, max_tokens)}}
                            for t in chosen]}
        call = f"{json.dumps(OPEN)} call_json {json.dumps(CLOSE)}"
        calls = f"call ({json.dumps(chr(10))} call) ~ 0..{MAX_CALLS - 1}" if parallel else "call"
        lark = f"calls: {calls}\ncall: {call}\ncall_json: %json {_schema_json(schema)}\n"
        if tool_choice == "auto":
            lark = "start: calls | TEXT\nTEXT: /[^<\\s][\\s\\S]*/\n" + lark
        else:
            lark = "start: calls\n" + lark
        self._grammar = _validated(llguidance.LLMatcher.grammar_from_lark(lark), "the tool schemas")

    def grammar(self) -> str:
        return self._grammar

    def check(self, text: str) -> tuple[str, list[ToolCall]]:
        content, calls = parse(text)
        if not calls and self.tool_choice != "auto":
            raise Invalid([f"expected a tool call, got {text[:200]!r}"])
        return content, calls

    def instructions(self) -> str:
        return prompt(self.tools)

    def __repr__(self) -> str:
        return f"ToolCalls({[t.name for t in self.tools]}, tool_choice={self.tool_choice!r})"


CALL_OVERHEAD = 48  # tokens of <tool_call>, the name, the JSON punctuation and </tool_call>, with room to spare


def _string_budget(max_tokens: int | None, strings: int = 1) -> int | None:
    """Characters each of ``strings`` free strings may take so the call still closes within
    ``max_tokens``. A token holds at least one character of JSON text, and a character takes at
    most two characters of JSON (``\\n``, ``\\"``), so the budget left after the call's own overhead
    is shared among the strings at two tokens per character. (A ``\\u00e9`` escape spends six; the
    grammar cannot forbid it, so the guarantee holds for replies that write such characters raw, as
    models do.)"""
    return None if not max_tokens else max(16, (max_tokens - CALL_OVERHEAD) // (2 * max(1, strings)))


def _capped_arguments(tool: Tool, max_tokens: int | None):
    schema = _bounded(tool.parameters or {"type": "object"})
    return _cap_strings(schema, _string_budget(max_tokens, _free_strings(schema)))


def _schema_json(schema: dict) -> str:
    return json.dumps(schema, separators=(",", ":"))


def prompt(tools: list[Tool], template: str = TOOLS_PROMPT) -> str:
    """The system text that describes ``tools``."""
    lines = "\n".join(json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters})
                      for t in tools)
    return template.format(tools=lines)


def parse(text: str) -> tuple[str, list[ToolCall]]:
    """Split a reply into its plain text and its tool calls."""
    calls, rest, pos = [], [], 0
    while (start := text.find(OPEN.strip(), pos)) >= 0:
        end = text.find(CLOSE.strip(), start)
        if end < 0:
            if calls:  # a call cut off by max_tokens after complete ones: not text for the user
                text = text[:start]
            break
        rest.append(text[pos:start])
        body = text[start + len(OPEN.strip()):end].strip()
        try:
            call = json.loads(body)
            calls.append(ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=call["name"],
                                  arguments=call.get("arguments") or {}))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise Invalid([f"a tool call is not valid JSON with name and arguments: {body[:200]!r} ({e})"]) from None
        pos = end + len(CLOSE.strip())
    rest.append(text[pos:])
    seen, unique = set(), []
    for c in calls:  # the same call twice in one reply is a model stutter, never a request to run it twice
        key = (c.name, json.dumps(c.arguments, sort_keys=True))
        if key not in seen:
            seen.add(key)
            unique.append(c)
    calls = unique
    return "".join(rest).strip(), calls


def stream_calls(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """Pass plain-text replies through as they stream; hold a reply that opens with ``<`` (a tool
    call, by the grammar) and end it with one chunk carrying the parsed calls."""
    held: list[str] = []
    mode = None  # "text" or "calls", known from the first character
    for ch in chunks:
        if mode is None:
            held.append(ch.text)
            first = "".join(held)
            if first:
                mode = "calls" if first.startswith("<") else "text"
            if mode == "text" or (mode is None and ch.finish_reason):
                yield ch.model_copy(update={"text": first})
                continue
        elif mode == "text":
            yield ch
            continue
        else:
            held.append(ch.text)
        if ch.finish_reason and mode == "calls":
            raw = "".join(held)
            try:
                content, calls = parse(raw)
            except Invalid:  # cut off by max_tokens: give back what there is
                yield Chunk(text=raw, finish_reason=ch.finish_reason, usage=ch.usage)
                return
            yield Chunk(text=content, tool_calls=calls, finish_reason="tool_calls" if calls else ch.finish_reason,
                        usage=ch.usage)


def as_template_messages(messages: list[Message], tools: list[Tool] | None, template: str = TOOLS_PROMPT) -> list[Message]:
    """The conversation rewritten for a chat template that knows nothing of tools: the tool
    prompt joins the system message, past calls become ``<tool_call>`` text, results ``<tool_response>``."""
    out: list[Message] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            blocks = [OPEN + json.dumps({"name": c.name, "arguments": c.arguments}) + CLOSE for c in m.tool_calls]
            out.append(Message(role="assistant", content="\n".join(([m.content] if m.content else []) + blocks)))
        elif m.role == "tool":
            out.append(Message(role="user", content=f"<tool_response>\n{m.content}\n</tool_response>"))
        else:
            out.append(m)
    if tools:
        text = prompt(tools, template)
        if out and out[0].role == "system":
            out[0] = out[0].model_copy(update={"content": f"{out[0].content}\n\n{text}"})
        else:
            out.insert(0, Message(role="system", content=text))
    return out
