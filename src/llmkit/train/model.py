"""The model being trained: load it, extend its context, wrap it in a PEFT adapter, score tokens, save it.

``load_for_training(cfg)`` returns ``(model, tokenizer, info)`` with only the parameters the config
trains left with ``requires_grad``. ``token_loss`` and ``completion_logps`` are the two numbers
every method is built from; both project only the positions whose next token is trained onto the
vocabulary (``logits_to_keep``), which is most of the memory and a good share of the time a
plain ``model(labels=…)`` spends on prompts.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .config import TrainConfig
from .data import IGNORE


def model_path(spec: str) -> str:
    """``"hf:smollm2"`` / ``"smollm2"`` / a folder → what ``load_pretrained`` takes."""
    return spec[3:] if spec.startswith("hf:") else spec


def load_for_training(cfg: TrainConfig) -> tuple[Any, Any, dict]:
    """The model and tokenizer of ``cfg.model``, adapted as ``cfg.peft`` says.

    Returns:
        (model, tokenizer, info): ``info["peft"]`` is the adapter actually used (``qlora`` falls
        back to ``lora`` where bitsandbytes cannot run 4-bit), ``info["base"]`` the base folder.
    """
    import torch

    from ..models.hf import _offline, embedded_dir, load_pretrained

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    name = model_path(cfg.model)
    base = str(embedded_dir()) if name.lower() == "smollm2" else name
    info = {"peft": cfg.peft, "base": base}
    if cfg.peft == "qlora":
        model, tokenizer, info["peft"] = _load_4bit(base, cfg)
    else:
        model, tokenizer = load_pretrained(base, cfg.dtype)
    if cfg.rope_scaling != "none":
        from .context import scale_rope

        scale_rope(model, cfg.rope_scaling, cfg.rope_factor)
    model.config.use_cache = False
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if info["peft"] == "none":
        return model, tokenizer, info
    with _offline():
        model = add_adapter(model, cfg, info["peft"], base)
    return model, tokenizer, info


def _load_4bit(base: str, cfg: TrainConfig) -> tuple[Any, Any, str]:
    """QLoRA's base: NF4 weights (double-quantised) through bitsandbytes, which runs 4-bit on CUDA
    and, since 0.46, on CPU; where it cannot load, LoRA on the full-precision base, said on stderr."""
    import torch

    from ..models.hf import _offline, load_pretrained

    try:
        import bitsandbytes  # noqa: F401
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

        gpu = torch.cuda.is_available()
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16 if gpu else torch.float32)
        with _offline(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, local_files_only=True,
                                                         device_map=None if gpu else "cpu")
            tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        if not gpu:  # an eval-mode no-grad forward (a validation) makes bitsandbytes repack 4-bit weights for
            # its CPU kernel, whose matmul (gemv_4bit) has no backward: every later gradient through a 4-bit
            # layer would silently vanish. Keep the autograd path.
            for module in model.modules():
                if hasattr(module, "support_avx512bf16_for_cpu"):
                    module.support_avx512bf16_for_cpu = False
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        return model, tokenizer, "qlora"
    except ImportError:
        why = "bitsandbytes is not installed (pip install 'llmkit[train]')"
    except (RuntimeError, ValueError) as e:
        why = f"bitsandbytes cannot load 4-bit weights on this device ({str(e).splitlines()[0][:120]})"
    print(f"qlora: {why}; training LoRA on the full-precision base instead", file=sys.stderr)
    model, tokenizer = load_pretrained(base, cfg.dtype)
    return model, tokenizer, "lora"


def add_adapter(model, cfg: TrainConfig, kind: str, base: str):
    """Wrap ``model`` in the PEFT adapter ``kind`` (lora, dora, qlora, prompt, prefix)."""
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    if kind in ("lora", "dora", "qlora"):
        targets = cfg.target_modules
        target: Any = "all-linear" if targets == ["all-linear"] else targets
        if target != "all-linear":
            names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
            unknown = [t for t in targets if t not in names]
            if unknown:
                linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
                raise ConfigError(f"target_modules {unknown} are not modules of this model; its linear layers: "
                                  f"{', '.join(linear)} (or all-linear)")
        peft_cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                              lora_dropout=cfg.lora_dropout, target_modules=target, use_dora=kind == "dora")
    elif kind == "prompt":
        init = dict(prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=cfg.prompt_init_text,
                    tokenizer_name_or_path=base) if cfg.prompt_init_text else dict(prompt_tuning_init=PromptTuningInit.RANDOM)
        peft_cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens, **init)
    elif kind == "prefix":
        peft_cfg = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens)
    else:
        raise ConfigError(f"peft={kind!r} is not an adapter; accepted: lora, dora, qlora, prompt, prefix, none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's notes on target names and tied embeddings
        return get_peft_model(model, peft_cfg)


def virtual_tokens(model) -> int:
    """Positions a prompt-tuned model prepends to its outputs (0 for every other adapter)."""
    cfg = getattr(model, "active_peft_config", None)
    return cfg.num_virtual_tokens if cfg is not None and type(cfg).__name__ == "PromptTuningConfig" else 0


def logits_at(model, batch: dict, keep):
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    offset = virtual_tokens(model)
    if offset and "position_ids" in kw:
        raise ConfigError("packing does not work with prompt tuning (the soft prompt would sit before the first "
                          "example only); set packing=false")
    return model(**kw, use_cache=False, logits_to_keep=keep + offset).logits


def token_logps(model, batch: dict):
    """Per-token log-probabilities of the labelled tokens.

    Returns:
        (logps, mask): both ``[batch, K]`` over the K positions that any row trains; ``mask`` is
        1 where that row's token is trained.
    """
    import torch

    target = batch["labels"][:, 1:]
    keep = (target != IGNORE).any(0).nonzero().squeeze(1)
    logits = logits_at(model, batch, keep).float()
    target = target[:, keep]
    mask = target != IGNORE
    logps = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logps * mask, mask


LOSS_CHUNK = 256  # trained tokens per lm_head + cross-entropy chunk (its logits are recomputed in backward)


def _backbone(model):
    """(decoder, lm_head) of a plain causal LM or one whose adapter lives inside its layers (LoRA,
    DoRA, QLoRA); None where the head is not a plain linear over the last hidden state (prompt or
    prefix tuning, which add positions or caches; soft-capped logits)."""
    lm = model.get_base_model() if is_adapter(model) else model
    if virtual_tokens(model) or type(getattr(model, "active_peft_config", None)).__name__ == "PrefixTuningConfig":
        return None
    if getattr(lm.config, "final_logit_softcapping", None) or not hasattr(lm, "lm_head"):
        return None
    decoder = getattr(lm, lm.base_model_prefix, None) if hasattr(lm, "base_model_prefix") else None
    return (decoder, lm.lm_head) if decoder is not None and decoder is not lm else None


def _chunk_loss(head, hidden, target):
    import torch.nn.functional as F

    return F.cross_entropy(head(hidden).float(), target, reduction="sum")


def token_loss(model, batch: dict):
    """Summed next-token cross-entropy over the trained tokens, and their count.

    Only the trained (row, position) pairs are projected onto the vocabulary, in chunks of
    ``LOSS_CHUNK`` whose logits are recomputed in backward rather than kept: the [tokens × vocab]
    logits are most of the memory a plain ``model(labels=…)`` spends beyond the layers.
    """
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    target = batch["labels"][:, 1:]
    parts = _backbone(model)
    if parts is None:
        keep = (target != IGNORE).any(0).nonzero().squeeze(1)
        logits = logits_at(model, batch, keep)
        target = target[:, keep]
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="sum")
        return loss, (target != IGNORE).sum()
    decoder, head = parts
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    hidden = decoder(**kw, use_cache=False).last_hidden_state[:, :-1]
    mask = target != IGNORE
    h, t = hidden[mask], target[mask]
    loss = sum(checkpoint(_chunk_loss, head, h[i:i + LOSS_CHUNK], t[i:i + LOSS_CHUNK], use_reentrant=False)
               for i in range(0, len(t), LOSS_CHUNK))
    return loss, mask.sum()


def completion_logps(model, batch: dict, average: bool = False):
    """Each row's summed (or, with ``average``, per-token mean) log-probability of its labelled tokens."""
    logps, mask = token_logps(model, batch)
    total = logps.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


def is_adapter(model) -> bool:
    return hasattr(model, "peft_config")


def save_trained(model, tokenizer, cfg: TrainConfig, result, info: dict) -> None:
    """``final/`` (the adapter, or the whole model), and ``merged/`` for LoRA-family adapters when ``cfg.merge``."""
    final = result.final_dir
    _save(model, tokenizer, final)
    if is_adapter(model) and cfg.merge and info["peft"] in ("lora", "dora", "qlora"):
        if info["peft"] == "qlora":  # merge into the full-precision base, not the 4-bit one it trained on
            from peft import PeftModel

            from ..models.hf import _offline, load_pretrained

            base, _ = load_pretrained(info["base"], cfg.dtype)
            if cfg.rope_scaling != "none":
                from .context import scale_rope

                scale_rope(base, cfg.rope_scaling, cfg.rope_factor)
            with _offline():
                model = PeftModel.from_pretrained(base, str(final))
        merged = model.merge_and_unload()
        _save(merged, tokenizer, result.output_dir / "merged")
        result.merged_dir = result.output_dir / "merged"


def _save(model, tokenizer, final: Path) -> None:
    """save_pretrained into a temp folder, then rename over ``final``: never a half-written model."""
    import shutil
    import tempfile

    from ..models.hf import _offline

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        with _offline(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not is_adapter(model):
                model.config.use_cache = True  # the saved model is for generation
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def finish(model, tokenizer, cfg: TrainConfig, result, info: dict):
    """Save the trained model (and the merged one), metrics.json and curves.png; return ``result``."""
    from .loop import write_metrics

    result.summary["peft"] = info["peft"]
    save_trained(model, tokenizer, cfg, result, info)
    if cfg.export != "none":
        export(result, cfg, info)
    write_metrics(result, cfg)
    return result


def export(result, cfg: TrainConfig, info: dict) -> None:
    """``model-<quant>.gguf`` of the merged (or fully trained) model, for llama.cpp and ``llmkit serve``."""
    from .export import export_gguf

    source = result.merged_dir or (result.final_dir if info["peft"] == "none" else None)
    if source is None:
        raise ConfigError(f"export={cfg.export!r} needs a full model: peft={info['peft']!r} trains a "
                          f"{'soft prompt' if info['peft'] in ('prompt', 'prefix') else 'adapter'} that GGUF cannot hold; "
                          "use peft=lora/dora/none with merge=true")
    result.gguf = export_gguf(source, result.output_dir / f"model-{cfg.export}.gguf", quant=cfg.export)
