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
