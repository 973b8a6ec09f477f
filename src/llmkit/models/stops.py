"""Stop sequences over streamed text: cut exactly before the first stop, never emit any of it.

Text arrives in pieces (one per token), and a stop string can be split across pieces
(``"Hel" + "lo wo"`` contains ``"lo w"``). :class:`StopChecker` emits text as soon as it
cannot be the start of a stop, and holds back only the tail that still could be.
Pure Python, shared by every local backend (transformers, llama.cpp, the serving engine).
"""
from __future__ import annotations


class StopChecker:
    """Incremental stop-sequence detection.

    Args:
        stops: the stop strings; empty strings are ignored.

    Example:
        >>> sc = StopChecker(["lo w"])
        >>> sc.feed("Hel")
        ('Hel', False)
        >>> sc.feed("lo wo")      # "lo" might start the stop: held, then the stop is found
        ('', True)
        >>> sc.text
        'Hel'
    """

    def __init__(self, stops: list[str] | None):
        self.stops = [s for s in (stops or []) if s]
        self.held = ""        # tail that could still be the start of a stop
        self.stopped = False
        self.text = ""        # everything emitted so far

    def feed(self, piece: str) -> tuple[str, bool]:
        """Add a piece of text; return ``(text safe to emit now, stopped)``.

        After a stop is found every further call returns ``("", True)``.
        """
        if self.stopped:
            return "", True
        text = self.held + piece
        if not self.stops:
            self.held = ""
            self.text += text
            return text, False
        # The earliest start wins, whichever stop it belongs to (stops may overlap).
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            emit, self.held, self.stopped = text[: min(hits)], "", True
            self.text += emit
            return emit, True
        keep = max(_partial(text, s) for s in self.stops)
        emit, self.held = text[: len(text) - keep], text[len(text) - keep:]
        self.text += emit
        return emit, False

    def flush(self) -> str:
        """The held-back tail at the end of generation (it never became a stop)."""
        if self.stopped:
            return ""
        tail, self.held = self.held, ""
        self.text += tail
        return tail


def _partial(text: str, stop: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``stop``."""
    for k in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:k]):
            return k
    return 0
