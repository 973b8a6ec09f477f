"""``llmkit export``: a transformers folder → GGUF for llama.cpp (and a PEFT LoRA → GGUF LoRA).

    llmkit export runs/sft/final -o model.gguf --quant q8_0
    llmkit export runs/base --lora runs/lora/final -o adapter.gguf            # lk.model(..., lora="adapter.gguf")
    llmkit export runs/base --lora runs/lora/final --merge-lora -o merged.gguf

Prints the file written and its size. The conversion lives in ``llmkit.train.export`` (LoRA: ``llmkit.train.export_lora``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export(model_dir: Path = typer.Argument(..., help="transformers model folder (config.json, *.safetensors, tokenizer.json); "
                                                       "with --lora, the adapter's base"),
           out: Path = typer.Option(..., "--out", "-o", help="the .gguf file to write"),
           quant: Optional[str] = typer.Option(None, "--quant", "-q", help="model: f32, f16, bf16, q8_0 (default) or q4_k_m; "
                                                                           "LoRA adapter: f16 (default), f32 or bf16"),
           lora: Optional[Path] = typer.Option(None, "--lora", help="PEFT LoRA adapter folder: write a GGUF LoRA for MODEL_DIR instead"),
           merge_lora: bool = typer.Option(False, "--merge-lora", help="with --lora: merge the adapter into MODEL_DIR and export the merged model")):
    """Export a model to GGUF for llama.cpp, or a LoRA adapter to a GGUF LoRA (--lora)."""
    from ..core.errors import ConfigError
    from ..train.export import export_gguf
    from ..train.export_lora import export_lora_gguf

    if merge_lora and lora is None:
        raise ConfigError("--merge-lora needs --lora ADAPTER_DIR (the adapter to merge into MODEL_DIR)")
    if lora is not None and not merge_lora:
        path, what = export_lora_gguf(lora, out, base_dir=model_dir, dtype=quant or "f16"), f"LoRA, {quant or 'f16'}"
    else:
        path, what = export_gguf(model_dir, out, quant=quant or "q8_0", merge_lora=lora), quant or "q8_0"
    print(f"{path}  ({_size(path.stat().st_size)}, {what})")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
