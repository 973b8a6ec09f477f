"""Prompting methods and optimised programs on one task, one model, one run; DSPy as the peer.

The task: topic classification of one-sentence texts into sports / food / weather / technology
(`benchmarks/data/programs_topics.jsonl`: 32 train, 40 held-out dev, balanced, hand-written).
Every method is scored by the same metric (the label, exactly, after normalising case and
punctuation) on the same dev split, with the embedded SmolLM2-135M, temperature 0 unless noted:

  zero-shot          programs.Predict("text -> topic: Literal[...]"), no demos
  few-shot           the same Predict with 8 fixed training examples as demos (2 a label)
  chain-of-thought   programs.ChainOfThought: a `reasoning` field before the label
  CoT prompt         prompts.chain_of_thought, greedy: "Let's think step by step", the label read
                     from the reasoning (the baseline self-consistency samples around)
  self-consistency   prompts.self_consistency on that prompt: n=5, temperature 0.7, seeds 0..4
  optimised          programs.BootstrapFewShot on Predict, compiled on train (compile time apart)

The peer is DSPy 3 in its own interpreter (`--dspy-python`, a venv with `pip install dspy`; it is
not an llmkit dependency), talking to `llmkit serve` started in this process on a free port through
its OpenAI-compatible client (`dspy.LM("openai/...", api_base=...)`): the same zero-shot Predict
and BootstrapFewShot, same split, same metric, same model behind the server. This file is also the
peer's script (`--dspy-worker URL`), which imports dspy and no llmkit.

A larger model runs the llmkit rows again when one is reachable (`--large SPEC`, or a provider key
in the environment); otherwise the script says it is not.

    python benchmarks/programs.py [--dev 40] [--dspy-python /tmp/dspyenv/bin/python] [--large openai:gpt-4o-mini]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

DATA = Path(__file__).parent / "data" / "programs_topics.jsonl"
LABELS = ["sports", "food", "weather", "technology"]
SIGNATURE = "text -> topic: Literal[" + ", ".join(repr(x) for x in LABELS) + "]"
INSTRUCTIONS = "Classify the text by its topic: sports, food, weather or technology."
COT_QUESTION = "Text: {text}\n\nIs this text about sports, food, weather or technology?"
MAX_TOKENS = 32         # a JSON label needs ~8 tokens
COT_MAX_TOKENS = 96     # reasoning: enough for a few sentences, bounded for 2 CPUs
FEW_SHOT = 8            # the first 8 training rows: 2 a label (the file cycles through the labels)
LARGE_KEYS = {"OPENAI_API_KEY": "openai:gpt-4o-mini", "ANTHROPIC_API_KEY": "anthropic:claude-3-5-haiku-latest",
              "GEMINI_API_KEY": "gemini:gemini-2.0-flash"}


def load(split: str) -> list[dict]:
    return [r for r in map(json.loads, DATA.read_text().splitlines()) if r["split"] == split]


def normalize(s) -> str:
    return re.sub(r"[^a-z]", "", str(s or "").lower())


def label_in(text: str) -> str | None:
    """The label a free-text reasoning ends on: "The answer is X", else the last label word in it."""
    from llmkit.prompts import extract_answer

    said = normalize(extract_answer(text or ""))
    if said in LABELS:
        return said
    hits = [(m.start(), lab) for lab in LABELS for m in re.finditer(rf"\b{lab}\b", text or "", re.IGNORECASE)]
    return max(hits)[1] if hits else None


# --- llmkit ------------------------------------------------------------------------------------------

def done(row: dict) -> dict:
    """Each row on stderr as it finishes: a long run stopped early still shows what it measured."""
    print(f"  {row['method']}: {row['acc']:.3f} in {row['s']:.0f} s", file=sys.stderr, flush=True)
    return row


def run_llmkit(m, train: list[dict], dev: list[dict]) -> list[dict]:
    from llmkit.programs import (
        BootstrapFewShot,
        ChainOfThought,
        Example,
        LabeledFewShot,
        Predict,
        evaluate,
    )
    from llmkit.prompts import chain_of_thought, self_consistency

    trainset = [Example(text=r["text"], topic=r["topic"]).with_inputs("text") for r in train]
    devset = [Example(text=r["text"], topic=r["topic"]).with_inputs("text") for r in dev]

    def metric(ex, pred) -> bool:
        return normalize(ex.topic) == normalize(pred.topic)

    def program_row(name: str, program, compile_s: float = 0.0, note: str = "") -> dict:
        t0 = time.perf_counter()
        r = evaluate(program, devset, metric, progress=False)
        return done({"method": name, "acc": r.score, "n": len(devset), "s": time.perf_counter() - t0,
                     "compile_s": compile_s, "errors": len(r.errors), "note": note,
                     "answers": [normalize(x.prediction.topic) if x.prediction else "error" for x in r.results]})

    def prompt_row(name: str, ask) -> dict:
        t0, answers = time.perf_counter(), []
        for r in dev:
            answers.append(ask(COT_QUESTION.format(text=r["text"])) or "none")
        acc = sum(a == r["topic"] for a, r in zip(answers, dev)) / len(dev)
        return done({"method": name, "acc": acc, "n": len(dev), "s": time.perf_counter() - t0, "compile_s": 0.0,
                     "errors": 0, "note": "", "answers": answers})

    predict = Predict(SIGNATURE, model=m, instructions=INSTRUCTIONS, temperature=0, max_tokens=MAX_TOKENS)
    rows = [program_row("zero-shot (Predict)", predict)]
    rows.append(program_row(f"few-shot ({FEW_SHOT} fixed demos)",
                            LabeledFewShot(FEW_SHOT, sample=False).compile(predict, trainset)))
    cot = ChainOfThought(SIGNATURE, model=m, instructions=INSTRUCTIONS, temperature=0, max_tokens=COT_MAX_TOKENS)
    rows.append(program_row("chain-of-thought (program)", cot))
    rows.append(prompt_row("CoT prompt, greedy", lambda q: chain_of_thought(
        m, q, extract=label_in, ask_format=True, temperature=0, max_tokens=COT_MAX_TOKENS).answer))
    rows.append(prompt_row("self-consistency n=5 T=0.7", lambda q: normalize(self_consistency(
        m, q, n=5, temperature=0.7, seed=0, extract=label_in, ask_format=True, max_tokens=COT_MAX_TOKENS).answer)))
    t0 = time.perf_counter()
    opt = BootstrapFewShot(metric, max_bootstrapped_demos=4, max_labeled_demos=FEW_SHOT)
    compiled = opt.compile(predict, trainset)
    demos = len(compiled.predictors()[0].demos)
    rows.append(program_row("optimised (BootstrapFewShot)", compiled, time.perf_counter() - t0,
                            f"{demos} demos, {sum(ok for _, ok in opt.traces)}/{len(opt.traces)} teacher runs passed"))
    return rows


# --- DSPy, in its own interpreter ----------------------------------------------------------------------

def dspy_worker(url: str, model: str, n_dev: int) -> None:
    """Run inside the DSPy venv: print one JSON row per method on stdout."""
    from typing import Literal

    import dspy
    from dspy.teleprompt import BootstrapFewShot

    lm = dspy.LM(f"openai/{model}", api_base=url + "/v1", api_key="unused", temperature=0,
                 max_tokens=MAX_TOKENS * 2, cache=False, num_retries=0)  # DSPy's [[ ## field ## ]] format takes more tokens
    dspy.configure(lm=lm)

    # built from a dict: under `from __future__ import annotations` a class body's Literal would stay a string
    Topic = dspy.Signature({"text": (str, dspy.InputField()), "topic": (Literal[tuple(LABELS)], dspy.OutputField())},
                           INSTRUCTIONS)

    train = [dspy.Example(text=r["text"], topic=r["topic"]).with_inputs("text") for r in load("train")]
    dev = [dspy.Example(text=r["text"], topic=r["topic"]).with_inputs("text") for r in load("dev")][:n_dev]

    def metric(ex, pred, trace=None) -> bool:
        return normalize(ex.topic) == normalize(getattr(pred, "topic", None))

    def score(name: str, program, compile_s: float = 0.0, note: str = "") -> None:
        t0, answers, errors = time.perf_counter(), [], 0
        for ex in dev:
            try:
                answers.append(normalize(program(**ex.inputs()).topic))
            except Exception as e:  # noqa: BLE001 - a reply neither of DSPy's adapters could parse: scored wrong, counted
                answers.append("error")
                errors += 1
                if errors == 1:
                    note = (note + "; " if note else "") + f"first error: {type(e).__name__}: {str(e)[:80]!r}"
        acc = sum(a == ex.topic for a, ex in zip(answers, dev)) / len(dev)
        print(json.dumps({"method": name, "acc": acc, "n": len(dev), "s": time.perf_counter() - t0,
                          "compile_s": compile_s, "errors": errors, "note": note, "answers": answers}), flush=True)

    predict = dspy.Predict(Topic)
    score(f"DSPy {dspy.__version__} zero-shot (Predict)", predict)
    t0 = time.perf_counter()
    compiled = BootstrapFewShot(metric=metric, max_bootstrapped_demos=4, max_labeled_demos=FEW_SHOT).compile(
        predict, trainset=train)
    score(f"DSPy {dspy.__version__} optimised (BootstrapFewShot)", compiled, time.perf_counter() - t0,
          f"{len(compiled.demos)} demos")


class Served:
    """`llmkit serve`'s app on the model, in a background thread on 127.0.0.1, a free port."""

    def __init__(self, m):
        from llmkit.serve import ServeConfig, create_app
        from llmkit.serve.app import server

        no_ui = {"ui": False} if "ui" in ServeConfig.model_fields else {}  # the API alone: no Gradio page to mount
        self.config = ServeConfig(api_key=None, **no_ui)
        self.name = self.config.served_name(m)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))  # our own socket: no race for a "free" port
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = server(create_app(m, self.config), self.config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        import logging

        logging.getLogger("uvicorn.access").disabled = True  # a line per request would bury the table
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("llmkit serve did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run_dspy(m, python: str, n_dev: int) -> tuple[list[dict], str]:
    """The DSPy rows, or none and the reason."""
    if not python or not Path(python).exists():
        return [], f"no DSPy interpreter at {python!r} (python3 -m venv /tmp/dspyenv && /tmp/dspyenv/bin/pip install dspy)"
    check = subprocess.run([python, "-c", "import dspy"], capture_output=True, text=True, check=False)
    if check.returncode:
        return [], f"{python} cannot import dspy: {check.stderr.strip().splitlines()[-1]}"
    with Served(m) as srv:
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DSPY_CACHEDIR": "/tmp/llmkit-bench-dspy-cache"}
        p = subprocess.run([python, __file__, "--dspy-worker", srv.url, "--served-name", srv.name, "--dev", str(n_dev)],
                           capture_output=True, text=True, env=env, check=False)
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode:
        return rows, f"DSPy worker exited {p.returncode}: {p.stderr.strip()[-600:]}"
    return rows, ""


# --- report --------------------------------------------------------------------------------------------

def table(title: str, rows: list[dict]) -> None:
    print(title)
    print(f"{'method':<44}{'dev acc':>9}{'correct':>9}{'eval s':>8}{'compile s':>10}{'errors':>7}  note")
    for r in rows:
        print(f"{r['method']:<44}{r['acc']:>9.3f}{round(r['acc'] * r['n']):>5}/{r['n']:<3}{r['s']:>8.1f}"
              f"{r['compile_s']:>10.1f}{r['errors']:>7}  {r['note']}")


def ratios(rows: list[dict]) -> None:
    base = rows[0]["acc"]
    for r in rows[1:]:
        if base:
            print(f"{r['method']} / zero-shot accuracy = {r['acc'] / base:.2f}x")
    by = {r["method"]: r for r in rows}
    mine = by.get("optimised (BootstrapFewShot)")
    peer = next((r for r in rows if r["method"].startswith("DSPy") and "optimised" in r["method"]), None)
    if mine and peer:
        print(f"llmkit / DSPy optimised accuracy = {mine['acc']:.3f} vs {peer['acc']:.3f}; "
              f"eval time {mine['s'] / peer['s']:.2f}x, compile time {mine['compile_s'] / max(peer['compile_s'], 1e-9):.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=int, default=40, help="held-out examples scored (the first N of 40)")
    ap.add_argument("--dspy-python", default="/tmp/dspyenv/bin/python", help="an interpreter with dspy installed")
    ap.add_argument("--no-peer", action="store_true", help="skip DSPy")
    ap.add_argument("--large", default="", help="a larger model spec to run the llmkit rows on (default: from a key in the env)")
    ap.add_argument("--dspy-worker", metavar="URL", help=argparse.SUPPRESS)  # the peer's side, in the DSPy venv
    ap.add_argument("--served-name", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dspy_worker:
        return dspy_worker(args.dspy_worker, args.served_name, args.dev)

    import llmkit as lk

    t_all = time.perf_counter()
    train, dev = load("train"), load("dev")[:args.dev]
    m = lk.model()
    m.chat("Hi", max_tokens=2)  # load the weights before any timing
    rows = run_llmkit(m, train, dev)
    note = "skipped (--no-peer)"
    if not args.no_peer:
        peer, note = run_dspy(m, args.dspy_python, len(dev))
        rows += peer
    print(f"programs: topic classification, 4 labels (chance 0.25), {len(train)} train / {len(dev)} held-out dev, "
          f"embedded {m.name}, {os.cpu_count()} CPUs")
    table(f"model: {m.name} (llmkit in process; DSPy through llmkit serve's /v1)", rows)
    if note:
        print(f"DSPy: {note}")
    ratios(rows)
    labels = {r["method"]: ", ".join(f"{lab} {r['answers'].count(lab)}" for lab in LABELS + ["error", "none"]
                                     if r["answers"].count(lab)) for r in rows}
    print("answers given (of each label):")
    for name, text in labels.items():
        print(f"  {name:<44}{text}")

    spec = args.large or next((s for k, s in LARGE_KEYS.items() if os.environ.get(k)), "")
    if spec:
        big = lk.model(spec)
        table(f"\nmodel: {spec} (llmkit rows only)", run_llmkit(big, train, dev))
    else:
        print(f"larger model: not reachable (no --large and none of {', '.join(LARGE_KEYS)} set)")
    print(f"(total {time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
