"""Reward functions for `llmkit train grpo --reward examples/recipes/rewards.py:NAME`.

A reward is fn(prompts, completions, **columns) -> list[float]; extra columns of the data rows
(e.g. "answer") arrive as keyword lists, one entry per completion.
"""
import re


def concise(prompts, completions, **columns):
    """Prefer answers under 30 words."""
    return [1.0 if len(c.split()) <= 30 else -0.5 for c in completions]


def correct_number(prompts, completions, answer, **columns):
    """1 when the last number in the completion equals the row's "answer" column."""
    out = []
    for c, a in zip(completions, answer):
        nums = re.findall(r"-?\d+(?:\.\d+)?", c)
        out.append(1.0 if nums and float(nums[-1]) == float(a) else 0.0)
    return out
