"""llmkit's preference losses equal TRL 1.16's on the same batch and the same weights.

Each test builds the real TRL trainer (DPOTrainer, KTOTrainer, RewardTrainer, the experimental
ORPOTrainer and CPOTrainer) on a 4-row dataset and the tiny random llama, takes a batch from its
dataloader (or feeds its loss code llmkit's batch where the two tokenise differently, said where
it happens), and compares the loss with llmkit's own path: ``encode_preference → pair_batch →
pair_logps`` (or ``kto.encode → mismatched``, ``encode_pair → scores``) and the loss function.

Two things keep the comparison honest:

- The tiny random model is nearly uniform (every token ≈ −log 49152), so a mask shifted by one
  position would score almost the same. ``SHARPEN`` scales its LM head so per-token
  log-probabilities spread over tens of nats and such a slip shows (checked: scoring each answer
  one token late fails every log-prob comparison here).
- The policy is moved away from the reference (LoRA B matrices or every weight perturbed), and
  each test checks the log-ratios it compares are far from zero, so the reference term matters.
"""
from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO and CPO live in trl.experimental

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

SHARPEN = 40.0  # LM-head scale: per-token log-probs spread over −44…−10 (std ≈ 6.5) instead of all ≈ −10.8
RTOL, ATOL = 1e-4, 1e-5

ROWS = [  # answers of different lengths, so padding, lengths and per-token means all matter
    {"prompt": "What is 2+2?", "chosen": "4.", "rejected": "It is five, I think, or maybe six."},
    {"prompt": "Name a colour.", "chosen": "Blue is a colour of the sky.", "rejected": "Dog."},
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "London, obviously."},
    {"prompt": "Say hi to the reader, politely.", "chosen": "Hi there, reader!", "rejected": "No."},
]
KTO_ROWS = [  # desirable and undesirable mixed, all prompts different (the KL pairs mismatch them)
    {"prompt": "What is 2+2?", "completion": "4.", "label": True},
    {"prompt": "Name a colour.", "completion": "Dog, of course, is a colour.", "label": False},
    {"prompt": "Capital of France?", "completion": "Paris.", "label": True},
    {"prompt": "Say hi to the reader, politely.", "completion": "No.", "label": False},
]
MARGINS = [0.5, 0.0, 1.5, -0.25]


# --- helpers ---------------------------------------------------------------------------------
def conversational(rows: list[dict]) -> list[dict]:
    """llmkit's string rows as TRL's conversational rows: TRL then applies the same chat template."""
    out = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in ("prompt", "chosen", "rejected", "completion")}
        row["prompt"] = [{"role": "user", "content": r["prompt"]}]
        for side in ("chosen", "rejected", "completion"):
            if side in r:
                row[side] = [{"role": "assistant", "content": r[side]}]
        out.append(row)
    return out


def dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(conversational(rows))


def causal_lm(tiny_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(SHARPEN)
    return model


def trl_args(cls, tmp_path, **kw):
    """A TRL config for a CPU run: no reports, no bf16 autocast, the batch in dataset order."""
    base = {"output_dir": str(tmp_path / "trl"), "report_to": [], "use_cpu": True, "bf16": False,
            "per_device_train_batch_size": 4, "train_sampling_strategy": "sequential", "dataloader_num_workers": 0,
            "disable_tqdm": True}
    return cls(**(base | kw))


def lora():
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")


def perturb(model, seed: int, scale: float, only: str = "") -> None:
    """Add seeded noise to the parameters whose name contains ``only`` (LoRA B: the adapter stops being a no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if only in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def first_batch(trainer) -> dict:
    return next(iter(trainer.get_train_dataloader()))


def assert_close(ours, theirs, what: str) -> None:
    ours = torch.as_tensor(ours, dtype=torch.float32).detach()
    theirs = torch.as_tensor(theirs, dtype=torch.float32).detach()
    if not torch.allclose(ours, theirs, rtol=RTOL, atol=ATOL):
        worst = int((ours - theirs).abs().argmax()) if ours.ndim else 0
        shown = f"{ours.tolist()} != TRL {theirs.tolist()}" if ours.numel() <= 8 else (
            f"[{worst}] {float(ours.flatten()[worst])} != TRL {float(theirs.flatten()[worst])} "
            f"(the largest gap of {ours.numel()})")
        raise AssertionError(f"{what}: llmkit {shown}")


def assert_same_tokens(trl_batch: dict, ours: dict, prefix: str = "") -> None:
    """Same ids, attention and trained positions (TRL's completion_mask is llmkit's labels != -100)."""
    assert torch.equal(trl_batch[f"{prefix}input_ids"], ours["input_ids"]), "token ids differ from TRL's"
    assert torch.equal(trl_batch[f"{prefix}attention_mask"], ours["attention_mask"]), "attention masks differ"
    assert torch.equal(trl_batch[f"{prefix}completion_mask"].bool(), ours["labels"] != -100), "completion masks differ"


def pairs_for(tokenizer, rows=ROWS):
    from llmkit.train.preference import encode_preference

    pairs = encode_preference(tokenizer, rows, 512, chat_template=True)
    assert len(pairs) == len(rows)
    return pairs


def as_trl_pair_batch(batch: dict) -> dict:
    """llmkit's [chosen; rejected] batch in the keys of TRL's legacy collator (ORPO, CPO)."""
    half = batch["input_ids"].shape[0] // 2
    out = {}
    for side, rows in (("chosen", slice(None, half)), ("rejected", slice(half, None))):
        out[f"{side}_input_ids"] = batch["input_ids"][rows]
        out[f"{side}_attention_mask"] = batch["attention_mask"][rows]
        out[f"{side}_labels"] = batch["labels"][rows]
    return out


# --- DPO, IPO, hinge -------------------------------------------------------------------------
@pytest.mark.parametrize("loss_type, reference, precompute", [
    ("sigmoid", "adapter", False),   # LoRA policy, TRL's reference = adapter switched off, computed each step
    ("ipo", "adapter", True),        # ... reference log-probs precomputed by TRL before the first step
    ("hinge", "model", True),        # full fine-tune against a separate frozen model
])
def test_dpo_losses_match_trl(tiny_dir, tokenizer, tmp_path, loss_type, reference, precompute):
    from trl import DPOConfig, DPOTrainer

    from llmkit.train.dpo import dpo_loss
    from llmkit.train.preference import pair_batch, pair_logps, precompute_reference

    beta = 0.1
    args = trl_args(DPOConfig, tmp_path, beta=beta, loss_type=[loss_type], precompute_ref_log_probs=precompute)
    pairs = pairs_for(tokenizer)
    if reference == "adapter":
        trainer = DPOTrainer(model=causal_lm(tiny_dir), args=args, train_dataset=dataset(ROWS), processing_class=tokenizer,
                             peft_config=lora())
        policy = trainer.model
        precompute_reference(policy, pairs, tokenizer.pad_token_id, 4)  # llmkit's reference: the untrained adapter
        perturb(policy, seed=1, scale=0.3, only="lora_B")
    else:
        ref = causal_lm(tiny_dir).eval()
        policy = copy.deepcopy(ref)
        perturb(policy, seed=1, scale=0.01)
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=dataset(ROWS), processing_class=tokenizer)
        precompute_reference(ref, pairs, tokenizer.pad_token_id, 4)  # the frozen starting weights
    policy.train()

    batch = first_batch(trainer)
    ours = pair_batch(pairs, tokenizer.pad_token_id)
    assert_same_tokens(batch, ours)
    if precompute:  # TRL's own precomputed reference log-probs equal llmkit's
        assert_close(ours["ref_chosen"], batch["ref_chosen_logps"], "reference log-probs (chosen)")
        assert_close(ours["ref_rejected"], batch["ref_rejected_logps"], "reference log-probs (rejected)")

    theirs = trainer.compute_loss(policy, batch)
    c, r, lc, lr = pair_logps(policy, ours)
    mine = dpo_loss(c, r, ours["ref_chosen"], ours["ref_rejected"], beta, loss_type, 0.0, lc, lr).mean()

    margin = (c - ours["ref_chosen"]) - (r - ours["ref_rejected"])
    assert margin.abs().max() > 1.0, f"policy too close to the reference for a meaningful check: {margin.tolist()}"
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert_close(c.mean(), metrics["logps/chosen"], "chosen log-probs")
    assert_close(r.mean(), metrics["logps/rejected"], "rejected log-probs")
    assert_close(beta * margin.mean(), metrics["rewards/margins"], "reward margins")
    assert_close(mine, theirs, f"{loss_type} loss")


def test_conservative_dpo_matches_trl(tiny_dir, tokenizer, tmp_path):
    """``label_smoothing`` (cDPO): TRL 1.16's 'sigmoid' no longer reads label_smoothing; its 'aot' loss is
    −(1−ε)·log σ(βδ) − ε·log σ(−βδ) with δ = (c−r) − (c_ref−r_ref) after sorting over the batch, so on
    one-pair batches (nothing to sort) it is exactly cDPO. Compared pair by pair."""
    from trl import DPOConfig, DPOTrainer

    from llmkit.train.dpo import dpo_loss
    from llmkit.train.preference import pair_batch, pair_logps, precompute_reference

    beta, eps = 0.1, 0.2
    args = trl_args(DPOConfig, tmp_path, beta=beta, loss_type=["aot"], label_smoothing=eps,
                    per_device_train_batch_size=1)
    trainer = DPOTrainer(model=causal_lm(tiny_dir), args=args, train_dataset=dataset(ROWS), processing_class=tokenizer,
                         peft_config=lora())
    policy = trainer.model
    pairs = pairs_for(tokenizer)
    precompute_reference(policy, pairs, tokenizer.pad_token_id, 4)
    perturb(policy, seed=2, scale=0.3, only="lora_B")
    policy.train()

    ours = pair_batch(pairs, tokenizer.pad_token_id)
    c, r, _, _ = pair_logps(policy, ours)
    mine = dpo_loss(c, r, ours["ref_chosen"], ours["ref_rejected"], beta, "sigmoid", eps)
    plain = dpo_loss(c, r, ours["ref_chosen"], ours["ref_rejected"], beta, "sigmoid", 0.0)
    assert (mine - plain).abs().max() > 1e-2, "label smoothing made no difference: the check would be vacuous"
    theirs = []
    for i, batch in enumerate(trainer.get_train_dataloader()):
        assert_same_tokens(batch, pair_batch(pairs[i:i + 1], tokenizer.pad_token_id))
        theirs.append(trainer.compute_loss(policy, batch))
    assert_close(mine, torch.stack(theirs), "cDPO per-pair losses")


# --- KTO -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed, clamped", [(4, False), (3, True)])
def test_kto_loss_matches_trl(tiny_dir, tokenizer, tmp_path, seed, clamped):
    """TRL pairs each prompt with the previous example's answer (cycled by +1 within the batch);
    llmkit's ``mismatched`` must build the same sequences, and the KL reference point z must be
    clamped at 0 the same way (seed 3 gives a negative raw estimate, seed 4 a positive one)."""
    from trl import KTOConfig, KTOTrainer

    from llmkit.train.data import collate
    from llmkit.train.kto import encode, kto_loss, mismatched
    from llmkit.train.kto_config import KTOConfig as OurKTOConfig
    from llmkit.train.model import completion_logps
    from llmkit.train.preference import Reference

    beta, wd, wu = 0.5, 1.3, 0.7
    args = trl_args(KTOConfig, tmp_path, beta=beta, desirable_weight=wd, undesirable_weight=wu,
                    precompute_ref_log_probs=False)
    trainer = KTOTrainer(model=causal_lm(tiny_dir), args=args, train_dataset=dataset(KTO_ROWS), processing_class=tokenizer,
                         peft_config=lora())
    policy = trainer.model
    pad = tokenizer.pad_token_id

    group = encode(tokenizer, KTO_ROWS, OurKTOConfig())
    assert len(group) == 4
    reference = Reference(policy)
    batch = collate(group, pad)
    batch["kl"] = collate(mismatched(group), pad)
    batch["ref"] = reference(batch)
    batch["desirable"] = torch.tensor([ex["label"] for ex in group])

    perturb(policy, seed=seed, scale=0.3, only="lora_B")
    policy.train()
    trl_batch = first_batch(trainer)
    assert_same_tokens(trl_batch, batch)
    assert_same_tokens(trl_batch, batch["kl"], prefix="KL_")
    assert torch.equal(trl_batch["label"], batch["desirable"])

    theirs = trainer.compute_loss(policy, trl_batch)
    logps = completion_logps(policy, batch)
    with torch.no_grad():
        kl_logps = completion_logps(policy, batch["kl"])
    ref_kl = reference(batch["kl"])
    losses, z = kto_loss(logps, batch["ref"], kl_logps, ref_kl, batch["desirable"], beta, wd, wu)

    raw = (kl_logps - ref_kl).mean()
    want = "a negative" if clamped else "a positive"
    assert (raw < 0) == clamped, f"seed {seed} was chosen for {want} raw KL estimate, got {float(raw)}"
    assert (logps - batch["ref"]).abs().max() > 1.0, "policy too close to the reference for a meaningful check"
    assert_close(z, trainer._metrics["train"]["kl"][-1], "KL reference point z")
    assert_close(losses.mean(), theirs, "KTO loss")


# --- ORPO ------------------------------------------------------------------------------------
ORPO_BETA = 0.25


@pytest.fixture(scope="module")
def orpo(tiny_dir, tokenizer, tmp_path_factory):
    """(ORPOTrainer with β = ORPO_BETA, llmkit's batch of ROWS)."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from llmkit.train.preference import pair_batch

    args = trl_args(ORPOConfig, tmp_path_factory.mktemp("orpo"), beta=ORPO_BETA, max_length=512, remove_unused_columns=False)
    trainer = ORPOTrainer(model=causal_lm(tiny_dir), args=args, train_dataset=dataset(ROWS), processing_class=tokenizer)
    return trainer, pair_batch(pairs_for(tokenizer), tokenizer.pad_token_id)


def test_orpo_tokens_differ_from_trl_only_by_an_appended_eos(orpo, tokenizer):
    """Why the ORPO/CPO tests feed TRL llmkit's batch: their legacy tokenisation renders the chat
    template to text and appends EOS after the template's closing ``<|im_end|>\\n`` (its last token is
    "\\n", not EOS), so each TRL answer carries one extra trained token. Everything before it agrees."""
    trainer, ours = orpo
    batch = first_batch(trainer)
    eos = tokenizer.eos_token_id
    half = ours["input_ids"].shape[0] // 2
    for side, rows in (("chosen", range(half)), ("rejected", range(half, 2 * half))):
        for i, row in enumerate(rows):
            n = int(ours["attention_mask"][row].sum())
            theirs_ids = batch[f"{side}_input_ids"][i][batch[f"{side}_attention_mask"][i].bool()].tolist()
            theirs_labels = batch[f"{side}_labels"][i][: n + 1].tolist()
            assert theirs_ids == ours["input_ids"][row][:n].tolist() + [eos]
            assert theirs_labels == ours["labels"][row][:n].tolist() + [eos]


def test_orpo_odds_ratio_and_logps_match_trl(orpo):
    from llmkit.train.orpo import odds_ratio_term, orpo_loss
    from llmkit.train.preference import pair_logps

    trainer, ours = orpo
    model = trainer.model.train()
    c, r, _, _ = pair_logps(model, ours, average=True)
    logits = model(input_ids=ours["input_ids"], attention_mask=ours["attention_mask"], use_cache=False).logits
    theirs = trainer.get_batch_logps(logits, ours["labels"], average_log_prob=True)
    half = c.shape[0]
    assert_close(c, theirs[:half], "mean log-probs (chosen)")
    assert_close(r, theirs[half:], "mean log-probs (rejected)")

    losses, *_ = trainer.odds_ratio_loss(theirs[:half], theirs[half:])
    assert_close(ORPO_BETA * odds_ratio_term(c, r), losses, "β·log σ(log odds ratio)")
    trl_loss, metrics = trainer.get_batch_loss_metrics(model, as_trl_pair_batch(ours))
    assert_close(trl_loss, metrics["nll_loss"] - losses.mean(), "TRL's ORPO loss = NLL − mean(β·log σ)")
    total, pairs, ours_metrics = orpo_loss(model, ours, ORPO_BETA)
    assert_close(torch.tensor(ours_metrics["nll"]), torch.tensor(float(metrics["nll_loss"])), "ORPO NLL term")


def test_orpo_odds_ratio_matches_trl_near_certain_answers(orpo):
    """The tiny model gives its answers mean log-probs near −25, where log(1 − P) ≈ 0 and the odds
    ratio is just the log-prob ratio; TRL's odds_ratio_loss on a grid reaching P → 1 covers the
    ``log1mexp`` half (and both sides of its branch at −ln 2)."""
    from llmkit.train.orpo import odds_ratio_term

    trainer, _ = orpo
    grid = torch.tensor([-30.0, -5.0, -1.0, -0.7, -0.69, -0.3, -1e-2, -1e-4, -1e-6])
    c, r = torch.cartesian_prod(grid, grid).unbind(1)
    losses, *_ = trainer.odds_ratio_loss(c, r)
    assert_close(ORPO_BETA * odds_ratio_term(c, r), losses, "β·log σ(log odds ratio) on the grid")


def test_orpo_total_loss_matches_trl(orpo):
    """The whole ORPO loss, NLL term (prompt and answer tokens of the chosen rows) included."""
    from llmkit.train.orpo import orpo_loss

    trainer, ours = orpo
    model = trainer.model.train()
    total, pairs, _ = orpo_loss(model, ours, ORPO_BETA)
    trl_loss, _ = trainer.get_batch_loss_metrics(model, as_trl_pair_batch(ours))
    assert_close(total / pairs, trl_loss, "ORPO loss")


# --- SimPO (TRL: CPOTrainer with loss_type="simpo") -------------------------------------------
def cpo_setup(tiny_dir, tokenizer, tmp_path, **kw):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from llmkit.train.preference import pair_batch

    args = trl_args(CPOConfig, tmp_path, loss_type="simpo", max_length=512, remove_unused_columns=False, **kw)
    trainer = CPOTrainer(model=causal_lm(tiny_dir), args=args, train_dataset=dataset(ROWS), processing_class=tokenizer)
    return trainer, pair_batch(pairs_for(tokenizer), tokenizer.pad_token_id)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_simpo_loss_matches_trl_cpo(tiny_dir, tokenizer, tmp_path, label_smoothing):
    """CPO's full pipeline (forward, get_batch_logps with per-token means, cpo_loss) on llmkit's batch
    (TRL's legacy tokenisation appends an extra EOS: see the ORPO token test)."""
    from llmkit.train.preference import pair_logps
    from llmkit.train.simpo import simpo_loss

    beta, gamma = 2.0, 0.5
    trainer, ours = cpo_setup(tiny_dir, tokenizer, tmp_path, beta=beta, simpo_gamma=gamma, cpo_alpha=0.0,
                              label_smoothing=label_smoothing)
    model = trainer.model.train()
    c, r, _, _ = pair_logps(model, ours, average=True)
    logits = model(input_ids=ours["input_ids"], attention_mask=ours["attention_mask"], use_cache=False).logits
    theirs = trainer.get_batch_logps(logits, ours["labels"], average_log_prob=True)
    assert_close(torch.cat([c, r]), theirs, "mean log-probs")
    assert (beta * (c - r) - gamma).abs().max() > 0.5, "logits too close to 0 for a meaningful check"

    trl_loss, _ = trainer.get_batch_loss_metrics(model, as_trl_pair_batch(ours))
    assert_close(simpo_loss(c, r, beta, gamma, label_smoothing).mean(), trl_loss, "SimPO loss")


def test_simpo_sft_term_matches_trl_cpo_alpha(tiny_dir, tokenizer, tmp_path, jsonl):
    """SimPO with sft_weight = CPO's cpo_alpha: the step loss llmkit's trainer computes equals CPO's."""
    import llmkit.train.simpo as simpo

    beta, gamma, alpha = 2.0, 0.5, 1.0
    trainer, ours = cpo_setup(tiny_dir, tokenizer, tmp_path, beta=beta, simpo_gamma=gamma, cpo_alpha=alpha)
    model = trainer.model.train()
    captured = {}

    def fake_train_pairs(cfg, step_loss_of, reference, average=False):
        captured["step_loss"] = step_loss_of(model)

    real, simpo.train_pairs = simpo.train_pairs, fake_train_pairs
    try:
        simpo.run(data="unused.jsonl", beta=beta, gamma=gamma, sft_weight=alpha)
    finally:
        simpo.train_pairs = real
    total, pairs, _ = captured["step_loss"](model, ours)
    trl_loss, _ = trainer.get_batch_loss_metrics(model, as_trl_pair_batch(ours))
    assert_close(total / pairs, trl_loss, "SimPO + SFT loss")


# --- reward model ----------------------------------------------------------------------------
def test_reward_loss_matches_trl(tiny_dir, tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from llmkit.train.data import collate, encode_pair, truncate
    from llmkit.train.reward import reward_loss, scores

    center = 0.05
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    with torch.no_grad():
        model.score.weight.mul_(SHARPEN)  # rewards 6–8 apart by up to 2, not 0.15–0.19 apart by hundredths
    rows = [{**r, "margin": m} for r, m in zip(ROWS, MARGINS)]
    args = trl_args(RewardConfig, tmp_path, center_rewards_coefficient=center)
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset(rows), processing_class=tokenizer)
    model = trainer.model.train()

    # llmkit's reward.run encoding: each side through encode_pair, chosen rows first, then rejected
    encoded = [{s: truncate(encode_pair(tokenizer, r["prompt"], r[s], True), 512) for s in ("chosen", "rejected")}
               for r in rows]
    ours = collate([p["chosen"] for p in encoded] + [p["rejected"] for p in encoded], tokenizer.pad_token_id)
    ours["margin"] = torch.tensor(MARGINS)
    batch = first_batch(trainer)
    assert torch.equal(batch["input_ids"], ours["input_ids"]), "token ids differ from TRL's"
    assert torch.equal(batch["attention_mask"], ours["attention_mask"]), "attention masks differ"
    assert torch.equal(batch["margin"], ours["margin"])

    theirs = trainer.compute_loss(model, dict(batch))
    rewards = scores(model, ours)
    c, rj = rewards[:4], rewards[4:]
    assert (c - rj).abs().max() > 0.5, f"rewards too close for a meaningful check: {(c - rj).tolist()}"
    assert_close(reward_loss(c, rj, ours["margin"], center).mean(), theirs, "reward loss")


# --- without the chat template ---------------------------------------------------------------
def test_raw_text_pairs_tokenise_as_trl(tiny_dir, tokenizer, tmp_path):
    """With ``chat_template=False`` llmkit tokenises prompt and answer apart and appends EOS; TRL
    appends the EOS text and tokenises prompt+answer whole. The same ids and masks either way."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from llmkit.train.preference import encode_preference, pair_batch

    rows = [{**r, "chosen": " " + r["chosen"], "rejected": " " + r["rejected"]} for r in ROWS]
    trainer = DPOTrainer(model=causal_lm(tiny_dir), args=trl_args(DPOConfig, tmp_path, precompute_ref_log_probs=False),
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=lora())
    ours = pair_batch(encode_preference(tokenizer, rows, 512, chat_template=False), tokenizer.pad_token_id)
    assert_same_tokens(first_batch(trainer), ours)
