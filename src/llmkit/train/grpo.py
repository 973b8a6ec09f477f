"""GRPO (Shao et al. 2024, DeepSeekMath): for each prompt sample G answers, reward each, and use
the group-normalised reward ``A = (r − mean_G r) / std_G r`` as every token's advantage:

    loss per answer = mean over its tokens of  −A · π/π.detach()  +  β · (π_ref/π − log(π_ref/π) − 1)

One policy update per generation, so the clipped ratio of the paper is 1 and its gradient is
``−A·∇log π``; the KL term is the paper's unbiased k3 estimator against the starting model.

Example:
    >>> # rewards.py:  def short(prompts, completions, **kw): return [-len(c) / 100 for c in completions]
    >>> from llmkit.train import grpo
    >>> grpo.run(data="prompts.jsonl", reward=["rewards.py:short"], num_generations=4, max_steps=50)
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable

from ..core.errors import ConfigError
from .config import resolve
from .data import IGNORE, collate, prompt_ids, read_split
from .grpo_config import GRPOConfig
from .loop import TrainResult, fit
from .model import finish, load_for_training, token_logps
from .preference import Reference

Reward = Callable[..., list]


def load_reward(spec: str) -> Reward:
    """``"rewards.py:fn"`` or ``"package.module:fn"`` → the function."""
    if ":" not in spec:
        raise ConfigError(f"reward {spec!r} must be 'file.py:function' or 'package.module:function'")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise ConfigError(f"reward file {str(path)!r} does not exist")
        mod_spec = importlib.util.spec_from_file_location(f"llmkit_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ConfigError(f"reward module {where!r} cannot be imported: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"reward {spec!r}: {where} has no function {name!r}")
    return fn


def score(rewards: list[tuple[str, Reward]], prompts: list, completions: list[str], columns: dict[str, list]):
    """Sum of every reward function's scores, one per completion; a bad return names the function."""
    import torch

    total = torch.zeros(len(completions))
    for name, fn in rewards:
        values = fn(prompts, completions, **columns)
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ConfigError(f"reward {name} must return a list of numbers, got {values!r:.80}") from None
        if len(values) != len(completions):
            raise ConfigError(f"reward {name} returned {len(values)} scores for {len(completions)} completions")
        total += torch.tensor(values)
    return total


def advantages(rewards, group: int, scale: bool = True):
    """Group-relative advantages: rewards minus their group's mean (divided by its std when ``scale``)."""
    r = rewards.view(-1, group)
    a = r - r.mean(1, keepdim=True)
    if scale:
        a = a / (r.std(1, keepdim=True) + 1e-4)
    return a.view(-1)


def sample(model, tokenizer, prompts: list[list[int]], cfg: GRPOConfig) -> list[list[int]]:
    """``num_generations`` sampled answers per prompt (token ids, through the first end-of-turn)."""
    import torch

    pad = tokenizer.pad_token_id
    n = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (n - len(p)) + p for p in prompts])  # left padding: every answer starts at column n
    mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=cfg.temperature,
                             top_p=cfg.top_p, top_k=0, max_new_tokens=cfg.max_new_tokens,
                             num_return_sequences=cfg.num_generations, pad_token_id=pad, use_cache=True)
    model.train(was_training)
    stops = {tokenizer.eos_token_id} | {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")
                                        if t in tokenizer.get_vocab()}
    answers = []
    for row in out[:, n:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        answers.append(row[:end])
    return answers


def run(config: GRPOConfig | str | Path | None = None, **fields: Any) -> TrainResult:
    """Train with GRPO on prompts and reward functions; see :class:`GRPOConfig`."""
    import torch

    cfg = resolve(GRPOConfig, config, fields, "grpo")
    if not cfg.reward and not cfg.reward_model:
        raise ConfigError("GRPO needs a reward: --reward file.py:function (repeatable) or --reward-model FOLDER")
    rewards = [(spec, load_reward(spec)) for spec in cfg.reward]
    if cfg.reward_model:
        from .reward import RewardModel

        rm = RewardModel(cfg.reward_model, cfg.chat_template)
        rewards.append((f"reward model {cfg.reward_model}", lambda prompts, completions, **_: rm.score(prompts, completions)))
    train_rows, val_rows = read_split(cfg.data, cfg.eval_data, cfg.val_split, cfg.seed, ("prompt",))
    model, tokenizer, info = load_for_training(cfg)
    reference = Reference(model) if cfg.beta > 0 else None
    G = cfg.num_generations

    def encode(rows):
        return [{"row": r, "ids": prompt_ids(tokenizer, r["prompt"], cfg.chat_template)[-cfg.max_length:]} for r in rows]

    def step_loss(model, batch):
        group = batch["group"]
        answers = sample(model, tokenizer, [ex["ids"] for ex in group], cfg)
        prompts = [ex["row"]["prompt"] for ex in group for _ in range(G)]
        texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
        extra = sorted({k for ex in group for k in ex["row"] if k not in ("prompt", "_row", "_format")})
        columns = {k: [ex["row"].get(k) for ex in group for _ in range(G)] for k in extra}
        r = score(rewards, prompts, texts, columns)
        adv = advantages(r, G, cfg.scale_rewards)
        seqs = [{"input_ids": group[i // G]["ids"] + a, "labels": [IGNORE] * len(group[i // G]["ids"]) + a}
                for i, a in enumerate(answers)]
        tb = collate(seqs, tokenizer.pad_token_id)
        logps, mask = token_logps(model, tb)
        per_token = -torch.exp(logps - logps.detach()) * adv.unsqueeze(1)
        kl = torch.zeros(())
        if reference is not None:
            ref, _ = reference(tb, per_token=True)
            delta = ref - logps
            k3 = torch.exp(delta) - delta - 1
            per_token = per_token + cfg.beta * k3
            kl = ((k3 * mask).sum() / mask.sum().clamp(min=1)).detach()
        per_answer = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        batch["tokens"] = int(mask.sum())
        return per_answer.sum(), len(answers), {"reward": float(r.mean()), "reward_std": float(r.view(-1, G).std(1).mean()),
                                               "kl": float(kl), "answer_tokens": float(mask.sum(-1).float().mean())}

    result = fit(cfg, model, encode(train_rows), encode(val_rows), step_loss,
                 lambda g: {"group": g}, cfg.out_dir(), lambda b: b.get("tokens", 0))
    if reference is not None:
        reference.release()
    rewards_seen = [h["reward"] for h in result.history if "reward" in h]
    result.summary.update(first_reward=rewards_seen[0] if rewards_seen else None,
                          reward=rewards_seen[-1] if rewards_seen else None)
    return finish(model, tokenizer, cfg, result, info)
