"""Decode speed on the embedded model: llmkit vs the libraries it wraps, in one run.

128 new tokens, greedy, the same chat prompt and thread count for all four:
  llmkit local  vs  raw llama-cpp-python (Llama.create_completion)   target ≥ 0.95×
  llmkit hf     vs  plain transformers model.generate                target ≥ 1.00×
Also checks that `import llmkit` pulls in none of torch, transformers, llama_cpp.

    python benchmarks/decode.py [--tokens 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROMPT = "Write a long story about a dragon who learns to bake bread."


def prompt(i):
    """A different prompt each run, so no runtime reuses the previous run's KV cache."""
    return f"{PROMPT} Take {i}."


def best(runs):
    """Median of the runs: (tokens/s, ttft seconds)."""
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def bench_llmkit(m, n, repeats):
    import llmkit as lk

    runs = []
    m.chat([lk.user(prompt(-1))], temperature=0, max_tokens=8)  # warm-up
    for i in range(repeats):
        t0 = time.perf_counter()
        first, last = None, None
        for c in m.stream([lk.user(prompt(i))], temperature=0, max_tokens=n):
            if first is None and c.text:
                first = time.perf_counter()
            last = c
        dt = time.perf_counter() - t0
        runs.append((last.usage.output_tokens / dt, first - t0))
    return best(runs)


def bench_llama_cpp(n, repeats, threads):
    from llama_cpp import Llama

    from llmkit.models import embedded_gguf

    llm = Llama(str(embedded_gguf()), n_ctx=8192, n_threads=threads, verbose=False)
    import llmkit as lk

    render = lk.model().render
    llm.create_completion(render([lk.user(prompt(-1))]), max_tokens=8, temperature=0)
    runs = []
    for i in range(repeats):
        text = render([lk.user(prompt(i))])
        t0 = time.perf_counter()
        first, count = None, 0
        for chunk in llm.create_completion(text, max_tokens=n, temperature=0, stream=True):
            if first is None:
                first = time.perf_counter()
            count += 1
        dt = time.perf_counter() - t0
        runs.append((count / dt, first - t0))
    return best(runs)


def bench_generate(hf, n, repeats):
    import torch

    tok, model = hf.tokenizer, hf.model

    def ids(i):
        return tok.apply_chat_template([{"role": "user", "content": prompt(i)}], add_generation_prompt=True,
                                       return_tensors="pt", return_dict=True)["input_ids"]

    with torch.inference_mode():
        model.generate(ids(-1), max_new_tokens=8, do_sample=False)
        runs = []
        for i in range(repeats):
            ids_i = ids(i)
            t0 = time.perf_counter()
            model.generate(ids_i, max_new_tokens=1, do_sample=False)
            ttft = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = model.generate(ids_i, max_new_tokens=n, do_sample=False)
            dt = time.perf_counter() - t0
            runs.append(((out.shape[1] - ids_i.shape[1]) / dt, ttft))
    return best(runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    threads = os.cpu_count()

    heavy = subprocess.run([sys.executable, "-c", "import sys, llmkit; print(' '.join(m for m in "
                            "('torch','transformers','llama_cpp') if m in sys.modules))"],
                           capture_output=True, text=True).stdout.strip()
    import llmkit as lk

    local = lk.model(n_threads=threads)
    rows = {"llmkit local": bench_llmkit(local, args.tokens, args.repeats),
            "llama-cpp-python": bench_llama_cpp(args.tokens, args.repeats, threads)}
    del local
    hf = lk.model("hf:smollm2", threads=threads)
    rows["llmkit hf"] = bench_llmkit(hf, args.tokens, args.repeats)
    rows["transformers generate"] = bench_generate(hf, args.tokens, args.repeats)

    print(f"decode: {args.tokens} new tokens, greedy, {threads} threads, median of {args.repeats}")
    print(f"{'runtime':<24}{'tokens/s':>10}{'TTFT ms':>10}")
    for name, (tps, ttft) in rows.items():
        print(f"{name:<24}{tps:>10.1f}{ttft * 1000:>10.1f}")
    r_local = rows["llmkit local"][0] / rows["llama-cpp-python"][0]
    r_hf = rows["llmkit hf"][0] / rows["transformers generate"][0]
    print(f"llmkit local / llama-cpp-python = {r_local:.2f}x  (target >= 0.95)  {'OK' if r_local >= 0.95 else 'MISS'}")
    print(f"llmkit hf / transformers generate = {r_hf:.2f}x  (target >= 1.00)  {'OK' if r_hf >= 1.0 else 'MISS'}")
    print(f"import llmkit pulls in: {heavy or 'none of torch, transformers, llama_cpp'}")


if __name__ == "__main__":
    main()
