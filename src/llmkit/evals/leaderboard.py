"""Rank models from pairwise outcomes: Bradley–Terry (the default) or online Elo, with bootstrap
confidence intervals.

An outcome is ``(model_a, model_b, winner)`` with ``winner`` one of ``"a"``, ``"b"``, ``"tie"``
(a tie is half a win for each), e.g. from :func:`llmkit.evals.judges.compare` or human votes.
Ratings are on the Elo scale: a 400-point gap means the stronger model wins 10 times out of 11
(``P(i beats j) = 1 / (1 + 10 ** ((r_j - r_i) / 400))``), and the mean rating is 1000 unless
``anchor=`` pins one model there.

Example:
    >>> from llmkit.evals.leaderboard import leaderboard
    >>> board = leaderboard([("gpt", "smol", "a"), ("smol", "gpt", "tie"), ("gpt", "smol", "a")])
    >>> [(r.model, round(r.rating), round(r.low), round(r.high)) for r in board]
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import ConfigError

WINNERS = {"a": 1.0, "b": 0.0, "tie": 0.5}   # model_a's points
METHODS = ("bradley-terry", "elo")
SCALE = 400.0    # Elo points per factor of 10 in odds
BASE = 1000.0    # the mean rating (or the anchor model's)
_CELLS = 4_000_000  # floats per bootstrap chunk, to bound memory on long outcome lists


@dataclass(frozen=True)
class Rating:
    """One model's place on a leaderboard; ``low``/``high`` bound the bootstrap confidence
    interval (None when ``bootstrap=0``)."""

    model: str
    rating: float
    low: float | None
    high: float | None
    wins: int
    losses: int
    ties: int
    games: int


@dataclass
class _Games:
    """Outcomes as integer arrays: model ``a[t]`` met ``b[t]`` and scored ``s[t]`` (1, 0 or 0.5)."""

    models: list[str]
    a: np.ndarray
    b: np.ndarray
    s: np.ndarray


def _parse(outcomes: Iterable[Any]) -> _Games:
    outcomes = list(outcomes) if not isinstance(outcomes, list) else outcomes
    if not outcomes:
        raise ConfigError("outcomes is empty: pass a list of (model_a, model_b, winner) with winner 'a', 'b' or 'tie'")
    index: dict[str, int] = {}
    a, b, s = [], [], []
    for t, o in enumerate(outcomes):
        if not isinstance(o, (tuple, list)) or len(o) != 3:
            raise ConfigError(f"outcome {t} is {o!r:.200}; expected (model_a, model_b, winner)")
        x, y, w = o
        if not isinstance(x, str) or not isinstance(y, str) or not x or not y:
            raise ConfigError(f"outcome {t} {o!r:.200}: model names must be non-empty strings")
        if x == y:
            raise ConfigError(f"outcome {t} {o!r:.200}: a model cannot play itself")
        if w not in WINNERS:
            raise ConfigError(f"outcome {t} {o!r:.200}: winner={w!r} must be 'a', 'b' or 'tie'")
        a.append(index.setdefault(x, len(index)))
        b.append(index.setdefault(y, len(index)))
        s.append(WINNERS[w])
    return _Games(list(index), np.array(a), np.array(b), np.array(s, dtype=float))


def _anchored(r: np.ndarray, models: list[str], anchor: str | None, base: float) -> np.ndarray:
    """Shift ratings (last axis = models) so the mean, or the anchor model, sits at ``base``."""
    ref = r.mean(axis=-1, keepdims=True) if anchor is None else r[..., models.index(anchor)][..., None]
    return r - ref + base


def _check_anchor(anchor: str | None, models: list[str]) -> None:
    if anchor is not None and anchor not in models:
        raise ConfigError(f"anchor={anchor!r} is not among the models: {', '.join(models)}")


# --- Bradley–Terry ---------------------------------------------------------------------------------

def _points(g: _Games, weights: np.ndarray | None = None) -> np.ndarray:
    """points[..., i, j]: what i scored against j (wins + half the ties); ``weights`` (…, games)
    counts each outcome that many times (a bootstrap resample)."""
    n = len(g.models)
    w = np.ones((1, len(g.s))) if weights is None else np.atleast_2d(weights)
    pts = np.zeros((w.shape[0], n * n))
    for cell, score in ((g.a * n + g.b, g.s), (g.b * n + g.a, 1 - g.s)):
        for r in range(w.shape[0]):  # bincount per resample: fast, and no (resamples × games × n²) array
            pts[r] = pts[r] + np.bincount(cell, weights=w[r] * score, minlength=n * n)
    return pts.reshape(w.shape[0], n, n)


def _mm(points: np.ndarray, prior: float, iters: int, tol: float) -> np.ndarray:
    """Log-strengths maximising the Bradley–Terry likelihood, for a batch of points matrices (B, n, n).

    The MM (Zermelo / Hunter 2004) update p_i ← W_i / Σ_j n_ij / (p_i + p_j) raises the likelihood
    at every step. ``prior`` adds that many virtual ties of each model against a fixed opponent of
    strength 1: it keeps a model that never won (or never lost) finite and pins the scale; with
    ``prior=0`` the scale is fixed by holding the geometric mean at 1 instead.
    """
    games = points + np.swapaxes(points, -1, -2)
    won = points.sum(-1) + prior / 2
    p = np.ones(points.shape[:-1])
    for _ in range(iters):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(-1) + prior / (p + 1)
        new = np.clip(won / np.maximum(denom, 1e-300), 1e-12, 1e12)  # never-won → 1e-12, not log(0)
        if prior == 0:
            new = new / np.exp(np.log(new).mean(-1, keepdims=True))
        else:
            # The games fix only differences of strength; the common level is fixed by the prior
            # alone, which MM moves by ~prior/games a step (thousands of steps). Jump to the best
            # level instead: a few Newton steps on c in Σ_i σ(log p_i + c) = n/2.
            for _ in range(3):
                sig = new / (new + 1)
                step = (new.shape[-1] / 2 - sig.sum(-1, keepdims=True)) / (sig * (1 - sig)).sum(-1, keepdims=True)
                new = np.clip(new * np.exp(np.clip(step, -2, 2)), 1e-12, 1e12)  # damped: p may be extreme
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    return np.log(p)


def bradley_terry(outcomes: Iterable[Any], *, iters: int = 10_000, tol: float = 1e-10, prior: float = 1.0,
                  anchor: str | None = None, base: float = BASE, scale: float = SCALE) -> dict[str, float]:
    """Maximum-likelihood Bradley–Terry ratings on the Elo scale.

    Args:
        outcomes: ``[(model_a, model_b, winner)]``, winner "a", "b" or "tie" (half a win each).
        iters, tol: MM iterations at most, and the change in log-strength that counts as converged.
        prior: virtual ties each model plays against an average opponent. It keeps ratings finite
            when a model won (or lost) every game, and pulls sparse data gently toward the mean;
            0 gives the plain MLE (which is finite only when every model both won and lost).
        anchor: a model held at ``base``; default: the mean rating is ``base``.
        base, scale: rating = scale · log10(strength), shifted to ``base``.

    Returns:
        {model: rating}, models in order of first appearance.

    Example:
        >>> bradley_terry([("x", "y", "a"), ("x", "y", "a"), ("y", "x", "a")])
        {'x': 1050.9..., 'y': 949.1...}
    """
    g = _parse(outcomes)
    _check_anchor(anchor, g.models)
    if not isinstance(prior, (int, float)) or prior < 0:
        raise ConfigError(f"prior={prior!r} must be a number >= 0")
    r = _mm(_points(g), float(prior), iters, tol)[0] * scale / np.log(10)
    return dict(zip(g.models, _anchored(r, g.models, anchor, base).tolist()))


# --- Elo ---------------------------------------------------------------------------------------------

def _elo_run(g: _Games, order: np.ndarray, k: float, scale: float) -> np.ndarray:
    """Online Elo over games in ``order`` (B, T) — B independent sequences at once; ratings start at 0."""
    r = np.zeros((order.shape[0], len(g.models)))
    rows = np.arange(order.shape[0])
    for t in range(order.shape[1]):
        game = order[:, t]
        a, b, s = g.a[game], g.b[game], g.s[game]
        expected = 1 / (1 + 10 ** ((r[rows, b] - r[rows, a]) / scale))
        step = k * (s - expected)
        r[rows, a] += step
        r[rows, b] -= step
    return r


def elo(outcomes: Iterable[Any], *, k: float = 16, anchor: str | None = None, base: float = BASE,
        scale: float = SCALE) -> dict[str, float]:
    """Online Elo: every model starts at ``base``; after each game, in the order given, the winner
    takes ``k · (score − expected score)`` points from the loser.

    Unlike Bradley–Terry the result depends on the order of the games (recent games weigh more),
    which suits models that change over time; for a fixed set of models prefer Bradley–Terry.

    Args:
        outcomes: ``[(model_a, model_b, winner)]`` in the order they happened.
        k: points at stake per game: larger moves faster and noisier (FIDE: 10-40; LMSYS used 4
            for hundreds of thousands of votes).
        anchor: a model held at ``base``; default: the mean is ``base`` (Elo is zero-sum).

    Example:
        >>> elo([("x", "y", "a")], k=32)
        {'x': 1016.0, 'y': 984.0}
    """
    g = _parse(outcomes)
    _check_anchor(anchor, g.models)
    if not isinstance(k, (int, float)) or k <= 0:
        raise ConfigError(f"k={k!r} must be a number > 0")
    r = _elo_run(g, np.arange(len(g.s))[None, :], float(k), scale)[0]
    return dict(zip(g.models, _anchored(r, g.models, anchor, base).tolist()))


# --- the leaderboard ----------------------------------------------------------------------------------

def leaderboard(outcomes: Iterable[Any], method: str = "bradley-terry", *, bootstrap: int = 1000, seed: int = 0,
                confidence: float = 0.95, k: float = 16, prior: float = 1.0, anchor: str | None = None,
                base: float = BASE, scale: float = SCALE) -> list[Rating]:
    """Ratings with bootstrap confidence intervals, best first.

    The intervals come from refitting on ``bootstrap`` resamples of the outcomes (drawn with
    replacement; for Elo each resample is also a fresh random order). The same ``seed`` gives the
    same intervals.

    Args:
        outcomes: ``[(model_a, model_b, winner)]``, winner "a", "b" or "tie".
        method: "bradley-terry" (order-free maximum likelihood) or "elo" (online, order-dependent).
        bootstrap: resamples for the intervals; 0 skips them (``low``/``high`` are None).
        confidence: the interval's coverage, e.g. 0.95 for the 2.5th to 97.5th percentile.
        k: Elo's step (method="elo"); prior: Bradley–Terry's virtual ties (see :func:`bradley_terry`).
        anchor: a model held at ``base``; default: the mean rating is ``base``.

    Example:
        >>> for r in leaderboard(outcomes, bootstrap=1000, seed=0):
        ...     print(f"{r.model:12} {r.rating:6.0f}  [{r.low:.0f}, {r.high:.0f}]  {r.games} games")
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not one of: {', '.join(METHODS)}")
    if not isinstance(bootstrap, int) or isinstance(bootstrap, bool) or bootstrap < 0:
        raise ConfigError(f"bootstrap={bootstrap!r} must be an integer >= 0 (0: no intervals)")
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence!r} must be between 0 and 1, e.g. 0.95")
    fit = (lambda o: elo(o, k=k, anchor=anchor, base=base, scale=scale)) if method == "elo" else \
        (lambda o: bradley_terry(o, prior=prior, anchor=anchor, base=base, scale=scale))
    point = fit(outcomes)
    g = _parse(outcomes)
    ci = None
    if bootstrap:
        samples = _bootstrap(g, method, bootstrap, np.random.default_rng(seed), k=float(k), prior=float(prior),
                             scale=scale)
        ci = np.quantile(_anchored(samples, g.models, anchor, base), [(1 - confidence) / 2, (1 + confidence) / 2],
                         axis=0)
    ratings = []
    for i, m in enumerate(g.models):
        as_a, as_b = g.s[g.a == i], g.s[g.b == i]
        wins = int((as_a == 1).sum() + (as_b == 0).sum())
        losses = int((as_a == 0).sum() + (as_b == 1).sum())
        ratings.append(Rating(model=m, rating=point[m], low=None if ci is None else float(ci[0, i]),
                              high=None if ci is None else float(ci[1, i]), wins=wins, losses=losses,
                              ties=len(as_a) + len(as_b) - wins - losses, games=len(as_a) + len(as_b)))
    return sorted(ratings, key=lambda r: -r.rating)


def _bootstrap(g: _Games, method: str, n: int, rng: np.random.Generator, *, k: float, prior: float,
               scale: float) -> np.ndarray:
    """(n, models) ratings (unanchored) refitted on n resamples of the games, in chunks that bound memory."""
    games = len(g.s)
    chunk = max(1, _CELLS // max(games, len(g.models) ** 2))
    out = []
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        if method == "elo":
            out.append(_elo_run(g, rng.integers(0, games, size=(size, games)), k, scale))
        else:
            # Resampling T games with replacement = multinomial counts of each game; the order is
            # irrelevant to Bradley–Terry, so the counts are all the fit needs.
            counts = rng.multinomial(games, np.full(games, 1 / games), size=size)
            out.append(_mm(_points(g, counts), prior, 10_000, 1e-10) * scale / np.log(10))
    return np.concatenate(out)
