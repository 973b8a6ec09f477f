"""``ORPOConfig``: odds-ratio preference optimisation (no reference model)."""
from __future__ import annotations

from pydantic import Field

from .config import TrainConfig


class ORPOConfig(TrainConfig):
    """SFT on the chosen answers plus an odds-ratio penalty on the rejected ones (Hong et al. 2024).

    Data: {"prompt", "chosen", "rejected"} rows. No reference model, so half DPO's forward passes.

    Example:
        >>> ORPOConfig(data="pairs.jsonl", beta=0.1)
    """

    learning_rate: float = Field(8e-5, gt=0, description="peak learning rate (AdamW)", json_schema_extra={"short": "--lr"})
    beta: float = Field(0.1, gt=0, description="weight of the odds-ratio term against the SFT loss (ORPO's λ)")
