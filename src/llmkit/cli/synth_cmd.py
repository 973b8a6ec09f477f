"""``llmkit train synth``: synthetic training data as chat JSONL (what ``llmkit train sft`` reads).

    llmkit train synth self-instruct seeds.txt -o data/si.jsonl --n 200 --temperature 1.0
    llmkit train synth evol instructions.jsonl -o data/evol.jsonl --rounds 3 --judge-threshold 4
    llmkit train synth qa handbook -o data/qa.jsonl --n 100 --with-context      # a knowledge base
    llmkit train synth filter data/all.jsonl -o data/clean.jsonl --judge-threshold 4 --embed

Every command writes its output atomically and prints how many rows it kept and why the others
went. The flags come from the config classes in ``llmkit.train.synth.config``.
"""
# No `from __future__ import annotations`: with_config re-homes the commands' annotations in
# cli/options.py, where typer evaluates them; they must be objects, not names to look up there.
from pathlib import Path
from typing import Any

import typer

from ..train.synth.config import EvolConfig, FilterConfig, QAConfig, SelfInstructConfig
from .options import with_config

synth_app = typer.Typer(help="Synthetic training data: Self-Instruct, Evol-Instruct, QA from documents, and "
                        "judge + near-duplicate filters, written as chat JSONL.", no_args_is_help=True)

OUT = typer.Option(..., "--out", "-o", help="the chat JSONL file to write (replaced atomically)")
MODEL = typer.Option("", "--model", "-m", help="model that writes the data, e.g. 'openai:gpt-4o-mini' (default: embedded)")
JUDGE = typer.Option("", "--judge", help="model that grades rows when --judge-threshold is set (default: --model)")


def _load(spec: str):
    import llmkit as lk

    return lk.model(spec)


def _finish(rows: Any, out: Path, config: FilterConfig, model: Any, judge: str, wanted: int | None = None) -> None:
    """Filter as the config says, write atomically, print what happened."""
    from ..train import synth

    judge_model = None
    if config.judge_threshold is not None:
        judge_model = _load(judge) if judge else model if model is not None else _load("")
    made = len(rows)
    rows = synth.filter_rows(rows, config, judge=judge_model)
    synth.write_jsonl(rows, out)
    why = ", ".join(f"{k} {v}" for k, v in rows.rejected.most_common())
    short = f" (asked for {wanted}; stopped after --patience calls that added nothing)" if wanted and made < wanted else ""
    print(f"wrote {len(rows)} rows to {out}{short}" + (f"; rejected: {why}" if why else ""))


@synth_app.command("self-instruct")
@with_config(SelfInstructConfig)
def self_instruct_cmd(seeds: Path = typer.Argument(..., help="seed tasks: a text file (one per line) or .jsonl "
                                                 "(strings, chat rows, or {\"instruction\": ...})"),
                      out: Path = OUT, model: str = MODEL, judge: str = JUDGE, config: SelfInstructConfig = None):
    """New tasks and their answers from a few seed tasks (Self-Instruct, Wang et al. 2022)."""
    from ..train import synth

    tasks = synth.read_instructions(seeds)  # a bad file fails before any model loads
    m = _load(model)
    _finish(synth.self_instruct(m, tasks, config=config), out, config, m, judge, config.n)


@synth_app.command("evol")
@with_config(EvolConfig)
def evol_cmd(instructions: Path = typer.Argument(..., help="instructions to evolve: a text file (one per line) or .jsonl"),
             out: Path = OUT, model: str = MODEL, judge: str = JUDGE, config: EvolConfig = None):
    """Harder and rarer versions of instructions, with answers (Evol-Instruct, Xu et al. 2023)."""
    from ..train import synth

    items = synth.read_instructions(instructions)
    m = _load(model)
    _finish(synth.evol_instruct(m, items, config=config), out, config, m, judge)


@synth_app.command("qa")
@with_config(QAConfig)
def qa_cmd(source: str = typer.Argument(..., help="a knowledge base name or .db path, or a file or folder of documents"),
           out: Path = OUT, model: str = MODEL, judge: str = JUDGE, config: QAConfig = None):
    """Question/answer pairs grounded in chunks of documents."""
    from ..train import synth

    chunks = synth.document_chunks(source)  # an unknown source fails before any model loads
    m = _load(model)
    _finish(synth.qa_from_documents(m, chunks, config=config), out, config, m, judge, config.n)


@synth_app.command("filter")
@with_config(FilterConfig)
def filter_cmd(rows: Path = typer.Argument(..., help="a chat JSONL file"), out: Path = OUT,
               judge: str = typer.Option("", "--judge", "--model", "-m",
                                         help="model that grades rows when --judge-threshold is set (default: embedded)"),
               config: FilterConfig = None):
    """Drop near-duplicates (and, with --judge-threshold, rows an LLM judge scores low) from a chat JSONL."""
    from ..core.errors import ConfigError
    from ..train import synth

    if not config.dedup and config.judge_threshold is None:
        raise ConfigError("nothing to do: --no-dedup and no --judge-threshold; give at least one filter")
    _finish(synth.read_jsonl(rows), out, config, None, judge)
