"""``SFTConfig``: supervised fine-tuning (full, LoRA, DoRA, QLoRA, prompt or prefix tuning)."""
from __future__ import annotations

from pydantic import Field

from .config import TrainConfig


class SFTConfig(TrainConfig):
    """Supervised fine-tuning on chat, prompt/completion or plain-text rows.

    Example:
        >>> SFTConfig(data="chat.jsonl", peft="lora", lora_r=8, epochs=3, learning_rate=1e-3)
    """

    train_on: str = Field("assistant", pattern="^(assistant|all)$",
                          description="which tokens carry the loss: assistant (the answers only; chat and completion "
                                      "rows) or all (every token, as in plain language modelling)")
