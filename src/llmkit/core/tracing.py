"""Tracing: every model call becomes an OpenTelemetry span (GenAI semantic conventions).

Spans go to a local SQLite store, ``$LLMKIT_HOME/traces.db``, and — when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``LLMKIT_OTLP_ENDPOINT``) is set — to any OTLP/HTTP
collector too (Langfuse, Phoenix, Jaeger…). ``LLMKIT_TRACE=0`` or :func:`disable` turns it
off; ``LLMKIT_TRACE_CONTENT=0`` keeps messages and outputs out of the spans.

llmkit keeps its own ``TracerProvider`` rather than the global one, so it never changes an
application's OpenTelemetry set-up, while spans still nest under the application's spans
through the shared context.

Example:
    >>> from llmkit.core import tracing
    >>> with tracing.span("retrieve", {"llmkit.k": 4}):   # later packages add their own spans
    ...     ...
    >>> tracing.TraceStore().list(limit=5)
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from .settings import flag, home

_lock = threading.Lock()
_tracer = None
_provider = None
_disabled = False

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    span_id    TEXT PRIMARY KEY,
    trace_id   TEXT NOT NULL,
    parent_id  TEXT,
    name       TEXT NOT NULL,
    start_ns   INTEGER NOT NULL,
    end_ns     INTEGER NOT NULL,
    status     TEXT NOT NULL,      -- OK | ERROR | UNSET
    error      TEXT,
    attributes TEXT NOT NULL,      -- JSON object, GenAI semantic-convention keys
    events     TEXT NOT NULL       -- JSON list
);
CREATE INDEX IF NOT EXISTS spans_trace ON spans(trace_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans(start_ns);
"""


def store_path() -> Path:
    return home() / "traces.db"


def enabled() -> bool:
    return not _disabled and flag("LLMKIT_TRACE", True)


def disable() -> None:
    """Stop recording spans in this process (``LLMKIT_TRACE=0`` does the same)."""
    global _disabled
    _disabled = True


def enable() -> None:
    global _disabled
    _disabled = False


def record_content() -> bool:
    return flag("LLMKIT_TRACE_CONTENT", True)


class SQLiteSpanExporter:
    """An OpenTelemetry ``SpanExporter`` writing to the llmkit trace store.

    The path is resolved at every export, so a changed ``LLMKIT_HOME`` takes effect at once.
    """

    def export(self, spans: Sequence[Any]):
        from opentelemetry.sdk.trace.export import SpanExportResult

        rows = []
        for s in spans:
            parent = s.parent.span_id if s.parent else None
            rows.append((
                format(s.context.span_id, "016x"), format(s.context.trace_id, "032x"),
                format(parent, "016x") if parent else None, s.name, s.start_time, s.end_time,
                s.status.status_code.name, s.status.description,
                json.dumps(dict(s.attributes or {}), default=str),
                json.dumps([{"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
                            for e in s.events], default=str),
            ))
        try:
            with _connect(store_path()) as db:
                db.executemany("INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.Error:
            return SpanExportResult.FAILURE  # tracing must never break the call it traces
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    return db


def tracer():
    """The llmkit tracer, created on first use (OpenTelemetry is imported only then)."""
    global _tracer, _provider
    if _tracer is None:
        with _lock:
            if _tracer is None:
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

                provider = TracerProvider(resource=Resource.create({"service.name": "llmkit"}))
                provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter()))
                endpoint = os.environ.get("LLMKIT_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                if endpoint:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                    url = endpoint.rstrip("/")
                    url = url if url.endswith("/v1/traces") else url + "/v1/traces"
                    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
                _provider, _tracer = provider, provider.get_tracer("llmkit")
                import atexit

                atexit.register(provider.shutdown)  # flush the OTLP batch on exit
    return _tracer


def flush(timeout_ms: int = 10_000) -> bool:
    """Push any batched spans to the OTLP collector now (the SQLite store is written at once)."""
    return _provider.force_flush(timeout_ms) if _provider is not None else True


def reset() -> None:
    """Flush and forget the tracer, so the next span re-reads the environment (OTLP endpoint)."""
    global _tracer, _provider
    with _lock:
        if _provider is not None:
            _provider.shutdown()
        _tracer = _provider = None


class _NoSpan:
    def set_attribute(self, *a: Any) -> None: ...
    def set_attributes(self, *a: Any) -> None: ...
    def add_event(self, *a: Any, **k: Any) -> None: ...
    def record_exception(self, *a: Any, **k: Any) -> None: ...
    def set_status(self, *a: Any, **k: Any) -> None: ...
    def is_recording(self) -> bool:
        return False


@contextmanager
def span(name: str, attributes: dict[str, Any] | None = None, kind: str = "INTERNAL") -> Iterator[Any]:
    """Open a span as a child of the current one; exceptions are recorded and re-raised."""
    if not enabled():
        yield _NoSpan()
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    with tracer().start_as_current_span(name, kind=SpanKind[kind], record_exception=False,
                                        set_status_on_exception=False) as s:
        if attributes:
            s.set_attributes(clean(attributes))
        try:
            yield s
        except BaseException as e:
            s.set_attribute("error.type", type(e).__name__)
            s.record_exception(e)
            s.set_status(Status(StatusCode.ERROR, str(e)[:2000]))
            raise


def clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry accepts str/bool/int/float and lists of them; drop None, JSON the rest."""
    out = {}
    for k, v in attributes.items():
        if v is None:
            continue
        if isinstance(v, (str, bool, int, float)):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            out[k] = list(v)
        else:
            out[k] = json.dumps(v, default=str)
    return out


class TraceStore:
    """Read spans back from ``$LLMKIT_HOME/traces.db`` (what ``llmkit trace`` shows)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else store_path()

    def list(self, limit: int = 20, name_like: str | None = None) -> list[dict[str, Any]]:
        """Newest spans first."""
        if not self.path.exists():
            return []
        q, args = "SELECT * FROM spans", []
        if name_like:
            q, args = q + " WHERE name LIKE ?", [f"%{name_like}%"]
        with _connect(self.path) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(q + " ORDER BY start_ns DESC LIMIT ?", [*args, limit]).fetchall()
        return [_row(r) for r in rows]

    def get(self, ident: str) -> list[dict[str, Any]]:
        """The spans of a trace, given a span id, a trace id, or a unique prefix of either."""
        if not self.path.exists() or not ident:
            return []
        with _connect(self.path) as db:
            db.row_factory = sqlite3.Row
            hit = db.execute("SELECT trace_id FROM spans WHERE span_id LIKE ? OR trace_id LIKE ? LIMIT 2",
                             [ident + "%", ident + "%"]).fetchall()
            if not hit:
                return []
            rows = db.execute("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", [hit[0][0]]).fetchall()
        return [_row(r) for r in rows]


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["attributes"] = json.loads(d["attributes"])
    d["events"] = json.loads(d["events"])
    d["duration_ms"] = (d["end_ns"] - d["start_ns"]) / 1e6
    return d
