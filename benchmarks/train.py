"""LoRA SFT on the embedded model: llmkit's trainer vs a plain transformers + PEFT ``Trainer`` script.

Both sides train SmolLM2-135M-Instruct (the embedded model as a transformers folder, float32) with
LoRA (r 16, alpha 32, dropout 0, the same target modules) on the same synthetic chat rows, encoded
the same way (``llmkit.train.data.encode_chat``: the chat template, labels on assistant tokens
only), batch 8, max length 256, no packing, AdamW at a constant 2e-4, clipping at 1.0, the same
torch thread count. Each run is a fresh subprocess, so its peak RSS (``ru_maxrss`` from
``os.wait4``) is its own; runs alternate (llmkit, trainer, llmkit, trainer, …) and the table shows
medians, because this 2-core machine is noisy.

tokens/s = non-pad input tokens of the training steps / their seconds, the first step discarded
on both sides (warm-up). llmkit: its own per-step timer (collate, forward, backward, clip, AdamW,
zero_grad), read back from ``TrainResult.history``. Trainer: a ``TrainerCallback``, from one
``on_step_end`` to the next, i.e. everything its loop does per step (fetching and padding the
batch, forward, backward, clip, AdamW, logging); ``on_step_begin``→``on_step_end`` (no fetching)
is shown too. Model loading, tokenising and saving count for neither.

Targets (issue): llmkit ≥ 1.0× the Trainer's tokens/s and ≤ 1.0× its peak RSS.

    .venv/bin/python benchmarks/train.py [--steps 10] [--repeats 2] [--rows 96] [--threads N]
        [--targets q_proj,k_proj,v_proj,o_proj | all-linear] [--mmap-threshold BYTES]
    .venv/bin/python benchmarks/train.py --profile [--steps 8]    # where llmkit's step spends time and memory

Under glibc's default malloc a training process keeps 1-1.7 GB of freed activations in its heap,
and how much of it the next step reuses depends on allocation history (±0.4 GB run to run for the
same batches in one-process tests), so peak RSS is more than the live tensors. ``--mmap-threshold
131072`` fixes glibc's threshold in both children, so big tensors go back to the OS when freed and
the peak follows the live tensors (every big allocation then costs page faults: ~35% slower here).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BATCH, MAX_LENGTH, LR, R, ALPHA = 8, 256, 2e-4, 16, 32

# --- the data: varied synthetic chats -------------------------------------------------------
TOPICS = ["sourdough bread", "a bicycle chain", "tomato seedlings", "a leaking tap", "Python lists", "SQL joins",
          "the French Revolution", "photosynthesis", "black holes", "a job interview", "marathon training",
          "a slow laptop", "compound interest", "learning the guitar", "a sprained ankle", "houseplants in winter",
          "git branches", "the water cycle", "a first camping trip", "public speaking"]
ASKS = ["Can you explain {t} in simple terms?", "What should I know about {t}?", "I keep having trouble with {t}. Any tips?",
        "Give me a short overview of {t}.", "How do beginners usually get {t} wrong?", "Why does {t} matter?",
        "What is the first step with {t}?", "Summarise {t} for a busy person."]
OPENERS = ["Sure.", "Good question.", "Here is the short version.", "Happy to help.", "Let's break it down."]
FACTS = ["Start small and change one thing at a time, so you can tell what made the difference.",
         "Most problems with {t} come from rushing the early steps.",
         "Write down what you tried; patterns show up after a few attempts.",
         "A little regular practice beats one long session each month.",
         "The basic idea behind {t} is simpler than it looks once you see the main parts.",
         "Check the obvious causes first, because they are the most common ones.",
         "Ask someone experienced to look at it; a second pair of eyes saves hours.",
         "Keep notes on the numbers involved so you can compare before and after.",
         "Good tools help, but patience matters more with {t}.",
         "If something feels wrong, stop and look again rather than forcing it."]
FOLLOW_UPS = ["Thanks! And how long does that usually take?", "What if that doesn't work?", "Is there a common mistake to avoid?"]
REPLIES = ["Usually a few days to a couple of weeks, depending on how often you practise.",
           "Then go back one step and check your assumptions; the cause is often earlier than it seems.",
           "Yes: skipping the basics. It feels slow, but it is the fastest way in the end."]
SYSTEMS = ["You are a concise assistant.", "You are a friendly tutor who explains things clearly."]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` chat rows: one or two user/assistant exchanges, sometimes a system turn, 60-150 tokens each."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        t = rng.choice(TOPICS)
        answer = " ".join([rng.choice(OPENERS)] + [f.format(t=t) for f in rng.sample(FACTS, rng.randint(2, 5))])
        msgs = [{"role": "user", "content": rng.choice(ASKS).format(t=t)}, {"role": "assistant", "content": answer}]
        if rng.random() < 0.35:
            k = rng.randrange(len(FOLLOW_UPS))
            msgs += [{"role": "user", "content": FOLLOW_UPS[k]}, {"role": "assistant", "content": REPLIES[k]}]
        if rng.random() < 0.3:
            msgs.insert(0, {"role": "system", "content": rng.choice(SYSTEMS)})
        rows.append({"messages": msgs})
    return rows


def encode(tokenizer, path: str) -> list[dict]:
    """The rows of ``path`` as llmkit's SFT encodes them (chat template, assistant-only labels, truncation)."""
    from llmkit.train.data import encode_chat, read_rows, truncate

    return [truncate(encode_chat(tokenizer, r["messages"]), MAX_LENGTH) for r in read_rows(path, "chat")]


# --- the children: one training run each ----------------------------------------------------
def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")), 0.0)


def child_llmkit(data: str, steps: int, threads: int, targets: list[str], out: str) -> dict:
    import llmkit as lk

    res = lk.train.run("sft", model="smollm2", data=data, peft="lora", lora_r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                       target_modules=targets, batch_size=BATCH, max_length=MAX_LENGTH, max_steps=steps, val_split=0,
                       learning_rate=LR, lr_scheduler="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                       merge=False, save_every=0, log_every=1, threads=threads, seed=0, dtype="float32", output_dir=out)
    steps_out, prev = [], 0
    for h in res.history:  # history keeps cumulative tokens and each step's tokens/s
        tokens = h["tokens"] - prev
        prev = h["tokens"]
        steps_out.append({"tokens": tokens, "seconds": tokens / h["tokens_per_s"], "loss": h["loss"]})
    return {"steps": steps_out, "trainable": res.summary["trainable_parameters"]}


def child_trainer(data: str, steps: int, threads: int, targets: list[str], out: str) -> dict:
    """What a plain transformers + PEFT script does: load, wrap in LoRA, ``Trainer(...).train()``."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from llmkit.models.hf import embedded_dir

    torch.set_num_threads(threads)
    path = embedded_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)  # as llmkit does before loading: the same LoRA init, so the losses can be compared step by step
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False  # as every PEFT training recipe does (llmkit does it too)
    target = "all-linear" if targets == ["all-linear"] else targets
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                                             target_modules=target))
    train = same_batches(encode(tokenizer, data), steps)
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    batch_tokens: list[int] = []

    def collate(features):  # the stock collator, counting non-pad tokens for tokens/s
        batch = pad(features)
        batch_tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class Clock(TrainerCallback):
        def __init__(self):
            self.rows, self.begin, self.last_end = [], 0.0, None

        def on_step_begin(self, args, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.rows.append({"tokens": batch_tokens[state.global_step - 1], "inner": now - self.begin,
                              "seconds": now - (self.last_end if self.last_end is not None else self.begin)})
            self.last_end = now

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs and self.rows:
                self.rows[-1]["loss"] = logs["loss"]

    clock = Clock()
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=LR,
                             lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                             optim="adamw_torch", logging_steps=1, save_strategy="no", report_to=[],
                             dataloader_num_workers=0, use_cpu=True, seed=0, disable_tqdm=True,
                             label_names=["labels"], train_sampling_strategy="sequential")
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collate, callbacks=[clock])
    trainer.train()
    return {"steps": clock.rows, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def same_batches(examples: list[dict], steps: int) -> list[dict]:
    """``examples`` in the order llmkit's loop draws them (its seeded shuffle, epoch after epoch), for a
    sequential sampler: both sides then train on identical batches. Padding, and so the work per
    token and the peak memory, depend on which rows share a batch; two different shuffles would
    make the comparison one of luck."""
    from llmkit.train.data import batches

    order: list[dict] = []
    epoch = 0
    while len(order) < steps * BATCH:
        order += [e for group in batches(examples, BATCH, 0, epoch) for e in group]
        epoch += 1
    return order


def child_load(threads: int, targets: list[str]) -> dict:
    """The floor both share: imports, the float32 model and the LoRA wrapper, no training."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmkit.models.hf import embedded_dir

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(embedded_dir(), dtype=torch.float32)
    target = "all-linear" if targets == ["all-linear"] else targets
    get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=R, lora_alpha=ALPHA, target_modules=target))
    return {"steps": []}


def child(side: str, data: str, steps: int, threads: int, targets: str, out: str) -> None:
    names = targets.split(",")
    if side == "llmkit":
        res = child_llmkit(data, steps, threads, names, out)
    elif side == "trainer":
        res = child_trainer(data, steps, threads, names, out)
    else:
        res = child_load(threads, names)
    res["hwm_mb"] = _vm_hwm_mb()
    print("RESULT " + json.dumps(res))


def run_child(side: str, data: Path, steps: int, threads: int, targets: str, root: Path, mmap_threshold: int = 0) -> dict:
    """One side in a fresh process: its steps, and its peak RSS from ``os.wait4``."""
    out = root / f"out-{side}"
    log = root / f"{side}.log"
    env = dict(os.environ)
    if mmap_threshold:  # a fixed threshold turns off glibc's sliding one: big tensors go back to the OS when freed
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", side, str(data), str(steps), str(threads),
                                 targets, str(out)], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{side} run failed (exit {os.waitstatus_to_exitcode(status)}):\n{log.read_text()[-3000:]}")
    res = json.loads(next(l for l in stdout.splitlines() if l.startswith("RESULT "))[7:])
    res.update(maxrss_mb=usage.ru_maxrss / 1024, wall_s=time.perf_counter() - start)
    timed = res["steps"][1:]  # the first step is warm-up on both sides
    if timed:
        res["tokens_per_s"] = sum(s["tokens"] for s in timed) / sum(s["seconds"] for s in timed)
        if "inner" in timed[0]:
            res["inner_tokens_per_s"] = sum(s["tokens"] for s in timed) / sum(s["inner"] for s in timed)
        losses = [s["loss"] for s in res["steps"] if "loss" in s]
        res["first_loss"], res["last_loss"] = losses[0], statistics.mean(losses[-3:])
    return res


# --- profiling llmkit's step (optional) -------------------------------------------------------
def profile(data: Path, threads: int, targets: str, steps: int = 4) -> None:
    """llmkit's loss (``token_loss``: logits only where a row trains) against a plain
    ``model(labels=...)`` loss, in one process on the same batches, steps interleaved so the
    machine's load hits both alike: seconds per phase, then what autograd saves for backward, by
    the module that saved it (parameters excluded)."""
    import collections

    import torch

    from llmkit.train.data import IGNORE, collate
    from llmkit.train.model import load_for_training, token_loss
    from llmkit.train.sft_config import SFTConfig

    cfg = SFTConfig(data=str(data), peft="lora", lora_r=R, lora_alpha=ALPHA, lora_dropout=0.0,
                    target_modules=targets.split(","), threads=threads, max_length=MAX_LENGTH)
    model, tok, _ = load_for_training(cfg)
    model.train()
    examples = same_batches(encode(tok, str(data)), steps)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR)
    variants = {"llmkit token_loss": token_loss,
                "plain model(labels=...)": lambda m, batch: (m(**batch).loss, 1)}
    spent = {v: collections.Counter() for v in variants}
    for i in range(steps):
        batch = collate(examples[i * BATCH:(i + 1) * BATCH], tok.pad_token_id)
        for name in list(variants)[:: 1 if i % 2 else -1]:
            a = time.perf_counter()
            loss, _ = variants[name](model, batch)
            b = time.perf_counter()
            loss.backward()
            c = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:  # the first step is warm-up
                spent[name].update({"forward+loss": b - a, "backward": c - b, "clip+AdamW": time.perf_counter() - c})
    batch = collate(examples[:BATCH], tok.pad_token_id)
    target = batch["labels"][:, 1:]
    print(f"profile: batch {tuple(batch['input_ids'].shape)}: {int(batch['attention_mask'].sum())} non-pad tokens, "
          f"{int((target != IGNORE).sum())} trained; llmkit projects {int((target != IGNORE).any(0).sum())} of "
          f"{target.shape[1]} positions per row onto the vocabulary")
    print(f"seconds per step, mean of {steps - 1} interleaved steps:")
    for name, t in spent.items():
        print(f"  {name:26s} " + "  ".join(f"{k} {v / (steps - 1):.2f}" for k, v in t.items()))

    stack = ["loss (outside the model)"]
    for mod_name, m in model.named_modules():  # who saves what: the innermost module running when autograd packs
        kind = "lora" if "lora_" in mod_name else type(m).__name__
        m.register_forward_pre_hook(lambda mod, args, k=kind: stack.append(k))
        m.register_forward_hook(lambda mod, args, out: (stack.pop(), None)[1])
    for name, fn in variants.items():
        seen = {(p.untyped_storage().data_ptr(), p.untyped_storage().nbytes()) for p in model.parameters()}
        saved: collections.Counter = collections.Counter()

        def pack(t, seen=seen, saved=saved):
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            if key not in seen:
                seen.add(key)
                saved[stack[-1]] += key[1]
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, _ = fn(model, batch)
        loss.backward()
        model.zero_grad(set_to_none=True)
        print(f"saved for backward, {name}: {sum(saved.values()) / 2**20:.0f} MiB = "
              + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in saved.most_common()))


# --- the report -----------------------------------------------------------------------------
def compare(args: argparse.Namespace, data: Path, threads: int, root: Path) -> None:
    """Run both sides ``args.repeats`` times, alternating, and print the table and the ratios."""
    from transformers import AutoTokenizer

    from llmkit.models.hf import embedded_dir

    lengths = [len(e["input_ids"]) for e in encode(AutoTokenizer.from_pretrained(embedded_dir()), str(data))]
    print(f"train: LoRA SFT, embedded SmolLM2-135M-Instruct float32, r={R} alpha={ALPHA} dropout 0 on {args.targets}, "
          f"batch {BATCH}, max_length {MAX_LENGTH}, no packing, AdamW lr {LR} constant, {args.steps} steps "
          f"(first dropped), {threads} threads, {args.repeats} runs per side alternating, malloc "
          f"{'MALLOC_MMAP_THRESHOLD_=' + str(args.mmap_threshold) if args.mmap_threshold else 'glibc default'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"data: {len(lengths)} synthetic chat rows, {min(lengths)}-{max(lengths)} tokens "
          f"(mean {statistics.mean(lengths):.0f}), labels on assistant tokens only\n")
    wall = time.perf_counter()
    runs: dict[str, list[dict]] = {"llmkit": [], "trainer": []}
    for i in range(args.repeats):
        for side in ("llmkit", "trainer") if i % 2 == 0 else ("trainer", "llmkit"):
            r = run_child(side, data, args.steps, threads, args.targets, root, args.mmap_threshold)
            runs[side].append(r)
            print(f"  run {i + 1} {side:8s} {r['tokens_per_s']:7.1f} tok/s  peak {r['maxrss_mb']:6.0f} MB  "
                  f"loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}  ({r['wall_s']:.0f} s)", file=sys.stderr)
    floor = run_child("load", data, args.steps, threads, args.targets, root, args.mmap_threshold)
    med = {s: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "maxrss_mb", "first_loss", "last_loss")}
           for s, rs in runs.items()}
    print("| side | tokens/s | peak RSS MB | first loss | final loss (mean of last 3 steps) | trainable params |")
    print("|---|---:|---:|---:|---:|---:|")
    for side, label in (("llmkit", "llmkit `train.run('sft')`"), ("trainer", "transformers `Trainer` + PEFT")):
        m = med[side]
        print(f"| {label} | {m['tokens_per_s']:.1f} | {m['maxrss_mb']:.0f} | {m['first_loss']:.3f} | "
              f"{m['last_loss']:.3f} | {runs[side][0]['trainable']:,} |")
    print(f"| model + LoRA loaded, no training | — | {floor['maxrss_mb']:.0f} | — | — | — |")
    print()
    print("per run tokens/s: " + "; ".join(f"{s} " + ", ".join(f"{r['tokens_per_s']:.1f}" for r in rs) for s, rs in runs.items())
          + "  (Trainer on_step_begin->on_step_end, no batch fetching: "
          + ", ".join(f"{r['inner_tokens_per_s']:.1f}" for r in runs["trainer"]) + ")")
    a, b = runs["llmkit"][0]["steps"], runs["trainer"][0]["steps"]
    same = [x["tokens"] for x in a] == [x["tokens"] for x in b]
    gap = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b))
    print(f"same batches on both sides: {'yes' if same else 'NO'} (non-pad tokens per step {[x['tokens'] for x in a]}); "
          f"largest per-step loss difference {gap:.1e}")
    tps = med["llmkit"]["tokens_per_s"] / med["trainer"]["tokens_per_s"]
    mem = med["llmkit"]["maxrss_mb"] / med["trainer"]["maxrss_mb"]
    above = (med["llmkit"]["maxrss_mb"] - floor["maxrss_mb"]) / max(med["trainer"]["maxrss_mb"] - floor["maxrss_mb"], 1)
    print(f"llmkit / Trainer tokens/s = {tps:.2f}x  (target >= 1.00)  {'OK' if tps >= 1.0 else 'MISS'}")
    print(f"llmkit / Trainer peak RSS = {mem:.2f}x  (target <= 1.00)  {'OK' if mem <= 1.0 else 'MISS'};  "
          f"above the loaded model: {above:.2f}x")
    print(f"(total {time.perf_counter() - wall:.0f} s, load average now {os.getloadavg()[0]:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=6, metavar=("SIDE", "DATA", "STEPS", "THREADS", "TARGETS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=10, help="optimiser steps per run (the first is warm-up)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per side, alternating; medians are reported")
    ap.add_argument("--rows", type=int, default=96, help="synthetic chat rows (batch 8: steps × 8 rows are used)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on both sides (default: torch's default)")
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj", help="LoRA targets, comma-separated, or all-linear")
    ap.add_argument("--mmap-threshold", type=int, default=0,
                    help="set MALLOC_MMAP_THRESHOLD_ (bytes) in both children, so peak RSS follows live tensors "
                         "rather than glibc's heap reuse (0 = glibc's default)")
    ap.add_argument("--profile", action="store_true", help="instead of the comparison: llmkit's loss vs a plain "
                                                          "labels loss in one process, time per phase and saved tensors")
    args = ap.parse_args()
    if args.child:
        side, data, steps, threads, targets, out = args.child
        return child(side, data, int(steps), int(threads), targets, out)
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2 (the first step is warm-up)")
    if args.rows % BATCH:
        raise SystemExit(f"--rows must be a multiple of the batch size {BATCH}, so no epoch ends on a short batch")
    import torch

    threads = args.threads or torch.get_num_threads()
    root = Path(tempfile.mkdtemp(prefix="train-bench-"))
    data = root / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(args.rows)))
    try:
        if args.profile:
            profile(data, threads, args.targets, args.steps)
        else:
            compare(args, data, threads, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
