"""Every trainer on a tiny random llama: the loss goes down, every trainable parameter changed,
every frozen one did not, and what was saved is what was trained.

How the parameter checks work (one run per case, shared by the tests through a module fixture):

* **Before.** ``load_for_training(cfg)`` (``load_reward_model`` for reward models) with the run's
  own config builds the model exactly as the trainer does — same base folder, same seed, so the
  same adapter initialisation. Its ``requires_grad`` flags say which parameters are trainable.
* **After.** The trainer's own model is snapshotted at the moment it hands it to ``finish`` (a
  spy that copies the state dict and calls the real ``finish``; nothing else is changed).
  Trainable names must match, every trainable tensor must differ from its initial value and every
  frozen tensor must be bit-identical to it (the base under an adapter, the 4-bit base of QLoRA).
* **Saved.** The saved adapter (``final/adapter_model.safetensors``) loaded into the fresh model
  with PEFT must reproduce the trained snapshot, and differ from the initialisation; a full
  fine-tune's ``final/`` must equal the snapshot and differ from the base folder in every tensor.
* **Merged.** ``merged/`` (lora, dora, and qlora, which merges into the full-precision base) must
  equal PEFT's own merge of the saved adapter into the untouched base folder; tensors of modules
  the adapter does not target must be bit-identical to the base, and every targeted module must
  have moved (merged − base is the LoRA delta, only there).
* **Loss.** ``eval_data`` is the training file itself, so ``evals[0]`` is the loss on the training
  data before the first step and ``evals[-1]`` after the last.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STEPS = 6
SFT_ROWS = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(12)]
PAIR_ROWS = [{"prompt": f"Is {i} a number?", "chosen": "Yes, it is a number.", "rejected": "No. Never. Absolutely not."}
             for i in range(8)]
KTO_ROWS = [{"prompt": f"Is {i} a number?", "completion": "Yes, it is a number." if i % 2 else "No. Never.",
             "label": bool(i % 2)} for i in range(8)]

CASES = {  # name → (method, data, fields)
    "sft-none": ("sft", SFT_ROWS, {"peft": "none"}),
    "sft-lora": ("sft", SFT_ROWS, {"peft": "lora"}),
    "sft-dora": ("sft", SFT_ROWS, {"peft": "dora"}),
    "sft-qlora": ("sft", SFT_ROWS, {"peft": "qlora"}),
    "sft-prompt": ("sft", SFT_ROWS, {"peft": "prompt", "learning_rate": 5e-2}),
    "sft-prefix": ("sft", SFT_ROWS, {"peft": "prefix", "learning_rate": 5e-2}),
    "reward-lora": ("reward", PAIR_ROWS, {"peft": "lora"}),
    "dpo-sigmoid": ("dpo", PAIR_ROWS, {"loss_type": "sigmoid"}),
    "dpo-ipo": ("dpo", PAIR_ROWS, {"loss_type": "ipo"}),
    "kto-full": ("kto", KTO_ROWS, {"peft": "none", "learning_rate": 1e-3}),  # full fine-tune: the reference is a frozen copy
    "orpo": ("orpo", PAIR_ROWS, {}),
    "simpo": ("simpo", PAIR_ROWS, {}),
}
NO_BNB = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="qlora needs bitsandbytes")
FINISH_SITES = ("llmkit.train.model.finish", "llmkit.train.sft.finish", "llmkit.train.kto.finish", "llmkit.train.reward.finish")


def fresh_model(method: str, cfg):
    """The model as the trainer builds it before training (same config, same seed)."""
    if method == "reward":
        from llmkit.train.reward import load_reward_model

        return load_reward_model(cfg)
    from llmkit.train.model import load_for_training

    return load_for_training(cfg)


def snapshot(model) -> dict[str, torch.Tensor]:
    """Every entry of the state dict, copied, plus each 4-bit weight dequantised (``<module>.weight~dequantized``).

    bitsandbytes repacks a 4-bit weight in place for its CPU kernel on the first no-grad forward
    (validation); ``state_dict()`` undoes that, giving back the canonical NF4 codes bit for bit, but it
    re-quantises the double-quantised scales on the way (bitsandbytes' "best-effort restore"), which
    moves the dequantised weights by ~3e-4. So a frozen 4-bit base is checked as: codes identical,
    dequantised weights within 1e-3 (a training step at lr 1e-2 moves a weight by ~1e-2).
    """
    out = {n: t.detach().clone() for n, t in model.state_dict().items()}
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if type(w).__name__ == "Params4bit":
            import bitsandbytes.functional as bnb_f

            out[name + ".weight~dequantized"] = bnb_f.dequantize_4bit(w.data, w.quant_state).float()
    return out


QUANT_STATE = re.compile(r"\.weight\.(absmax|nested_absmax|quant_map|nested_quant_map|quant_state\..*)$")


def same(name: str, a: torch.Tensor, b: torch.Tensor) -> bool:
    if name.endswith("~dequantized"):
        return torch.allclose(a, b, rtol=0, atol=1e-3)
    return torch.equal(a, b)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one torch thread is several times faster than two on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=[pytest.param(n, marks=NO_BNB) if "qlora" in n else n for n in CASES])
def case(request, tmp_path_factory, tiny_dir):
    """Train one case and gather what the tests compare: the initial, trained and saved parameters."""
    import llmkit.train as T

    method, rows, fields = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    data = root / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fields = {"model": str(tiny_dir), "data": str(data), "eval_data": str(data), "output_dir": str(root / "run"),
              "max_steps": STEPS, "batch_size": 4, "learning_rate": 1e-2, "lora_r": 4, "num_virtual_tokens": 4,
              "max_length": 64, "seed": 3, **fields}
    cfg = T.configure(method, **fields)

    seen = {}

    def spy(real):
        def finish(model, tokenizer, cfg, result, info):
            seen["params"] = snapshot(model)
            seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}
            return real(model, tokenizer, cfg, result, info)
        return finish

    with pytest.MonkeyPatch.context() as mp:
        for site in FINISH_SITES:
            mod, name = site.rsplit(".", 1)
            mp.setattr(site, spy(getattr(importlib.import_module(mod), name)))
        result = T.run(method, **fields)

    model, _, info = fresh_model(method, cfg)
    return {"name": request.param, "method": method, "cfg": cfg, "result": result, "fresh": model, "info": info,
            "initial": snapshot(model), "trainable": {n for n, p in model.named_parameters() if p.requires_grad},
            "trained": seen["params"], "trained_trainable": seen["trainable"], "base": tiny_dir}


def test_training_loss_decreases(case):
    r = case["result"]
    assert r.summary["steps"] == STEPS and len(r.history) == STEPS
    before, after = r.evals[0]["val_loss"], r.evals[-1]["val_loss"]
    assert r.evals[0]["step"] == 0 and r.evals[-1]["step"] == STEPS
    assert after < before, f"{case['name']}: loss on the training data {before:.4f} → {after:.4f}"
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    peft = case["cfg"].peft
    assert r.summary["peft"] == peft  # qlora really ran 4-bit here (bitsandbytes runs on CPU), no fallback to lora


def test_every_trainable_parameter_changed_and_every_frozen_one_did_not(case):
    initial, trained, trainable = case["initial"], case["trained"], case["trainable"]
    assert set(trained) == set(initial) and trainable <= set(initial)
    assert case["trained_trainable"] == trainable and trainable
    if case["cfg"].peft == "none":
        assert trainable == set(case["fresh"].state_dict())  # a full fine-tune trains everything
    unchanged = sorted(n for n in trainable if torch.equal(trained[n], initial[n]))
    assert not unchanged, f"trainable parameters that did not change: {unchanged}"
    moved = sorted(n for n in set(initial) - trainable if not QUANT_STATE.search(n) and not same(n, trained[n], initial[n]))
    assert not moved, f"frozen parameters that changed: {moved}"


def test_the_saved_model_is_the_trained_model(case):
    from peft.utils import set_peft_model_state_dict

    final, trained, initial = case["result"].final_dir, case["trained"], case["initial"]
    if case["cfg"].peft == "none":
        saved = load_file(str(final / "model.safetensors"))
        base = load_file(str(case["base"] / "model.safetensors"))
        assert set(saved) == set(trained) == set(base)
        for n in saved:
            assert torch.equal(saved[n], trained[n]), n
            assert not torch.equal(saved[n], base[n]), f"{n} was saved unchanged"
        return
    saved = load_file(str(final / "adapter_model.safetensors"))
    model = case["fresh"]
    set_peft_model_state_dict(model, saved)
    now = snapshot(model)
    for n in case["trainable"]:
        assert torch.equal(now[n], trained[n]), f"{n}: the saved adapter is not the trained one"
        assert not torch.equal(now[n], initial[n])


def test_merged_differs_from_the_base_by_the_lora_delta_only_on_targeted_modules(case):
    from peft import PeftModel

    result = case["result"]
    if case["cfg"].peft not in ("lora", "dora", "qlora"):  # qlora merges into the full-precision base
        assert result.merged_dir is None and not (result.output_dir / "merged").exists()
        return
    assert result.merged_dir == result.output_dir / "merged"
    merged = load_file(str(result.merged_dir / "model.safetensors"))
    base = load_file(str(case["base"] / "model.safetensors"))
    # PEFT's own merge of the saved adapter into the untouched base folder (full precision, also for qlora)
    cfg = case["cfg"].model_copy(update={"peft": "none"})
    if case["method"] == "reward":
        from llmkit.train.reward import load_reward_model

        plain = load_reward_model(cfg)[0]
    else:
        plain = fresh_model(case["method"], cfg)[0]
    expected = PeftModel.from_pretrained(plain, result.final_dir).merge_and_unload().state_dict()
    targeted = {n.split(".lora_A.")[0].removeprefix("base_model.model.") for n in case["trainable"] if ".lora_A." in n}
    assert targeted
    for name, tensor in merged.items():
        assert torch.allclose(tensor, expected[name], atol=1e-6), f"{name}: merged ≠ base + the saved adapter's delta"
        module = name.rsplit(".", 1)[0]
        if name in base and module not in targeted:
            assert torch.equal(tensor, base[name]), f"{name} is not targeted by the adapter but changed"
    for module in targeted:
        assert not torch.equal(merged[module + ".weight"], base[module + ".weight"]), f"{module} has no LoRA delta"


@pytest.mark.parametrize("case", ["dpo-sigmoid", "dpo-ipo"], indirect=True)  # the same module-scoped runs
def test_dpo_increases_the_chosen_vs_rejected_margin(case, tokenizer):
    from llmkit.train.model import load_for_training
    from llmkit.train.preference import encode_preference, pair_batch, pair_logps

    h = case["result"].history
    assert h[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)  # step 1 scores the policy against itself
    assert h[-1]["reward_margin"] > 0.0 and h[-1]["accuracy"] == 1.0
    # and independently of the logged metric: log π(chosen) − log π(rejected) grew on every pair
    cfg = case["cfg"]
    trained = load_for_training(cfg.model_copy(update={"model": str(case["result"].merged_dir), "peft": "none"}))[0].eval()
    base = load_for_training(cfg.model_copy(update={"peft": "none"}))[0].eval()
    pairs = encode_preference(tokenizer, PAIR_ROWS, cfg.max_length, cfg.chat_template)
    batch = pair_batch(pairs, tokenizer.pad_token_id)
    with torch.no_grad():
        c1, r1, *_ = pair_logps(trained, batch)
        c0, r0, *_ = pair_logps(base, batch)
    assert bool(((c1 - r1) > (c0 - r0)).all())


@pytest.mark.parametrize("case", ["kto-full"], indirect=True)
def test_kto_logs_its_kl_reference_point(case):
    h = case["result"].history
    assert all(e["kl"] >= 0 for e in h) and any(e["kl"] > 0 for e in h)  # z = max(0, mean KL estimate), moving


@pytest.mark.parametrize("case", ["reward-lora"], indirect=True)
def test_reward_model_ranks_chosen_above_rejected(case):
    from llmkit.train.reward import RewardModel

    assert case["result"].history[-1]["accuracy"] == 1.0
    rm = RewardModel(case["result"].merged_dir)
    prompts = [r["prompt"] for r in PAIR_ROWS]
    chosen, rejected = rm.score(prompts, [r["chosen"] for r in PAIR_ROWS]), rm.score(prompts, [r["rejected"] for r in PAIR_ROWS])
    assert all(c > r for c, r in zip(chosen, rejected))


@NO_BNB
def test_validation_does_not_change_what_qlora_learns(tmp_path, tiny_dir):
    """A validation pass (eval mode, no grad) must leave training untouched: the same QLoRA run with and
    without validation data must end with the same adapter. bitsandbytes repacks 4-bit weights for its
    CPU kernel on such a pass, and the repacked matmul (gemv_4bit) has no backward, so from then on the
    gradient through every 4-bit layer would be silently dropped."""
    import llmkit.train as T

    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in SFT_ROWS[:8]) + "\n")
    fields = {"model": str(tiny_dir), "data": str(data), "peft": "qlora", "max_steps": 3, "batch_size": 4,
              "learning_rate": 1e-2, "lora_r": 4, "max_length": 64, "seed": 3, "merge": False}
    plain = T.run("sft", **fields, val_split=0.0, output_dir=str(tmp_path / "plain"))
    validated = T.run("sft", **fields, eval_data=str(data), output_dir=str(tmp_path / "validated"))
    assert plain.summary["peft"] == validated.summary["peft"] == "qlora" and len(validated.evals) >= 2
    a = load_file(str(plain.final_dir / "adapter_model.safetensors"))
    b = load_file(str(validated.final_dir / "adapter_model.safetensors"))
    off = {n: float((a[n] - b[n]).abs().max()) for n in a if not torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-6)}
    assert not off, f"validation changed {len(off)} of {len(a)} adapter tensors, e.g. {dict(list(off.items())[:2])}"
