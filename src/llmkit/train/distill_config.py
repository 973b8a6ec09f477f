"""``DistillConfig``: knowledge distillation from a teacher model."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .config import TrainConfig


class DistillConfig(TrainConfig):
    """Distil a teacher into the student (``model``).

    logits: token-level — match the teacher's next-token distribution on the data's answers
    (Hinton et al. 2015; needs the same tokenizer). sequence: sequence-level — the teacher answers
    every prompt, then the student is fine-tuned on those answers (Kim & Rush 2016; any teacher,
    local or remote, e.g. 'openai:gpt-4o-mini').

    Data: chat, prompt/completion or prompt rows (sequence mode uses only the prompts).

    Example:
        >>> DistillConfig(teacher="runs/big/merged", model="smollm2", data="chat.jsonl", mode="logits")
    """

    teacher: str = Field("", description="logits mode: a transformers folder (or 'smollm2') sharing the student's "
                                         "tokenizer; sequence mode: any llmkit model spec")
    mode: Literal["logits", "sequence"] = Field("logits", description="logits (token-level KL to the teacher) or "
                                                                      "sequence (fine-tune on the teacher's answers)")
    temperature: float = Field(2.0, gt=0, description="logits mode: softening temperature T of both distributions (loss × T²)")
    alpha: float = Field(1.0, ge=0, le=1, description="logits mode: weight of the KL term; 1 − alpha weighs the "
                                                      "cross-entropy on the data's own answers")
    divergence: Literal["forward", "reverse"] = Field("forward", description="logits mode: KL(teacher‖student) "
                                                                             "(mean-seeking) or KL(student‖teacher) (mode-seeking)")
    max_new_tokens: int = Field(256, ge=1, description="sequence mode: most tokens per teacher answer")
    teacher_temperature: float = Field(0.0, ge=0, description="sequence mode: the teacher's sampling temperature (0 = greedy)")
