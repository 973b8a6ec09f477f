"""The Agents tab: a task, built-in tools to tick, a step budget → ``lk.Agent.stream`` shown step
by step as it runs: what the model said, each tool with its arguments and result, the final answer.

``make_tools(ctx, ...)`` turns the ticked boxes into tools (``agents.builtin``), ``run(agent,
task)`` yields the chat transcript after each event; ``build(ctx)`` wires them.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ...core.errors import LLMKitError
from .rag import folder_refused, kb_names, open_kb

BASIC_TOOLS = ("calculator", "python")
MAX_SHOWN = 2000  # characters of a tool result shown in the transcript


def tool_choices() -> list[str]:
    """The checkboxes: the basic tools and one ``kb:NAME`` per knowledge base."""
    return [*BASIC_TOOLS, *(f"kb:{n}" for n in kb_names())]


def make_tools(ctx: Any, ticked: list[str], more: str = "") -> list[Any]:
    """Tools for the ticked boxes plus a ``builtin_tools`` spec (``files:DIR``, ``http:HOST``, ``sql:URL``).

    ``kb:NAME`` tools search with the server's embedder; a spec that reaches the host's files or
    network is refused on a public address without an API key (see ``rag.folder_refused``)."""
    from ...agents.builtin import builtin_tools, kb_search_tool

    tools = [kb_search_tool(open_kb(ctx.served, t.split(":", 1)[1])) for t in ticked if t.startswith("kb:")]
    spec = [t for t in ticked if not t.startswith("kb:")]
    if more.strip():
        if (why := folder_refused(ctx)) is not None:
            raise LLMKitError(f"extra tools refused: {why}")
        spec += [s for s in more.split(",") if s.strip()]
    return builtin_tools(spec) + tools if spec else tools


def _tool_message(call: Any) -> dict:
    args = json.dumps(call.arguments, ensure_ascii=False, indent=2)
    return {"role": "assistant", "content": f"**arguments**\n```json\n{args}\n```",
            "metadata": {"title": f"🛠️ {call.name}", "status": "pending"}}


def run(agent: Any, task: str) -> Iterator[tuple[list[dict], str]]:
    """Run ``agent`` on ``task``; after each step yield ``(chat messages, final answer markdown)``.

    A tool call shows as a collapsible message (arguments, then the result once it ran); model
    text that comes with tool calls is shown as a thought; the final answer as a plain reply.
    """
    from ...agents import AgentResult

    messages: list[dict] = [{"role": "user", "content": task}]
    pending: list[int] = []  # indices of tool messages waiting for their result, in call order
    final = "*running…*"
    for event in agent.stream(task):
        if isinstance(event, AgentResult):  # the answer (Agent.stream keeps the "final" step in result.steps)
            messages.append({"role": "assistant", "content": event.text or f"(no answer: stopped at {event.stopped})"})
            used = event.usage
            final = (f"**Final answer:** {event.text or '(none)'}\n\n"
                     f"stopped: `{event.stopped}` · {len(event.tool_steps)} tool run(s) · tokens {used[0]} in, {used[1]} out")
        elif event.kind == "model":
            # a reply with no tool call is the answer (the AgentResult repeats it), except in ReAct,
            # where the raw reply holds the Thought the final answer leaves out
            if event.text.strip() and (event.tool_calls or agent.mode == "react"):
                messages.append({"role": "assistant", "content": event.text.strip(),
                                 "metadata": {"title": f"💭 step {event.index}: model",
                                              "duration": round(event.seconds, 2)}})
            for call in event.tool_calls:
                pending.append(len(messages))
                messages.append(_tool_message(call))
        elif event.kind == "tool":
            i = pending.pop(0) if pending else len(messages)
            if i == len(messages):  # a tool step with no call shown before it: show it on its own
                messages.append({"role": "assistant", "content": "", "metadata": {"title": f"🛠️ {event.tool}"}})
            shown = event.error if event.error else (event.result or "")
            cut = f"… ({len(shown) - MAX_SHOWN} more characters)" if len(shown) > MAX_SHOWN else ""
            label = "error" if event.error else "result"
            msg = messages[i]
            msg["content"] += f"\n**{label}**\n```\n{shown[:MAX_SHOWN]}{cut}\n```"
            msg["metadata"] = {"title": f"{'⚠️' if event.error else '🛠️'} {event.tool}", "status": "done",
                               "duration": round(event.seconds, 2)}
        yield _copy(messages), final


def _copy(messages: list[dict]) -> list[dict]:
    """A snapshot: the tool messages are still filled in after they were shown."""
    return [{**m, "metadata": dict(m["metadata"])} if "metadata" in m else dict(m) for m in messages]


def build(ctx: Any) -> None:
    """The tab's components and events (called inside a ``gr.Tab`` by ``ui/app.py``)."""
    import gradio as gr

    from ...agents import Agent

    with gr.Row():
        with gr.Column(scale=1):
            task = gr.Textbox(label="Task", lines=3, value="What is 17 * 23 + 5?", elem_id="agents-task")
            tools = gr.CheckboxGroup(tool_choices(), value=["calculator"], label="Tools", elem_id="agents-tools")
            more = gr.Textbox(label="More tools (spec)", placeholder="files:docs, http:api.example.com, sql:sqlite:///shop.db",
                              elem_id="agents-more")
            max_steps = gr.Slider(1, 20, value=6, step=1, label="Max steps", elem_id="agents-max-steps")
            with gr.Row():
                go = gr.Button("Run", variant="primary", elem_id="agents-run")
                stop = gr.Button("Stop", elem_id="agents-stop")
                refresh = gr.Button("↻ tools", elem_id="agents-refresh")
        with gr.Column(scale=2):
            chat = gr.Chatbot(label="Steps", height=500, elem_id="agents-chat")
            final = gr.Markdown(elem_id="agents-final")

    def start(t: str, ticked: list[str], extra: str, steps: float, key: str):
        ctx.check_key(key)
        if not t.strip():
            yield [], "**Error:** write a task first."
            return
        shown: list[dict] = [{"role": "user", "content": t}]
        try:
            agent = Agent(ctx.model(None), make_tools(ctx, ticked or [], extra or ""), max_steps=int(steps),
                          answer_on_limit=True, temperature=0, max_tokens=512)
            for shown, answer in run(agent, t):
                yield shown, answer
        except LLMKitError as e:  # keep the steps so far on screen
            yield shown, f"**Error** ({type(e).__name__}): {e}"

    key = ctx.key if ctx.key is not None else gr.State("")
    inputs = [task, tools, more, max_steps, key]
    runs = [go.click(start, inputs, [chat, final]), task.submit(start, inputs, [chat, final])]
    stop.click(None, None, None, cancels=runs)
    def listed():
        return gr.update(choices=tool_choices())

    refresh.click(listed, None, tools, queue=False)
    ctx.on_load.append((listed, None, tools))
