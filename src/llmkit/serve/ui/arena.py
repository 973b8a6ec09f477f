"""The Arena tab: two anonymous models answer one prompt side by side; you vote, then see who was who.

A contestant is a model spec with optional sampling settings after ``@``, e.g.
``served@temperature=0`` (the model this server serves, greedy) against
``served@temperature=1.2,top_p=0.95``, or ``openai:gpt-4o-mini`` against ``local``. The two are
shown as "Model A" and "Model B" in a random order; the names appear after the vote.

Votes go to ``$LLMKIT_HOME/arena.db`` (SQLite, one row per vote, each insert its own
transaction) and feed :func:`llmkit.evals.leaderboard.leaderboard` — Bradley–Terry ratings with
bootstrap confidence intervals, shown under the vote buttons. "Both bad" counts as a tie for the
ratings (as in LMSYS Chatbot Arena) and is kept as its own verdict in the database.

Example:
    >>> votes = Votes()                                     # $LLMKIT_HOME/arena.db
    >>> votes.add("2+2?", "served@temperature=0", "served@temperature=1", "4", "5", "a")
    >>> board_rows(votes.outcomes())
"""
from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from ...core.settings import home

VERDICTS = {"a": "a", "b": "b", "tie": "tie", "both-bad": "tie"}  # stored verdict → leaderboard winner
SERVED = "served"     # the contestant spec meaning "the model this server serves"
BOOTSTRAP = 500       # resamples for the confidence intervals (a few ms for a handful of models)
COLUMNS = ["rank", "model", "rating", "95% CI", "wins", "losses", "ties", "games"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time      REAL NOT NULL,
    prompt    TEXT NOT NULL,
    model_a   TEXT NOT NULL,          -- the contestant shown as "Model A"
    model_b   TEXT NOT NULL,
    answer_a  TEXT NOT NULL,
    answer_b  TEXT NOT NULL,
    verdict   TEXT NOT NULL CHECK (verdict IN ('a', 'b', 'tie', 'both-bad'))
);
"""


class Votes:
    """Arena votes in SQLite; safe to use from several threads and processes at once (WAL, and
    every write a short transaction, so a crash never leaves half a vote)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else home() / "arena.db"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)  # explicit BEGIN below
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        return db

    def add(self, prompt: str, model_a: str, model_b: str, answer_a: str, answer_b: str, verdict: str) -> int:
        """Store one vote and return its id. ``verdict``: "a", "b", "tie" or "both-bad"."""
        if verdict not in VERDICTS:
            raise ConfigError(f"verdict={verdict!r} must be one of: {', '.join(VERDICTS)}")
        if not model_a or not model_b or model_a == model_b:
            raise ConfigError(f"a vote needs two different contestants, got {model_a!r} and {model_b!r}")
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")  # take the write lock now: no other writer interleaves
            cur = db.execute("INSERT INTO votes (time, prompt, model_a, model_b, answer_a, answer_b, verdict) "
                             "VALUES (?,?,?,?,?,?,?)", (time.time(), prompt, model_a, model_b, answer_a, answer_b, verdict))
            db.execute("COMMIT")
            return int(cur.lastrowid)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def all(self) -> list[dict[str, Any]]:
        """Every vote, oldest first."""
        if not self.path.exists():
            return []
        db = self._connect()
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM votes ORDER BY id")]
        finally:
            db.close()

    def outcomes(self) -> list[tuple[str, str, str]]:
        """``(model_a, model_b, winner)`` for :func:`llmkit.evals.leaderboard.leaderboard`."""
        return [(v["model_a"], v["model_b"], VERDICTS[v["verdict"]]) for v in self.all()]


def board_rows(outcomes: list[tuple[str, str, str]], bootstrap: int = BOOTSTRAP) -> list[list[Any]]:
    """The leaderboard table (``COLUMNS``), best first; empty before the first vote."""
    if not outcomes:
        return []
    from ...evals.leaderboard import leaderboard

    board = leaderboard(outcomes, bootstrap=bootstrap, seed=0)
    return [[i + 1, r.model, round(r.rating), f"{r.low:.0f} – {r.high:.0f}" if r.low is not None else "",
             r.wins, r.losses, r.ties, r.games] for i, r in enumerate(board)]


def parse_contestant(text: str) -> tuple[str, dict[str, Any]]:
    """``"SPEC@key=value,key=value"`` → ``(spec, sampling)``; values become numbers where they read as one.

    Example:
        >>> parse_contestant("served@temperature=0.7,max_tokens=64")
        ('served', {'temperature': 0.7, 'max_tokens': 64})
    """
    text = (text or "").strip()
    if not text:
        raise ConfigError("a contestant is empty: write a model spec such as 'served@temperature=0' or 'local'")
    spec, _, settings = text.partition("@")
    sampling: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in settings.split(","))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ConfigError(f"contestant {text!r}: {part!r} is not key=value (e.g. temperature=0.7)")
        sampling[k.strip()] = _number(v.strip())
    return spec.strip(), sampling


def _number(v: str) -> Any:
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


def shuffle(x: str, y: str, rng: random.Random | None = None) -> tuple[str, str]:
    """The two contestants in a random order: which one is "Model A" must not be guessable."""
    return (x, y) if (rng or random).random() < 0.5 else (y, x)


def label(ctx: Any, contestant: str) -> str:
    """The name a contestant is stored and ranked under: ``served`` becomes the served model's name,
    so votes from a server that later serves another model do not mix."""
    spec, _, settings = contestant.strip().partition("@")
    spec = ctx.served.name if spec.strip() == SERVED else spec.strip()
    return f"{spec}@{settings.strip()}" if settings.strip() else spec


def answer(ctx: Any, contestant: str, prompt: str) -> str:
    """One contestant's reply to ``prompt`` (an error becomes the reply, so the other side still shows)."""
    from ...core.errors import LLMKitError

    spec, sampling = parse_contestant(contestant)
    try:
        m = ctx.model(None if spec in (SERVED, ctx.served.name) else spec)
        return m.chat(prompt, **sampling).text
    except LLMKitError as e:
        return f"[error] {type(e).__name__}: {e}"


def build(ctx: Any) -> None:
    """The tab's components; ``app.py`` calls this inside ``gr.Tab("Arena")``."""
    import gradio as gr

    key = ctx.key if ctx.key is not None else gr.State("")  # the header's key box (UIContext)

    choices = [f"{SERVED}@temperature=0", f"{SERVED}@temperature=1.0", f"{SERVED}@temperature=1.5,top_p=0.9"]
    with gr.Row():
        first = gr.Dropdown(choices, value=choices[0], allow_custom_value=True, label="contestant 1",
                            info="SPEC@sampling — 'served' is this server's model", elem_id="arena-first")
        second = gr.Dropdown(choices, value=choices[1], allow_custom_value=True, label="contestant 2",
                             info="e.g. local, openai:gpt-4o-mini@temperature=0", elem_id="arena-second")
    prompt = gr.Textbox(label="prompt", lines=3, placeholder="Ask both models the same thing", elem_id="arena-prompt")
    # Contestants load on first use through ctx.model (the served model is never loaded twice).
    send = gr.Button("Ask both", variant="primary", elem_id="arena-send")
    with gr.Row():
        out_a = gr.Textbox(label="Model A", lines=8, interactive=False, elem_id="arena-a")
        out_b = gr.Textbox(label="Model B", lines=8, interactive=False, elem_id="arena-b")
    with gr.Row():
        buttons = {v: gr.Button(label, interactive=False, elem_id=f"arena-vote-{v}")
                   for v, label in (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"),
                                    ("both-bad", "Both are bad"))}
    reveal = gr.Markdown("", elem_id="arena-reveal")
    gr.Markdown("### Leaderboard\nBradley–Terry ratings (Elo scale, mean 1000) with 95% bootstrap intervals; "
                "'both bad' counts as a tie.")
    board = gr.Dataframe(value=[], headers=COLUMNS, interactive=False, elem_id="arena-board")
    ctx.on_load.append((lambda: board_rows(Votes().outcomes()), None, board))  # fresh at every page load
    match = gr.State(None)  # {"prompt", "a", "b", "answer_a", "answer_b"} until the vote, then None
    locked = [gr.update(interactive=False)] * len(buttons)

    def ask(c1: str, c2: str, text: str, key: str | None):
        ctx.check_key(key)
        if not (text or "").strip():
            raise gr.Error("Write a prompt first.")
        try:
            for c in (c1, c2):
                parse_contestant(c)
        except ConfigError as e:
            raise gr.Error(str(e)) from None
        if label(ctx, c1) == label(ctx, c2):
            raise gr.Error("Pick two different contestants (the same spec with other sampling settings counts).")
        a, b = shuffle(c1.strip(), c2.strip())
        yield None, "…", "…", "", *locked
        ans_a, ans_b = answer(ctx, a, text), answer(ctx, b, text)
        m = {"prompt": text, "a": label(ctx, a), "b": label(ctx, b), "answer_a": ans_a, "answer_b": ans_b}
        yield m, ans_a, ans_b, "Which answer is better?", *[gr.update(interactive=True)] * len(buttons)

    def vote(verdict: str):
        def handler(m: dict | None):
            if not m:
                raise gr.Error("Ask both models first (each match takes one vote).")
            Votes().add(m["prompt"], m["a"], m["b"], m["answer_a"], m["answer_b"], verdict)
            said = {"a": "A is better", "b": "B is better", "tie": "a tie", "both-bad": "both are bad"}[verdict]
            text = f"You voted **{said}**. Model A was `{m['a']}`, Model B was `{m['b']}`."
            return None, text, board_rows(Votes().outcomes()), *locked
        return handler

    send.click(ask, [first, second, prompt, key], [match, out_a, out_b, reveal, *buttons.values()])
    for v, button in buttons.items():
        button.click(vote(v), [match], [match, reveal, board, *buttons.values()], queue=False)
