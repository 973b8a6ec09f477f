"""Conversation memory: every message of every conversation in one SQLite file, and four ways to
choose which of them go back into the next prompt.

    >>> from llmkit.rag.memory import WindowMemory
    >>> mem = WindowMemory(k=3)                            # $LLMKIT_HOME/memory.db
    >>> q = "And in winter?"
    >>> reply = m.chat([*mem.messages("alice"), lk.user(q)])
    >>> mem.add_turn("alice", q, reply.text)

The stored log is the same whatever the memory; the class decides what ``messages()`` returns:

- :class:`BufferMemory`: everything.
- :class:`WindowMemory`: the last ``k`` turns.
- :class:`SummaryMemory`: the recent turns that fit ``max_tokens``; older ones are folded by the
  model into a running summary (:data:`SUMMARY_TEMPLATE`), returned first as a system message.
- :class:`VectorMemory`: the ``k`` earlier turns most similar to the new message (by embedding),
  then the last ``recent`` turns.

A *turn* starts at a user message and runs to the next one, so an assistant's tool calls and
their results are never split. Nothing is ever deleted except by ``clear``: a summary replaces
old turns in what ``messages()`` returns, not in the file, so a different memory (or a bigger
budget) can read the whole conversation later. Each write is one transaction with
``synchronous=FULL``: once ``add`` returns, the message survives a crash or a power cut.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import tracing
from ..core.errors import ConfigError, UnsupportedParameterError
from ..core.sqlite_tx import immediate
from ..core.types import Message, as_messages, assistant, system, user
from .splitters import approx_tokens

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages(
    n INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused after clear(): summaries and order rely on it
    conversation TEXT NOT NULL,
    message TEXT NOT NULL,          -- the llmkit Message as JSON (tool calls included)
    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation, n);
CREATE TABLE IF NOT EXISTS summaries(
    conversation TEXT PRIMARY KEY,
    summary TEXT NOT NULL,
    upto INTEGER NOT NULL,          -- messages with n <= upto are in the summary
    updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vectors(
    n INTEGER NOT NULL REFERENCES messages(n) ON DELETE CASCADE,
    embedder TEXT NOT NULL,         -- vectors of two embedders never compare
    vector BLOB NOT NULL,           -- float32
    PRIMARY KEY (n, embedder));
"""

SUMMARY_TEMPLATE = """Progressively summarize the conversation, adding the new lines to the previous summary.
Keep names, numbers, facts the user gave, decisions and open questions. Be concise: a few sentences.

Previous summary:
{summary}

New lines of conversation:
{lines}

New summary:"""

SUMMARY_MESSAGE = "Summary of the earlier conversation:\n{summary}"  # the system message that carries it

Turn = list[tuple[int, Message]]  # (row number, message) pairs of one turn, in order


def memory_path(path: str | Path | None = None) -> Path:
    """``path``, or ``$LLMKIT_HOME/memory.db``."""
    if path is None:
        from ..core.settings import home

        return home() / "memory.db"
    return Path(path).expanduser()


def _check_id(conversation_id: Any) -> str:
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ConfigError(f"conversation_id={conversation_id!r} must be a non-empty string")
    return conversation_id


def turns(rows: Sequence[tuple[int, Message]]) -> list[Turn]:
    """Group messages into turns: a new turn at each user message (leading non-user messages form one)."""
    out: list[Turn] = []
    for n, m in rows:
        if m.role == "user" or not out:
            out.append([])
        out[-1].append((n, m))
    return out


def _flat(ts: Sequence[Turn]) -> list[Message]:
    return [m for t in ts for _, m in t]


class BufferMemory:
    """Every message of a conversation, stored in SQLite, returned whole.

    Args:
        path: the database file; None = ``$LLMKIT_HOME/memory.db``. ``":memory:"`` for a throwaway.

    Example:
        >>> mem = BufferMemory()
        >>> mem.add_turn("c1", "Hi, I'm Ada.", "Hello Ada!")
        >>> [m.role for m in mem.messages("c1")]
        ['user', 'assistant']
    """

    def __init__(self, *, path: str | Path | None = None):
        self.path = str(path) if path == ":memory:" else str(memory_path(path))
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # one writer per object; SQLite serialises between processes
        # autocommit mode: transactions are opened explicitly in _tx(), never implicitly
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            self.db.execute("PRAGMA synchronous = FULL")  # a committed turn survives a power cut, not only a crash
        self.db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"

    def _tx(self):
        return immediate(self.db, self._lock)

    # ------------------------------------------------------------------ writes

    def add(self, conversation_id: str, message: Message | str | dict | list) -> None:
        """Store one message (or a list of them, in one transaction); a bare string is a user message."""
        cid = _check_id(conversation_id)
        msgs = as_messages(message)
        now = time.time()
        with self._tx() as db:
            rows = [db.execute("INSERT INTO messages(conversation, message, created) VALUES (?, ?, ?)",
                               (cid, m.model_dump_json(exclude_defaults=True), now)).lastrowid for m in msgs]
        self._after_add(cid, list(zip(rows, msgs)))

    def add_turn(self, conversation_id: str, user_text: str, assistant_text: str) -> None:
        """Store a user message and the assistant's reply together (one transaction)."""
        self.add(conversation_id, [user(user_text), assistant(assistant_text)])

    def _after_add(self, cid: str, added: list[tuple[int, Message]]) -> None:
        """Hook for memories that index or compact on write."""

    def clear(self, conversation_id: str) -> int:
        """Forget a conversation (messages, summary, vectors); returns how many messages went."""
        cid = _check_id(conversation_id)
        with self._tx() as db:
            n = db.execute("SELECT count(*) FROM messages WHERE conversation = ?", (cid,)).fetchone()[0]
            db.execute("DELETE FROM messages WHERE conversation = ?", (cid,))  # vectors follow by cascade
            db.execute("DELETE FROM summaries WHERE conversation = ?", (cid,))
        return n

    # ------------------------------------------------------------------ reads

    def conversations(self) -> list[str]:
        """Conversation ids, the most recently active last."""
        with self._lock:  # the connection is shared: never read in the middle of another thread's write
            rows = self.db.execute("SELECT conversation FROM messages GROUP BY conversation ORDER BY max(n)").fetchall()
        return [r[0] for r in rows]

    def history(self, conversation_id: str) -> list[tuple[int, Message]]:
        """Every stored message of a conversation with its row number, oldest first."""
        with self._lock:
            rows = self.db.execute("SELECT n, message FROM messages WHERE conversation = ? ORDER BY n",
                                   (_check_id(conversation_id),)).fetchall()
        return [(n, Message.model_validate_json(m)) for n, m in rows]

    def messages(self, conversation_id: str, query: str | None = None) -> list[Message]:
        """The messages to put before the next user message (``query`` is used by VectorMemory only)."""
        return [m for _, m in self.history(conversation_id)]


class WindowMemory(BufferMemory):
    """The last ``k`` turns of a conversation.

    Example:
        >>> mem = WindowMemory(k=2)
        >>> for i in range(5): mem.add_turn("c", f"q{i}", f"a{i}")
        >>> [m.content for m in mem.messages("c")]
        ['q3', 'a3', 'q4', 'a4']
    """

    def __init__(self, k: int = 5, *, path: str | Path | None = None):
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k={k!r} must be a whole number of turns, at least 1")
        super().__init__(path=path)
        self.k = k

    def messages(self, conversation_id: str, query: str | None = None) -> list[Message]:
        return _flat(turns(self.history(conversation_id))[-self.k:])


class SummaryMemory(BufferMemory):
    """The recent turns that fit ``max_tokens``, after a running summary of the older ones.

    When a write leaves the turns not yet summarised over ``max_tokens``, the oldest are folded
    into the summary (one model call with ``template``) until the rest fit; the last turn is kept
    whole even if it alone is over. The summary is stored, so reopening costs no model call.
    The turn is committed before the model is asked; if that call fails, ``add`` raises and the
    next write or read tries the summary again (the turn is not lost, so do not add it twice).
    Tokens are counted with ``model.count_tokens`` where the backend has it, else approximated
    (``splitters.approx_tokens`` plus 4 per message).

    Args:
        model: the llmkit model that writes the summary.
        max_tokens: the budget for the turns returned word for word.
        template: the summary prompt, with ``{summary}`` and ``{lines}`` (print ``SUMMARY_TEMPLATE``).
        summary_tokens: ``max_tokens`` for the summary the model writes.

    Example:
        >>> mem = SummaryMemory(lk.model(), max_tokens=500)
        >>> mem.messages("c1")[0].content
        'Summary of the earlier conversation:\\nThe user, Ada, asked about ...'
    """

    def __init__(self, model: Any, max_tokens: int = 1000, *, path: str | Path | None = None,
                 template: str = SUMMARY_TEMPLATE, summary_tokens: int = 256):
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens={max_tokens!r} must be a positive number of tokens")
        try:
            template.format(summary="", lines="")
        except (KeyError, IndexError) as e:
            raise ConfigError(f"summary template has an unknown placeholder {e}; accepted: {{summary}}, {{lines}} "
                              "(double other braces: {{ }})") from None
        super().__init__(path=path)
        self.model, self.max_tokens, self.template, self.summary_tokens = model, max_tokens, template, summary_tokens

    def count_tokens(self, messages: list[Message]) -> int:
        """Tokens in ``messages`` by the model's tokenizer, or the approximation."""
        try:
            return int(self.model.count_tokens(messages))
        except (UnsupportedParameterError, NotImplementedError, AttributeError):
            return sum(approx_tokens(m.content) + 4 for m in messages)  # ~4 tokens of chat-template markup

    def summary(self, conversation_id: str) -> tuple[str, int]:
        """The stored summary and the last row number it covers (``("", 0)`` when none yet)."""
        with self._lock:
            row = self.db.execute("SELECT summary, upto FROM summaries WHERE conversation = ?",
                                  (_check_id(conversation_id),)).fetchone()
        return (row[0], row[1]) if row else ("", 0)

    def _after_add(self, cid: str, added: list[tuple[int, Message]]) -> None:
        self.compact(cid)

    def compact(self, conversation_id: str) -> bool:
        """Fold the oldest turns into the summary while the rest exceed ``max_tokens``.

        Runs after every write; call it yourself after changing ``max_tokens``. Returns whether
        the model was called.
        """
        cid = _check_id(conversation_id)
        summary, upto = self.summary(cid)
        pending = turns([(n, m) for n, m in self.history(cid) if n > upto])
        sizes = [self.count_tokens([m for _, m in t]) for t in pending]
        total, fold = sum(sizes), 0
        while total > self.max_tokens and fold < len(pending) - 1:
            total -= sizes[fold]
            fold += 1
        if not fold:
            return False
        old = _flat(pending[:fold])
        # the model call holds no lock; the write below checks that nobody folded these turns meanwhile
        with tracing.span("rag.memory.summarize", {"llmkit.memory.conversation": cid,
                                                   "llmkit.memory.folded_messages": len(old),
                                                   "llmkit.memory.max_tokens": self.max_tokens}) as s:
            prompt = self.template.format(summary=summary or "(none yet)", lines=format_lines(old))
            new = self.model.chat([user(prompt)], temperature=0, max_tokens=self.summary_tokens).text.strip()
            if tracing.record_content():
                s.set_attribute("llmkit.memory.summary", new)
        with self._tx() as db:
            now = db.execute("SELECT upto FROM summaries WHERE conversation = ?", (cid,)).fetchone()
            if (now[0] if now else 0) != upto:
                return True  # another writer folded these turns meanwhile; its summary stands
            db.execute("INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?)",
                       (cid, new, pending[fold - 1][-1][0], time.time()))
        return True

    def messages(self, conversation_id: str, query: str | None = None) -> list[Message]:
        """The summary as a system message (once there is one), then the turns it does not cover."""
        self.compact(conversation_id)  # a no-op unless a crash or a smaller budget left it over
        summary, upto = self.summary(conversation_id)
        rest = [m for n, m in self.history(conversation_id) if n > upto]
        return ([system(SUMMARY_MESSAGE.format(summary=summary))] if summary else []) + rest


def format_lines(messages: Sequence[Message]) -> str:
    """``User: …`` / ``Assistant: …`` lines, as the summary prompt shows a conversation."""
    lines = []
    for m in messages:
        text = m.content
        if m.tool_calls:
            text += " " + " ".join(f"[calls {c.name}({json.dumps(c.arguments)})]" for c in m.tool_calls)
        lines.append(f"{m.role.capitalize()}: {text.strip()}")
    return "\n".join(lines)


class VectorMemory(BufferMemory):
    """The ``k`` earlier turns most similar to the new message, then the last ``recent`` turns.

    Each message is embedded when it is stored (messages stored by another memory are embedded
    on first read); a turn scores the best cosine similarity of its messages to the query.
    Recalled turns come back in conversation order.

    Args:
        embedder: anything with ``.embed(list[str]) -> list[list[float]]`` (``rag.Embedder()``).
        k: how many earlier turns to recall.
        recent: how many last turns to always include.
        min_score: recall only turns at least this similar (cosine); None = the best ``k`` whatever they score.

    Example:
        >>> mem = VectorMemory(Embedder(), k=2)
        >>> mem.messages("c1", query="What was my dog's name again?")   # pass the new message
    """

    def __init__(self, embedder: Any, k: int = 3, *, recent: int = 2, min_score: float | None = None,
                 path: str | Path | None = None):
        if not isinstance(k, int) or k < 0 or not isinstance(recent, int) or recent < 0:
            raise ConfigError(f"k={k!r} and recent={recent!r} must be whole numbers of turns, 0 or more")
        super().__init__(path=path)
        self.embedder, self.k, self.recent, self.min_score = embedder, k, recent, min_score
        self.embedder_name = str(getattr(embedder, "name", type(embedder).__name__))

    def _after_add(self, cid: str, added: list[tuple[int, Message]]) -> None:
        self._index(added)

    def _index(self, rows: list[tuple[int, Message]]) -> None:
        rows = [(n, m) for n, m in rows if m.content.strip()]
        if not rows:
            return
        vectors = self.embedder.embed([m.content for _, m in rows])
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                           [(n, self.embedder_name, np.asarray(v, dtype=np.float32).tobytes())
                            for (n, _), v in zip(rows, vectors)])

    def _vectors(self, cid: str, rows: list[tuple[int, Message]]) -> dict[int, np.ndarray]:
        with self._lock:
            stored = dict(self.db.execute(
                "SELECT v.n, v.vector FROM vectors v JOIN messages m ON m.n = v.n "
                "WHERE m.conversation = ? AND v.embedder = ?", (cid, self.embedder_name)).fetchall())
        missing = [(n, m) for n, m in rows if n not in stored and m.content.strip()]
        if missing:  # stored by another memory, or before this embedder was used
            self._index(missing)
            return self._vectors(cid, rows)
        return {n: np.frombuffer(b, dtype=np.float32) for n, b in stored.items()}

    def messages(self, conversation_id: str, query: str | None = None) -> list[Message]:
        """``query``: the new message; None = the last stored user message."""
        cid = _check_id(conversation_id)
        rows = self.history(cid)
        ts = turns(rows)
        split = max(len(ts) - self.recent, 0)
        older, last = ts[:split], ts[split:]
        if query is None:
            query = next((m.content for _, m in reversed(rows) if m.role == "user"), "")
        if not older or not self.k or not query.strip():
            return _flat(last)
        with tracing.span("rag.memory.recall", {"llmkit.memory.conversation": cid, "llmkit.memory.k": self.k}) as s:
            vecs = self._vectors(cid, [r for t in older for r in t])
            q = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
            q = q / (np.linalg.norm(q) or 1.0)

            def score(t: Turn) -> float:
                sims = [float(vecs[n] @ q) / (float(np.linalg.norm(vecs[n])) or 1.0) for n, _ in t if n in vecs]
                return max(sims, default=-1.0)

            scored = [(score(t), i) for i, t in enumerate(older)]
            if self.min_score is not None:
                scored = [(sc, i) for sc, i in scored if sc >= self.min_score]
            best = sorted(i for _, i in sorted(scored, key=lambda x: -x[0])[:self.k])  # stable: ties keep the older
            s.set_attribute("llmkit.memory.recalled_turns", len(best))
        return _flat([older[i] for i in best]) + _flat(last)
