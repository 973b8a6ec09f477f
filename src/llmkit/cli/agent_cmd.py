"""``llmkit agent run "task" --tools calculator,python,kb:NAME [-m SPEC]``: an agent in the terminal.

Each step prints as it happens (model reply, tool, arguments, result, seconds, tokens); the
final answer goes to stdout last. Tools marked dangerous run only with ``--approve``.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from ..core.sampling import Sampling
from .options import with_sampling

agent_app = typer.Typer(help="Run an agent: a model with tools, in a loop until it answers.", no_args_is_help=True)


@agent_app.command("run")
@with_sampling
def run(task: str = typer.Argument(..., help="what the agent should do"),
        tools: str = typer.Option("calculator", "--tools", "-t",
                                  help="comma-separated: calculator, python, kb:NAME, sql:URL, files:DIR, http:HOST"),
        model: str = typer.Option("", "--model", "-m", help="model spec (default: embedded)"),
        system: Optional[str] = typer.Option(None, "--system", "-s", help="system prompt"),
        max_steps: int = typer.Option(8, "--max-steps", min=1, help="most model calls"),
        max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="wall-clock budget"),
        mode: str = typer.Option("auto", "--mode", help="auto, tools (native/grammar tool calls) or react (text)"),
        approve: bool = typer.Option(False, "--approve", help="allow tools marked dangerous"),
        as_json: bool = typer.Option(False, "--json", help="print the run (steps and answer) as JSON"),
        sampling: Sampling = None):
    """Run one task with the chosen tools and print every step."""
    import llmkit as lk
    from ..agents.builtin import builtin_tools

    fields = sampling.model_dump(exclude_none=True) if sampling is not None else {}
    agent = lk.Agent(lk.model(model), tools=builtin_tools(tools), system=system, max_steps=max_steps,
                     max_seconds=max_seconds, mode=mode, approve=(lambda call, tool: True) if approve else None,
                     **fields)
    result = None
    for event in agent.stream(task):
        if isinstance(event, lk.agents.AgentResult):
            result = event
        elif not as_json and event.kind != "final":
            print(event.line(), file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps({"output": result.output if isinstance(result.output, (str, dict, list)) else result.text,
                          "stopped": result.stopped,
                          "steps": [{k: v for k, v in vars(s).items() if k != "tool_calls"} |
                                    {"tool_calls": [c.model_dump() for c in s.tool_calls]} for s in result.steps]},
                         ensure_ascii=False, indent=1, default=str))
        return
    if result.stopped != "done":
        print(f"(stopped: {result.stopped} before an answer)", file=sys.stderr)
        raise typer.Exit(1)
    print(result.text)
