"""Contrastive search (Su et al. 2022, "A Contrastive Framework for Neural Text Generation").

At each step the ``top_k`` most likely tokens are candidates; all of them go through the model
in one batch, and the winner maximises

    (1 - α) · p(v)  -  α · max_j cos(h_v, h_j)

where ``h_v`` is the candidate's last hidden state and ``h_j`` those of every earlier token:
confident, but unlike what was already said. α = 0 is greedy search.

transformers 5 moved its implementation to a Hub repo (``transformers-community/contrastive-search``),
which cannot be downloaded here, so this is our own, sharing the step interface of
``HFModel.decode_steps``.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.sampling import Sampling

if TYPE_CHECKING:
    import torch


def contrastive_steps(model: Any, ids: list[int], s: Sampling, max_new: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(token, raw logits it was chosen from)`` by contrastive search, ``max_new`` times at most.

    Args:
        model: a transformers causal LM.
        ids: the prompt's token ids.
        s: ``penalty_alpha`` is α, ``top_k`` the number of candidates; penalties apply to the
            logits before candidates are chosen, as in ``model.generate``.
        max_new: most tokens to produce.

    Example:
        >>> steps = contrastive_steps(model, tok.encode("Once upon"), Sampling(penalty_alpha=0.6, top_k=4), 32)
        >>> tok.decode([t for t, _ in steps])
    """
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    from .logits import build_processors

    k, alpha = int(s.top_k), float(s.penalty_alpha)
    dev, n = model.device, len(ids)
    procs = build_processors(s, prompt_len=n, warpers=False)
    history = torch.tensor([ids + [0] * max_new], device=dev)
    cache = DynamicCache(config=model.config)  # batch_repeat_interleave / batch_select_indices need a dynamic cache
    with torch.inference_mode():  # entered around each computation, never held across a yield
        out = model(input_ids=history[:, :n], cache=cache, use_cache=True, output_hidden_states=True, logits_to_keep=1)
        context = out.hidden_states[-1]                      # (1, n, d): every token so far
        logits = out.logits[:, -1, :].float()
    for i in range(max_new):
        with torch.inference_mode():
            scores = procs(history[:, : n + i], logits) if procs else logits
            probs, cand = torch.softmax(scores, dim=-1).topk(k)   # (1, k) each
            cache.batch_repeat_interleave(k)                 # one copy of the past per candidate
            pos = torch.full((k, 1), n + i, device=dev)
            out = model(input_ids=cand.view(k, 1), position_ids=pos, cache=cache, use_cache=True,
                        output_hidden_states=True, logits_to_keep=1)
            h = out.hidden_states[-1][:, -1, :]                # (k, d)
            degeneration = F.cosine_similarity(h[:, None, :], context, dim=-1).max(dim=1).values   # (k,)
            best = int(((1 - alpha) * probs[0] - alpha * degeneration).argmax())
            t = int(cand[0, best])
        yield t, logits
        with torch.inference_mode():
            cache.batch_select_indices(torch.tensor([best], device=dev))   # keep the winner's past only
            context = torch.cat([context, h[best].view(1, 1, -1)], dim=1)
            logits = out.logits[best : best + 1, -1, :].float()
            history[0, n + i] = t
