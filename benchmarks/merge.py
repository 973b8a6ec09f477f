"""Peak memory and wall time of ``llmkit merge`` vs mergekit on the same YAML (issue: model merging).

Inputs: the embedded SmolLM2-135M as a transformers folder (float32, ~540 MB) as the base, and three
"fine-tuned" copies = base + Gaussian noise (1% of each tensor's std). Each merge runs in a fresh
subprocess; its peak RSS is the child's ``ru_maxrss`` from ``os.wait4`` (cross-checked with the
child's own /proc VmHWM), so imports count for both tools alike and nothing of the parent leaks in.
The two outputs are compared tensor by tensor (max |difference|).

Target: llmkit's peak ≤ 1.0× mergekit's.

    .venv/bin/python benchmarks/merge.py                 # ties and linear
    .venv/bin/python benchmarks/merge.py --methods ties --keep /tmp/merge-bench
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "ties": """merge_method: ties
base_model: {base}
models:
  - {{model: {ft1}, parameters: {{weight: 0.5, density: 0.5}}}}
  - {{model: {ft2}, parameters: {{weight: 0.3, density: 0.5}}}}
  - {{model: {ft3}, parameters: {{weight: 0.2, density: 0.5}}}}
dtype: float32
""",
    "linear": """merge_method: linear
models:
  - {{model: {ft1}, parameters: {{weight: 0.5}}}}
  - {{model: {ft2}, parameters: {{weight: 0.3}}}}
  - {{model: {ft3}, parameters: {{weight: 0.2}}}}
dtype: float32
""",
}


def _vm_hwm_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(tool: str, config: str, out: str) -> None:
    """Run one merge in this (fresh) process; print the RSS high-water marks as JSON."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    if tool == "llmkit":
        import torch  # noqa: F401  (imported before the first mark, as mergekit's import does)

        from llmkit.train.merge import merge
        after_import, start = _vm_hwm_kb(), time.perf_counter()
        merge(config, out)
    else:
        import yaml
        from mergekit.config import MergeConfiguration
        from mergekit.merge import run_merge
        from mergekit.options import MergeOptions
        after_import, start = _vm_hwm_kb(), time.perf_counter()
        run_merge(MergeConfiguration.model_validate(yaml.safe_load(Path(config).read_text())), out,
                  MergeOptions(quiet=True, write_model_card=False))
    print(json.dumps({"import_kb": after_import, "hwm_kb": _vm_hwm_kb(), "merge_s": time.perf_counter() - start}))


def make_inputs(root: Path) -> dict[str, Path]:
    """The embedded model folder (linked, not copied) and three noisy copies."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from llmkit.models.hf import embedded_dir

    src = embedded_dir()
    paths = {"base": root / "base"}
    paths["base"].mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if not (paths["base"] / f.name).exists():
            os.symlink(f, paths["base"] / f.name)
    for i in (1, 2, 3):
        dst = paths[f"ft{i}"] = root / f"ft{i}"
        if (dst / "model.safetensors").exists():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(i)
        with safe_open(src / "model.safetensors", "pt") as f:
            tensors = {n: (t := f.get_tensor(n)) + torch.randn(t.shape, generator=g) * (0.01 * float(t.std()) + 1e-6)
                       for n in f.keys()}
        save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
        del tensors
        for f in src.iterdir():
            if f.suffix != ".safetensors":
                shutil.copyfile(f, dst / f.name)
    return paths


def run(tool: str, config: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", tool, str(config), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{tool} merge failed (exit {os.waitstatus_to_exitcode(status)}); run it by hand: "
                         f"{sys.executable} {__file__} --child {tool} {config} {out}")
    marks = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "merge_s": marks["merge_s"], "maxrss_mb": usage.ru_maxrss / 1024, "hwm_mb": marks["hwm_kb"] / 1024,
            "import_mb": marks["import_kb"] / 1024}


def max_diff(a: Path, b: Path) -> tuple[float, int, int]:
    """The largest |difference| between two merged folders, and how many of all entries differ by more than 1e-5."""
    from safetensors import safe_open

    def files(folder: Path) -> dict[str, Path]:
        return {n: p for p in folder.glob("*.safetensors") for n in safe_open(p, "pt").keys()}

    fa, fb = files(a), files(b)
    assert fa.keys() == fb.keys(), sorted(set(fa) ^ set(fb))[:3]
    worst, differing, total = 0.0, 0, 0
    for name in fa:
        with safe_open(fa[name], "pt") as x, safe_open(fb[name], "pt") as y:
            diff = (x.get_tensor(name).float() - y.get_tensor(name).float()).abs()
        worst, differing, total = max(worst, float(diff.max())), differing + int((diff > 1e-5).sum()), total + diff.numel()
    return worst, differing, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=3, metavar=("TOOL", "CONFIG", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--methods", default="ties,linear", help="comma-separated: ties, linear")
    ap.add_argument("--keep", default="", help="work folder to keep (inputs are reused when present)")
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="merge-bench-"))
    try:
        paths = make_inputs(root)
        size_mb = (paths["ft1"] / "model.safetensors").stat().st_size / 1e6
        print(f"merge: SmolLM2-135M float32 ({size_mb:.0f} MB per model) as base + 3 noisy copies; "
              "one fresh process per merge\n")
        print("| method | tool | peak RSS MB | RSS after imports MB | merge s | process s | max abs diff vs mergekit |")
        print("|---|---|---:|---:|---:|---:|---:|")
        ratios = []
        for method in args.methods.split(","):
            config = root / f"{method}.yaml"
            config.write_text(CONFIGS[method].format(**{k: str(v) for k, v in paths.items()}))
            res = {tool: run(tool, config, root / f"out-{tool}-{method}") for tool in ("mergekit", "llmkit")}
            diff, differing, total = max_diff(root / f"out-llmkit-{method}", root / f"out-mergekit-{method}")
            for tool, r in res.items():
                shown = "—" if tool == "mergekit" else f"{diff:.1e} ({differing} of {total / 1e6:.0f}M > 1e-5)"
                print(f"| {method} | {tool} | {r['maxrss_mb']:.0f} | {r['import_mb']:.0f} | {r['merge_s']:.1f} "
                      f"| {r['wall_s']:.1f} | {shown} |")
            ratios.append((method, res["llmkit"]["maxrss_mb"] / res["mergekit"]["maxrss_mb"],
                           res["llmkit"]["merge_s"] / res["mergekit"]["merge_s"]))
            for tool in res:
                shutil.rmtree(root / f"out-{tool}-{method}", ignore_errors=True)
        print()
        print("(ties: entries differ only where |δ| ties exactly at the density cut-off; mergekit's argsort keeps an "
              "arbitrary one of the tied entries, llmkit the first)")
        for method, mem, wall in ratios:
            verdict = "OK" if mem <= 1.0 else "MISS"
            print(f"{method}: llmkit / mergekit peak RSS = {mem:.2f}x (target <= 1.00)  {verdict};  merge time = {wall:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
