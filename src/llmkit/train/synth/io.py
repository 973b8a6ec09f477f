"""Chat rows and their files: the :class:`Rows` list (with its ``rejected`` counts), building and
checking rows, writing JSONL atomically, reading rows and instructions back with errors that name
``file:line``.

Example:
    >>> from llmkit.train.synth import chat_row, write_jsonl, read_jsonl
    >>> write_jsonl([chat_row("Capital of France?", "Paris.")], "train.jsonl")
    >>> read_jsonl("train.jsonl")[0]["messages"][1]["content"]
    'Paris.'
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from ...core.files import atomic_open

ROLES = ("system", "user", "assistant", "tool")


class Rows(list):
    """A list of chat rows, with ``rejected``: how many candidates each rule threw away."""

    def __init__(self, rows: Iterable[dict] = (), rejected: Counter | None = None):
        super().__init__(rows)
        self.rejected: Counter = Counter(rejected or {})

    def __add__(self, other: list) -> Rows:
        return Rows(list(self) + list(other), self.rejected + getattr(other, "rejected", Counter()))

    def __iadd__(self, other: Iterable[dict]) -> Rows:
        self.extend(other)
        self.rejected += getattr(other, "rejected", Counter())
        return self



def chat_row(user: str, assistant: str, **meta: Any) -> dict:
    """A training row: one user turn, one assistant turn, and ``meta`` (ignored by the trainer).

    Example:
        >>> chat_row("Capital of France?", "Paris.", method="qa", source="atlas.md")
        {'messages': [{'role': 'user', 'content': 'Capital of France?'}, {'role': 'assistant', 'content': 'Paris.'}],
         'meta': {'method': 'qa', 'source': 'atlas.md'}}
    """
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
            "meta": {k: v for k, v in meta.items() if v is not None}}


def check_row(row: Any, where: str) -> dict:
    """``row`` if it is a chat row (``messages`` with a user turn, ending with an assistant turn), else a
    ConfigError that starts with ``where`` (``"data.jsonl:3"``)."""
    msgs = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(msgs, list) or not msgs:
        raise ConfigError(f"{where}: a row must be an object with a non-empty \"messages\" list, got "
                          f"{json.dumps(row)[:80] if isinstance(row, (dict, list, str)) else type(row).__name__}")
    for i, m in enumerate(msgs, 1):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ConfigError(f"{where}: message {i} must be {{\"role\": {'|'.join(ROLES)}, \"content\": string}}, "
                              f"got {json.dumps(m)[:80]}")
    if msgs[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in msgs):
        raise ConfigError(f"{where}: a row needs a user turn and must end with an assistant turn "
                          f"(roles: {', '.join(m['role'] for m in msgs)})")
    return row


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Write chat rows, one JSON object a line, atomically: a temporary file beside ``path`` is
    renamed over it only once every row is written, so a crash leaves the old file or the new one.

    Example:
        >>> write_jsonl(rows, "data/train.jsonl")
    """
    with atomic_open(path) as f:
        for i, row in enumerate(rows, 1):
            f.write(json.dumps(check_row(row, f"row {i}"), ensure_ascii=False) + "\n")
    return Path(path)


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    found = False
    for no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            found = True
            yield no, line
    if not found:
        raise ConfigError(f"{path}: the file is empty")


def _json_line(path: str | Path, no: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{no}: not valid JSON ({e.msg} at column {e.colno})") from None


def read_jsonl(path: str | Path) -> Rows:
    """Chat rows from a JSONL file; a bad line raises ConfigError naming ``file:line``."""
    return Rows(check_row(_json_line(path, no, line), f"{path}:{no}") for no, line in _lines(path))


def read_instructions(path: str | Path) -> list[str]:
    """Instructions from a file: ``.jsonl`` lines that are strings, chat rows (the first user turn) or
    objects with ``instruction`` (plus ``input``), ``prompt`` or ``question``; any other file, one per line."""
    if Path(path).suffix.lower() not in (".jsonl", ".ndjson"):
        return [line.strip() for _, line in _lines(path)]
    out = []
    for no, line in _lines(path):
        try:
            out.append(_instruction(_json_line(path, no, line)))
        except ConfigError as e:
            raise ConfigError(f"{path}:{no}: {e}") from None
    return out


def _instruction(item: Any) -> str:
    """The instruction in a string, a chat row or a record."""
    if isinstance(item, str) and item.strip():
        return item.strip()
    if isinstance(item, dict):
        if isinstance(item.get("messages"), list):
            users = [m.get("content") for m in item["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            if users and isinstance(users[0], str) and users[0].strip():
                return users[0].strip()
        for key in ("instruction", "prompt", "question"):
            if isinstance(item.get(key), str) and item[key].strip():
                extra = item.get("input")
                return item[key].strip() + (f"\n\n{extra.strip()}" if isinstance(extra, str) and extra.strip() else "")
    raise ConfigError(f"expected an instruction: a non-empty string, a chat row, or an object with \"instruction\", "
                      f"\"prompt\" or \"question\"; got {json.dumps(item)[:80]}")


def _instructions(items: Iterable[Any], what: str) -> list[str]:
    if isinstance(items, (str, Path)):
        raise ConfigError(f"{what} must be a list of instructions; read a file with read_instructions({str(items)!r})")
    out = [_instruction(x) for x in items]
    if not out:
        raise ConfigError(f"{what} is empty: give at least one instruction")
    return out
