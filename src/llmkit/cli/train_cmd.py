"""``llmkit train <method>``: one command per training method, its flags derived from the method's
config class, laid over an optional YAML recipe (``--config recipe.yaml --lr 1e-4``)."""

import re
from pathlib import Path
from typing import Optional

import typer

from ..train import METHODS, config_class
from .options import with_config
from .synth_cmd import synth_app

train_app = typer.Typer(help="Fine-tune, align and distil models (`llmkit train sft --help`).", no_args_is_help=True)

RECIPE = typer.Option(None, "--config", "-c", help="YAML recipe of config fields; flags given on the command line win")


def _summary(result) -> str:
    s = result.summary

    def arrow(a, b):
        return f"{a:.4f} → {b:.4f}" if a is not None and b is not None else "n/a"

    lines = [f"{s['steps']} steps · {s['tokens']:,} tokens · {s['tokens_per_s']:,.0f} tok/s · {s['seconds']:.1f} s"
             + (" · stopped early" if s.get("stopped_early") else ""),
             f"train loss {arrow(s['first_train_loss'], s['train_loss'])}",
             f"val loss   {arrow(s['first_val_loss'], s['val_loss'])}" if s.get("val_loss") is not None else None,
             f"model      {result.final_dir}" + (f"\nmerged     {result.merged_dir}" if result.merged_dir else ""),
             f"gguf       {result.gguf}\nserve      llmkit serve -m llamacpp:{result.gguf}" if result.gguf else None,
             f"curves     {result.output_dir / 'curves.png'}  (metrics.json beside it)"]
    return "\n".join(line for line in lines if line)


def _add(method: str) -> None:
    cls = config_class(method)

    @with_config(cls, make=lambda _cls, flags: flags, skip=("method",))
    def command(recipe: Optional[Path] = RECIPE, config: dict = None):
        from ..train import run

        cfg = cls.from_yaml(recipe, **config)
        print(_summary(run(method, cfg)))

    doc = (cls.__doc__ or "").strip()
    first = " ".join(doc.split("\n\n")[0].split())  # the first paragraph, up to its first sentence
    short = re.split(r"(?<!al)\.\s", first)[0].rstrip(".").replace("``", "") + "."  # not at "et al. "
    train_app.command(name=method, help=doc, short_help=short)(command)


for _method in METHODS:
    _add(_method)
train_app.add_typer(synth_app, name="synth")
