"""Fine-tuning, alignment, distillation, merging, context extension, synthetic data and GGUF export.

Each method is a pair of files, ``<method>_config.py`` (every field with help text; the CLI flags and
YAML recipes come from it) and ``<method>.py`` (its ``run(config, **fields)``); they share
``data.py`` (rows, chat template, loss masks, packing), ``model.py`` (loading, PEFT adapters,
log-probabilities) and ``loop.py`` (the loop, checkpoints, curves).

Example:
    >>> import llmkit as lk
    >>> result = lk.train.run("sft", data="chat.jsonl", peft="lora", epochs=3)
    >>> result.load().chat("…")
    >>> from llmkit.train import dpo                      # or one method's module directly
    >>> dpo.run(lk.train.configure("dpo", "recipe.yaml", beta=0.1))
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["METHODS", "run", "configure", "config_class", "TrainConfig", "TrainResult"]

#: method name → (module, its config class). `llmkit train <method>` and `run()` read this.
METHODS: dict[str, tuple[str, str]] = {
    "sft": ("sft", "SFTConfig"),
    "reward": ("reward", "RewardConfig"),
    "dpo": ("dpo", "DPOConfig"),
    "kto": ("kto", "KTOConfig"),
    "orpo": ("orpo", "ORPOConfig"),
    "simpo": ("simpo", "SimPOConfig"),
    "grpo": ("grpo", "GRPOConfig"),
    "distill": ("distill", "DistillConfig"),
}


def config_class(method: str):
    """The config class of ``method`` (e.g. ``SFTConfig`` for "sft")."""
    from ..core.errors import ConfigError

    if method not in METHODS:
        raise ConfigError(f"unknown training method {method!r}; accepted: {', '.join(METHODS)}")
    mod, cls = METHODS[method]
    return getattr(importlib.import_module(f"{__name__}.{mod}_config"), cls)


def configure(method: str, recipe: str | Path | None = None, **fields: Any):
    """A validated config for ``method``: the YAML ``recipe`` (if any) with ``fields`` on top."""
    return config_class(method).from_yaml(recipe, **fields)


def run(method: str, config: Any = None, **fields: Any):
    """Train with ``method`` ("sft", "dpo", …): ``config`` is a config object or a YAML recipe path;
    keyword ``fields`` override it. Returns a :class:`TrainResult`."""
    config_class(method)  # names the accepted methods on a typo
    return importlib.import_module(f"{__name__}.{METHODS[method][0]}").run(config, **fields)


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name == "TrainResult":
        from .loop import TrainResult

        return TrainResult
    for mod, cls in METHODS.values():
        if name == cls:
            return config_class(mod)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
