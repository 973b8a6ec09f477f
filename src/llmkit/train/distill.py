"""Distillation, token-level and sequence-level.

logits   per trained token, ``T²·KL(softmax(t/T) ‖ softmax(s/T))`` (or the reverse KL), mixed with the
         data's cross-entropy by ``alpha`` (Hinton et al. 2015). Teacher and student must share the tokenizer.
sequence the teacher answers each prompt (written to ``teacher.jsonl`` in the run folder, so the data can be
         inspected and reused), then plain SFT on those answers (Kim & Rush 2016).

Example:
    >>> from llmkit.train import distill
    >>> distill.run(teacher="runs/big/merged", data="chat.jsonl", mode="logits", temperature=2.0)
    >>> distill.run(teacher="openai:gpt-4o-mini", data="prompts.jsonl", mode="sequence")
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .config import resolve
from .data import IGNORE, as_messages, collate, read_split
from .distill_config import DistillConfig
from ..core.files import atomic_write
from .loop import TrainResult, fit
from .model import logits_at, finish, load_for_training, model_path


def kd_loss(student_logits, teacher_logits, targets, temperature: float, alpha: float = 1.0, divergence: str = "forward"):
    """Summed distillation loss over the labelled positions of ``[B, K, V]`` logits, and their count."""
    import torch
    import torch.nn.functional as F

    mask = targets != IGNORE
    s = F.log_softmax(student_logits.float() / temperature, -1)
    t = F.log_softmax(teacher_logits.float() / temperature, -1)
    p, q = (t, s) if divergence == "forward" else (s, t)
    kl = (p.exp() * (p - q)).sum(-1) * temperature ** 2
    loss = (kl * mask).sum() * alpha
    if alpha < 1:
        ce = F.cross_entropy(student_logits.float().reshape(-1, student_logits.shape[-1]), targets.reshape(-1),
                             ignore_index=IGNORE, reduction="sum")
        loss = loss + (1 - alpha) * ce
    return loss, mask.sum().to(torch.int64)


def load_teacher(spec: str, student_tokenizer):
    from ..models.hf import embedded_dir, load_pretrained

    name = model_path(spec)
    if not name:
        raise ConfigError("distillation needs a teacher: --teacher FOLDER (logits mode) or a model spec (sequence mode)")
    teacher, tok = load_pretrained(str(embedded_dir()) if name.lower() == "smollm2" else name)
    if tok.get_vocab() != student_tokenizer.get_vocab():
        raise ConfigError(f"teacher {spec!r} has a different tokenizer from the student; token-level distillation "
                          "compares distributions over one vocabulary — use mode=sequence")
    return teacher.eval().requires_grad_(False)


def run(config: DistillConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Distil ``teacher`` into ``model``; see :class:`DistillConfig`."""
    cfg = resolve(DistillConfig, config, fields, "distill")
    if cfg.mode == "sequence":
        return _sequence(cfg)
    import torch

    from .sft import FORMATS, encode

    train_rows, val_rows = read_split(cfg.data, cfg.eval_data, cfg.val_split, cfg.seed, FORMATS)
    model, tokenizer, info = load_for_training(cfg)
    teacher = load_teacher(cfg.teacher, tokenizer)
    from .sft_config import SFTConfig

    shaped = SFTConfig(**{k: v for k, v in cfg.model_dump().items() if k in SFTConfig.model_fields})
    train, _ = encode(tokenizer, train_rows, shaped)
    val, _ = encode(tokenizer, val_rows, shaped)

    def step_loss(model, batch):
        target = batch["labels"][:, 1:]
        keep = (target != IGNORE).any(0).nonzero().squeeze(1)
        student = logits_at(model, batch, keep)
        with torch.no_grad():
            teach = logits_at(teacher, batch, keep)
        return kd_loss(student, teach, target[:, keep], cfg.temperature, cfg.alpha, cfg.divergence)

    pad = tokenizer.pad_token_id
    result = fit(cfg, model, train, val, step_loss, lambda g: collate(g, pad), cfg.out_dir())
    return finish(model, tokenizer, cfg, result, info)


def teacher_prompts(rows: list[dict]) -> list[list[dict]]:
    """The conversation to hand the teacher for each row: a prompt, or a chat up to its last assistant turn."""
    out = []
    for row in rows:
        if "messages" in row:
            msgs = row["messages"]
            last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
            out.append([{"role": m["role"], "content": m["content"]} for m in msgs[:last]])
        else:
            out.append(as_messages(row["prompt"], "user"))
    return out


def _sequence(cfg: DistillConfig) -> TrainResult:
    import llmkit as lk

    from ..core.progress import loading
    from . import sft

    if not cfg.teacher:
        raise ConfigError("sequence distillation needs --teacher: any model spec, e.g. 'smollm2' or 'openai:gpt-4o-mini'")
    train_rows, val_rows = read_split(cfg.data, cfg.eval_data, cfg.val_split, cfg.seed, ("chat", "completion", "prompt"))
    teacher = lk.model() if model_path(cfg.teacher).lower() == "smollm2" else lk.model(cfg.teacher)
    out = cfg.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in (("teacher.jsonl", train_rows), ("teacher-val.jsonl", val_rows)):
        if not rows:
            continue
        lines = []
        with loading(f"Teacher {cfg.teacher} answering {len(rows)} prompts"):
            for convo in teacher_prompts(rows):
                answer = teacher.chat(convo, temperature=cfg.teacher_temperature, max_tokens=cfg.max_new_tokens).text
                lines.append(json.dumps({"messages": convo + [{"role": "assistant", "content": answer}]}))
        atomic_write(out / name, ("\n".join(lines) + "\n").encode())
        files[name] = out / name
    fields = {k: v for k, v in cfg.model_dump().items() if k in sft.SFTConfig.model_fields}
    fields.update(data=str(files["teacher.jsonl"]), eval_data=str(files["teacher-val.jsonl"]) if "teacher-val.jsonl" in files else None,
                  output_dir=str(out), val_split=0.0 if "teacher-val.jsonl" not in files else cfg.val_split)
    result = sft.run(sft.SFTConfig(**fields))
    result.summary.update(method="distill", teacher_data=str(files["teacher.jsonl"]))
    return result
