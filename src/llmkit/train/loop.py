"""The training loop every method shares: AdamW, warmup and decay, gradient accumulation,
clipping, validation loss, early stopping, checkpoints and resume, a progress bar, curves.

A method hands it a ``step_loss(model, batch) -> (loss_sum, count)``: the summed loss of one
micro-batch and how many units (tokens, pairs) it sums over. Gradients of a whole accumulation
window are divided by the window's total count before the optimiser step, so every token (or
pair) weighs the same however the examples fall into micro-batches.

Files written under the run's folder:

    checkpoint-<step>/   trainable.safetensors, optimizer.pt, scheduler.pt, rng.pt, state.json
    metrics.json         the config, every logged step (loss, lr, tokens/s), every validation, a summary
    curves.png           training and validation loss, and the learning rate, against the step
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.errors import ConfigError
from ..core.files import atomic_write
from .config import TrainConfig
from .data import batches as epoch_batches


@dataclass
class TrainResult:
    """What a trainer returns.

    Attributes:
        output_dir: the run's folder.
        final_dir: the trained model (an adapter folder for lora/dora/prompt/prefix, else a full model).
        merged_dir: the base with the adapter merged in (``merge=True``), else None.
        gguf: the GGUF file when the config asked for ``export``, else None.
        history: one dict per logged optimiser step (``step``, ``loss``, ``lr``, ``tokens_per_s``, …).
        evals: one dict per validation (``step``, ``val_loss``).
        summary: totals: ``steps``, ``tokens``, ``seconds``, ``tokens_per_s``, ``train_loss``,
            ``val_loss`` (best), ``stopped_early`` and what the method adds.
    """

    output_dir: Path
    final_dir: Path
    merged_dir: Path | None = None
    gguf: Path | None = None
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def load(self, **options: Any):
        """The trained model as an llmkit model (``hf:`` backend), ready to ``chat``."""
        from ..models.hf import HFModel

        return HFModel(str(self.merged_dir or self.final_dir), **options)


StepLoss = Callable[[Any, dict], tuple]  # (loss_sum, count) or (loss_sum, count, {metric: value})


def fit(cfg: TrainConfig, model, train: list, val: list, step_loss: StepLoss, collate: Callable[[list], dict],
        out: Path, tokens_of: Callable[[dict], int] | None = None) -> TrainResult:
    """Train ``model``'s trainable parameters on ``train`` and return the history.

    Args:
        cfg: the run's config (optimiser, schedule, loop).
        train, val: encoded examples; ``collate`` turns a list of them into a batch.
        step_loss: ``(model, batch) -> (loss_sum, count)``.
        out: the run's folder (checkpoints, metrics, curves).
        tokens_of: tokens in a batch, for tokens/s (default: non-pad ``input_ids``).
    """
    import torch

    tokens_of = tokens_of or _tokens
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ConfigError("the model has no trainable parameter; check peft and target_modules")
    optimizer = torch.optim.AdamW(params.values(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(math.ceil(len(train) / cfg.batch_size) / cfg.grad_accum)
    total = cfg.max_steps or max(1, math.ceil(per_epoch * cfg.epochs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, total))
    st = {"step": 0, "epoch": 0, "micro": 0, "tokens": 0, "seconds": 0.0, "best": math.inf, "bad": 0,
          "history": [], "evals": [], "stopped_early": False}
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.resume:
        _resume(out, params, optimizer, scheduler, st)
        # Continue on this run's schedule: the checkpoint's optimizer state carries the lr its own
        # horizon had decayed to (0 at its last step when resumed with a larger max_steps).
        lam = _schedule(cfg, total)
        scheduler.base_lrs = [cfg.learning_rate] * len(optimizer.param_groups)
        for g in optimizer.param_groups:
            g["initial_lr"], g["lr"] = cfg.learning_rate, cfg.learning_rate * lam(st["step"])
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    best_state = None

    def evaluate() -> float | None:
        if not val:
            return None
        model.eval()
        loss, count = 0.0, 0
        with torch.no_grad():
            for group in epoch_batches(val, cfg.batch_size, cfg.seed, 0, shuffle=False):
                s, n = step_loss(model, collate(group))[:2]
                loss, count = loss + float(s), count + int(n)
        model.train()
        return loss / max(count, 1)

    def validate() -> bool:
        """Record a validation; True when early stopping says stop."""
        nonlocal best_state
        v = evaluate()
        if v is None:
            return False
        st["evals"].append({"step": st["step"], "epoch": st["epoch"], "val_loss": v})
        bar.note(val=v)
        if v < st["best"] - 1e-6:
            st["best"], st["bad"] = v, 0
            if cfg.early_stopping_patience:
                best_state = {n: p.detach().clone() for n, p in params.items()}
        else:
            st["bad"] += 1
        return bool(cfg.early_stopping_patience) and st["bad"] >= cfg.early_stopping_patience

    if not st["evals"] and val:
        st["evals"].append({"step": 0, "epoch": 0, "val_loss": evaluate()})  # the loss before training
    bar = _Progress(total, st["step"], cfg.method or "train")
    model.train()
    stop = False
    with bar:
        while st["step"] < total and not stop:
            groups = epoch_batches(train, cfg.batch_size, cfg.seed, st["epoch"])
            for i in range(st["micro"], len(groups), cfg.grad_accum):
                t0 = time.perf_counter()
                window, tokens, loss_sum, count, extra = groups[i:i + cfg.grad_accum], 0, 0.0, 0, {}
                for group in window:
                    batch = collate(group)
                    s, n, *more = step_loss(model, batch)  # a method may add metrics: (sum, count, {name: value})
                    s.backward()
                    loss_sum, count, tokens = loss_sum + float(s.detach()), count + int(n), tokens + tokens_of(batch)
                    for k, v in (more[0] if more else {}).items():
                        extra[k] = extra.get(k, 0.0) + v / len(window)
                for p in params.values():
                    if p.grad is not None:
                        p.grad.div_(max(count, 1))
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                dt = time.perf_counter() - t0
                st["step"] += 1
                st["micro"] = i + cfg.grad_accum
                st["tokens"] += tokens
                st["seconds"] += dt
                loss = loss_sum / max(count, 1)
                if not math.isfinite(loss):
                    raise ConfigError(f"the training loss became {loss} at step {st['step']}; lower --lr "
                                      f"(now {cfg.learning_rate}) or check the data")
                if st["step"] % cfg.log_every == 0 or st["step"] == total:
                    st["history"].append({"step": st["step"], "epoch": st["epoch"], "loss": loss, "lr": lr,
                                          "tokens": st["tokens"], "tokens_per_s": tokens / dt if dt else 0.0, **extra})
                bar.advance(loss=loss, tps=st["tokens"] / max(st["seconds"], 1e-9))
                last = st["step"] >= total
                if cfg.eval_every and st["step"] % cfg.eval_every == 0 and not last:
                    stop = validate()
                if cfg.save_every and st["step"] % cfg.save_every == 0 and not last:
                    _checkpoint(out, params, optimizer, scheduler, st, cfg)
                if stop or last:
                    break
            else:
                st["epoch"], st["micro"] = st["epoch"] + 1, 0
                if st["step"] < total:
                    if not cfg.eval_every:
                        stop = validate()
                    if not cfg.save_every:
                        _checkpoint(out, params, optimizer, scheduler, st, cfg)
    if not stop:
        validate()  # the final validation
    st["stopped_early"] = stop
    if best_state is not None and st["evals"][-1]["val_loss"] > st["best"]:
        with torch.no_grad():  # early stopping keeps the best weights, not the last
            for n, p in params.items():
                p.copy_(best_state[n])
    _checkpoint(out, params, optimizer, scheduler, st, cfg)
    losses = [h["loss"] for h in st["history"]]
    summary = {"steps": st["step"], "epochs": st["epoch"], "tokens": st["tokens"], "seconds": round(st["seconds"], 3),
               "tokens_per_s": st["tokens"] / max(st["seconds"], 1e-9), "train_loss": losses[-1] if losses else None,
               "first_train_loss": losses[0] if losses else None,
               "val_loss": st["best"] if math.isfinite(st["best"]) else None,
               "first_val_loss": st["evals"][0]["val_loss"] if st["evals"] else None,
               "stopped_early": stop, "trainable_parameters": sum(p.numel() for p in params.values())}
    return TrainResult(output_dir=out, final_dir=out / "final", history=st["history"], evals=st["evals"], summary=summary)


def _tokens(batch: dict) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


def _schedule(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    warm = cfg.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if cfg.lr_scheduler == "constant":
            return 1.0
        frac = (step - warm) / max(1, total - warm)
        return max(0.0, 1 - frac) if cfg.lr_scheduler == "linear" else 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    return factor


# --- checkpoints -----------------------------------------------------------------------------
def _checkpoint(out: Path, params: dict, optimizer, scheduler, st: dict, cfg: TrainConfig) -> Path:
    """Write ``checkpoint-<step>`` atomically (a temp folder renamed), then prune old ones."""
    import torch
    from safetensors.torch import save_file

    final = out / f"checkpoint-{st['step']}"
    if final.exists():
        shutil.rmtree(final)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=out))
    try:
        save_file({n: p.detach().contiguous() for n, p in params.items()}, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({**st, "config": cfg.model_dump()}, indent=1, default=str))
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in checkpoints(out)[:-cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(out: Path) -> list[Path]:
    """The run's checkpoint folders, oldest first."""
    found = [p for p in Path(out).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _resume(out: Path, params: dict, optimizer, scheduler, st: dict) -> None:
    import torch
    from safetensors.torch import load_file

    found = checkpoints(out)
    if not found:
        raise ConfigError(f"--resume: no checkpoint-<step> folder in {str(out)!r}; start without --resume")
    ckpt = found[-1]
    saved = load_file(str(ckpt / "trainable.safetensors"))
    if set(saved) != set(params):
        missing = sorted(set(params) ^ set(saved))[:3]
        raise ConfigError(f"--resume: {ckpt.name} was saved with other trainable parameters ({missing}…); "
                          "resume with the same model and peft settings")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(ckpt / "rng.pt", weights_only=True)["torch"])
    state = json.loads((ckpt / "state.json").read_text())
    state.pop("config", None)
    st.update(state)


# --- progress and pictures -------------------------------------------------------------------
class _Progress:
    """A rich progress bar with loss, validation loss, tokens/s and ETA; silent when stderr is not a terminal."""

    def __init__(self, total: int, done: int, what: str):
        self.total, self.done, self.what, self.fields = total, done, what, {"loss": "", "val": "", "tps": ""}
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=Console(stderr=True))

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
            self.task = self.bar.add_task(self.what, total=self.total, completed=self.done, info="")
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def note(self, val: float) -> None:
        self.fields["val"] = f"val {val:.3f}"
        self._show(0)

    def advance(self, loss: float, tps: float) -> None:
        self.fields.update(loss=f"loss {loss:.3f}", tps=f"{tps:,.0f} tok/s")
        self._show(1)

    def _show(self, n: int) -> None:
        if self.bar:
            info = " · ".join(v for v in (self.fields["loss"], self.fields["val"], self.fields["tps"]) if v)
            self.bar.update(self.task, advance=n, info=info)


def write_metrics(result: TrainResult, cfg: TrainConfig) -> None:
    """``metrics.json`` and ``curves.png`` beside the checkpoints (both written atomically)."""
    out = result.output_dir
    body = {"method": cfg.method, "config": cfg.model_dump(), "summary": result.summary,
            "history": result.history, "evals": result.evals}
    atomic_write(out / "metrics.json", json.dumps(body, indent=1, default=str).encode())
    atomic_write(out / "curves.png", plot_curves(result.history, result.evals, f"{cfg.method} · {cfg.model}"))


def plot_curves(history: list[dict], evals: list[dict], title: str) -> bytes:
    """PNG bytes: loss (training and validation) and learning rate against the optimiser step."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lr_ax) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if history:
        ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="training loss", lw=1.2)
        lr_ax.plot([h["step"] for h in history], [h["lr"] for h in history], color="tab:gray", lw=1)
    if evals:
        ax.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", label="validation loss", color="tab:orange")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("optimiser step")
    lr_ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


