"""One write transaction on an autocommit SQLite connection, shared by every SQLite file llmkit keeps.

``BEGIN IMMEDIATE`` takes the write lock at once, so two writers never interleave and a crash
leaves either the whole transaction or none of it.

    >>> with immediate(db, lock):
    ...     db.execute("INSERT ...")
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate(db: sqlite3.Connection, lock: threading.Lock | threading.RLock) -> Iterator[sqlite3.Connection]:
    """Commit everything done inside the block, or roll all of it back on any exception."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
