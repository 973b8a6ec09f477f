"""The ``llmkit`` command. Sub-commands mirror the packages.

Errors a user can act on print one line (``error: …``) and exit with code 2; no traceback.
"""
from __future__ import annotations

import sys
from typing import Optional

import typer

from ..core.errors import LLMKitError
from ..core.sampling import Sampling
from ..serve.config import ServeConfig
from .agent_cmd import agent_app
from .eval_cmd import eval_app
from .mcp_cmd import mcp_app
from .options import with_config, with_sampling
from .prompt_cmd import prompt_app
from .rag_cmd import rag_app, sql_app
from .export_cmd import export as export_command
from .merge_cmd import merge as merge_command, merge_lora_cmd
from .train_cmd import train_app

app = typer.Typer(help="llmkit: a local-first LLM engineering toolkit.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
trace_app = typer.Typer(help="Read the traces of past model calls ($LLMKIT_HOME/traces.db).", no_args_is_help=True)
app.add_typer(trace_app, name="trace")
app.add_typer(eval_app, name="eval")
app.add_typer(rag_app, name="rag")
app.add_typer(sql_app, name="sql")
app.add_typer(mcp_app, name="mcp")
app.add_typer(agent_app, name="agent")
app.add_typer(prompt_app, name="prompt")
app.add_typer(train_app, name="train")
app.command("export")(export_command)
app.command("merge")(merge_command)
app.command("merge-lora")(merge_lora_cmd)

MODEL = typer.Option("", "--model", "-m", help="model spec, e.g. 'hf:smollm2', 'openai:gpt-4o-mini' (default: embedded)")


def _load(spec: str):
    import llmkit as lk

    return lk.model(spec)


@app.command()
@with_sampling
def chat(prompt: Optional[str] = typer.Argument(None, help="one-shot prompt; '-' or piped stdin reads it; none starts a REPL"),
         model: str = MODEL,
         system: Optional[str] = typer.Option(None, "--system", "-s", help="system message"),
         schema: Optional[str] = typer.Option(None, "--schema", help="answer with JSON valid against this JSON Schema file"),
         json_: bool = typer.Option(False, "--json", help="answer with a JSON object"),
         regex: Optional[str] = typer.Option(None, "--regex", help="answer with text matching this regex"),
         choice: Optional[list[str]] = typer.Option(None, "--choice", help="answer with one of these (repeat the flag)"),
         grammar: Optional[str] = typer.Option(None, "--grammar", help="answer in the language of this Lark/GBNF grammar file"),
         sampling: Sampling = None):
    """Chat with a model: one-shot with a prompt (or stdin), else an interactive REPL.

    With --schema, --json, --regex, --choice or --grammar the answer is constrained (token by
    token on local models) and validated; it prints the validated output."""
    import llmkit as lk

    if prompt == "-" or (prompt is None and not sys.stdin.isatty()):
        prompt = sys.stdin.read()
    constraint = _constraint(schema, json_, regex, choice, grammar)
    m = _load(model)
    history = [lk.system(system)] if system else []
    if constraint is not None:
        if prompt is None:
            raise lk.ConfigError("a constrained answer needs a prompt: llmkit chat \"...\" --schema FILE")
        print(m.chat(history + [lk.user(prompt)], sampling=sampling, constraint=constraint, instructions=True).text)
        return
    if prompt is not None:
        _say(m, history + [lk.user(prompt)], sampling)
        return
    from rich.console import Console

    err = Console(stderr=True)
    err.print(f"[dim]{m.provider}:{m.name} — /reset clears the conversation, /exit or Ctrl-D quits[/dim]")
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return
        if line.strip() in ("/exit", "/quit"):
            return
        if line.strip() == "/reset":
            history = history[:1] if system else []
            continue
        if not line.strip():
            continue
        history.append(lk.user(line))
        history.append(lk.assistant(_say(m, history, sampling)))


def _constraint(schema, json_, regex, choice, grammar):
    """The one constraint the flags ask for (None for free text)."""
    import json
    from pathlib import Path

    from ..core.errors import ConfigError
    from ..structured import JSON, Choice, Grammar, JSONSchema, Regex

    given = [f for f, v in (("--schema", schema), ("--json", json_), ("--regex", regex), ("--choice", choice),
                            ("--grammar", grammar)) if v]
    if len(given) > 1:
        raise ConfigError(f"give one of --schema, --json, --regex, --choice, --grammar, not {' and '.join(given)}")

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read {path!r}: {e.strerror}") from None

    if schema:
        try:
            return JSONSchema(json.loads(read(schema)))
        except json.JSONDecodeError as e:
            raise ConfigError(f"--schema {schema!r} is not valid JSON: {e}") from None
    if json_:
        return JSON()
    if regex:
        return Regex(regex)
    if choice:
        return Choice(choice)
    if grammar:
        return Grammar(read(grammar))
    return None


def _say(m, messages, sampling: Sampling) -> str:
    out = []
    for chunk in m.stream(messages, sampling=sampling):
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
        out.append(chunk.text)
    sys.stdout.write("\n")
    return "".join(out)


@app.command()
@with_sampling
def generate(prompt: Optional[str] = typer.Argument(None, help="raw prompt (no chat template); '-' or stdin reads it"),
             model: str = MODEL, sampling: Sampling = None):
    """Continue a raw prompt with no chat template."""
    if prompt is None or prompt == "-":
        prompt = sys.stdin.read()
    r = _load(model).complete(prompt, sampling=sampling)
    print(r.text)


@app.command()
@with_config(ServeConfig)
def serve(config: ServeConfig = None):
    """Serve a model over the OpenAI and Anthropic APIs (default: the embedded model at http://127.0.0.1:8000)."""
    from ..serve.app import serve as run

    run(config)


@app.command()
def models():
    """Each backend and whether it is usable here (key present, file present)."""
    from rich.console import Console
    from rich.table import Table

    from ..models import status

    table = Table("provider", "spec", "usable", "detail")
    for row in status():
        table.add_row(row["provider"], row["spec"], "[green]yes[/green]" if row["usable"] else "[red]no[/red]", row["detail"])
    Console().print(table)


@trace_app.command("ls")
def trace_ls(limit: int = typer.Option(20, "--limit", "-n", min=1, help="how many spans"),
             name: Optional[str] = typer.Option(None, "--name", help="only spans whose name contains this")):
    """The newest spans: id, time, operation, model, tokens, latency, status."""
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    from ..core.tracing import TraceStore

    table = Table("span", "trace", "time", "name", "tokens in/out", "ms", "status")
    for s in TraceStore().list(limit=limit, name_like=name):
        a = s["attributes"]
        toks = f"{a.get('gen_ai.usage.input_tokens', '')}/{a.get('gen_ai.usage.output_tokens', '')}"
        when = datetime.fromtimestamp(s["start_ns"] / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        status = "[red]ERROR[/red]" if s["status"] == "ERROR" else "ok"
        table.add_row(s["span_id"], s["trace_id"][:8], when, s["name"], toks if toks != "/" else "",
                      f"{s['duration_ms']:.0f}", status)
    Console().print(table)


@trace_app.command("show")
def trace_show(ident: str = typer.Argument(..., help="a span id or trace id (a unique prefix is enough)"),
               json_out: bool = typer.Option(False, "--json", help="print the spans as JSON")):
    """Every span of one trace, with its attributes, messages and output."""
    import json

    from rich.console import Console

    from ..core.errors import ConfigError
    from ..core.tracing import TraceStore

    spans = TraceStore().get(ident)
    if not spans:
        raise ConfigError(f"no trace or span matches {ident!r}; `llmkit trace ls` lists them")
    if json_out:
        print(json.dumps(spans, indent=2))
        return
    con = Console()
    for s in spans:
        con.rule(f"{s['name']}  [dim]{s['span_id']} ({s['duration_ms']:.0f} ms, {s['status']})[/dim]")
        if s["error"]:
            con.print(f"[red]error:[/red] {s['error']}")
        for k, v in sorted(s["attributes"].items()):
            if k in ("gen_ai.input.messages", "gen_ai.output.messages", "llmkit.prompt"):
                continue
            con.print(f"  [cyan]{k}[/cyan] = {v}")
        for k in ("llmkit.prompt", "gen_ai.input.messages", "gen_ai.output.messages"):
            if k in s["attributes"]:
                v = s["attributes"][k]
                con.print(f"  [cyan]{k}[/cyan]:")
                try:
                    for m in json.loads(v) if isinstance(v, str) and v.startswith("[") else [v]:
                        con.print(f"    {m.get('role', '')}: {m.get('content', '')}" if isinstance(m, dict) else f"    {m}",
                                  markup=False)
                except json.JSONDecodeError:
                    con.print(f"    {v}", markup=False)


def main() -> None:
    """Entry point: run the app, turning llmkit errors into one line and exit code 2."""
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code here instead of exiting
        if isinstance(code, int) and code:
            sys.exit(code)
    except LLMKitError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        # typer may vendor click, so match click's exception types by name
        kinds = {c.__name__ for c in type(e).__mro__}
        if "ClickException" in kinds:
            if e.format_message():  # empty for "no arguments: help was shown"
                print(f"error: {e.format_message()}", file=sys.stderr)
            sys.exit(2)
        if "Abort" in kinds:
            sys.exit(130)
        raise
