"""Knowledge-base stores: one file per backend (``sqlite.py`` is the default)."""
from .base import Hit
from .sqlite import SQLiteStore, filter_sql

__all__ = ["Hit", "SQLiteStore", "filter_sql"]
