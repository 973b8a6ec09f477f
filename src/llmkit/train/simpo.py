"""SimPO (Meng et al. 2024): ``−log σ(β·(mean log π(y_w) − mean log π(y_l)) − γ)``; TRL runs it as
``CPOTrainer(loss_type="simpo")`` with ``cpo_alpha`` as the optional SFT term.

Example:
    >>> from llmkit.train import simpo
    >>> simpo.run(data="pairs.jsonl", beta=2.0, gamma=0.5)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import resolve
from .loop import TrainResult
from .preference import pair_logps, train_pairs
from .simpo_config import SimPOConfig


def simpo_loss(chosen_mean, rejected_mean, beta: float, gamma: float, label_smoothing: float = 0.0):
    """Per-pair SimPO loss from per-token mean log-probabilities."""
    import torch.nn.functional as F

    logits = beta * (chosen_mean - rejected_mean) - gamma
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def run(config: SimPOConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Train with SimPO on preference pairs; see :class:`SimPOConfig`."""
    cfg = resolve(SimPOConfig, config, fields, "simpo")

    def step_loss_of(model):
        def step_loss(model, batch):
            c, r, lc, _ = pair_logps(model, batch, average=True)
            cd, rd = c.detach(), r.detach()
            loss = simpo_loss(c, r, cfg.beta, cfg.gamma, cfg.label_smoothing).mean()
            if cfg.sft_weight:  # CPO's α term: the token-mean NLL over every chosen answer token of the batch
                loss = loss - cfg.sft_weight * (c * lc).sum() / lc.sum().clamp(min=1)
            return loss * len(c), len(c), {"margin": float((cd - rd).mean()), "accuracy": float((cd > rd).float().mean())}
        return step_loss

    return train_pairs(cfg, step_loss_of, reference=False)
