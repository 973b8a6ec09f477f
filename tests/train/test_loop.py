"""The shared training loop (``loop.fit``, driven through ``llmkit.train.run("sft", ...)`` on a tiny
random llama): gradient accumulation, resume, checkpoint pruning, early stopping, metrics.json,
curves.png, the learning-rate schedule and the NaN guard."""
from __future__ import annotations

import json
import math
import struct

import pytest
import torch
from safetensors.torch import load_file

import llmkit.train as T
from llmkit.core.errors import ConfigError
from llmkit.train import loop

LR = 1e-2
TRAIN = [{"messages": [{"role": "user", "content": f"Tell me about {i}."},
                       {"role": "assistant", "content": " ".join(["fact"] * (1 + 3 * i)) + f" about {i}."}]} for i in range(8)]
VAL = [{"messages": [{"role": "user", "content": f"Tell me about {i}."},
                     {"role": "assistant", "content": "no no no no"}]} for i in range(4)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one torch thread is several times faster than two on a shared 2-core machine,
    and it makes the float sums of the runs compared below bit-reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("loop")
    for name, rows in (("train", TRAIN), ("val", VAL)):
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    base = {"model": str(tiny_dir), "data": str(root / "train.jsonl"), "val_split": 0.0, "peft": "lora", "lora_r": 4,
            "learning_rate": LR, "batch_size": 2, "max_length": 64, "seed": 1, "merge": False}

    def run(name: str, **fields):
        return T.run("sft", **{**base, "output_dir": str(root / name), **fields})

    return {"root": root, "run": run, "base": base}


def adapter(result) -> dict[str, torch.Tensor]:
    return load_file(str(result.final_dir / "adapter_model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), f"{name}: max diff {(tensor - b[name]).abs().max():.3g}"


def expected_lr(step: int, total: int, warmup: int, kind: str) -> float:
    """The learning rate of optimiser step ``step`` (0-based): linear warmup from lr/(warmup+1) to lr
    over ``warmup`` steps (it never trains a step at lr 0), then cosine or linear decay towards 0 at ``total``."""
    if step < warmup:
        return LR * (step + 1) / (warmup + 1)
    frac = (step - warmup) / (total - warmup)
    return LR * (0.5 * (1 + math.cos(math.pi * frac)) if kind == "cosine" else 1 - frac)


# --- gradient accumulation -------------------------------------------------------------------
def test_grad_accum_gives_the_same_update_as_one_bigger_batch(env, monkeypatch, tokenizer):
    """batch 2 × grad_accum 2 and batch 4 must produce the same gradient (the loss summed over the
    window's tokens, divided by their total count) and so the same weights. The gradients are read
    where AdamW receives them; they are also checked against a direct computation on the same 4
    examples, whose answers have different lengths, so per-micro-batch means would not match."""
    from llmkit.train.data import batches, collate, read_split
    from llmkit.train.model import load_for_training, token_loss
    from llmkit.train.sft import encode

    seen: list[list[torch.Tensor]] = []

    class RecordingAdamW(torch.optim.AdamW):
        def step(self, closure=None):
            seen.append([p.grad.clone() for g in self.param_groups for p in g["params"]])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    common = {"max_steps": 2, "max_grad_norm": 0.0, "lr_scheduler": "constant"}
    big = env["run"]("batch4", batch_size=4, grad_accum=1, **common)
    big_grads, seen[:] = list(seen), []
    small = env["run"]("batch2x2", batch_size=2, grad_accum=2, **common)
    small_grads = list(seen)
    assert len(big_grads) == len(small_grads) == 2
    for step in range(2):
        for g_big, g_small in zip(big_grads[step], small_grads[step]):
            assert torch.allclose(g_big, g_small, rtol=1e-4, atol=1e-8)
    a, b = adapter(big), adapter(small)
    assert set(a) == set(b)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name

    # the first step's gradient, computed directly: Σ token losses of the window's 4 examples / their token count
    cfg = T.configure("sft", **{**env["base"], "batch_size": 4})
    model, tok, _ = load_for_training(cfg)
    rows, _ = read_split(cfg.data, None, 0.0, cfg.seed, ("chat",))
    examples, _ = encode(tok, rows, cfg)
    window = batches(examples, 4, cfg.seed, 0)[0]
    assert len({sum(t != -100 for t in e["labels"]) for e in window}) > 1  # unequal answer lengths
    loss, count = token_loss(model, collate(window, tok.pad_token_id))
    (loss / count).backward()
    direct = [p.grad for p in model.parameters() if p.requires_grad]
    assert len(direct) == len(big_grads[0])
    for g_direct, g_loop in zip(direct, big_grads[0]):
        assert torch.allclose(g_direct, g_loop, rtol=1e-4, atol=1e-8)
    assert any(g.abs().sum() > 0 for g in direct)


# --- resume ----------------------------------------------------------------------------------
RESUME = {"max_steps": 4, "warmup_steps": 1, "lr_scheduler": "cosine", "save_every": 2}


@pytest.fixture(scope="module")
def uninterrupted(env):
    return env["run"]("uninterrupted", **RESUME)


class Crash(Exception):
    pass


def test_resume_after_a_crash_matches_an_uninterrupted_run(env, uninterrupted, monkeypatch):
    """Kill the run right after its step-2 checkpoint (same config), resume: identical weights and history."""
    real = loop._checkpoint

    def checkpoint_then_crash(out, params, optimizer, scheduler, st, cfg):
        path = real(out, params, optimizer, scheduler, st, cfg)
        if st["step"] == 2:
            raise Crash
        return path

    monkeypatch.setattr(loop, "_checkpoint", checkpoint_then_crash)
    with pytest.raises(Crash):
        env["run"]("crashed", **RESUME)
    monkeypatch.setattr(loop, "_checkpoint", real)
    assert [p.name for p in loop.checkpoints(env["root"] / "crashed")] == ["checkpoint-2"]
    resumed = env["run"]("crashed", resume=True, **RESUME)
    assert_same_weights(adapter(resumed), adapter(uninterrupted))
    assert [(h["step"], h["loss"], h["lr"]) for h in resumed.history] == \
           [(h["step"], h["loss"], h["lr"]) for h in uninterrupted.history]
    assert resumed.summary["steps"] == 4


def test_resume_after_a_max_steps_stop_matches_an_uninterrupted_run(env):
    """max_steps=2, then resume=True with max_steps=4: the same weights as 4 steps in one go.

    With a constant learning rate. A decaying schedule cannot match by construction: max_steps is
    also the schedule's horizon, so the first run's 2 steps decay towards 0 at step 2 (see the next test).
    """
    constant = {"lr_scheduler": "constant", "save_every": 0}
    whole = env["run"]("const-whole", max_steps=4, **constant)
    env["run"]("const-split", max_steps=2, **constant)
    resumed = env["run"]("const-split", max_steps=4, resume=True, **constant)
    assert_same_weights(adapter(resumed), adapter(whole))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]


def test_a_resumed_run_trains_its_next_step_on_the_new_schedule(env, uninterrupted):
    """Stopped by max_steps=2 (cosine), resumed with max_steps=4: steps 3 and 4 must use the 4-step
    schedule's learning rates, as the uninterrupted run does. The first two steps legitimately differ
    (they ran under a 2-step horizon)."""
    fields = {**RESUME, "save_every": 0}
    env["run"]("cos-split", **{**fields, "max_steps": 2})
    resumed = env["run"]("cos-split", **{**fields, "resume": True})
    lrs = {h["step"]: h["lr"] for h in resumed.history}
    want = {h["step"]: h["lr"] for h in uninterrupted.history}
    assert lrs[4] == pytest.approx(want[4])
    assert lrs[3] == pytest.approx(want[3]), (
        f"step 3 ran at lr {lrs[3]} instead of {want[3]}: the optimizer's lr was restored from the checkpoint, "
        "which the old 2-step schedule had already decayed to 0")


def test_cosine_schedule_with_warmup_follows_the_formula(uninterrupted):
    lrs = [h["lr"] for h in uninterrupted.history]
    assert lrs == pytest.approx([expected_lr(k, 4, 1, "cosine") for k in range(4)], rel=1e-9)
    assert lrs[1] == pytest.approx(LR) and lrs[0] < lrs[1] and lrs[-1] > 0


# --- checkpoints, metrics, curves, linear schedule --------------------------------------------
@pytest.fixture(scope="module")
def logged(env):
    return env["run"]("logged", max_steps=5, warmup_steps=2, lr_scheduler="linear", save_every=1, keep_checkpoints=2,
                      eval_data=str(env["root"] / "val.jsonl"), eval_every=2)


def test_keep_checkpoints_prunes_the_oldest(logged):
    out = logged.output_dir
    assert [p.name for p in loop.checkpoints(out)] == ["checkpoint-4", "checkpoint-5"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp")]  # no half-written folder left
    ckpt = out / "checkpoint-5"
    assert {p.name for p in ckpt.iterdir()} == {"trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"}
    assert json.loads((ckpt / "state.json").read_text())["step"] == 5
    saved = load_file(str(ckpt / "trainable.safetensors"))
    final = adapter(logged)
    assert len(saved) == len(final) > 0
    for name, tensor in saved.items():  # the last checkpoint holds the final weights (adapter names drop ".default")
        assert torch.equal(tensor, final[name.replace(".default.", ".")])


def test_metrics_json_has_config_history_evals_and_summary(logged):
    body = json.loads((logged.output_dir / "metrics.json").read_text())
    assert body["method"] == "sft"
    assert body["config"]["learning_rate"] == LR and body["config"]["max_steps"] == 5
    assert body["config"]["lr_scheduler"] == "linear" and body["config"]["method"] == "sft"
    assert [h["step"] for h in body["history"]] == [1, 2, 3, 4, 5]
    for h in body["history"]:
        assert math.isfinite(h["loss"]) and h["lr"] > 0 and h["tokens_per_s"] > 0
    assert [e["step"] for e in body["evals"]] == [0, 2, 4, 5]  # before training, every 2 steps, at the end
    assert all(math.isfinite(e["val_loss"]) for e in body["evals"])
    assert body["summary"]["steps"] == 5 and body["summary"]["val_loss"] == min(e["val_loss"] for e in body["evals"][1:])
    assert body["history"] == logged.history and body["evals"] == logged.evals


def test_curves_png_is_a_valid_png(logged):
    import matplotlib.image

    data = (logged.output_dir / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (700, 500)
    pixels = matplotlib.image.imread(logged.output_dir / "curves.png")
    assert pixels.shape[:2] == (500, 700) and float(pixels[..., :3].std()) > 0.01  # something was drawn


def test_linear_schedule_with_warmup_follows_the_formula(logged):
    lrs = [h["lr"] for h in logged.history]
    assert lrs == pytest.approx([expected_lr(k, 5, 2, "linear") for k in range(5)], rel=1e-9)
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(LR) and lrs[2] > lrs[3] > lrs[4] > 0


# --- early stopping --------------------------------------------------------------------------
def test_early_stopping_stops_and_keeps_the_best_weights(env, tokenizer):
    """Train on "fact …" answers, validate on "no no no no": the validation loss improves once, then
    rises; with patience 2 the run stops, and the saved adapter is the best one, not the last."""
    from peft.utils import set_peft_model_state_dict

    from llmkit.train.data import collate, read_rows
    from llmkit.train.model import load_for_training, token_loss
    from llmkit.train.sft import encode

    fields = {"max_steps": 12, "eval_every": 1, "early_stopping_patience": 2, "lr_scheduler": "constant",
              "batch_size": 4, "eval_data": str(env["root"] / "val.jsonl")}
    result = env["run"]("early", **fields)
    vals = [e["val_loss"] for e in result.evals]
    assert result.summary["stopped_early"] and result.summary["steps"] < 12
    best = min(vals[1:])
    assert result.summary["val_loss"] == best and vals[-1] > best and vals[-2] > best  # two worse validations: stop
    assert result.summary["steps"] == result.evals[-1]["step"]

    cfg = T.configure("sft", **{**env["base"], **fields})
    model, tok, _ = load_for_training(cfg)
    set_peft_model_state_dict(model, adapter(result))
    val, _ = encode(tok, read_rows(cfg.eval_data, "chat"), cfg)
    model.eval()
    with torch.no_grad():
        loss, count = token_loss(model, collate(val, tok.pad_token_id))
    assert float(loss / count) == pytest.approx(best, rel=1e-5)
    assert float(loss / count) < vals[-1]


# --- divergence ------------------------------------------------------------------------------
def test_a_nan_loss_is_a_config_error_naming_the_learning_rate(env):
    # lr=1e6 is not enough here: the tiny model saturates to a uniform distribution (loss ln|V|, finite)
    with pytest.raises(ConfigError, match=r"--lr") as e:
        env["run"]("nan", learning_rate=1e20, max_steps=3)
    assert "nan" in str(e.value) and "1e+20" in str(e.value)
