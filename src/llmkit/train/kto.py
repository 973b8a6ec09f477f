"""KTO (Ethayarajh et al. 2024). With ``ρ = log π(y|x) − log π_ref(y|x)`` and the reference point
``z = max(0, mean over mismatched pairs of ρ(y'|x))`` (no gradient):

    desirable    λ_D · (1 − σ(β(ρ − z)))
    undesirable  λ_U · (1 − σ(β(z − ρ)))

The mismatched pairs are the batch's prompts with its answers shifted by one, as TRL builds them.

Example:
    >>> from llmkit.train import kto
    >>> kto.run(data="feedback.jsonl", beta=0.1)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .config import resolve
from .data import IGNORE, collate, encode_pair, read_split, truncate
from .kto_config import KTOConfig
from .loop import TrainResult, fit
from .model import completion_logps, finish, load_for_training
from .preference import Reference, pair_tokens


def kto_loss(logps, ref_logps, kl_logps, ref_kl_logps, desirable, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    """Per-example KTO loss; ``desirable`` is a bool tensor. Returns (losses, z)."""
    import torch

    z = (kl_logps - ref_kl_logps).mean().detach().clamp(min=0)
    ratio = logps - ref_logps
    good = desirable_weight * (1 - torch.sigmoid(beta * (ratio - z)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (z - ratio)))
    return torch.where(desirable, good, bad), z


def unpaired(rows: list[dict]) -> list[dict]:
    """KTO rows as they are; preference rows split into a desirable and an undesirable example."""
    out = []
    for row in rows:
        if row["_format"] == "preference":
            out += [{"prompt": row["prompt"], "completion": row["chosen"], "label": True},
                    {"prompt": row["prompt"], "completion": row["rejected"], "label": False}]
        else:
            out.append(row)
    return out


def encode(tokenizer, rows: list[dict], cfg: KTOConfig) -> list[dict]:
    out = []
    for row in rows:
        ex = truncate(encode_pair(tokenizer, row["prompt"], row["completion"], cfg.chat_template), cfg.max_length)
        n_prompt = next((i for i, t in enumerate(ex["labels"]) if t != IGNORE), len(ex["labels"]))
        if n_prompt < len(ex["labels"]):
            out.append({**ex, "label": bool(row["label"]), "prompt_len": n_prompt})
    return out


def mismatched(group: list[dict]) -> list[dict]:
    """Each example's prompt with the previous example's answer (cycled), for the KL estimate."""
    out = []
    for i, ex in enumerate(group):
        other = group[i - 1]
        p, c = ex["input_ids"][:ex["prompt_len"]], other["input_ids"][other["prompt_len"]:]
        out.append({"input_ids": p + c, "labels": [IGNORE] * len(p) + c})
    return out


def run(config: KTOConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Train with KTO on labelled answers; see :class:`KTOConfig`."""
    import torch

    cfg = resolve(KTOConfig, config, fields, "kto")
    if cfg.batch_size < 2:
        raise ConfigError(f"batch_size={cfg.batch_size}: KTO estimates its KL term from mismatched pairs within a batch, "
                          "so it needs batch_size >= 2")
    train_rows, val_rows = read_split(cfg.data, cfg.eval_data, cfg.val_split, cfg.seed, ("kto", "preference"))
    model, tokenizer, info = load_for_training(cfg)
    pad = tokenizer.pad_token_id
    train, val = encode(tokenizer, unpaired(train_rows), cfg), encode(tokenizer, unpaired(val_rows), cfg)
    if not train:
        raise ConfigError(f"no example keeps an answer token within max_length={cfg.max_length}; raise --max-length")
    reference = Reference(model)
    for k in range(0, len(train + val), cfg.batch_size):  # reference log-probs of every matched pair, once
        group = (train + val)[k:k + cfg.batch_size]
        for ex, v in zip(group, reference(collate(group, pad)).tolist()):
            ex["ref"] = v

    def batch_of(group: list[dict]) -> dict:
        batch = collate(group, pad)
        batch["kl"] = collate(mismatched(group), pad) if len(group) > 1 else batch
        batch["ref"] = torch.tensor([ex["ref"] for ex in group])
        batch["desirable"] = torch.tensor([ex["label"] for ex in group])
        return batch

    def step_loss(model, batch):
        logps = completion_logps(model, batch)
        with torch.no_grad():
            kl_logps = completion_logps(model, batch["kl"])
        losses, z = kto_loss(logps, batch["ref"], kl_logps, reference(batch["kl"]), batch["desirable"], cfg.beta,
                             cfg.desirable_weight, cfg.undesirable_weight)
        return losses.sum(), len(losses), {"kl": float(z)}

    result = fit(cfg, model, train, val, step_loss, batch_of, cfg.out_dir(), pair_tokens)
    reference.release()
    result.summary.update(examples=len(train), desirable=sum(ex["label"] for ex in train))
    return finish(model, tokenizer, cfg, result, info)
