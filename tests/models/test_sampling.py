"""Token-selection processors (models/logits.py)."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmkit import Sampling  # noqa: E402
from llmkit.models.logits import (  # noqa: E402
    FrequencyPresencePenalty,
    build_processors,
    greedy,
    sample,
)


def apply(s: Sampling, scores, ids=((0,),), prompt_len=0):
    return build_processors(s, prompt_len)(torch.tensor(ids), scores.clone())


def kept(scores) -> set[int]:
    return set(torch.isfinite(scores[0]).nonzero().flatten().tolist())


# A hand-built distribution, deliberately not sorted: token → probability.
PROBS = {3: 0.40, 0: 0.25, 4: 0.15, 1: 0.12, 2: 0.05, 5: 0.03}


def hand_logits():
    p = torch.tensor([[PROBS[i] for i in range(6)]])
    return p.log()


# --- truncation -------------------------------------------------------------------------------
def test_top_k_leaves_exactly_k_finite_candidates():
    scores = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))
    out = apply(Sampling(temperature=1, top_k=7), scores)
    assert (torch.isfinite(out).sum(-1) == 7).all()
    assert kept(out) == set(scores[0].topk(7).indices.tolist())


@pytest.mark.parametrize("p, expected", [
    (0.30, {3}),                 # 0.40 alone reaches 0.30
    (0.60, {3, 0}),              # 0.40 < 0.60 <= 0.65
    (0.70, {3, 0, 4}),           # 0.65 < 0.70 <= 0.80
    (0.85, {3, 0, 4, 1}),        # 0.80 < 0.85 <= 0.92
    (0.95, {3, 0, 4, 1, 2}),     # 0.92 < 0.95 <= 0.97
])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    assert kept(apply(Sampling(temperature=1, top_p=p), hand_logits())) == expected


def test_min_p_threshold_is_exact():
    # top token 0.40; min_p=0.3 → threshold 0.12: token 1 (0.1204) stays, token 2 (0.1196) goes
    logits = torch.tensor([[0.40, 0.1204, 0.1196, 0.05]]).log()
    assert kept(apply(Sampling(temperature=1, min_p=0.3), logits)) == {0, 1}
    assert kept(apply(Sampling(temperature=1, min_p=0.302), logits)) == {0}
    assert kept(apply(Sampling(temperature=1, min_p=0.298), logits)) == {0, 1, 2}


def test_typical_keeps_tokens_closest_to_the_entropy_until_mass():
    logits = hand_logits()
    p = logits.softmax(-1)[0]
    entropy = -(p * p.log()).sum()
    order = (-p.log() - entropy).abs().argsort()     # most "typical" first
    mass, expected = 0.0, set()
    for i in order.tolist():
        expected.add(i)
        mass += float(p[i])
        if mass >= 0.35:
            break
    out = apply(Sampling(temperature=1, typical_p=0.35), logits)
    assert kept(out) == expected
    assert 3 not in expected  # the top token is not typical here: why typical is off under greedy


# --- penalties --------------------------------------------------------------------------------
def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    scores = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    out = apply(Sampling(temperature=0, repetition_penalty=2.0), scores, ids=[[0, 1, 1]])
    assert out.tolist() == [[1.0, -2.0, 3.0, 0.5]]


def test_frequency_and_presence_penalties_follow_the_openai_formula():
    scores = torch.zeros(1, 6)
    ids = [[5, 5, 1, 1, 1, 2]]              # the first two are prompt: 5 is never penalised
    out = apply(Sampling(temperature=0, frequency_penalty=0.5, presence_penalty=0.25), scores, ids, prompt_len=2)
    assert out.tolist() == [[0.0, -(3 * 0.5 + 0.25), -(0.5 + 0.25), 0.0, 0.0, 0.0]]
    # negative values reward repetition
    out = FrequencyPresencePenalty(frequency=-1.0, prompt_len=2)(torch.tensor(ids), torch.zeros(1, 6))
    assert out[0, 1] == 3.0 and out[0, 5] == 0.0


def test_temperature_scales_logits():
    scores = torch.tensor([[1.0, -2.0, 0.5]])
    assert torch.allclose(apply(Sampling(temperature=0.5), scores), scores / 0.5)


def test_penalties_come_before_temperature():
    s = Sampling(temperature=0.5, frequency_penalty=1.0)
    out = apply(s, torch.tensor([[2.0, 0.0]]), ids=[[0]])
    assert out[0, 0] == (2.0 - 1.0) / 0.5   # the other order would give 2/0.5 - 1 = 3
    names = [type(p).__name__ for p in build_processors(Sampling(temperature=0.7, top_k=5, top_p=0.9, min_p=0.1,
                                                                  typical_p=0.9, repetition_penalty=1.1,
                                                                  presence_penalty=0.1))]
    assert names == ["RepetitionPenaltyLogitsProcessor", "FrequencyPresencePenalty", "TemperatureLogitsWarper",
                     "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper"]


def test_composition_matches_transformers_chain():
    scores = torch.randn(2, 500, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[1, 2], [3, 4]])
    ours = build_processors(Sampling(temperature=0.7, top_k=50, top_p=0.9))(ids, scores.clone())
    ref = LogitsProcessorList([TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), TopPLogitsWarper(0.9)])(ids, scores.clone())
    assert torch.equal(ours, ref)


def test_greedy_drops_warpers_and_neutral_values_add_nothing():
    assert len(build_processors(Sampling(temperature=0, top_k=5, top_p=0.5, typical_p=0.2))) == 0
    assert len(build_processors(Sampling(temperature=1, top_k=0, top_p=1, min_p=0, typical_p=1,
                                         repetition_penalty=1, frequency_penalty=0, presence_penalty=0))) == 0


# --- drawing ----------------------------------------------------------------------------------
def test_sample_is_seeded_and_never_draws_filtered_tokens():
    logits = torch.tensor([[0.0, 0.0, float("-inf"), 0.0]])
    draws = [int(sample(logits, torch.Generator().manual_seed(i))) for i in range(200)]
    assert 2 not in draws and set(draws) == {0, 1, 3}
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [int(sample(logits, g1)) for _ in range(20)] == [int(sample(logits, g2)) for _ in range(20)]
    assert greedy(torch.tensor([[0.1, 2.0, -1.0]])).tolist() == [1]
