"""``KTOConfig``: Kahneman–Tversky optimisation on unpaired good/bad answers."""
from __future__ import annotations

from pydantic import Field

from .config import TrainConfig


class KTOConfig(TrainConfig):
    """KTO (Ethayarajh et al. 2024): learn from answers labelled desirable or undesirable, no pairs needed.

    Data: {"prompt", "completion", "label": true/false} rows, or preference rows (each pair becomes
    one desirable and one undesirable example). The KL reference point is estimated in each batch
    from mismatched (prompt, answer) pairs, so ``batch_size`` must be at least 2.

    Example:
        >>> KTOConfig(data="feedback.jsonl", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0)
    """

    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (AdamW)", json_schema_extra={"short": "--lr"})
    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference model")
    desirable_weight: float = Field(1.0, gt=0, description="weight of desirable examples' losses (λ_D)")
    undesirable_weight: float = Field(1.0, gt=0, description="weight of undesirable examples' losses (λ_U)")
