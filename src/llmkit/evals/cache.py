"""A persistent cache of model calls for evals: a re-run is instant and gives the same outputs.

One SQLite file (``$LLMKIT_HOME/evals/cache.db``). The key is a hash of everything that decides
an answer: the model spec and options, the messages, the sampling fields, the constraint and the
repeat index (so ``--repeat N`` samples N times instead of reading one answer N times). Failed
calls are never cached. Each write is its own transaction: a crash loses at most the call in flight.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.settings import home
from .types import Output


def key(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class Cache:
    """``get(key)`` / ``put(key, output)`` over one SQLite file, safe to share between threads."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else home() / "evals" / "cache.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, output TEXT, created REAL)")
        self._lock = threading.Lock()

    def get(self, k: str) -> Output | None:
        with self._lock:
            row = self._db.execute("SELECT output FROM calls WHERE key = ?", (k,)).fetchone()
        if row is None:
            return None
        return Output(**{**json.loads(row[0]), "cached": True})

    def put(self, k: str, model: str, output: Output) -> None:
        if output.error is not None:
            return
        data = {f: v for f, v in asdict(output).items() if f not in ("cached", "parsed")}
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?)",
                             (k, model, json.dumps(data, ensure_ascii=False), time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self._db.close()
