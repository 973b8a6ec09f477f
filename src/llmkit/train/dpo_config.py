"""``DPOConfig``: Direct Preference Optimization and its IPO and hinge variants."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .config import TrainConfig


class DPOConfig(TrainConfig):
    """Preference tuning against the frozen starting model (DPO, Rafailov et al. 2023; IPO, Azar et al. 2023).

    Data: {"prompt", "chosen", "rejected"} rows.

    Example:
        >>> DPOConfig(data="pairs.jsonl", beta=0.1, loss_type="ipo")
    """

    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (AdamW)", json_schema_extra={"short": "--lr"})
    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference model (DPO's β; IPO's "
                                               "margin is 1/(2β))")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field(
        "sigmoid", description="sigmoid (DPO), ipo (squared loss on per-token mean log-ratios, Azar et al.) or hinge (SLiC)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO: the assumed probability that a "
                                                                  "preference label is flipped (sigmoid loss only)")
