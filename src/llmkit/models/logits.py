"""Token selection for torch backends: a :class:`Sampling` turned into logits processors.

transformers' own processors are reused wherever they exist (repetition penalty, temperature,
top-k, top-p, min-p, typical); only the OpenAI-style frequency/presence penalty is written
here. The order is fixed: penalties, then temperature, then the truncations
(top-k → top-p → min-p → typical), so every truncation sees the tempered distribution,
as in ``model.generate``.

torch and transformers are imported inside the functions: ``import llmkit`` stays light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.sampling import Sampling

if TYPE_CHECKING:
    import torch
    from transformers import LogitsProcessorList


def build_processors(s: Sampling, prompt_len: int = 0, *, warpers: bool | None = None) -> LogitsProcessorList:
    """The processors that realise ``s``, to be called as ``scores = procs(input_ids, scores)``.

    Args:
        s: the sampling settings. Fields at ``None`` (or at their neutral value: top_k=0,
            top_p=1, min_p=0, typical_p=1, repetition_penalty=1, penalties 0) add nothing.
        prompt_len: tokens of ``input_ids`` that are prompt; frequency/presence penalties
            count only the tokens after them (OpenAI semantics). The repetition penalty sees
            prompt and output alike, as in ``model.generate``.
        warpers: include temperature and the truncations. Default: unless ``s`` is greedy
            (temperature 0), where they could only drop the top token (typical-p can).

    Example:
        >>> procs = build_processors(Sampling(temperature=0.7, top_k=40, frequency_penalty=0.5), prompt_len=12)
        >>> scores = procs(input_ids, logits)          # input_ids: (batch, len), logits: (batch, vocab)
    """
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    procs = LogitsProcessorList()
    if s.repetition_penalty is not None and s.repetition_penalty != 1:
        procs.append(RepetitionPenaltyLogitsProcessor(float(s.repetition_penalty)))
    if s.frequency_penalty or s.presence_penalty:
        procs.append(FrequencyPresencePenalty(s.frequency_penalty or 0.0, s.presence_penalty or 0.0, prompt_len))
    if warpers is None:
        warpers = s.temperature != 0
    if not warpers:
        return procs
    if s.temperature is not None and s.temperature not in (0, 1):
        procs.append(TemperatureLogitsWarper(float(s.temperature)))
    if s.top_k:
        procs.append(TopKLogitsWarper(int(s.top_k)))
    if s.top_p is not None and s.top_p < 1:
        procs.append(TopPLogitsWarper(float(s.top_p)))
    if s.min_p:
        procs.append(MinPLogitsWarper(float(s.min_p)))
    if s.typical_p is not None and s.typical_p < 1:
        procs.append(TypicalLogitsWarper(float(s.typical_p)))
    return procs


class FrequencyPresencePenalty:
    """OpenAI's penalties: ``logit[t] -= count(t) * frequency + (count(t) > 0) * presence``.

    ``count(t)`` is how often ``t`` occurs among the *generated* tokens, i.e. ``input_ids``
    after the first ``prompt_len`` positions. Negative values encourage repetition.

    Example:
        >>> p = FrequencyPresencePenalty(frequency=0.5, presence=0.2, prompt_len=3)
        >>> scores = p(torch.tensor([[7, 7, 7, 5, 5, 9]]), logits)   # counts: 5→2, 9→1; 7 is prompt
    """

    def __init__(self, frequency: float = 0.0, presence: float = 0.0, prompt_len: int = 0):
        self.frequency, self.presence, self.prompt_len = float(frequency), float(presence), prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        generated = input_ids[:, self.prompt_len:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros(scores.shape, dtype=scores.dtype, device=scores.device)
        counts.scatter_add_(1, generated, torch.ones(generated.shape, dtype=scores.dtype, device=scores.device))
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence


def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from ``softmax(logits)``; ``-inf`` entries are never drawn.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample(torch.tensor([[0.0, 1.0, float("-inf")]]), g)   # tensor([0]) or tensor([1])
    """
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token per row: ``greedy(torch.tensor([[0.1, 2.0]]))`` → ``tensor([1])``."""
    return logits.argmax(dim=-1)
