"""Context extension on the embedded SmolLM2-135M: perplexity at 2× its trained context (8192 →
16384 tokens) with no RoPE scaling, and with linear, dynamic-NTK and YaRN scaling, no fine-tuning;
the 1× perplexity on the same text is the reference a good extension should approach.

Text: Debian's license texts (/usr/share/common-licenses, ~300 kB of English prose), concatenated
in name order and read in non-overlapping windows; every token of a window is predicted from all
the tokens before it in the window, so a 16384-token window measures reading at positions the
model never trained on. The fine-tune half of the recipe (SFT at 16384 tokens with the scaling,
examples/recipes/context-yarn.yaml) is a GPU job: on this 2-core CPU one step takes minutes; the
before/after-fine-tune check runs on a tiny model in tests/train/test_grpo_distill_context.py.

    python benchmarks/context.py [--factor 2] [--windows 1] [--kinds none,linear,dynamic,yarn]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ["HF_HUB_OFFLINE"] = "1"


def texts() -> list[str]:
    root = Path("/usr/share/common-licenses")
    return [p.read_text(errors="replace") for p in sorted(root.iterdir()) if p.is_file() and not p.is_symlink()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=float, default=2.0)
    ap.add_argument("--windows", type=int, default=1, help="windows per length (each 2x window is one long forward)")
    ap.add_argument("--kinds", default="none,linear,dynamic,yarn")
    args = ap.parse_args()

    import torch

    from llmkit.models.hf import embedded_dir, load_pretrained
    from llmkit.train.context import original_context, perplexity, scale_rope

    t0 = time.perf_counter()
    path = str(embedded_dir())
    rows = []
    model, tok = load_pretrained(path)
    n = original_context(model.config)
    body = texts()
    t = time.perf_counter()
    rows.append(("1x (reference)", n, perplexity(model, tok, body, n, args.windows), time.perf_counter() - t))
    length = int(n * args.factor)
    for kind in args.kinds.split(","):
        model, tok = load_pretrained(path)
        if kind != "none":
            scale_rope(model, kind, args.factor)
        t = time.perf_counter()
        rows.append((f"{args.factor:g}x, {kind}", length, perplexity(model, tok, body, length, args.windows), time.perf_counter() - t))
    print(f"context: SmolLM2-135M-Instruct (trained at {n} tokens), float32 torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; text: /usr/share/common-licenses, {args.windows} window(s) per length")
    print("| scaling | window tokens | perplexity | s |\n|---|---:|---:|---:|")
    for name, w, ppl, s in rows:
        print(f"| {name} | {w} | {ppl:.2f} | {s:.0f} |")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
