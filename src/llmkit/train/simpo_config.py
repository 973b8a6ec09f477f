"""``SimPOConfig``: simple preference optimisation (length-normalised, no reference model)."""
from __future__ import annotations

from pydantic import Field

from .config import TrainConfig


class SimPOConfig(TrainConfig):
    """SimPO (Meng et al. 2024): a margin on per-token mean log-probabilities, no reference model.

    Data: {"prompt", "chosen", "rejected"} rows.

    Example:
        >>> SimPOConfig(data="pairs.jsonl", beta=2.0, gamma=0.5)
    """

    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (AdamW)", json_schema_extra={"short": "--lr"})
    beta: float = Field(2.0, gt=0, description="reward scale β (the paper uses 2.0–2.5)")
    gamma: float = Field(0.5, ge=0, description="target reward margin γ (TRL's simpo_gamma)")
    sft_weight: float = Field(0.0, ge=0, description="add this × the NLL of the chosen answers (token mean over the batch, CPO's "
                                                        "cpo_alpha; 0 = pure SimPO)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="assumed probability that a preference label is flipped")
