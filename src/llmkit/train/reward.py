"""Reward models: a scalar head on the language model, trained with the Bradley–Terry loss, and
``RewardModel`` to score answers with one (as a GRPO reward or a judge).

Example:
    >>> from llmkit.train import reward
    >>> run = reward.run(data="pairs.jsonl", peft="lora", output_dir="runs/rm")
    >>> rm = reward.RewardModel(run.merged_dir)
    >>> rm.score(["What is 2+2?"], ["4"])          # [1.73]
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .config import resolve
from .data import collate, encode_pair, read_split, truncate
from .loop import TrainResult, fit
from .model import finish, model_path
from .preference import pair_tokens
from .reward_config import RewardConfig


def reward_loss(chosen, rejected, margin=None, center: float = 0.0):
    """Per-pair Bradley–Terry loss ``−log σ(r_w − r_l − margin)`` (+ centring)."""
    import torch.nn.functional as F

    diff = chosen - rejected - (margin if margin is not None else 0.0)
    return -F.logsigmoid(diff) + center * (chosen + rejected) ** 2


def load_reward_model(cfg: RewardConfig) -> tuple[Any, Any, dict]:
    """The base model with a fresh 1-output score head, and an adapter when ``cfg.peft`` asks."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..models.hf import _offline, embedded_dir

    if cfg.peft not in ("none", "lora", "dora"):
        raise ConfigError(f"peft={cfg.peft!r} is not supported for reward models; accepted: none, lora, dora")
    name = model_path(cfg.model)
    base = str(embedded_dir()) if name.lower() == "smollm2" else name
    torch.manual_seed(cfg.seed)
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report says "score.weight newly initialized": that is the point
    with _offline(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, local_files_only=True,
                                                                   dtype=getattr(torch, cfg.dtype))
    hf_logging.set_verbosity(level)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False
    if cfg.peft != "none":
        from peft import LoraConfig, TaskType, get_peft_model

        target: Any = "all-linear" if cfg.target_modules == ["all-linear"] else cfg.target_modules
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout, target_modules=target,
                                                 use_dora=cfg.peft == "dora"))
    return model, tokenizer, {"peft": cfg.peft, "base": base}


def scores(model, batch: dict):
    """One scalar per row: the head's output at the row's last real token."""
    kw = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    return model(**kw, use_cache=False).logits[:, 0].float()


def run(config: RewardConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Train a reward model on preference pairs; see :class:`RewardConfig`."""
    import torch

    cfg = resolve(RewardConfig, config, fields, "reward")
    if cfg.packing:
        raise ConfigError("packing=true does not apply to reward models (one score per sequence); set packing=false")
    train_rows, val_rows = read_split(cfg.data, cfg.eval_data, cfg.val_split, cfg.seed, "preference")
    model, tokenizer, info = load_reward_model(cfg)
    pad = tokenizer.pad_token_id

    def encode(rows):
        return [{side: truncate(encode_pair(tokenizer, r["prompt"], r[side], cfg.chat_template), cfg.max_length)
                 for side in ("chosen", "rejected")} | {"margin": float(r.get("margin", 0.0))} for r in rows]

    def batch_of(group):
        batch = collate([p["chosen"] for p in group] + [p["rejected"] for p in group], pad)
        batch["margin"] = torch.tensor([p["margin"] for p in group])
        return batch

    def step_loss(model, batch):
        r = scores(model, batch)
        c, rj = r[: len(r) // 2], r[len(r) // 2:]
        loss = reward_loss(c, rj, batch["margin"], cfg.center_rewards)
        return loss.sum(), len(c), {"accuracy": float((c.detach() > rj.detach()).float().mean())}

    result = fit(cfg, model, encode(train_rows), encode(val_rows), step_loss, batch_of, cfg.out_dir(), pair_tokens)
    model.config.use_cache = True
    return finish(model, tokenizer, cfg, result, info)


class RewardModel:
    """Score (prompt, answer) pairs with a trained reward model folder.

    Example:
        >>> RewardModel("runs/rm/merged").score(["Capital of France?"], ["Paris."])
    """

    def __init__(self, path: str | Path, chat_template: bool = True):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..models.hf import _offline

        p = Path(path).expanduser()
        if not (p / "config.json").exists():
            raise ConfigError(f"reward model folder {str(p)!r} has no config.json; pass a run's merged/ or final/ "
                              "folder (a full model, not an adapter)")
        with _offline():
            self.tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(p, local_files_only=True, dtype=torch.float32).eval()
        self.chat_template = chat_template

    def score(self, prompts: list, completions: list[str]) -> list[float]:
        """One reward per (prompt, completion)."""
        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        rows = [encode_pair(self.tokenizer, p, c, self.chat_template) for p, c in zip(prompts, completions)]
        with torch.no_grad():
            return scores(self.model, collate(rows, pad)).tolist()
