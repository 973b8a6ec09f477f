"""Where llmkit keeps its files, and the few switches read from the environment."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$LLMKIT_HOME`` (default ``~/.llmkit``), created on first use."""
    path = Path(os.environ.get("LLMKIT_HOME") or Path.home() / ".llmkit").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def flag(name: str, default: bool) -> bool:
    """Read a boolean environment variable: 1/true/yes/on versus 0/false/no/off."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """``$LLMKIT_CACHE`` (default ``$LLMKIT_HOME/cache``): derived files that can be rebuilt,
    such as the embedded GGUF dequantized for transformers."""
    raw = os.environ.get("LLMKIT_CACHE")
    path = Path(raw).expanduser() if raw else home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path
