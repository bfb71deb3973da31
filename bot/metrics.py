"""Prometheus metrics, in a registry of their own (one per Core, so tests don't share counts).

Under `tokbot run --workers N` every worker answers `/metrics` for all of them: the supervisor
sets PROMETHEUS_MULTIPROC_DIR before the workers start, prometheus_client (which reads it at
import) then keeps each worker's values in files there, and the page sums them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

#: The variable prometheus_client's multiprocess mode is switched on by.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._shared_dir = os.environ.get(MULTIPROCESS_DIR) or None
        self.commands = Counter(
            "tokbot_commands",
            "Commands handled, by name and outcome",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "tokbot_platform_events",
            "Messages and commands received from chat platforms",
            ["platform"],
            registry=self.registry,
        )
        self.tokmodel_latency = Histogram(
            "tokbot_tokmodel_request_seconds",
            "TokModel request latency (time to response headers), by endpoint",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.tokmodel_errors = Counter(
            "tokbot_tokmodel_errors",
            "TokModel failures, by HTTP status or failure kind",
            ["status"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "tokbot_feedback",
            "Feedback given on answers, by platform and value (positive or negative); a "
            "person who changes their mind counts once more, for the new value",
            ["platform", "value"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "tokbot_tokens",
            "Tokens used, by kind (prompt or completion)",
            ["kind"],
            registry=self.registry,
        )

    def observe_tokmodel(self, endpoint: str, outcome: str, seconds: float) -> None:
        """Called by the TokModel client after every attempt; `outcome` is a status or an
        error kind (Timeout, ConnectionFailed)."""
        self.tokmodel_latency.labels(endpoint).observe(seconds)
        if not outcome.startswith("2"):
            self.tokmodel_errors.labels(outcome).inc()

    def exposition(self) -> bytes:
        if self._shared_dir is None:
            return generate_latest(self.registry)
        # Counters and histograms summed over every worker that ever ran, restarts included,
        # so the totals only grow whichever worker answers.
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=self._shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(combined)
