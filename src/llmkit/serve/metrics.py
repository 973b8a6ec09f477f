"""Prometheus metrics for one app: ``GET /metrics`` in the text exposition format.

Each app has its own ``CollectorRegistry``, so two servers in one process (tests, a gateway
beside a local server) never mix their numbers.

    llmkit_requests_total{route,status}        HTTP requests answered
    llmkit_input_tokens_total                  prompt tokens processed
    llmkit_output_tokens_total                 tokens generated
    llmkit_requests_in_flight                  requests holding a generation slot
    llmkit_queue_depth                         requests waiting: for a slot, plus the engine's own queue
    llmkit_active_sequences                    sequences decoding: the engine's count, else in-flight requests
    llmkit_prefix_cache_hits_total             engine only: requests that reused a cached prefix
    llmkit_prefix_cache_tokens_total           engine only: prompt tokens served from the prefix cache
    llmkit_time_to_first_token_seconds         histogram, streamed requests, from arrival to first token
    llmkit_inter_token_latency_seconds         histogram, streamed requests, between consecutive chunks

Engine numbers are read at scrape time from ``model.engine.stats()`` when the model has one.
"""
from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..core.types import Usage

# Seconds. A CPU engine's first token takes tens of ms to many seconds under load.
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5)


class Metrics:
    """The app's counters and histograms, plus a collector for live gauges.

    Args:
        admission: the app's :class:`~llmkit.serve.runner.Admission` (in-flight and waiting counts).
        model: the served model; if it has ``engine.stats()``, its numbers are reported too.
    """

    def __init__(self, admission: Any, model: Any):
        self.registry = CollectorRegistry()
        self.requests = Counter("llmkit_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.input_tokens = Counter("llmkit_input_tokens", "prompt tokens processed", registry=self.registry)
        self.output_tokens = Counter("llmkit_output_tokens", "tokens generated", registry=self.registry)
        self.ttft = Histogram("llmkit_time_to_first_token_seconds", "streamed requests: arrival to first token",
                              buckets=TTFT_BUCKETS, registry=self.registry)
        self.itl = Histogram("llmkit_inter_token_latency_seconds", "streamed requests: time between chunks",
                             buckets=ITL_BUCKETS, registry=self.registry)
        self.registry.register(_Live(admission, model))

    def count_tokens(self, usage: Usage | None) -> None:
        if usage is not None:
            self.input_tokens.inc(usage.input_tokens)
            self.output_tokens.inc(usage.output_tokens)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Live:
    """Gauges read when Prometheus scrapes: the admission counts and the engine's stats."""

    def __init__(self, admission: Any, model: Any):
        self.admission, self.model = admission, model

    def engine_stats(self) -> dict[str, Any] | None:
        stats = getattr(getattr(self.model, "engine", None), "stats", None)
        return stats() if callable(stats) else None

    def collect(self) -> Iterator[Any]:
        a, engine = self.admission, self.engine_stats() or {}
        yield GaugeMetricFamily("llmkit_requests_in_flight", "requests holding a generation slot", value=a.active)
        yield GaugeMetricFamily("llmkit_queue_depth", "requests waiting for a slot, plus the engine's own queue",
                                value=a.waiting + engine.get("queued", 0))
        yield GaugeMetricFamily("llmkit_active_sequences", "sequences decoding (the engine's count, else in-flight requests)",
                                value=engine.get("active", a.active))
        for key, help_text in (("prefix_cache_hits", "requests that reused a cached prompt prefix"),
                               ("prefix_cache_tokens", "prompt tokens served from the prefix cache")):
            if key in engine:
                yield CounterMetricFamily(f"llmkit_{key}", help_text, value=engine[key])
