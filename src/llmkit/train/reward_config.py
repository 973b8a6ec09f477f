"""``RewardConfig``: a Bradley–Terry reward model trained on preference pairs."""
from __future__ import annotations

from pydantic import Field

from .config import TrainConfig


class RewardConfig(TrainConfig):
    """A scalar reward head on the model, trained so chosen answers outscore rejected ones
    (Bradley–Terry: ``−log σ(r_w − r_l − margin)``, as in Ouyang et al. 2022 and TRL's RewardTrainer).

    Data: {"prompt", "chosen", "rejected"} rows, optionally with a numeric "margin".
    peft may be none, lora or dora; the new score head is always trained in full.

    Example:
        >>> RewardConfig(data="pairs.jsonl", peft="lora")
    """

    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate (AdamW)", json_schema_extra={"short": "--lr"})
    center_rewards: float = Field(0.0, ge=0, description="add this × mean((r_w + r_l)²) so rewards stay centred on 0 "
                                                         "(Eisenstein et al. 2023; TRL's center_rewards_coefficient)")
