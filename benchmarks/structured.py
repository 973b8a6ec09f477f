"""Structured output on the embedded model: llmkit's llguidance masks vs no constraint and vs Outlines, in one run.

Over the test schemas (tests/data/schemas/*.json), with the schema instructions in every prompt:
  valid rate   llmkit constrained (greedy; T=0.7 seed 0) vs unconstrained greedy (strict / first JSON block)
  speed        constrained vs unconstrained decode tokens/s on the same prompts      target >= 0.9x
  compile      cold per schema: llmkit JSONSchema + LLMatcher vs Outlines regex + Index (p50/p99)
  mask         per token: llmkit fill_masks + apply_mask + consume, replaying the constrained outputs,
               vs Outlines' logits processor per step while it generates (p50/p99)
Outlines (outlines_core backend, its JSON default) runs on the same weights through transformers,
on an evenly spaced subset of the schemas (--outlines) since torch decoding is ~6x slower than llama.cpp.

    python benchmarks/structured.py [--limit N] [--tokens 256] [--outlines 12] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SCHEMAS = Path(__file__).resolve().parent.parent / "tests" / "data" / "schemas"
START = time.perf_counter()


def log(msg):
    print(f"{time.perf_counter() - START:6.1f}s {msg}", file=sys.stderr, flush=True)  # progress; results go to stdout


def pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


def first_json(text):
    """The first {...} or [...] block of ``text`` that parses, else the text itself."""
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                return text[i:dec.raw_decode(text, i)[1]]
            except json.JSONDecodeError:
                continue
    return text


def valid(c, text, finish=None):
    """The same test as ``Model.chat(constraint=...)``: not cut off at max_tokens, and ``check`` passes."""
    from llmkit.structured import Invalid

    if finish == "length":
        return False
    try:
        c.check(text)
        return True
    except Invalid:
        return False


def timed_stream(m, msgs, n, **kw):
    """(text, output tokens, TTFT s, wall s, finish_reason) of one streamed greedy answer."""
    t0, first, parts, last = time.perf_counter(), None, [], None
    for ch in m.stream(msgs, temperature=0, max_tokens=n, **kw):
        if first is None and ch.text:
            first = time.perf_counter()
        parts.append(ch.text)
        last = ch
    wall = time.perf_counter() - t0
    return "".join(parts), last.usage.output_tokens, (first or t0 + wall) - t0, wall, last.finish_reason


def llmkit_compile(tok, schemas):
    """Cold compile per schema (no cache: a new LLMatcher each time), and compile plus the first mask."""
    import llguidance

    from llmkit.structured import ConstraintError, JSONSchema, masks

    compile_s, first_mask_s, rejected = [], [], {}
    bits = masks.new_masks(1, tok.vocab_size)
    for name, d in [("warm-up", {"schema": {"type": "object"}})] + schemas:  # the first pays for imports
        t0 = time.perf_counter()
        try:
            mt = llguidance.LLMatcher(tok, JSONSchema(d["schema"]).grammar(), log_level=0)
        except ConstraintError as e:
            rejected[name] = str(e)[:120]
            continue
        t1 = time.perf_counter()
        masks.fill_masks([(mt, 0)], bits)  # llguidance builds its lexer lazily: the first mask pays for it
        t2 = time.perf_counter()
        compile_s.append(t1 - t0)
        first_mask_s.append(t2 - t0)
    return compile_s[1:], first_mask_s[1:], rejected


def constrained_stream(m, msgs, n, c):
    from llmkit.structured import StructuredOutputError

    try:
        return timed_stream(m, msgs, n, constraint=c)
    except StructuredOutputError as e:  # the grammar rejected a token: a bug, count it as invalid
        return e.text, 0, 0.0, 0.0, "error"


def llmkit_generate(m, schemas, n):
    """Greedy constrained and unconstrained answers (streamed, timed), and a sampled constrained one."""
    import llmkit as lk
    from llmkit.structured import JSONSchema, StructuredOutputError
    from llmkit.structured.generate import with_instructions

    rows = []
    for i, (name, d) in enumerate(schemas, 1):
        c = JSONSchema(d["schema"])
        msgs = with_instructions([lk.user(d["prompt"])], c)  # what m.json sends: same prompt for both
        if i % 2:  # alternate which runs first: the second reuses the first's cached prompt prefix
            free, con = timed_stream(m, msgs, n), constrained_stream(m, msgs, n, c)
        else:
            con, free = constrained_stream(m, msgs, n, c), timed_stream(m, msgs, n)
        try:
            m.chat(msgs, constraint=c, temperature=0.7, seed=0, max_tokens=n, max_retries=0)
            sampled, sampled_cut = True, False
        except StructuredOutputError as e:
            sampled, sampled_cut = False, any("token limit" in err for err in e.errors)
        r = {"schema": name, "text": con[0], "constrained": valid(c, con[0], con[4]), "constrained_finish": con[4],
             "sampled": sampled, "sampled_cut": sampled_cut, "strict": valid(c, free[0].strip()),
             "extracted": valid(c, first_json(free[0])), "free_finish": free[4],
             "timing": {"unconstrained": free[1:4], "constrained": con[1:4]}}
        rows.append(r)
        log(f"[{i}/{len(schemas)}] {name}: constrained {'ok' if r['constrained'] else con[4]} ({con[1]} tok), "
            f"sampled {'ok' if sampled else 'cut' if sampled_cut else 'invalid'}, unconstrained "
            f"{'ok' if r['strict'] else 'ok extracted' if r['extracted'] else 'invalid'} ({free[1]} tok, {free[4]})")
    return rows


def llmkit_replay(m, tok, schemas, rows):
    """Mask time per token, replaying each constrained output (retokenized) through a fresh matcher."""
    from llmkit.structured import JSONSchema, masks

    per_token, problems = [], []
    bits = masks.new_masks(1, tok.vocab_size)
    logits = np.random.default_rng(0).standard_normal(m.engine.runtime.n_vocab).astype(np.float32)
    for (name, d), r in zip(schemas, rows):
        if not r["constrained"]:
            continue
        mt = masks.matcher(JSONSchema(d["schema"]), tok)
        for k, t in enumerate(m.tokenize(r["text"])):
            buf = logits.copy()  # apply_mask writes -inf in place, as into llama.cpp's logits
            t0 = time.perf_counter()
            masks.fill_masks([(mt, 0)], bits)
            masks.apply_mask(buf, bits[0])
            ok = mt.consume_token(t)
            per_token.append(time.perf_counter() - t0)
            if not ok:
                problems.append(f"{name}: token {k} ({t}) rejected on replay: {mt.get_error()}")
                break
        else:
            if not mt.is_accepting():
                problems.append(f"{name}: replay consumed every token but the grammar is not complete")
    return per_token, problems


def outlines_peer(schemas, n, subset, threads):
    """Outlines on the same weights: cold compile of every schema, generation (greedy) on ``subset``."""
    import outlines
    import torch
    from outlines.backends.outlines_core import OutlinesCoreBackend
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import llmkit as lk
    from llmkit.models.hf import embedded_dir
    from llmkit.structured import JSONSchema
    from llmkit.structured.generate import with_instructions

    torch.set_num_threads(threads)
    path = embedded_dir()  # the embedded GGUF dequantized to a transformers folder, as llmkit's hf backend loads it
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    om = outlines.from_transformers(hf, AutoTokenizer.from_pretrained(path, local_files_only=True))
    t0 = time.perf_counter()
    backend = OutlinesCoreBackend(om)  # its vocabulary, built once (outlines.Generator rebuilds it every time)
    setup = time.perf_counter() - t0
    # Warm-up, untimed: the first compile pays for imports, the first processor call torch.compiles its kernel.
    warm = backend.get_json_schema_logits_processor(json.dumps({"type": "object"}))
    outlines.Generator(om, processor=warm)("Hi", max_new_tokens=4, do_sample=False)
    log(f"Outlines vocabulary built in {setup:.1f} s; compiling {len(schemas)} schemas")
    compile_s, procs, unsupported = [], {}, {}
    for name, d in schemas:
        try:
            t0 = time.perf_counter()
            term = outlines.types.JsonSchema(d["schema"])
            procs[name] = backend.get_json_schema_logits_processor(term.schema, term.whitespace_pattern)
            compile_s.append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 -- whatever outlines_core raises on a schema it cannot turn into a regex
            unsupported[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
    log(f"Outlines compiled {len(compile_s)} schemas ({len(unsupported)} unsupported); generating")
    per_token, rows = [], []
    for i, (name, d) in enumerate(subset, 1):
        if name not in procs:
            log(f"[outlines {i}/{len(subset)}] {name}: unsupported")
            continue
        proc, steps = procs[name], []

        def timed(input_ids, logits, _inner=proc.process_logits, _steps=steps):
            t0 = time.perf_counter()
            out = _inner(input_ids, logits)
            _steps.append(time.perf_counter() - t0)
            return out

        proc.process_logits = timed  # __call__ looks it up on the instance: every step is timed
        c = JSONSchema(d["schema"])
        prompt = with_instructions([lk.user(d["prompt"])], c)[-1].content  # the prompt llmkit sends
        chat = outlines.inputs.Chat([{"role": "user", "content": prompt}])
        text = outlines.Generator(om, processor=proc)(chat, max_new_tokens=n, do_sample=False)
        per_token.extend(steps)
        ok, cut = valid(c, text), len(steps) >= n
        rows.append({"schema": name, "valid": ok, "cut": cut and not ok, "tokens": len(steps), "text": text})
        log(f"[outlines {i}/{len(subset)}] {name}: {'ok' if ok else 'cut' if cut else 'invalid'} ({len(steps)} steps)")
    return {"setup_s": setup, "compile_s": compile_s, "per_token_s": per_token, "rows": rows, "unsupported": unsupported}


def speed(rows, key):
    """Totals over the schemas: output tokens, tokens/s end to end, decode tokens/s and ms/token after the first."""
    t = [r["timing"][key] for r in rows if r["timing"][key][0] > 1]
    toks, ttft, wall = (sum(x[i] for x in t) for i in range(3))
    decode_toks, decode_s = toks - len(t), wall - ttft
    return {"tokens": toks, "tok_s": toks / wall, "decode_tok_s": decode_toks / decode_s,
            "ms_per_token": 1000 * decode_s / decode_toks, "ttft_ms": 1000 * ttft / len(t)}


def report(args, threads, rows, subset, rejected, compile_s, first_mask_s, mask_s, problems, tok_setup, peer):
    from importlib.metadata import version

    N, S = len(rows), len(subset)
    count = lambda key, rs=rows: sum(r[key] for r in rs)
    cut = lambda key, rs=rows: sum(r[key] == "length" for r in rs)
    sub = [r for r in rows if r["schema"] in {name for name, _ in subset}]
    print(f"structured: {N} schemas ({len(rejected)} more rejected by llmkit), max_tokens {args.tokens}, "
          f"schema instructions in every prompt, {threads} threads")
    print(f"llmkit: embedded SmolLM2-135M on llama.cpp; Outlines {version('outlines')} (outlines_core backend): "
          f"the same weights in transformers, generating on {S} of the schemas")
    print(f"{'valid rate':<46}{'valid':>7}{'rate':>7}{'cut at max_tokens':>19}")
    o_rows = peer["rows"]
    for label, ok, n, c in [("llmkit constrained, greedy", count("constrained"), N, cut("constrained_finish")),
                            ("llmkit constrained, T=0.7 seed 0", count("sampled"), N, count("sampled_cut")),
                            ("unconstrained greedy, strict", count("strict"), N, cut("free_finish")),
                            ("unconstrained greedy, first JSON block", count("extracted"), N, cut("free_finish")),
                            (f"llmkit constrained, greedy, Outlines' {S}", count("constrained", sub), len(sub),
                             cut("constrained_finish", sub)),
                            (f"Outlines, greedy ({S - len(o_rows)} of {S} unsupported)", count("valid", o_rows),
                             len(o_rows), count("cut", o_rows))]:
        print(f"{label:<46}{f'{ok}/{n}':>7}{100 * ok / max(n, 1):>6.0f}%{c:>19}")

    sp = {k: speed(rows, k) for k in ("unconstrained", "constrained")}
    print(f"\n{'speed (greedy, same prompts)':<30}{'tokens':>8}{'tok/s':>8}{'decode tok/s':>14}{'ms/token':>10}{'TTFT ms':>9}")
    for k, s in sp.items():
        print(f"{k:<30}{s['tokens']:>8}{s['tok_s']:>8.1f}{s['decode_tok_s']:>14.1f}{s['ms_per_token']:>10.2f}"
              f"{s['ttft_ms']:>9.1f}")
    print(f"\n{'time':<52}{'p50 ms':>10}{'p99 ms':>10}{'n':>7}")
    for label, xs in [("llmkit compile per schema (JSONSchema + LLMatcher)", compile_s),
                      ("llmkit compile + first mask per schema", first_mask_s),
                      ("Outlines compile per schema (regex + Index)", peer["compile_s"]),
                      ("llmkit mask per token (replay: fill, apply, consume)", mask_s),
                      ("Outlines processor per token (while generating)", peer["per_token_s"])]:
        print(f"{label:<52}{1000 * pct(xs, 50):>10.3f}{1000 * pct(xs, 99):>10.3f}{len(xs):>7}")
    print(f"once per model: llmkit tokenizer {tok_setup:.2f} s, Outlines vocabulary {peer['setup_s']:.2f} s")

    notes = [f"llmkit rejects {name}: {why}" for name, why in rejected.items()]
    notes += [f"Outlines rejects {name}: {why}" for name, why in peer["unsupported"].items()]
    for label, names in [("llmkit constrained cut at max_tokens", [r["schema"] for r in rows if r["constrained_finish"] == "length"]),
                         ("llmkit constrained invalid", [r["schema"] for r in rows
                                                         if not r["constrained"] and r["constrained_finish"] != "length"]),
                         ("llmkit sampled cut at max_tokens", [r["schema"] for r in rows if r["sampled_cut"]]),
                         ("Outlines cut at max_tokens", [r["schema"] for r in o_rows if r["cut"]])]:
        if names:
            notes.append(f"{label}: {', '.join(names)}")
    notes += [f"replay: {p}" for p in problems]
    notes.append("replay feeds m.tokenize(output text), which may split differently from the generated ids")
    for note in notes:
        print(f"note: {note}")

    mark = lambda good: "OK" if good else "MISS"
    print(f"\nllmkit constrained valid rate = {100 * count('constrained') / N:.0f}%  (target 100%)  "
          f"{mark(count('constrained') == N)}")
    ratio = sp["constrained"]["decode_tok_s"] / sp["unconstrained"]["decode_tok_s"]
    print(f"constrained / unconstrained decode tokens/s = {ratio:.2f}x  (target >= 0.90)  {mark(ratio >= 0.9)}"
          f"  (end to end, prefill included: {sp['constrained']['tok_s'] / sp['unconstrained']['tok_s']:.2f}x)")
    for label, q, ours, theirs in [("mask per token p50", 50, mask_s, peer["per_token_s"]),
                                   ("mask per token p99", 99, mask_s, peer["per_token_s"]),
                                   ("compile p99", 99, compile_s, peer["compile_s"])]:
        r = pct(ours, q) / pct(theirs, q)
        print(f"llmkit / Outlines {label} = {r:.2f}x  (target < 1.00)  {mark(r < 1)}")
    print(f"(llmkit compile + first mask p99 / Outlines compile p99 = "
          f"{pct(first_mask_s, 99) / pct(peer['compile_s'], 99):.2f}x)")
    return sp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="first N schemas only")
    ap.add_argument("--tokens", type=int, default=256, help="max_tokens for every answer")
    ap.add_argument("--outlines", type=int, default=12, help="schemas Outlines generates on (evenly spaced)")
    ap.add_argument("--json", default=None, help="write every number and output here")
    args = ap.parse_args()
    threads = os.cpu_count()
    schemas = [(p.stem, json.loads(p.read_text())) for p in sorted(SCHEMAS.glob("*.json"))][:args.limit]

    import llmkit as lk
    from llmkit.structured import masks

    m = lk.model(n_threads=threads)
    t0 = time.perf_counter()
    tok = masks.llamacpp_tokenizer(m.engine.runtime)
    tok_setup = time.perf_counter() - t0
    compile_s, first_mask_s, rejected = llmkit_compile(tok, schemas)  # before generation, so nothing is warm
    schemas = [(name, d) for name, d in schemas if name not in rejected]
    subset = schemas[::max(1, -(-len(schemas) // args.outlines))]
    m.chat([lk.user("Hi")], temperature=0, max_tokens=4)  # warm-up
    log(f"llmkit: tokenizer {tok_setup:.1f} s, {len(schemas)} schemas compiled; generating")
    rows = llmkit_generate(m, schemas, args.tokens)
    mask_s, problems = llmkit_replay(m, tok, schemas, rows)
    del m
    peer = outlines_peer(schemas, args.tokens, subset, threads)
    sp = report(args, threads, rows, subset, rejected, compile_s, first_mask_s, mask_s, problems, tok_setup, peer)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "llmkit": rows, "outlines": peer, "speed": sp,
                                               "compile_s": compile_s, "first_mask_s": first_mask_s, "mask_s": mask_s,
                                               "problems": problems, "rejected": rejected}, indent=1))


if __name__ == "__main__":
    main()
