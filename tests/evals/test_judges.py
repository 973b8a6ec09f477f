"""LLM-as-a-judge (evals/judges.py) with a scripted judge, and the leaderboard (evals/leaderboard.py)
on games simulated from known Bradley–Terry strengths."""
import json

import numpy as np
import pytest

import llmkit as lk
from llmkit.core.types import Completion
from llmkit.evals import judges
from llmkit.evals.judges import Grade, Verdict, compare, grade
from llmkit.evals.leaderboard import Rating, bradley_terry, elo, leaderboard
from llmkit.models.base import Model


class Scripted(Model):
    """A judge that answers from a list fixed in advance and records every prompt, sampling and constraint."""

    provider = "scripted"
    supported = frozenset({"temperature", "max_tokens", "seed"})
    constraint_kinds = frozenset({"json", "json_schema", "choice"})

    def __init__(self, replies):
        super().__init__("judge")
        self.replies, self.sent = [r if isinstance(r, str) else json.dumps(r) for r in replies], []

    def _chat(self, messages, s, tools, tool_choice, constraint=None):
        self.sent.append((messages, s, constraint))
        return Completion(text=self.replies.pop(0), finish_reason="stop")

    def prompt(self, i=-1):
        return self.sent[i][0][-1].content


def verdict(score, reasoning="Looks right."):
    return {"reasoning": reasoning, "score": score}


def pick(winner, reasoning="Compared both."):
    return {"reasoning": reasoning, "winner": winner}


# --- grade -------------------------------------------------------------------------------------------

def test_grade_parses_normalizes_and_passes_by_the_upper_half():
    judge = Scripted([verdict(4, "Correct but terse."), verdict(3), verdict(3), verdict(7)])
    g = grade(judge, "Paris.", "Names the capital of France.", question="Capital of France?")
    assert isinstance(g, Grade) and g.score == 4 and g.normalized == 0.75 and g.passed
    assert g.reasoning == "Correct but terse." and g.scale == (1, 5)
    assert not grade(judge, "Lyon.", "Names the capital.").passed            # 3 < 4 on 1-5
    assert grade(judge, "Lyon.", "Names the capital.", pass_score=3).passed  # the caller's bar
    g = grade(judge, "x", "y", scale=(0, 10))
    assert g.normalized == 0.7 and g.passed  # default bar on 0-10 is 6
    assert not judge.replies


def test_the_judge_reasons_before_it_scores_within_the_scale():
    judge = Scripted([verdict(2)])
    grade(judge, "a", "b", scale=(1, 10))
    schema = judge.sent[0][2].schema()
    assert list(schema["properties"]) == ["reasoning", "score"]  # chain of thought, then verdict
    assert schema["properties"]["score"]["minimum"] == 1 and schema["properties"]["score"]["maximum"] == 10


def test_a_score_off_the_scale_is_sent_back_and_retried():
    judge = Scripted([verdict(9), verdict(5)])  # a remote judge ignoring the bound
    assert grade(judge, "a", "b").score == 5
    assert "less than or equal to 5" in judge.prompt(1)


def test_the_prompt_shows_rubric_answer_question_and_reference():
    judge = Scripted([verdict(5), verdict(5)])
    grade(judge, "It is Paris.", "Must name the city.", question="Capital of France?")
    p = judge.prompt(0)
    assert "It is Paris." in p and "Must name the city." in p and "Capital of France?" in p
    assert "<reference>" not in p and p.startswith(judges.render(judges.RUBRIC_TEMPLATE, answer="It is Paris.",
                                                                 rubric="Must name the city.",
                                                                 question="Capital of France?", low=1, high=5))
    grade(judge, "It is Paris.", "Must agree.", reference="Paris")
    p = judge.prompt(1)
    assert "<reference>\nParis\n</reference>" in p and "Must agree." in p and "It is Paris." in p
    assert "<question>" not in p  # no question given: the block is left out


def test_a_custom_template_is_used_and_checked():
    judge = Scripted([verdict(1)])
    tpl = "Score {{ answer }} for {{ rubric }}, {{ low }}-{{ high }}."
    grade(judge, "ANSWER", "RUBRIC", template=tpl)
    assert judge.prompt().startswith("Score ANSWER for RUBRIC, 1-5.")
    with pytest.raises(lk.ConfigError, match=r"never uses \{\{ reference \}\}"):
        grade(judge, "ANSWER", "RUBRIC", reference="REF", template=tpl)  # the judge would never see it
    with pytest.raises(lk.ConfigError, match="never uses"):
        grade(judge, "ANSWER", "RUBRIC", template="Score it from {{ low }} to {{ high }}.")
    with pytest.raises(lk.ConfigError, match="syntax error"):
        grade(judge, "ANSWER", "RUBRIC", template="{{ answer }} {{ rubric")


def test_sampling_defaults_to_greedy_and_can_be_set():
    judge = Scripted([verdict(3), verdict(3)])
    grade(judge, "a", "b", max_tokens=64)
    assert judge.sent[0][1].temperature == 0 and judge.sent[0][1].max_tokens == 64
    grade(judge, "a", "b", temperature=0.7)
    assert judge.sent[1][1].temperature == 0.7


@pytest.mark.parametrize("kw, bad", [({"scale": (5, 1)}, "scale=(5, 1)"), ({"scale": (1.0, 5)}, "scale=(1.0, 5)"),
                                     ({"pass_score": 6}, "pass_score=6"), ({"temprature": 0}, "temprature")])
def test_bad_arguments_are_named(kw, bad):
    with pytest.raises(lk.ConfigError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        grade(Scripted([verdict(3)]), "a", "b", **kw)


# --- compare -----------------------------------------------------------------------------------------

def test_compare_asks_both_orders():
    judge = Scripted([pick("A", "first"), pick("B", "second")])
    v = compare(judge, "Capital of France?", "ANSWER-ONE", "ANSWER-TWO")
    first, second = judge.prompt(0), judge.prompt(1)
    assert first.index("ANSWER-ONE") < first.index("ANSWER-TWO")
    assert second.index("ANSWER-TWO") < second.index("ANSWER-ONE")  # swapped
    assert "<answer_A>\nANSWER-TWO\n</answer_A>" in second
    assert isinstance(v, Verdict) and v.winner == "a" and v.consistent and v.reasons == ["first", "second"]
    assert list(judge.sent[0][2].schema()["properties"]) == ["reasoning", "winner"]


@pytest.mark.parametrize("first, second, winner, consistent", [
    ("A", "B", "a", True),      # answer_a both times
    ("B", "A", "b", True),      # answer_b both times
    ("tie", "tie", "tie", True),
    ("A", "A", "tie", False),   # always the first position: position bias, not a preference
    ("B", "B", "tie", False),
    ("A", "tie", "tie", False),
])
def test_compare_counts_only_agreement(first, second, winner, consistent):
    v = compare(Scripted([pick(first), pick(second)]), "q", "x", "y")
    assert (v.winner, v.consistent) == (winner, consistent)


def test_compare_custom_template_and_criteria():
    judge = Scripted([pick("A"), pick("A")])
    compare(judge, "Q?", "one", "two", rubric="Prefer brevity.")
    assert "<criteria>\nPrefer brevity.\n</criteria>" in judge.prompt(0)
    judge = Scripted([pick("B"), pick("A")])
    v = compare(judge, "Q?", "one", "two", template="1: {{ answer_a }} 2: {{ answer_b }} ({{ question }})")
    assert judge.prompt(0).startswith("1: one 2: two (Q?)") and judge.prompt(1).startswith("1: two 2: one (Q?)")
    assert v.winner == "b"


@pytest.mark.integration
def test_embedded_judge_gives_a_grade_within_the_scale(embedded):
    """The 135M judge is no good judge; what is proved is that its verdict always parses."""
    g = grade(embedded, "The capital of France is Paris.", "Names the capital of France correctly.",
              question="What is the capital of France?", scale=(1, 5), max_reasoning=200, max_tokens=160)
    assert isinstance(g, Grade) and 1 <= g.score <= 5 and g.normalized == (g.score - 1) / 4
    assert g.passed == (g.score >= 4) and isinstance(g.reasoning, str) and len(g.reasoning) <= 200
    v = compare(embedded, "What is 2 + 2?", "4", "5", max_reasoning=120, max_tokens=120)
    assert v.winner in ("a", "b", "tie") and len(v.reasons) == 2


# --- leaderboard -------------------------------------------------------------------------------------

TRUE = {"gold": 1200.0, "silver": 1100.0, "bronze": 950.0, "wood": 750.0}  # mean 1000, as the fit anchors it


def simulate(n, seed=0, ties=0.05, truth=TRUE):
    """n games between random pairs. A tie when the uniform draw lands within ``ties`` of the BT win
    probability p, so a wins with p - ties, ties with 2·ties: a's expected score stays exactly p."""
    rng = np.random.default_rng(seed)
    names = list(truth)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        p = 1 / (1 + 10 ** ((truth[names[j]] - truth[names[i]]) / 400))
        u = rng.random()
        out.append((names[i], names[j], "tie" if abs(u - p) < ties else "a" if u < p else "b"))
    return out


@pytest.fixture(scope="module")
def games():
    return simulate(2000, seed=1)


@pytest.fixture(scope="module")
def board(games):
    return leaderboard(games, bootstrap=500, seed=0)


def test_bradley_terry_recovers_the_true_order_and_gaps(board):
    assert [r.model for r in board] == list(TRUE)
    for r in board:
        assert abs(r.rating - TRUE[r.model]) < 35, (r.model, r.rating)
        assert r.low < r.rating < r.high
    inside = sum(r.low <= TRUE[r.model] <= r.high for r in board)
    assert inside >= 3  # a 95% interval misses now and then, not for most models


def test_counts(games, board):
    for r in board:
        mine = [(a == r.model, w) for a, b, w in games if r.model in (a, b)]
        assert r.games == len(mine) and r.wins + r.losses + r.ties == r.games
        assert r.wins == sum(w == ("a" if first else "b") for first, w in mine)
        assert r.ties == sum(w == "tie" for _, w in mine)
    assert sum(r.games for r in board) == 2 * len(games)


def test_intervals_narrow_with_more_games():
    few = {r.model: r.high - r.low for r in leaderboard(simulate(500, seed=2), bootstrap=300)}
    many = {r.model: r.high - r.low for r in leaderboard(simulate(4000, seed=2), bootstrap=300)}
    for m in TRUE:
        assert many[m] < 0.6 * few[m], (m, few[m], many[m])  # ~1/sqrt(8) in theory


def test_elo_gives_the_same_order(games):
    board = leaderboard(games, method="elo", bootstrap=200, seed=0)
    assert [r.model for r in board] == list(TRUE)
    assert all(r.low < r.rating < r.high for r in board)


def test_elo_is_the_textbook_update():
    assert elo([("x", "y", "a")], k=32) == {"x": 1016.0, "y": 984.0}
    outcomes = [("x", "y", "a"), ("y", "z", "tie"), ("z", "x", "a"), ("x", "y", "b")]
    r = {"x": 1000.0, "y": 1000.0, "z": 1000.0}
    for a, b, w in outcomes:  # by hand, in order
        e = 1 / (1 + 10 ** ((r[b] - r[a]) / 400))
        step = 10 * ({"a": 1, "b": 0, "tie": 0.5}[w] - e)
        r[a], r[b] = r[a] + step, r[b] - step
    assert elo(outcomes, k=10) == pytest.approx(r)


def test_deterministic_for_a_seed(games):
    one, two = leaderboard(games, bootstrap=200, seed=7), leaderboard(games, bootstrap=200, seed=7)
    assert one == two
    other = leaderboard(games, bootstrap=200, seed=8)
    assert [r.rating for r in other] == [r.rating for r in one] and [r.low for r in other] != [r.low for r in one]


def test_a_tie_is_half_a_win_each():
    split = bradley_terry([("x", "y", "a"), ("x", "y", "b")])
    tied = bradley_terry([("x", "y", "tie"), ("y", "x", "tie")])
    assert split == pytest.approx(tied) and tied == pytest.approx({"x": 1000.0, "y": 1000.0})
    x, _ = sorted(leaderboard([("x", "y", "tie")], bootstrap=0), key=lambda r: r.model)
    assert x == Rating("x", 1000.0, None, None, wins=0, losses=0, ties=1, games=1)


def test_a_perfect_record_stays_finite_and_first():
    outcomes = [("champ", "a", "a"), ("champ", "b", "a"), ("a", "b", "a"), ("b", "a", "a"), ("a", "b", "tie")]
    board = leaderboard(outcomes, bootstrap=100)
    assert board[0].model == "champ" and all(np.isfinite([r.rating, r.low, r.high]).all() for r in board)
    assert bradley_terry(outcomes, prior=0)["champ"] > 2000  # the plain MLE runs off (to its clip)


def test_anchor_pins_one_model(games):
    pinned = leaderboard(games, bootstrap=100, anchor="wood")
    free = {r.model: r.rating for r in leaderboard(games, bootstrap=0)}
    wood = next(r for r in pinned if r.model == "wood")
    assert wood.rating == pytest.approx(1000) and wood.low == pytest.approx(1000) == wood.high
    for r in pinned:
        assert r.rating - 1000 == pytest.approx(free[r.model] - free["wood"])


def _bt_gradient(outcomes, ratings):
    """d log-likelihood / d log-strength, written from the per-game likelihood
    Σ_t s_t log σ(θ_a − θ_b) + (1 − s_t) log σ(θ_b − θ_a)."""
    theta = {m: (r - 1000) * np.log(10) / 400 for m, r in ratings.items()}
    grad = {m: 0.0 for m in theta}
    for a, b, w in outcomes:
        s = {"a": 1.0, "b": 0.0, "tie": 0.5}[w]
        p = 1 / (1 + np.exp(theta[b] - theta[a]))
        grad[a] += s - p
        grad[b] -= s - p
    return grad


def test_bradley_terry_is_a_stationary_point_of_the_likelihood(games):
    fit = bradley_terry(games, prior=0)
    assert max(abs(g) for g in _bt_gradient(games, fit).values()) < 1e-6
    nudged = dict(fit, gold=fit["gold"] + 5)  # and not just any point: 5 points off is visible
    assert max(abs(g) for g in _bt_gradient(games, nudged).values()) > 1


@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_bradley_terry_matches_scipy(games, prior):
    optimize = pytest.importorskip("scipy.optimize")
    names = list(dict.fromkeys(m for a, b, _ in games for m in (a, b)))
    a = np.array([names.index(x) for x, _, _ in games])
    b = np.array([names.index(y) for _, y, _ in games])
    s = np.array([{"a": 1.0, "b": 0.0, "tie": 0.5}[w] for *_, w in games])

    def nll(theta):
        if prior == 0:
            theta = np.concatenate([[0.0], theta])  # the plain MLE is free up to a shift: fix one model
        d = theta[a] - theta[b]
        ll = s * -np.logaddexp(0, -d) + (1 - s) * -np.logaddexp(0, d)
        virtual = 0.5 * -np.logaddexp(0, -theta) + 0.5 * -np.logaddexp(0, theta)  # a tie against θ = 0
        return -(ll.sum() + prior * virtual.sum())

    x0 = np.zeros(len(names) - (prior == 0))
    theta = optimize.minimize(nll, x0, method="BFGS", options={"gtol": 1e-9}).x
    theta = np.concatenate([[0.0], theta]) if prior == 0 else theta
    want = theta * 400 / np.log(10)
    want = want - want.mean() + 1000
    got = bradley_terry(games, prior=prior)
    assert [got[m] for m in names] == pytest.approx(want, abs=0.01)


@pytest.mark.parametrize("call, bad", [
    (lambda: leaderboard([("x", "y", "a")], method="trueskill"), "method='trueskill'"),
    (lambda: leaderboard([]), "empty"),
    (lambda: leaderboard([("x", "y", "A")]), "winner='A'"),
    (lambda: leaderboard([("x", "y", "x")]), "winner='x'"),
    (lambda: leaderboard([("x", "y")]), "expected \\(model_a, model_b, winner\\)"),
    (lambda: leaderboard([("x", "x", "a")]), "cannot play itself"),
    (lambda: leaderboard([("x", "y", "a")], anchor="z"), "anchor='z'"),
    (lambda: leaderboard([("x", "y", "a")], confidence=95), "confidence=95"),
    (lambda: leaderboard([("x", "y", "a")], bootstrap=-1), "bootstrap=-1"),
    (lambda: elo([("x", "y", "a")], k=0), "k=0"),
])
def test_errors_name_the_bad_value(call, bad):
    with pytest.raises(lk.ConfigError, match=bad):
        call()
