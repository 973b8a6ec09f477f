"""GRPO, distillation and context extension on a tiny random llama (the real SmolLM2 tokenizer)."""
from __future__ import annotations

import json
import math

import pytest
import torch

import llmkit as lk
from llmkit.core.errors import ConfigError
from llmkit.train import context, grpo
from llmkit.train.distill import kd_loss

REWARDS = '''
def says_yes(prompts, completions, **columns):
    return [1.0 if "yes" in c else 0.0 for c in completions]

def chars(prompts, completions, **columns):
    return [len(c) / 10 for c in completions]

def echo_column(prompts, completions, target, **columns):
    return [1.0 if t == "x" else 0.0 for t in target]

def wrong_length(prompts, completions, **columns):
    return [1.0]
'''


@pytest.fixture
def rewards_file(tmp_path):
    path = tmp_path / "rewards.py"
    path.write_text(REWARDS)
    return path


def _yes_rate(model_dir, tokenizer, n=64, seed=1):
    """Share of sampled answers to "Yes or no?" that say yes."""
    from transformers import AutoModelForCausalLM

    from llmkit.train.data import prompt_ids
    from llmkit.train.grpo_config import GRPOConfig

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = GRPOConfig(data="x", reward=["x:y"], num_generations=n, max_new_tokens=3)
    answers = grpo.sample(model, tokenizer, [prompt_ids(tokenizer, "Yes or no?")], cfg)
    return sum("yes" in t for t in tokenizer.batch_decode(answers, skip_special_tokens=True)) / n


def test_advantages_are_group_relative():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0, 5.0, 5.0, 9.0])
    a = grpo.advantages(r, 4)
    assert torch.allclose(a[:4], (r[:4] - 0.5) / (r[:4].std() + 1e-4))
    assert torch.allclose(a[4:7], torch.full((3,), -1.0 / (r[4:].std() + 1e-4)))
    assert torch.allclose(grpo.advantages(r, 4, scale=False)[4:], r[4:] - 6.0)


def test_grpo_raises_the_reward(tiny_dir, tokenizer, jsonl, tmp_path, rewards_file):
    """A model first taught to say yes or no at random learns, from the reward alone, to say yes."""
    coin = lk.train.run("sft", model=str(tiny_dir), data=jsonl([{"prompt": "Yes or no?", "completion": a}
                                                                 for a in ["yes", "no"] * 4], "coin.jsonl"),
                        output_dir=str(tmp_path / "coin"), peft="none", epochs=12, learning_rate=3e-2, val_split=0,
                        lr_scheduler="constant")
    before = _yes_rate(coin.final_dir, tokenizer)
    assert 0.15 < before < 0.85, before
    data = jsonl([{"prompt": "Yes or no?", "target": "x"}] * 4)
    run = lk.train.run("grpo", model=str(coin.final_dir), data=data, output_dir=str(tmp_path / "g"), peft="none",
                       reward=[f"{rewards_file}:says_yes", f"{rewards_file}:echo_column"], max_steps=6, batch_size=2,
                       num_generations=8, max_new_tokens=3, learning_rate=5e-3, beta=0.0, merge=False)
    after = _yes_rate(run.final_dir, tokenizer)
    assert after > before + 0.3, (before, after)
    assert all(h["reward"] >= 1.0 for h in run.history)  # echo_column saw the row's "target" column: +1 each
    assert (run.output_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grpo_kl_term_keeps_the_policy_near_the_start(tiny_dir, jsonl, tmp_path, rewards_file):
    data = jsonl([{"prompt": "Write a word"}] * 2)
    run = lk.train.run("grpo", model=str(tiny_dir), data=data, output_dir=str(tmp_path / "g"), peft="lora",
                       reward=[f"{rewards_file}:chars"], max_steps=3, batch_size=2, num_generations=4,
                       max_new_tokens=4, learning_rate=5e-2, beta=0.1)
    kls = [h["kl"] for h in run.history]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # the first step samples from the reference itself
    assert kls[-1] > 0


def test_grpo_reward_errors_name_the_function(tiny_dir, jsonl, tmp_path, rewards_file):
    data = jsonl([{"prompt": "hi"}] * 2)
    with pytest.raises(ConfigError, match="wrong_length returned 1 scores for 4"):
        lk.train.run("grpo", model=str(tiny_dir), data=data, output_dir=str(tmp_path / "g"),
                     reward=[f"{rewards_file}:wrong_length"], max_steps=1, batch_size=1, num_generations=4, max_new_tokens=2)
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        grpo.load_reward(f"{rewards_file}:nope")
    with pytest.raises(ConfigError, match="needs a reward"):
        lk.train.run("grpo", model=str(tiny_dir), data=data)


def test_kd_loss_is_zero_for_the_teacher_itself_and_matches_the_kl_formula():
    torch.manual_seed(0)
    t, s = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    target = torch.tensor([[1, 2, -100], [4, -100, -100]])
    zero, n = kd_loss(t, t, target, temperature=2.0)
    assert float(zero) == pytest.approx(0.0, abs=1e-5) and int(n) == 3
    loss, _ = kd_loss(s, t, target, temperature=2.0)
    p, q = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    ref = sum(float((p[b, k] * (p[b, k].log() - q[b, k].log())).sum()) * 4 for b, k in [(0, 0), (0, 1), (1, 0)])
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    rev, _ = kd_loss(s, t, target, temperature=2.0, divergence="reverse")
    assert float(rev) != pytest.approx(float(loss), rel=1e-3)


def test_logit_distillation_moves_the_student_to_the_teacher(tiny_dir, tokenizer, jsonl, tmp_path):
    rows = [{"prompt": f"Item {i}?", "completion": f"Item {i} is a fine thing."} for i in range(8)]
    data = jsonl(rows)
    teacher = lk.train.run("sft", model=str(tiny_dir), data=data, output_dir=str(tmp_path / "t"), peft="none",
                           epochs=6, learning_rate=3e-2, val_split=0, lr_scheduler="constant")
    run = lk.train.run("distill", model=str(tiny_dir), teacher=str(teacher.final_dir), data=data,
                       output_dir=str(tmp_path / "d"), epochs=6, learning_rate=3e-2, temperature=1.0, val_split=0.25,
                       peft="none", lr_scheduler="constant")
    assert run.summary["val_loss"] < 0.5 * run.summary["first_val_loss"]  # KL to the teacher on held-out rows


def test_logit_distillation_needs_one_tokenizer(tiny_dir, jsonl, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    other = tmp_path / "other"
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="b")
    LlamaForCausalLM(LlamaConfig(vocab_size=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32)).save_pretrained(other)
    fast.save_pretrained(other)
    data = jsonl([{"prompt": "a", "completion": "b"}] * 2)
    with pytest.raises(ConfigError, match="different tokenizer"):
        lk.train.run("distill", model=str(tiny_dir), teacher=str(other), data=data, output_dir=str(tmp_path / "d"))


def test_sequence_distillation_asks_the_teacher_the_prompt_or_the_chat_so_far():
    from llmkit.train.distill import teacher_prompts

    convos = teacher_prompts([{"prompt": "Name 0?"},
                              {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "old answer"}]}])
    assert convos == [[{"role": "user", "content": "Name 0?"}],
                      [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]]


@pytest.mark.integration
def test_sequence_distillation_with_the_embedded_teacher(tiny_dir, jsonl, tmp_path):
    data = jsonl([{"prompt": "What is the capital of France? Answer with one word."}] * 3)
    run = lk.train.run("distill", model=str(tiny_dir), teacher="smollm2", data=data, output_dir=str(tmp_path / "s"),
                       mode="sequence", epochs=2, learning_rate=1e-2, val_split=0, max_new_tokens=8, peft="none")
    rows = [json.loads(line) for line in (run.output_dir / "teacher.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("Paris" in r["messages"][-1]["content"] for r in rows)
    assert run.summary["train_loss"] < run.summary["first_train_loss"]


# --- context extension -------------------------------------------------------------------------
def _tiny(tokenizer, max_pos=256):
    from tiny import tiny_llama

    m = tiny_llama(tokenizer).model
    m.config.max_position_embeddings = max_pos
    return m


def test_linear_scaling_maps_position_2p_to_p(tokenizer):
    m = _tiny(tokenizer)
    x, pos = torch.zeros(1, 1, 8), torch.arange(0, 100).unsqueeze(0)
    cos0, sin0 = m.model.rotary_emb(x, pos)
    context.scale_rope(m, "linear", 2.0)
    cos1, sin1 = m.model.rotary_emb(x, pos * 2)
    assert torch.allclose(cos0, cos1, atol=1e-6) and torch.allclose(sin0, sin1, atol=1e-6)
    assert m.config.max_position_embeddings == 512


def test_dynamic_ntk_leaves_short_inputs_alone_and_yarn_records_the_original(tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    ids = torch.randint(0, 1000, (1, 40))
    base = _tiny(tokenizer)
    ref = base(ids, use_cache=False).logits
    dyn = _tiny(tokenizer)
    context.scale_rope(dyn, "dynamic", 2.0)
    assert torch.allclose(dyn(ids, use_cache=False).logits, ref, atol=1e-5)  # 40 < 256: untouched
    yarn = _tiny(tokenizer)
    context.scale_rope(yarn, "yarn", 4.0)
    assert yarn.config.rope_parameters["original_max_position_embeddings"] == 256
    assert not torch.allclose(yarn(ids, use_cache=False).logits, ref, atol=1e-3)
    yarn.save_pretrained(tmp_path / "y")  # transformers itself reloads the scaled model identically
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "y")
    assert torch.allclose(again(ids, use_cache=False).logits, yarn(ids, use_cache=False).logits, atol=1e-5)
    with pytest.raises(ConfigError, match="already uses 'yarn'"):
        context.scale_rope(yarn, "linear", 2.0)
    with pytest.raises(ConfigError, match="rope_scaling='ntk'"):
        context.scale_rope(base, "ntk", 2.0)


def test_perplexity_is_exp_of_the_mean_token_loss(tokenizer):
    m = _tiny(tokenizer)
    text = "the cat sat on the mat. " * 40
    ppl = context.perplexity(m, tokenizer, text, length=32, max_windows=2)
    ids = torch.tensor([tokenizer(text)["input_ids"][:32]])
    with torch.no_grad():
        first = m(ids, labels=ids, use_cache=False).loss
    assert ppl > 1
    one = context.perplexity(m, tokenizer, text, length=32, max_windows=1)
    assert one == pytest.approx(math.exp(float(first)), rel=1e-4)
    with pytest.raises(ConfigError, match="fewer than one window"):
        context.perplexity(m, tokenizer, "short", length=64)


def test_context_recipe_lowers_perplexity_at_twice_the_trained_length(tokenizer, tmp_path, jsonl):
    """The recipe end to end: a model trained at 64 tokens, scaled ×2 with YaRN and fine-tuned on
    128-token rows, reads 128-token windows of held-out text better than before the fine-tune."""
    m = _tiny(tokenizer, max_pos=64)
    m.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    texts = [" ".join(words[(i + k) % len(words)] for k in range(120)) for i in range(12)]
    data = jsonl([{"text": t} for t in texts[:10]])
    held = texts[10:]
    scaled, _ = _tiny(tokenizer, max_pos=64), None
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    context.scale_rope(before, "yarn", 2.0)
    ppl_before = context.perplexity(before, tokenizer, held, length=128)
    run = lk.train.run("sft", model=str(tmp_path / "base"), data=data, output_dir=str(tmp_path / "run"), peft="none",
                       rope_scaling="yarn", rope_factor=2.0, max_length=128, train_on="all", epochs=4,
                       learning_rate=1e-2, val_split=0)
    after = AutoModelForCausalLM.from_pretrained(run.final_dir)
    assert after.config.rope_parameters["rope_type"] == "yarn" and after.config.max_position_embeddings == 128
    ppl_after = context.perplexity(after, tokenizer, held, length=128)
    assert ppl_after < 0.5 * ppl_before, (ppl_before, ppl_after)
