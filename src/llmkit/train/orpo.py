"""ORPO (Hong et al. 2024): ``L = NLL(y_w) − λ·log σ(log odds(y_w) − log odds(y_l))``, with
``odds(y) = P/(1−P)`` from the per-token mean log-probability ``log P`` of each answer (as TRL).

Example:
    >>> from llmkit.train import orpo
    >>> orpo.run(data="pairs.jsonl", beta=0.1)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import resolve
from .loop import TrainResult
from .orpo_config import ORPOConfig
from .preference import pair_logps, train_pairs


def log1mexp(x):
    """log(1 − exp(x)) for x < 0, stable at both ends (Mächler 2012)."""
    import torch

    return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def odds_ratio_term(chosen_mean, rejected_mean):
    """log σ(log odds ratio) per pair, from per-token mean log-probabilities."""
    import torch.nn.functional as F

    log_odds = (chosen_mean - rejected_mean) - (log1mexp(chosen_mean) - log1mexp(rejected_mean))
    return F.logsigmoid(log_odds)


def orpo_loss(chosen_mean, rejected_mean, beta: float):
    """Per-pair ORPO loss: the chosen answer's mean NLL minus β·log σ(log odds ratio)."""
    return -chosen_mean - beta * odds_ratio_term(chosen_mean.float(), rejected_mean.float())


def run(config: ORPOConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Train with ORPO on preference pairs; see :class:`ORPOConfig`."""
    cfg = resolve(ORPOConfig, config, fields, "orpo")

    def step_loss_of(model):
        def step_loss(model, batch):
            c, r, _, _ = pair_logps(model, batch, average=True)
            return orpo_loss(c, r, cfg.beta).sum(), len(c), {"nll": float(-c.mean()), "accuracy": float((c > r).float().mean())}
        return step_loss

    return train_pairs(cfg, step_loss_of, reference=False)
