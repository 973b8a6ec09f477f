"""The Arena tab: contestants, anonymous order, votes in SQLite, and the leaderboard they feed.

Unit-level: a real ``UIContext`` over a scripted served model, the vote store on the test's own
``$LLMKIT_HOME``, and the Bradley–Terry table the tab shows. Then the tab in a real browser on the
embedded model: two anonymous answers, a vote, the reveal, the leaderboard (also after a reload).
"""
from __future__ import annotations

import random
import sqlite3
import threading

import pytest

from llmkit.core.errors import ConfigError
from llmkit.evals.leaderboard import bradley_terry
from llmkit.models.scripted import ScriptedModel
from llmkit.serve import ServeConfig
from llmkit.serve.app import Served
from llmkit.serve.ui import arena
from llmkit.serve.ui.context import UIContext


@pytest.fixture
def ctx():
    # Replies depend on the sampling the call asked for, so each contestant's answer is recognisable.
    def reply(msgs, tools):
        return f"answer to {msgs[-1].content!r}"

    model = ScriptedModel(reply, repeat=True, name="smol")
    return UIContext(served=Served(model, ServeConfig()))


def test_parse_contestant():
    assert arena.parse_contestant("served@temperature=0.7,max_tokens=64, top_p=1") == \
        ("served", {"temperature": 0.7, "max_tokens": 64, "top_p": 1})
    assert arena.parse_contestant(" openai:gpt-4o-mini ") == ("openai:gpt-4o-mini", {})
    for bad in ("", "served@temperature", "served@=3"):
        with pytest.raises(ConfigError):
            arena.parse_contestant(bad)


def test_contestants_answer_with_their_own_sampling_and_are_named_after_the_served_model(ctx):
    a = arena.answer(ctx, "served@temperature=0,seed=7", "2+2?")
    b = arena.answer(ctx, "served@temperature=1.5", "2+2?")
    assert a == b == "answer to '2+2?'"
    sent = [s for _, s, _ in ctx.served.model.calls]
    assert (sent[0].temperature, sent[0].seed, sent[1].temperature) == (0, 7, 1.5)
    assert arena.label(ctx, "served@temperature=0") == "smol@temperature=0"
    assert arena.label(ctx, "local") == "local"
    # A model that cannot answer shows its error in its own panel; the other side is unaffected.
    assert arena.answer(ctx, "served@no_such_option=1", "hi").startswith("[error]")


def test_shuffle_hides_which_contestant_is_a():
    orders = {arena.shuffle("x", "y", random.Random(seed)) for seed in range(40)}
    assert orders == {("x", "y"), ("y", "x")}


def test_a_vote_is_stored_and_moves_the_leaderboard(llmkit_home):
    votes = arena.Votes()
    assert arena.board_rows(votes.outcomes()) == []               # no votes yet: an empty table
    vid = votes.add("2+2?", "smol@temperature=0", "smol@temperature=1.5", "4", "5", "a")
    stored = votes.all()
    assert (llmkit_home / "arena.db").exists() and [v["id"] for v in stored] == [vid]
    assert stored[0]["answer_b"] == "5" and stored[0]["verdict"] == "a"

    first = arena.board_rows(votes.outcomes())
    assert [r[1] for r in first] == ["smol@temperature=0", "smol@temperature=1.5"]
    greedy_before = first[0][2]
    votes.add("q", "smol@temperature=0", "smol@temperature=1.5", "x", "y", "b")    # one the sampled side wins
    after = {r[1]: r[2] for r in arena.board_rows(votes.outcomes())}
    assert after["smol@temperature=0"] == after["smol@temperature=1.5"] == 1000 < greedy_before
    for verdict in ("a", "a", "tie", "both-bad"):   # A is the greedy contestant in these votes too
        votes.add("q", "smol@temperature=0", "smol@temperature=1.5", "x", "y", verdict)
    votes.add("q", "smol@temperature=1.5", "smol@temperature=0", "y", "x", "b")  # shown as B: still greedy wins
    board = arena.board_rows(votes.outcomes())
    cols = dict(zip(arena.COLUMNS, board[0]))
    assert cols["model"] == "smol@temperature=0" and cols["rank"] == 1
    assert (cols["wins"], cols["losses"], cols["ties"], cols["games"]) == (4, 1, 2, 7)  # both-bad counts as a tie
    assert cols["rating"] > 1000 > board[1][2]
    low, high = (float(x) for x in cols["95% CI"].split(" – "))
    assert low <= cols["rating"] <= high
    # The tab's table is llmkit.evals.leaderboard's Bradley–Terry fit of exactly these outcomes.
    assert cols["rating"] == round(bradley_terry(votes.outcomes())["smol@temperature=0"])


def test_votes_are_atomic_under_concurrent_writers():
    votes = arena.Votes()

    def vote(worker):
        for i in range(20):
            votes.add(f"p{worker}-{i}", "m1", "m2", "a1", "b1", "ab"[i % 2])

    threads = [threading.Thread(target=vote, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = votes.all()
    assert len(rows) == 120 and len({r["prompt"] for r in rows}) == 120

    for bad in [("q", "m1", "m2", "x", "y", "A"), ("q", "m1", "m1", "x", "y", "a"), ("q", "", "m2", "x", "y", "a")]:
        with pytest.raises(ConfigError):
            votes.add(*bad)
    # The table itself refuses a verdict outside the four (a write that bypasses Votes.add).
    with sqlite3.connect(votes.path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO votes (time, prompt, model_a, model_b, answer_a, answer_b, verdict) "
                   "VALUES (0, 'q', 'm1', 'm2', 'x', 'y', 'maybe')")
    assert len(votes.all()) == 120


@pytest.mark.integration
def test_browser_two_anonymous_answers_a_vote_and_the_leaderboard(ui_live, page, shots, llmkit_home):
    from browser import open_ui, screenshot
    from playwright.sync_api import expect

    open_ui(page, ui_live.url, "Arena")
    vote_a = page.locator("#arena-vote-a")
    expect(vote_a).to_be_disabled()                                   # nothing to vote on yet
    page.locator("#arena-prompt textarea").fill("What is the capital of France? Answer in one sentence.")
    page.locator("#arena-send").click()
    expect(vote_a).to_be_enabled(timeout=120_000)                     # both answered
    answers = [page.locator(f"#arena-{side} textarea").input_value() for side in "ab"]
    assert all(a.strip() and a != "…" for a in answers), answers
    assert "served" not in page.locator("#arena-reveal").inner_text()  # anonymous until the vote
    screenshot(page, shots, "arena-answers")

    vote_a.click()
    reveal = page.locator("#arena-reveal")
    expect(reveal).to_contain_text("Model A was")
    expect(vote_a).to_be_disabled()                                   # one vote per match
    name = ui_live.app.state.served.name
    winner = reveal.inner_text().split("Model A was ")[1].split(",")[0].strip(" `.")
    assert winner in (f"{name}@temperature=0", f"{name}@temperature=1.0"), winner

    # Stored, and the leaderboard ranks the winner first (the page reload lists it too).
    stored = arena.Votes().all()
    assert [(v["model_a"], v["verdict"], v["answer_a"]) for v in stored] == [(winner, "a", answers[0])]
    for attempt in ("vote", "reload"):
        if attempt == "reload":
            open_ui(page, ui_live.url, "Arena")
        rows = page.locator("#arena-board [role=row]")  # the header, then one row a contestant
        expect(rows).to_have_count(3)
        assert rows.nth(1).inner_text().split()[:2] == ["1", winner]
    screenshot(page, shots, "arena-leaderboard")
