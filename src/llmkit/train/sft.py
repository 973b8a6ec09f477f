"""Supervised fine-tuning: next-token cross-entropy on the answers.

Example:
    >>> import llmkit as lk
    >>> run = lk.train.run("sft", data="chat.jsonl", peft="lora", epochs=3, output_dir="runs/sft")
    >>> # or: from llmkit.train import sft; sft.run(SFTConfig(...))
    >>> run.summary["val_loss"], run.final_dir        # adapter in final/, base+adapter in merged/
    >>> run.load().chat("…").text
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import resolve
from .data import IGNORE, collate, encode_sft, pack, read_split
from .loop import TrainResult, fit
from .model import finish, load_for_training, token_loss
from .sft_config import SFTConfig

FORMATS = ("chat", "completion", "text")


def encode(tokenizer, rows: list[dict], cfg: SFTConfig) -> tuple[list[dict], int]:
    """Rows → training examples (labels per ``cfg.train_on``), packed when ``cfg.packing``."""
    examples, dropped = encode_sft(tokenizer, rows, cfg.max_length, cfg.chat_template) if rows else ([], 0)
    if cfg.train_on == "all":
        examples = [{**e, "labels": list(e["input_ids"])} for e in examples]
    return (pack(examples, cfg.max_length) if cfg.packing else examples), dropped


def run(config: SFTConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data``; see :class:`SFTConfig` for every knob.

    Args:
        config: an SFTConfig, a YAML recipe path, or None; keyword ``fields`` override it.
    """
    cfg = resolve(SFTConfig, config, fields, "sft")
    train_rows, val_rows = read_split(cfg.data, cfg.eval_data, cfg.val_split, cfg.seed, FORMATS)
    model, tokenizer, info = load_for_training(cfg)
    train, dropped = encode(tokenizer, train_rows, cfg)
    val, _ = encode(tokenizer, val_rows, cfg)
    pad = tokenizer.pad_token_id
    result = fit(cfg, model, train, val, token_loss, lambda group: collate(group, pad), cfg.out_dir())
    result.summary.update(examples=len(train_rows), dropped=dropped,
                          trained_tokens=sum(sum(t != IGNORE for t in e["labels"]) for e in train))
    return finish(model, tokenizer, cfg, result, info)
