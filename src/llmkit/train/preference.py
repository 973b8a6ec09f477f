"""What the preference methods (DPO, IPO, ORPO, SimPO, KTO, reward models) share: encoding
(prompt, chosen, rejected) rows, one forward over chosen and rejected together, and the
frozen reference model's log-probabilities.

The reference is the model as it was before training. Its log-probabilities of every chosen and
rejected answer are computed once, before the first step (TRL's ``precompute_ref_log_probs``), so
no second model is kept in memory for DPO/IPO; KTO's KL term needs the reference on mismatched
pairs during training, which ``Reference`` gives by switching the adapter off, or, for a full
fine-tune, from a frozen copy.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Any

from .data import IGNORE, collate, encode_pair, truncate
from .model import completion_logps, is_adapter, token_logps


def encode_preference(tokenizer, rows: list[dict], max_length: int, chat_template: bool) -> list[dict]:
    """Each row → ``{"chosen": example, "rejected": example}``; rows whose answers are truncated away are dropped."""
    out = []
    for row in rows:
        pair = {}
        for side in ("chosen", "rejected"):
            pair[side] = truncate(encode_pair(tokenizer, row["prompt"], row[side], chat_template), max_length)
        if all(any(t != IGNORE for t in pair[s]["labels"]) for s in pair):
            out.append(pair)
    return out


def pair_batch(group: list[dict], pad_id: int) -> dict[str, Any]:
    """One batch of 2·B rows, chosen first then rejected, with each pair's reference log-probs if known."""
    import torch

    batch = collate([p["chosen"] for p in group] + [p["rejected"] for p in group], pad_id)
    if "ref_chosen" in group[0]:
        batch["ref_chosen"] = torch.tensor([p["ref_chosen"] for p in group])
        batch["ref_rejected"] = torch.tensor([p["ref_rejected"] for p in group])
    return batch


def pair_logps(model, batch: dict, average: bool = False):
    """(chosen, rejected) summed or mean log-probabilities, and (chosen, rejected) answer lengths."""
    logps = completion_logps(model, batch, average)
    lengths = (batch["labels"][:, 1:] != IGNORE).sum(-1)
    half = logps.shape[0] // 2
    return logps[:half], logps[half:], lengths[:half], lengths[half:]


class Reference:
    """The frozen starting model: the adapter switched off, or a copy made before training."""

    def __init__(self, model):
        self.model = model
        self.copy = None if is_adapter(model) else copy.deepcopy(model).eval().requires_grad_(False)

    def __call__(self, batch: dict, average: bool = False, per_token: bool = False):
        """Summed (or mean) log-probabilities of each row's labelled tokens; ``per_token``: (logps, mask)."""
        import torch

        ctx = self.model.disable_adapter() if self.copy is None else nullcontext()
        model = self.copy if self.copy is not None else self.model
        with torch.no_grad(), ctx:
            return token_logps(model, batch) if per_token else completion_logps(model, batch, average)

    def release(self) -> None:
        self.copy = None if self.copy is None else self.copy.to("meta")


def precompute_reference(model, pairs: list[dict], pad_id: int, batch_size: int, average: bool = False) -> None:
    """Store ``ref_chosen``/``ref_rejected`` on every pair: the untrained model's log-probabilities."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        for k in range(0, len(pairs), batch_size):
            group = pairs[k:k + batch_size]
            c, r, _, _ = pair_logps(model, pair_batch(group, pad_id), average)
            for p, vc, vr in zip(group, c.tolist(), r.tolist()):
                p["ref_chosen"], p["ref_rejected"] = vc, vr
    model.train(was_training)


def pair_tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())


def train_pairs(cfg, step_loss_of, reference: bool, average: bool = False):
    """The run of a pairwise method: read preference rows, encode, precompute the reference (if the
    method has one), train with ``step_loss_of(model) -> (model, batch) -> (sum, count)``, save.

    ``average`` asks for per-token mean log-probabilities in the reference (IPO's normalisation).
    """
    from .data import read_split
    from .loop import fit
    from .model import finish, load_for_training

    train_rows, val_rows = read_split(cfg.data, cfg.eval_data, cfg.val_split, cfg.seed, "preference")
    model, tokenizer, info = load_for_training(cfg)
    pad = tokenizer.pad_token_id
    train = encode_preference(tokenizer, train_rows, cfg.max_length, cfg.chat_template)
    val = encode_preference(tokenizer, val_rows, cfg.max_length, cfg.chat_template)
    if not train:
        from ..core.errors import ConfigError

        raise ConfigError(f"no preference pair keeps an answer token within max_length={cfg.max_length}; raise --max-length")
    if reference:
        precompute_reference(model, train + val, pad, cfg.batch_size, average)
    result = fit(cfg, model, train, val, step_loss_of(model), lambda g: pair_batch(g, pad), cfg.out_dir(), pair_tokens)
    result.summary.update(pairs=len(train), dropped=len(train_rows) - len(train))
    return finish(model, tokenizer, cfg, result, info)
