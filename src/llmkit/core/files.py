"""Files written whole or not at all: a temporary file beside the target, renamed onto it.

A crash (or an exception, or a full disk) midway leaves the old file or none, never half of a new
one, and no temporary file behind. The rename is atomic because the temporary file is on the same
filesystem (the target's folder). Written files get mode 0644, as ``open`` under the usual umask
gives (``mkstemp`` alone would make them private).

Example:
    >>> with atomic_open(out / "rows.jsonl", "w") as f:   # fsync'd, then renamed
    ...     f.writelines(lines)
    >>> atomic_write(out / "metrics.json", json.dumps(body))
    >>> with atomic_path(out / "model.gguf") as tmp:      # for writers that take a path
    ...     writer.write_to(tmp)
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def scratch_path(target: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target`` (its folder is created), always removed afterwards."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path that is renamed onto ``target`` when the block succeeds."""
    with scratch_path(target) as tmp:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)


@contextmanager
def atomic_open(target: str | Path, mode: str = "w", encoding: str | None = None) -> Iterator[IO[Any]]:
    """``open(tmp, mode)`` whose contents reach the disk (fsync) and then replace ``target``."""
    if "b" not in mode:
        encoding = encoding or "utf-8"
    with atomic_path(target) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write(target: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``target`` whole or not at all; returns ``target`` as a Path."""
    with atomic_open(target, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(target)
