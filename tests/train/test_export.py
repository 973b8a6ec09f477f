"""GGUF export: transformers folders and PEFT LoRAs → GGUF, checked against transformers, PEFT and the
embedded GGUF itself.

The permutation, rope and LoRA checks run tiny random models (weights drawn with std 0.2 so attention
is sharp and a wrong Q/K order or rope setting moves log-probs by 6-10 nats; f16 rounding moves them
by ~0.02). The embedded-model round trip is marked integration.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import llmkit as lk
from llmkit.core.errors import ConfigError
from llmkit.train.export import QUANTS, _pre_tokenizer, export_gguf
from llmkit.train.export_lora import export_lora_gguf

PROMPT = "The quick brown fox jumps over the lazy dog, then 42 more."
TOL = 0.1  # nats; f16 weights give ~0.02, a wrong permutation or rope 6-10
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from llmkit.models.hf import embedded_dir

    return AutoTokenizer.from_pretrained(embedded_dir())


@pytest.fixture(scope="module")
def ids(tok):
    return tok(PROMPT)["input_ids"]


def tiny(tok, kind: str = "llama", **kw):
    """A 2-layer random model of ``kind`` (llama, mistral, qwen2) with GQA (4 heads, 2 KV heads)."""
    import torch
    import transformers as T

    cls, cfg = {"llama": (T.LlamaForCausalLM, T.LlamaConfig), "mistral": (T.MistralForCausalLM, T.MistralConfig),
                "qwen2": (T.Qwen2ForCausalLM, T.Qwen2Config)}[kind]
    torch.manual_seed(0)
    args = dict(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=128, max_position_embeddings=256, initializer_range=0.2, tie_word_embeddings=True,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = cls(cfg(**{**args, **kw})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):  # transformers starts biases at zero, which would hide a wrong bias layout
                p.normal_(std=0.2)
    return model


def save(model, tok, folder):
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def hf_logprobs(model, ids) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1).numpy()


def llamacpp(path, ids, lora=None) -> tuple[np.ndarray, dict[str, str]]:
    """Every position's log-probs, and the scalar metadata, from llama-cpp-python's own Llama
    (not llmkit's engine)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=2,
                lora_path=str(lora) if lora else None)
    try:
        llm.eval(ids)
        return log_softmax(np.array(llm.scores[:len(ids)])), dict(llm.metadata)
    finally:
        llm.close()


def llamacpp_logprobs(path, ids, lora=None) -> np.ndarray:
    return llamacpp(path, ids, lora)[0]


def fields(path) -> dict:
    """Every key and tensor (type, ggml shape) of a GGUF. gguf-py parses the whole vocabulary here
    (seconds for 49k tokens), so tests that only need scalars read llama.cpp's metadata instead."""
    import gguf

    r = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")} | {
        "_tensors": {t.name: (t.tensor_type.name, tuple(int(n) for n in t.shape)) for t in r.tensors}}


# --- the converter against transformers ------------------------------------------------------------------
ROPES = {
    "linear": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "rope_theta": 10000.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32, "rope_theta": 10000.0},
}


@pytest.mark.parametrize("kind, kw", [
    ("llama", {}),
    ("llama", {"tie_word_embeddings": False, "attention_bias": True}),  # output.weight, permuted q/k biases
    ("llama", {"head_dim": 32}),                                         # head_dim != hidden / heads
    ("llama", {"rope_parameters": ROPES["linear"]}),
    ("llama", {"rope_parameters": ROPES["yarn"]}),
    ("llama", {"rope_parameters": ROPES["llama3"]}),
    ("mistral", {}),
    ("qwen2", {}),                                                       # NEOX rope: no permutation, q/k/v biases
], ids=["llama-gqa", "untied-bias", "head-dim", "rope-linear", "rope-yarn", "rope-llama3", "mistral", "qwen2"])
def test_llama_cpp_gives_the_transformers_logits(tok, ids, tmp_path, kind, kw):
    model = tiny(tok, kind, **kw)
    path = export_gguf(save(model, tok, tmp_path / "m"), tmp_path / "m.gguf", quant="f16")
    got, meta = llamacpp(path, ids)
    ref = hf_logprobs(model, ids)
    assert np.abs(got - ref).max() < TOL, np.abs(got - ref).max()
    arch = "qwen2" if kind == "qwen2" else "llama"
    assert meta["general.architecture"] == arch and meta["general.file_type"] == "1"
    assert meta[f"{arch}.attention.head_count_kv"] == "2"
    rope = kw.get("rope_parameters", {}).get("rope_type")
    if rope in ("linear", "yarn"):
        assert meta["llama.rope.scaling.type"] == rope and float(meta["llama.rope.scaling.factor"]) == 4.0


@pytest.fixture(scope="module")
def base(tok, tmp_path_factory):
    """The tiny llama saved as a folder and exported to f16, shared by the tests below."""
    model = tiny(tok)
    folder = save(model, tok, tmp_path_factory.mktemp("base") / "base")
    return folder, model, export_gguf(folder, folder.parent / "base.gguf", quant="f16")


def test_tensor_layout(base):
    tensors = fields(base[2])["_tensors"]
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd
    assert tensors["token_embd.weight"] == ("F16", (64, 49152)) and tensors["output_norm.weight"] == ("F32", (64,))
    assert tensors["blk.1.attn_k.weight"] == ("F16", (64, 32))  # 2 KV heads x 16
    assert len(tensors) == 2 + 2 * 9


# sizes are relative to the f16 file, whose ~1.6 MB of vocabulary every output shares
@pytest.mark.parametrize("quant, file_type, size, tol", [("f32", "0", (1.7, 2.0), 0.01), ("bf16", "32", (1.0, 1.0), 0.5),
                                                         ("q8_0", "7", (0.55, 0.7), 0.5)])
def test_f32_bf16_and_quantized_outputs(base, ids, tmp_path, quant, file_type, size, tol):
    folder, model, f16 = base
    path = export_gguf(folder, tmp_path / "m.gguf", quant=quant)
    got, meta = llamacpp(path, ids)
    assert meta["general.file_type"] == file_type  # q8_0: written by llama.cpp's quantizer, not by us
    assert size[0] <= path.stat().st_size / f16.stat().st_size <= size[1]
    assert np.abs(got - hf_logprobs(model, ids)).max() < tol


def test_pre_tokenizer_names():
    vocab = ["a", "b"]  # not a vocabulary known by identity: the structure decides
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}

    def split(rx):
        return {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": rx}},
                                                      {**byte_level, "use_regex": False}]}

    llama3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    assert _pre_tokenizer({"pre_tokenizer": byte_level}, vocab) == "gpt-2"
    assert _pre_tokenizer({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, byte_level]}}, vocab) == "smollm"
    assert _pre_tokenizer({"pre_tokenizer": split(llama3)}, vocab) == "llama-bpe"
    assert _pre_tokenizer({"pre_tokenizer": split(llama3.replace("{1,3}", ""))}, vocab) == "qwen2"
    with pytest.raises(ConfigError, match="Split"):
        _pre_tokenizer({"pre_tokenizer": split(r"\w+")}, vocab)


# --- LoRA ------------------------------------------------------------------------------------------------
def make_adapter(folder, out, **kw):
    """A PEFT LoRA on every linear of the tiny base, B drawn non-zero (a fresh LoRA is a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = get_peft_model(LlamaForCausalLM.from_pretrained(folder), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, **kw))
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)
    model.save_pretrained(out)
    return model.eval(), out


@pytest.mark.parametrize("kw", [{}, {"use_rslora": True, "rank_pattern": {"v_proj": 2}, "alpha_pattern": {"o_proj": 3.0}}],
                         ids=["plain", "rslora-per-module-rank-and-alpha"])  # the second folds each module's scale into B
def test_lora_adapter_gives_the_peft_and_merged_logits(base, ids, tmp_path, kw):
    folder, _, base_gguf = base
    peft_model, adapter = make_adapter(folder, tmp_path / "adapter", **kw)
    path = export_lora_gguf(adapter, tmp_path / "adapter.gguf")  # the base comes from adapter_config.json
    meta = fields(path)
    assert (meta["general.type"], meta["adapter.type"], meta["adapter.lora.alpha"]) == ("adapter", "lora", 8.0)
    a, b = meta["_tensors"]["blk.0.attn_k.weight.lora_a"], meta["_tensors"]["blk.0.attn_k.weight.lora_b"]
    assert a == ("F16", (64, 4)) and b == ("F16", (4, 32))  # ggml order: a [in, r], b [r, out]
    assert len(meta["_tensors"]) == 2 * len(TARGETS) * 2

    ref = hf_logprobs(peft_model, ids)
    assert np.abs(llamacpp_logprobs(base_gguf, ids, lora=path) - ref).max() < TOL
    assert np.abs(hf_logprobs(base[1], ids) - ref).max() > 2  # the adapter does change the model
    if not kw:  # merging goes through PEFT's merge_and_unload: one variant is enough
        merged = export_gguf(folder, tmp_path / "merged.gguf", quant="f16", merge_lora=adapter)
        assert np.abs(llamacpp_logprobs(merged, ids) - ref).max() < TOL


def test_local_model_applies_a_gguf_lora(base, tmp_path):
    folder, _, base_gguf = base
    _, adapter = make_adapter(folder, tmp_path / "adapter")
    path = export_lora_gguf(adapter, tmp_path / "adapter.gguf", base_dir=folder)
    merged = export_gguf(folder, tmp_path / "merged.gguf", quant="f16", merge_lora=adapter)

    def first_token(spec, **options):
        m = lk.model(spec, n_ctx=256, **options)
        try:
            return dict(m.complete(PROMPT, temperature=0, max_tokens=1, logprobs=True, top_logprobs=5).logprobs[0].top)
        finally:
            m.close()

    def same(x, y):  # the top-5 alternatives agree (a 5th-place near-tie may swap one out)
        common = set(x) & set(y)
        return len(common) >= 4 and all(abs(x[t] - y[t]) < TOL for t in common)

    want = first_token(f"llamacpp:{merged}")
    assert same(first_token(f"llamacpp:{base_gguf}", lora=str(path)), want)
    assert not same(first_token(f"llamacpp:{base_gguf}"), want)
    with pytest.raises(ConfigError, match="nope.gguf"):
        lk.model(f"llamacpp:{base_gguf}", lora=str(tmp_path / "nope.gguf"))
    with pytest.raises(ConfigError, match="could not apply LoRA"):
        lk.model(f"llamacpp:{base_gguf}", n_ctx=256, lora=str(merged))  # a model, not an adapter


def test_lora_inputs_it_cannot_represent(base, tmp_path):
    folder, _, _ = base
    _, adapter = make_adapter(folder, tmp_path / "dora", use_dora=True)
    with pytest.raises(ConfigError, match="DoRA"):
        export_lora_gguf(adapter, tmp_path / "a.gguf")
    _, adapter = make_adapter(folder, tmp_path / "plain")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "org/some-hub-model"}))
    with pytest.raises(ConfigError, match="some-hub-model.*base_dir"):
        export_lora_gguf(adapter, tmp_path / "a.gguf")
    with pytest.raises(ConfigError, match="LoRA adapter, not a model"):
        export_gguf(adapter, tmp_path / "a.gguf")
    with pytest.raises(ConfigError, match="'q8_0'.*f16"):
        export_lora_gguf(adapter, tmp_path / "a.gguf", base_dir=folder, dtype="q8_0")


# --- bad input, atomic writes, the CLI -----------------------------------------------------------------------
def test_bad_input_names_the_value_and_the_choices(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="file.txt.*not a folder"):
        export_gguf(tmp_path / "file.txt", tmp_path / "o.gguf")
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ConfigError, match="'GPT2LMHeadModel'.*LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"):
        export_gguf(tmp_path / "gpt2", tmp_path / "o.gguf")
    with pytest.raises(ConfigError, match="'q3_k'.*" + ", ".join(QUANTS)):
        export_gguf(tmp_path / "gpt2", tmp_path / "o.gguf", quant="q3_k")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no readable config.json"):
        export_gguf(tmp_path / "empty", tmp_path / "o.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file.txt", "gpt2"]


def test_unsupported_tokenizer_is_a_config_error(base, tmp_path):
    import shutil

    folder = shutil.copytree(base[0], tmp_path / "m")
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="byte-level BPE"):
        export_gguf(folder, tmp_path / "m.gguf", quant="f16")
    assert not (tmp_path / "m.gguf").exists() and not list(tmp_path.glob(".m.gguf*"))  # no half-written file


def test_a_failed_export_leaves_the_old_file_and_no_temp_files(base, tmp_path, monkeypatch):
    from llmkit.train import export

    folder = base[0]
    out = tmp_path / "out" / "m.gguf"
    out.parent.mkdir()
    out.write_bytes(b"old")

    def crash(*a):
        raise RuntimeError("killed mid-quantize")

    monkeypatch.setattr(export, "_quantize", crash)
    with pytest.raises(RuntimeError):
        export_gguf(folder, out, quant="q4_k_m")
    assert out.read_bytes() == b"old" and [p.name for p in out.parent.iterdir()] == ["m.gguf"]


def test_cli_exports_and_prints_the_path_and_size(base, tmp_path):
    import typer
    from typer.testing import CliRunner

    from llmkit.cli.export_cmd import export

    app = typer.Typer()
    app.command()(export)
    r = CliRunner().invoke(app, [str(base[0]), "-o", str(tmp_path / "m.gguf"), "--quant", "f16"])
    assert r.exit_code == 0, r.output
    size = (tmp_path / "m.gguf").stat().st_size
    assert r.output.strip() == f"{tmp_path / 'm.gguf'}  ({size / 2**20:.1f} MiB, f16)"


CLI = """import importlib, sys
main = importlib.import_module("llmkit.cli.main")
from llmkit.cli.export_cmd import export
if "export" not in {c.name or c.callback.__name__ for c in main.app.registered_commands}:
    main.app.command("export")(export)  # until cli/main.py registers it
sys.argv = ["llmkit", "export", *sys.argv[1:]]
main.main()
"""


@pytest.mark.parametrize("args, needle", [
    (["{tmp}", "-o", "{tmp}/o.gguf", "--quant", "q3_k"], "error: quant 'q3_k' is not supported; choose one of: f32"),
    (["{tmp}/missing", "-o", "{tmp}/o.gguf"], "error: model_dir '{tmp}/missing' is not a folder"),
    (["{tmp}", "-o", "{tmp}/o.gguf", "--merge-lora"], "error: --merge-lora needs --lora"),
])
def test_cli_errors_are_one_line_and_exit_2(tmp_path, args, needle):
    r = subprocess.run([sys.executable, "-c", CLI, *[a.format(tmp=tmp_path) for a in args]],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(needle.format(tmp=tmp_path)), r.stderr


# --- the embedded model (integration) -------------------------------------------------------------------------
QUESTION = "What is the capital of France? Answer with one word."
CARD = {"general.name", "general.organization", "general.finetune", "general.basename", "general.size_label",
        "general.license", "general.languages", "general.file_type"}  # model-card fields and the quant differ


@pytest.fixture(scope="module")
def embedded_f16(tmp_path_factory):
    from llmkit.models.hf import embedded_dir

    return export_gguf(embedded_dir(), tmp_path_factory.mktemp("smollm2") / "smollm2-f16.gguf", quant="f16")


def answer(spec: str) -> tuple[str, str | None]:
    """The greedy answer to QUESTION, and (llama.cpp) the file's general.file_type."""
    if not spec.startswith("llamacpp:"):
        return lk.model(spec).chat(QUESTION, temperature=0, max_tokens=12).text, None
    m = lk.model(spec, n_ctx=512)
    try:
        return m.chat(QUESTION, temperature=0, max_tokens=12).text, m.engine.runtime.meta("general.file_type")
    finally:
        m.close()


@pytest.mark.integration
def test_embedded_round_trip_matches_the_original_gguf_and_the_hf_answer(embedded_f16):
    import gguf

    from llmkit.models.hf import embedded_dir
    from llmkit.models.registry import embedded_gguf

    a, b = gguf.GGUFReader(str(embedded_gguf())), gguf.GGUFReader(str(embedded_f16))
    original, ours = ({k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.") and k not in CARD}
                      for r in (a, b))
    assert ours == original  # hparams, tokenizer (pre, tokens, types, merges, ids, add_bos), chat template
    assert ours["tokenizer.ggml.pre"] == "smollm" and len(ours["tokenizer.ggml.tokens"]) == 49152
    assert {t.name: tuple(t.shape) for t in b.tensors} == {t.name: tuple(t.shape) for t in a.tensors}
    assert not any(t.name == "output.weight" for t in b.tensors)  # tied to token_embd
    # Q/K rows are in llama.cpp's order again: equal to the original's (dequantized) up to f16 rounding
    for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.attn_k.weight"):
        x, y = (next(gguf.quants.dequantize(t.data, t.tensor_type) for t in r.tensors if t.name == name) for r in (a, b))
        assert np.abs(x - y).max() <= np.abs(x).max() / 1024  # f16 keeps 11 significant bits
    text, file_type = answer(f"llamacpp:{embedded_f16}")
    assert "Paris" in text and file_type == "1"
    assert text == answer(f"hf:{embedded_dir()}")[0]


@pytest.mark.integration
@pytest.mark.parametrize("quant, file_type, ratio", [("q8_0", "7", (0.5, 0.56)), ("q4_k_m", "15", (0.3, 0.42))])
def test_embedded_quantized_by_llama_cpp(embedded_f16, tmp_path, quant, file_type, ratio):
    from llmkit.models.hf import embedded_dir

    path = export_gguf(embedded_dir(), tmp_path / f"smollm2-{quant}.gguf", quant=quant)
    assert ratio[0] < path.stat().st_size / embedded_f16.stat().st_size < ratio[1]
    text, got_type = answer(f"llamacpp:{path}")
    assert got_type == file_type and "Paris" in text
