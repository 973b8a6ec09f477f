"""Progress indication for long work (model loads, ingestion, training), on stderr.

Shown only when stderr is a terminal, so logs and pipes stay clean.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def loading(what: str) -> Iterator[None]:
    """A spinner with elapsed time while ``what`` happens: ``with loading("Loading model"): ...``"""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(f"{what}…", spinner="dots"):
        yield


@contextmanager
def steps(total: int, what: str):
    """A progress bar of ``total`` steps on stderr (only on a terminal); yields ``advance()``.

    Example:
        >>> with steps(len(tensors), "Merging") as advance:
        ...     for t in tensors: ...; advance()
    """
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)
