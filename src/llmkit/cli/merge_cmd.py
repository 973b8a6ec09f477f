"""``llmkit merge config.yaml -o OUT`` and ``llmkit merge-lora BASE ADAPTER -o OUT``.

The merge itself is described by the YAML (mergekit's format, see ``train/merge_config.py``); the
flags only say where the result goes. A LoRA merge has nothing to configure but two folders, so it
is its own command rather than a YAML method.
"""
from __future__ import annotations

import re
from pathlib import Path

import typer

from ..core.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"2GB"``, ``"500MB"``, ``"1.5G"`` or a byte count → bytes (powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"--max-shard-size {text!r} is not a size; give e.g. 2GB, 500MB or a byte count")
    return int(float(m[1]) * 1024 ** " KMGT".index(m[2].upper() or " "))


OUT = typer.Option(..., "--out", "-o", help="output folder (created; written to a temp folder and renamed at the end)")
OVERWRITE = typer.Option(False, "--overwrite", help="replace OUT if it exists and is not empty")
SHARD = typer.Option("2GB", "--max-shard-size", help="largest safetensors file written; more tensors go to further shards")


def merge(config_path: Path = typer.Argument(..., help="merge YAML in mergekit's format (merge_method, base_model, "
                                                        "models, parameters, dtype)"),
          out: Path = OUT, overwrite: bool = OVERWRITE, max_shard_size: str = SHARD):
    """Merge models as the YAML says: linear, slerp, task_arithmetic, ties, dare_linear or dare_ties.

    Works tensor by tensor, so memory stays near one tensor per model. Prints the output folder."""
    from ..train.merge import merge as run

    print(run(config_path, out, max_shard_size=parse_size(max_shard_size), overwrite=overwrite))


def merge_lora_cmd(base: Path = typer.Argument(..., help="the base model's transformers folder (*.safetensors)"),
                   adapter: Path = typer.Argument(..., help="PEFT LoRA/DoRA adapter folder (adapter_config.json, "
                                                            "adapter_model.safetensors)"),
                   out: Path = OUT, overwrite: bool = OVERWRITE, max_shard_size: str = SHARD):
    """Merge a LoRA or DoRA adapter into its base model's weights (what PEFT's merge_and_unload does),
    tensor by tensor. Prints the output folder."""
    from ..train.merge_lora import merge_lora

    print(merge_lora(base, adapter, out, max_shard_size=parse_size(max_shard_size), overwrite=overwrite))
