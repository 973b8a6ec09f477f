"""``llmkit prompt ls | show | run``: the prompt library in the terminal.

The library is ``--dir`` (default ``./prompts`` if it exists, else ``$LLMKIT_HOME/prompts``);
NAME may also be a path to a prompt file. ``--var k=v`` sets a variable (``k=@file`` reads the
value from a file). ``show`` prints exactly the messages ``run`` sends.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..core.sampling import Sampling
from .options import with_sampling

prompt_app = typer.Typer(help="Prompt library: list prompts, show a rendered prompt, run it on a model.",
                         no_args_is_help=True)

DIR = typer.Option(None, "--dir", "-d", help="prompt library folder (default: ./prompts, else $LLMKIT_HOME/prompts)")
VAR = typer.Option(None, "--var", "-v", help="a variable as KEY=VALUE, or KEY=@FILE to read it (repeatable)")


def _vars(pairs: list[str] | None) -> dict[str, str]:
    from ..core.errors import ConfigError

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--var {pair!r} must be KEY=VALUE (or KEY=@FILE)")
        if value.startswith("@"):
            try:
                value = Path(value[1:]).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"--var {key}: cannot read {value[1:]!r}: {e.strerror}") from None
        out[key.strip()] = value
    return out


def _prompt(name: str, folder: Optional[str]):
    from ..prompts import prompt

    return prompt(name, folder=folder)


@prompt_app.command("ls")
def ls(folder: Optional[str] = DIR):
    """The prompts in the library: name, variables it needs, description (a broken file: one error line)."""
    from ..core.errors import ConfigError
    from ..prompts import PromptLibrary

    lib = PromptLibrary(folder)
    names = lib.names()
    if not names:
        print(f"no prompts in {lib.folder} (add .yaml or .jinja files)")
        return
    broken = 0
    for name in names:
        try:
            p = lib.get(name)
        except ConfigError as e:  # one bad file must not hide the rest
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            broken += 1
            continue
        print(f"{p.name}\t{', '.join(p.required) or '-'}\t{p.description}")
    if broken:
        sys.exit(2)


@prompt_app.command("show")
def show(name: str = typer.Argument(..., help="prompt name in the library, or a prompt file"),
         var: Optional[list[str]] = VAR, folder: Optional[str] = DIR):
    """Print the rendered messages, exactly as `run` sends them."""
    _prompt(name, folder).show(**_vars(var))


@prompt_app.command("run")
@with_sampling
def run(name: str = typer.Argument(..., help="prompt name in the library, or a prompt file"),
        var: Optional[list[str]] = VAR, folder: Optional[str] = DIR,
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help="model spec (default: the prompt's `model:`, else embedded)"),
        sampling: Sampling = None):
    """Render the prompt and print the model's answer (sampling flags override the prompt's)."""
    import llmkit as lk

    p = _prompt(name, folder)
    variables = _vars(var)
    p.render(**variables)  # a missing variable fails before a model is loaded
    spec = model if model is not None else (p.model or "")
    print(p.run(lk.model(spec), sampling=sampling, **variables).text)
