"""DPO, IPO and hinge (SLiC) preference losses against the frozen starting model.

With log-ratios ``c = log π(y_w|x) − log π_ref(y_w|x)`` and ``r = log π(y_l|x) − log π_ref(y_l|x)``:

    sigmoid  −(1−ε)·log σ(β(c−r)) − ε·log σ(−β(c−r))      Rafailov et al. 2023 (ε: conservative DPO)
    ipo      (c/|y_w| − r/|y_l| − 1/(2β))²                 Azar et al. 2023, per-token means as TRL does
    hinge    max(0, 1 − β(c−r))                            Zhao et al. 2023 (SLiC)

Example:
    >>> from llmkit.train import dpo
    >>> dpo.run(data="pairs.jsonl", beta=0.1, loss_type="ipo", output_dir="runs/ipo")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import resolve
from .dpo_config import DPOConfig
from .loop import TrainResult
from .preference import pair_logps, train_pairs


def dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta: float, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0, chosen_len=None, rejected_len=None):
    """Per-pair loss from summed log-probabilities (lengths are needed by ``ipo``)."""
    import torch.nn.functional as F

    c, r = chosen - ref_chosen, rejected - ref_rejected
    if loss_type == "ipo":
        margin = c / chosen_len.clamp(min=1) - r / rejected_len.clamp(min=1)
        return (margin - 1 / (2 * beta)) ** 2
    logits = beta * (c - r)
    if loss_type == "hinge":
        return F.relu(1 - logits)
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def run(config: DPOConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Train with DPO/IPO/hinge on preference pairs; see :class:`DPOConfig`."""
    cfg = resolve(DPOConfig, config, fields, "dpo")

    def step_loss_of(model):
        def step_loss(model, batch):
            c, r, lc, lr = pair_logps(model, batch)
            loss = dpo_loss(c, r, batch["ref_chosen"], batch["ref_rejected"], cfg.beta, cfg.loss_type,
                            cfg.label_smoothing, lc, lr)
            margin = (c - batch["ref_chosen"] - r + batch["ref_rejected"]).detach()
            return loss.sum(), len(c), {"reward_margin": float(margin.mean()) * cfg.beta,
                                        "accuracy": float((margin > 0).float().mean())}
        return step_loss

    return train_pairs(cfg, step_loss_of, reference=True)
