"""``GRPOConfig``: group relative policy optimisation with rewards written in Python."""
from __future__ import annotations

from pydantic import Field

from .config import TrainConfig


class GRPOConfig(TrainConfig):
    """Online RL (GRPO, Shao et al. 2024): sample a group of answers per prompt, score them with
    Python reward functions, and push up the answers that beat their group's mean.

    Data: {"prompt": …} rows (extra columns are passed to the reward functions by name).
    A reward function is ``fn(prompts, completions, **columns) -> list[float]``, named as
    ``path/to/rewards.py:fn`` or ``package.module:fn``; several are summed.

    Example:
        >>> GRPOConfig(data="prompts.jsonl", reward=["rewards.py:is_polite"], num_generations=4)
    """

    learning_rate: float = Field(1e-5, gt=0, description="peak learning rate (AdamW)", json_schema_extra={"short": "--lr"})
    val_split: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of prompts held out (each validation samples and "
                                                              "scores answers; 0 = none)")
    batch_size: int = Field(2, ge=1, description="prompts per forward pass (each gets --num-generations answers)")
    reward: list[str] = Field(default_factory=list, description="reward functions, 'file.py:function' or "
                                                               "'package.module:function' (repeatable; summed)")
    reward_model: str | None = Field(None, description="a reward model folder (from `llmkit train reward`) whose score "
                                                       "is added to the reward functions'")
    num_generations: int = Field(4, ge=2, description="answers sampled per prompt (the group)")
    max_new_tokens: int = Field(64, ge=1, description="most tokens per sampled answer")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the answers")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of the answers")
    beta: float = Field(0.04, ge=0, description="KL penalty towards the starting model (k3 estimator; 0 = none, no reference kept)")
    scale_rewards: bool = Field(True, description="divide advantages by the group's reward std (the paper); false: "
                                                  "only subtract the mean (Dr. GRPO, Liu et al. 2025)")
