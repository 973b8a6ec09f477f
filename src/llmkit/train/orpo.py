"""ORPO (Hong et al. 2024): ``L = NLL(y_w) − λ·log σ(log odds(y_w) − log odds(y_l))``, with
``odds(y) = P/(1−P)`` from the per-token mean log-probability ``log P`` of each answer. As in TRL's
ORPOTrainer, the NLL term is the token mean over the chosen sequences of the batch, prompt tokens
included, so ORPO projects every position onto the vocabulary, not only the answers'.

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
from .data import IGNORE
from .model import token_logps
from .preference import train_pairs


def log1mexp(x):
    """log(1 − exp(x)) for x < 0, stable at both ends (Mächler 2012)."""
    import torch

    return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def odds_ratio_term(chosen_mean, rejected_mean):
    """log σ(log odds ratio) per pair, from per-token mean log-probabilities."""
    import torch.nn.functional as F

    log_odds = (chosen_mean - rejected_mean) - (log1mexp(chosen_mean) - log1mexp(rejected_mean))
    return F.logsigmoid(log_odds)


def orpo_loss(model, batch: dict, beta: float):
    """ORPO on a pair batch: ``(loss × pairs, pairs, metrics)``, the loss being the batch's NLL over
    its chosen sequences minus the mean of β·log σ(log odds ratio) over its pairs (TRL's reduction)."""
    full = {**batch, "labels": batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)}
    logps, mask = token_logps(model, full)  # every non-pad position: the longest row spans all columns
    answer = batch["labels"][:, 1:] != IGNORE
    means = (logps * answer).sum(-1) / answer.sum(-1).clamp(min=1)
    half = means.shape[0] // 2
    c, r = means[:half], means[half:]
    nll = -(logps[:half] * mask[:half]).sum() / mask[:half].sum().clamp(min=1)
    ratio = beta * odds_ratio_term(c.float(), r.float())
    loss = nll - ratio.mean()
    cd, rd = c.detach(), r.detach()
    return loss * half, half, {"nll": float(nll.detach()), "accuracy": float((cd > rd).float().mean())}


def run(config: ORPOConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Train with ORPO on preference pairs; see :class:`ORPOConfig`."""
    cfg = resolve(ORPOConfig, config, fields, "orpo")

    def step_loss_of(model):
        return lambda model, batch: orpo_loss(model, batch, cfg.beta)

    return train_pairs(cfg, step_loss_of, reference=False)
