"""Model merging: every method against mergekit on the same YAML, DARE against the paper with the
same mask, LoRA/DoRA against PEFT's merge_and_unload, bad configs, atomic output, sharding, and a
merged folder that transformers loads and generates with."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from llmkit.core.errors import ConfigError
from llmkit.train.merge import dare_mask, merge, tensor_index
from llmkit.train.merge_lora import merge_lora
from llmkit.train.merge_config import MergeConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_llama(vocab: int = 256, hidden: int = 32, intermediate: int = 64, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=intermediate, max_position_embeddings=64,
                                        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2))


def finetuned(model, folder: Path, seed: int, scale: float = 0.02) -> Path:
    """Save ``model`` + noise (norm weights left equal to the base's: their task vectors are exactly zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    model.save_pretrained(folder)
    return folder


def read(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge")
    base = root / "base"
    tiny_llama().save_pretrained(base)
    from llmkit.models.hf import embedded_dir

    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(embedded_dir() / f, base / f)
    paths = {"root": root, "base": base}
    for i in (1, 2, 3):
        paths[f"ft{i}"] = finetuned(tiny_llama(), root / f"ft{i}", seed=i)
    return paths


def write_yaml(models: dict[str, Path], text: str, name: str = "merge.yaml") -> Path:
    for key, path in models.items():
        text = text.replace("{" + key + "}", str(path))
    path = models["root"] / name
    path.write_text(text)
    return path


def run_mergekit(config: Path, out: Path) -> dict[str, torch.Tensor]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    shutil.rmtree(out, ignore_errors=True)
    run_merge(MergeConfiguration.model_validate(yaml.safe_load(config.read_text())), str(out),
              MergeOptions(quiet=True, copy_tokenizer=False, write_model_card=False, random_seed=0))
    return read(out)


CASES = {
    "linear": """
merge_method: linear
models:
  - {model: "{ft1}", parameters: {weight: 0.5}}
  - {model: "{ft2}", parameters: {weight: 0.3}}
  - {model: "{ft3}", parameters: {weight: 0.4}}
dtype: float32
""",
    "linear_unnormalized": """
merge_method: linear
models:
  - {model: "{ft1}", parameters: {weight: 0.5}}
  - {model: "{ft2}"}
parameters: {normalize: false, weight: 0.25}
dtype: float32
""",
    "slerp": """
merge_method: slerp
base_model: "{ft1}"
models: [{model: "{ft1}"}, {model: "{ft2}"}]
parameters: {t: 0.3}
dtype: float32
""",
    "task_arithmetic": """
merge_method: task_arithmetic
base_model: "{base}"
models:
  - {model: "{ft1}", parameters: {weight: 0.7}}
  - {model: "{ft2}", parameters: {weight: -0.4}}
parameters: {lambda: 0.8}
dtype: float32
""",
    "ties": """
merge_method: ties
base_model: "{base}"
models:
  - {model: "{ft1}", parameters: {weight: 0.6, density: 0.5}}
  - {model: "{ft2}", parameters: {weight: 0.4, density: 0.3}}
  - {model: "{ft3}", parameters: {weight: 0.5}}
parameters: {density: 0.7, lambda: 1.2, int8_mask: true}
dtype: float32
""",
    "ties_unnormalized": """
merge_method: ties
base_model: "{base}"
models:
  - {model: "{base}"}
  - {model: "{ft1}", parameters: {weight: 1.0, density: 0.2}}
  - {model: "{ft2}", parameters: {weight: 1.0, density: 0.2}}
parameters: {normalize: false}
dtype: float32
""",
    # density 1 makes DARE deterministic: the combine step (task arithmetic / sign election) must match exactly
    "dare_ties_density1": """
merge_method: dare_ties
base_model: "{base}"
models:
  - {model: "{ft1}", parameters: {weight: 0.6}}
  - {model: "{ft2}", parameters: {weight: 0.4}}
parameters: {normalize: true}
dtype: float32
""",
    "dare_linear_density1": """
merge_method: dare_linear
base_model: "{base}"
models:
  - {model: "{ft1}", parameters: {weight: 0.6, density: 1.0}}
  - {model: "{ft2}", parameters: {weight: 0.4, density: 1.0}}
dtype: float32
""",
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_mergekit(models, case):
    config = write_yaml(models, CASES[case], f"{case}.yaml")
    ours = read(merge(config, models["root"] / f"lk-{case}"))
    theirs = run_mergekit(config, models["root"] / f"mk-{case}")
    base = read(models["base"])
    assert ours.keys() == theirs.keys() == base.keys()
    changed = 0
    for name in theirs:
        assert ours[name].dtype == theirs[name].dtype == torch.float32
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-6, msg=f"{case}: {name}")
        changed += not torch.equal(ours[name], base[name])
    assert changed >= len(base) - 5  # the merge did something (the 5 norm weights may equal the base's)


def test_slerp_is_spherical_and_falls_back_to_lerp(models):
    from llmkit.train.merge import slerp

    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    mid = slerp(0.5, a, b)
    torch.testing.assert_close(mid, (a + b) * (2 ** 0.5 / 2))  # sin(π/4)/sin(π/2) on each end
    assert not torch.allclose(mid, (a + b) / 2)
    c = a * 3 + 1e-6  # colinear with a: plain lerp, no division by sin θ ≈ 0
    torch.testing.assert_close(slerp(0.25, a, c), 0.75 * a + 0.25 * c)


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
def test_dare_equals_the_paper_with_the_same_mask(models, method):
    text = f"""
merge_method: {method}
base_model: "{{base}}"
models:
  - {{model: "{{ft1}}", parameters: {{weight: 0.7, density: 0.3}}}}
  - {{model: "{{ft2}}", parameters: {{weight: 0.5, density: 0.6}}}}
parameters: {{lambda: 0.9}}
seed: 7
dtype: float32
"""
    config = write_yaml(models, text, f"{method}.yaml")
    ours = read(merge(config, models["root"] / f"lk-{method}"))
    base, fts = read(models["base"]), [read(models["ft1"]), read(models["ft2"])]
    for name in base:
        # the paper: δ̃ = m ⊙ δ / p with m ~ Bernoulli(p)
        deltas = [(ft[name] - base[name]) * dare_mask(base[name].shape, p, 7, name, i) / p
                  for i, (ft, p) in enumerate(zip(fts, (0.3, 0.6)))]
        d = torch.stack([0.7 * deltas[0], 0.5 * deltas[1]])
        if method == "dare_ties":  # TIES' sign election: keep the entries agreeing with the sign of the sum
            d = d * (torch.sign(d) == torch.where(d.sum(0) >= 0, 1.0, -1.0))
        expected = base[name] + 0.9 * d.sum(0)  # dare's default: normalize false
        torch.testing.assert_close(ours[name], expected, rtol=1e-5, atol=1e-6, msg=name)
    again = read(merge(config, models["root"] / f"lk-{method}-again"))
    assert all(torch.equal(again[n], ours[n]) for n in ours)  # same seed, same merge


def test_dare_statistics_and_mergekit(models):
    """One model, weight 1: the merged task vector keeps ≈ density of the entries, rescaled so its
    L1 mass (the expected value) is preserved — the same statistics as mergekit's own DARE."""
    text = """
merge_method: dare_linear
base_model: "{base}"
models: [{model: "{ft1}", parameters: {weight: 1.0, density: 0.3}}]
seed: SEED
dtype: float32
"""
    base, ft = read(models["base"]), read(models["ft1"])
    name = "model.embed_tokens.weight"  # 8192 entries: the kept fraction's σ is 0.005
    delta = ft[name] - base[name]
    runs = {}
    for seed in (1, 2):
        config = write_yaml(models, text.replace("SEED", str(seed)), f"dare-stats-{seed}.yaml")
        runs[seed] = read(merge(config, models["root"] / f"lk-dare-stats-{seed}"))[name] - base[name]
    theirs = run_mergekit(config, models["root"] / "mk-dare-stats")[name] - base[name]
    for d in (runs[1], runs[2], theirs):
        kept = d != 0
        assert abs(kept.float().mean().item() - 0.3) < 0.03
        torch.testing.assert_close(d[kept], delta[kept] / 0.3 if d is not theirs else d[kept])
        assert abs(d.abs().sum() / delta.abs().sum() - 1) < 0.05
    assert not torch.equal(runs[1] != 0, runs[2] != 0)  # another seed, another mask
    ratio = theirs[theirs != 0] / delta[theirs != 0]  # mergekit rescales by the L1 ratio, ≈ 1/density
    assert abs(ratio.mean().item() - 1 / 0.3) < 0.3


def test_bfloat16_output(models):
    text = CASES["linear"].replace("dtype: float32", "dtype: bfloat16")
    ours = read(merge(write_yaml(models, text, "bf16.yaml"), models["root"] / "lk-bf16"))
    f32 = read(merge(write_yaml(models, CASES["linear"], "f32.yaml"), models["root"] / "lk-f32"))
    theirs = run_mergekit(models["root"] / "bf16.yaml", models["root"] / "mk-bf16")
    for name in ours:
        assert ours[name].dtype == torch.bfloat16
        assert torch.equal(ours[name], f32[name].to(torch.bfloat16))  # float32 arithmetic, one rounding at the end
        torch.testing.assert_close(ours[name].float(), theirs[name].float(), rtol=0.02, atol=1e-2)
    assert json.loads((models["root"] / "lk-bf16" / "config.json").read_text())["dtype"] == "bfloat16"


def test_shards_index_and_files(models):
    config = write_yaml(models, CASES["ties"], "shard.yaml")
    out = merge(config, models["root"] / "lk-sharded", max_shard_size=40_000)
    single = read(merge(config, models["root"] / "lk-single"))
    shards = sorted(out.glob("model-*.safetensors"))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(shards) > 2 and not (out / "model.safetensors").exists()
    assert set(index["weight_map"]) == set(single) and set(index["weight_map"].values()) == {s.name for s in shards}
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in single.values())
    for shard in shards:
        assert shard.stat().st_size <= 40_000 + 4096  # header aside, within the limit (no tensor here exceeds it)
        with safe_open(shard, "pt") as f:
            for name in f.keys():
                assert index["weight_map"][name] == shard.name
                assert torch.equal(f.get_tensor(name), single[name])
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "llmkit_merge.yaml"):
        assert (out / f).is_file(), f
    assert MergeConfig.from_yaml(out / "llmkit_merge.yaml") == MergeConfig.from_yaml(config)  # the record replays
    assert not [p for p in models["root"].iterdir() if ".tmp-" in p.name]


def test_merged_folder_loads_and_generates(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmkit.models.hf import embedded_dir

    tok = AutoTokenizer.from_pretrained(embedded_dir())
    a, b = tiny_llama(len(tok), hidden=16, intermediate=32, seed=1), tiny_llama(len(tok), hidden=16, intermediate=32, seed=2)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    tok.save_pretrained(tmp_path / "a")
    cfg = MergeConfig(merge_method="linear", models=[{"model": str(tmp_path / "a"), "parameters": {"weight": 1}},
                                                     {"model": str(tmp_path / "b"), "parameters": {"weight": 3}}])
    out = merge(cfg, tmp_path / "merged")
    model, tok2 = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    sa, sb = a.state_dict(), b.state_dict()
    a.load_state_dict({k: (sa[k] + 3 * sb[k]) / 4 for k in sa})  # the same average, in memory
    ids = tok2("The capital of France is", return_tensors="pt").input_ids
    assert ids.tolist() == tok("The capital of France is", return_tensors="pt").input_ids.tolist()
    got = model.generate(ids, max_new_tokens=8, do_sample=False)
    want = a.generate(ids, max_new_tokens=8, do_sample=False)
    assert got.shape[1] == ids.shape[1] + 8 and got.tolist() == want.tolist()
    assert isinstance(tok2.decode(got[0, ids.shape[1]:]), str)


# --- LoRA ----------------------------------------------------------------------------------
def peft_adapter(model, folder: Path, **lora):
    """A real PEFT adapter on ``model`` with non-zero B (and perturbed DoRA magnitudes); returns PEFT's merge."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(**lora))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name or "modules_to_save" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
    peft_model.save_pretrained(folder)
    return peft_model.merge_and_unload().state_dict()


LORAS = {
    "lora_rslora_embedding_alpha_pattern": dict(r=4, lora_alpha=8, use_rslora=True, alpha_pattern={"v_proj": 32},
                                                target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
                                                modules_to_save=["lm_head"]),
    "dora": dict(r=4, lora_alpha=16, use_dora=True, target_modules=["q_proj", "v_proj", "gate_proj"]),
}


@pytest.mark.parametrize("case", list(LORAS))
def test_merge_lora_equals_peft_merge_and_unload(tmp_path, case):
    model = tiny_llama()
    model.save_pretrained(tmp_path / "base")
    expected = peft_adapter(model, tmp_path / "adapter", **LORAS[case])
    adapter_keys = list(tensor_index(tmp_path / "adapter", files=("adapter_model.safetensors",)))
    assert any("lora_magnitude_vector" in k for k in adapter_keys) == (case == "dora")
    out = merge_lora(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")
    ours, base = read(out), read(tmp_path / "base")
    assert ours.keys() == base.keys()
    changed = [n for n in ours if not torch.equal(ours[n], base[n])]
    assert len(changed) >= 6
    for name in ours:
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("dora", [False, True])
def test_merge_lora_fan_in_fan_out_and_bias(tmp_path, dora):
    """GPT-2's Conv1D stores weights (in, out): PEFT's fan_in_fan_out; lora_bias adds B's bias (PEFT refuses it with DoRA)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=2, n_positions=32))
    model.save_pretrained(tmp_path / "base")
    expected = peft_adapter(model, tmp_path / "adapter", r=4, lora_alpha=8, fan_in_fan_out=True, lora_bias=not dora,
                            use_dora=dora, target_modules=["c_attn", "c_proj"])
    ours = read(merge_lora(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged"))
    base = read(tmp_path / "base")
    bias = "transformer.h.0.attn.c_attn.bias"
    assert torch.equal(ours[bias], base[bias]) == dora  # lora_bias moved it, DoRA leaves biases alone
    assert not torch.equal(ours["transformer.h.0.attn.c_attn.weight"], base["transformer.h.0.attn.c_attn.weight"])
    for name in ours:
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_merge_lora_errors(tmp_path):
    model = tiny_llama()
    model.save_pretrained(tmp_path / "base")
    peft_adapter(model, tmp_path / "dora-emb", r=2, lora_alpha=4, use_dora=True, target_modules=["embed_tokens"])
    with pytest.raises(ConfigError, match="DoRA on an embedding.*merge_and_unload"):
        merge_lora(tmp_path / "base", tmp_path / "dora-emb", tmp_path / "out")
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        merge_lora(tmp_path / "base", tmp_path / "base", tmp_path / "out")
    other = tiny_llama(intermediate=48)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match=r"gate_proj.weight.*\[48, 32\].*\[64, 32\]"):  # an adapter for another base
        peft_adapter(other, tmp_path / "other-adapter", r=2, lora_alpha=4, target_modules=["gate_proj"])
        merge_lora(tmp_path / "base", tmp_path / "other-adapter", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- bad input and atomic output -----------------------------------------------------------
TIES = "merge_method: ties\nbase_model: '{base}'\n"
ONE = "models: [{model: '{ft1}', parameters: {weight: 1}}]\n"


@pytest.mark.parametrize("text, named", [
    ("merge_method: frankenstein\nbase_model: '{base}'\n" + ONE, "frankenstein"),
    ("merge_method: della\nbase_model: '{base}'\n" + ONE, "della"),
    (TIES + "models: [{model: '{ft1}', parameters: {weight: 1, desnity: 0.5}}]", "desnity"),
    (TIES + ONE + "foo: 1", "foo"),
    (TIES + "models: [{model: '{ft1}', parameters: {weight: [0, 1]}}]", "not supported"),
    (TIES + ONE + "parameters: {t: 0.5}", "'t'"),
    (TIES + "models: [{model: '{ft1}'}]", "no weight"),
    ("merge_method: slerp\nbase_model: '{base}'\nmodels: [{model: '{ft1}'}, {model: '{ft2}'}]\nparameters: {t: 0.5}",
     "exactly two"),
    ("merge_method: ties\n" + ONE, "needs base_model"),
    ("merge_method: linear\n" + ONE + "dtype: float8", "float8"),
    ("slices: []\nmerge_method: linear", "slices"),
])
def test_bad_config_names_the_value(models, text, named):
    with pytest.raises(ConfigError, match=named):
        MergeConfig.from_yaml(write_yaml(models, text, "bad.yaml"))


def test_bad_models_name_the_folder_or_tensor(models, tmp_path):
    missing = tmp_path / "no-such-model"
    cfg = MergeConfig(merge_method="task_arithmetic", base_model=str(models["base"]),
                      models=[{"model": str(missing), "parameters": {"weight": 1}}])
    with pytest.raises(ConfigError, match="no-such-model.*does not exist"):
        merge(cfg, tmp_path / "out")
    tiny_llama(intermediate=48).save_pretrained(tmp_path / "wide")
    cfg = MergeConfig(merge_method="task_arithmetic", base_model=str(models["base"]),
                      models=[{"model": str(tmp_path / "wide"), "parameters": {"weight": 1}}])
    with pytest.raises(ConfigError, match=r"model.layers.0.mlp.down_proj.weight.*\[32, 48\]"):
        merge(cfg, tmp_path / "out")
    with pytest.raises(ConfigError, match="does not exist"):
        MergeConfig.from_yaml(tmp_path / "nope.yaml")
    assert not (tmp_path / "out").exists()


def test_output_is_atomic(models, tmp_path, monkeypatch):
    import llmkit.train.merge as m

    cfg = MergeConfig.from_yaml(write_yaml(models, CASES["ties"], "atomic.yaml"))
    calls = []
    real = m.merge_tensor

    def failing(*a):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk on fire")
        return real(*a)

    monkeypatch.setattr(m, "merge_tensor", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        merge(cfg, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no output, no temp folder
    monkeypatch.setattr(m, "merge_tensor", real)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        merge(cfg, tmp_path / "out")
    merge(cfg, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "old.txt").exists() and (tmp_path / "out" / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(ConfigError, match="also an input"):
        merge(cfg, models["ft1"], overwrite=True)


def test_cli_commands(models, tmp_path):
    import typer
    from typer.testing import CliRunner

    from llmkit.cli.merge_cmd import merge as merge_command, merge_lora_cmd, parse_size

    app = typer.Typer()
    app.command("merge")(merge_command)
    app.command("merge-lora")(merge_lora_cmd)
    config = write_yaml(models, CASES["task_arithmetic"], "cli.yaml")
    r = CliRunner().invoke(app, ["merge", str(config), "-o", str(tmp_path / "out"), "--max-shard-size", "30KB"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()
    r = CliRunner().invoke(app, ["merge", str(config)])
    assert r.exit_code == 2 and "--out" in r.output  # -o is required
    assert parse_size("2GB") == 2 * 1024**3 and parse_size("1.5M") == 1572864 and parse_size("100") == 100
    with pytest.raises(ConfigError, match="lots"):
        parse_size("lots")


def test_magnitude_prune_keeps_exactly_k_even_with_ties():
    from llmkit.train.merge import magnitude_prune

    d = torch.tensor([0.5, -0.5, 0.5, 0.125, -0.75, 0.5, 0.0, 0.25])
    kept = magnitude_prune(d.clone(), 0.5)  # k = 4: -0.75 and three of the four tied 0.5s
    assert int((kept != 0).sum()) == 4 and kept[4] == -0.75 and set(kept[kept != 0].abs().tolist()) == {0.75, 0.5}
    assert torch.equal(magnitude_prune(d.clone(), 0.01), torch.tensor([0, 0, 0, 0, -0.75, 0, 0, 0]))  # at least one
    assert torch.equal(magnitude_prune(d.clone(), 1.0), d)
