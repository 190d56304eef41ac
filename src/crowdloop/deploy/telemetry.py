"""What the edge observes, per model version: a summary for the server and Prometheus metrics.

:class:`Telemetry` accumulates, between two flushes, for each model version: the number of
predictions, predicted class counts, a 20-bin confidence histogram, a uniform sample of
confidences (reservoir, for drift tests) and simple input statistics (mean length and
emptiness of each text field). :meth:`Telemetry.drain` turns that into one batch per version
(the payload the server's ``/edge/telemetry`` takes) and starts afresh.

:class:`EdgeMetrics` is the Prometheus side, on its own registry: predictions per version,
a latency histogram, a confidence histogram, the outbox length and the loaded version.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BINS = 20
SAMPLE_SIZE = 256
LATENCY_BUCKETS = (2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.25)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


@dataclass
class _Window:
    """One version's observations since the last flush."""

    started: float = field(default_factory=time.time)
    count: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * BINS)
    sample: list[float] = field(default_factory=list)
    confidence_sum: float = 0.0
    latency_sum: float = 0.0
    lengths: dict[str, float] = field(default_factory=dict)
    empty: dict[str, int] = field(default_factory=dict)


class Telemetry:
    """Thread-safe accumulator of per-version prediction summaries."""

    def __init__(self, text_fields: list[str] | None = None, random_state: int | None = None) -> None:
        self.text_fields = list(text_fields or [])
        self._windows: dict[int, _Window] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(random_state)

    def record(self, version: int, label: Any, confidence: float, latency: float, item: dict[str, Any]) -> None:
        with self._lock:
            window = self._windows.get(version) or self._windows.setdefault(version, _Window())
            window.count += 1
            key = str(label)
            window.classes[key] = window.classes.get(key, 0) + 1
            window.histogram[min(int(confidence * BINS), BINS - 1)] += 1
            window.confidence_sum += confidence
            window.latency_sum += latency
            self._sample(window, confidence)
            for name in self.text_fields:
                self._input(window, name, item.get(name))

    def _sample(self, window: _Window, confidence: float) -> None:
        if len(window.sample) < SAMPLE_SIZE:
            window.sample.append(round(confidence, 6))
        elif (slot := self._rng.randrange(window.count)) < SAMPLE_SIZE:
            window.sample[slot] = round(confidence, 6)

    @staticmethod
    def _input(window: _Window, name: str, value: Any) -> None:
        text = value if isinstance(value, str) else ""
        window.lengths[name] = window.lengths.get(name, 0.0) + len(text)
        if not text.strip():
            window.empty[name] = window.empty.get(name, 0) + 1

    def drain(self) -> list[dict[str, Any]]:
        """One telemetry batch per version seen since the last drain (without batch ids)."""
        with self._lock:
            windows, self._windows = self._windows, {}
        now = time.time()
        return [_batch(version, window, now) for version, window in sorted(windows.items()) if window.count]


def _batch(version: int, window: _Window, now: float) -> dict[str, Any]:
    n = window.count
    return {
        "model_version": version,
        "started_at": window.started,
        "ended_at": now,
        "predictions": n,
        "class_counts": window.classes,
        "confidence_histogram": window.histogram,
        "confidence_mean": window.confidence_sum / n,
        "confidence_sample": window.sample,
        "latency_mean_s": window.latency_sum / n,
        "input_stats": {
            name: {"mean_length": window.lengths.get(name, 0.0) / n, "empty_share": window.empty.get(name, 0) / n}
            for name in window.lengths
        },
    }


class EdgeMetrics:
    """Prometheus metrics of one edge runtime (its own registry, so several can coexist)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._per_version: dict[int, Any] = {}
        self.predictions = Counter(
            "crowdloop_edge_predictions", "Predictions served, by model version.", ["version"], registry=self.registry
        )
        self.latency = Histogram(
            "crowdloop_edge_predict_seconds",
            "Time to predict one item.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.confidence = Histogram(
            "crowdloop_edge_confidence",
            "Confidence of predictions.",
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "crowdloop_edge_outbox_items", "Entries waiting in the outbox.", ["kind"], registry=self.registry
        )
        self.dropped = Counter(
            "crowdloop_edge_outbox_dropped", "Outbox entries dropped, oldest first, because the outbox was full.",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self.version = Gauge("crowdloop_edge_model_version", "The model version being served.", registry=self.registry)
        self.swaps = Counter("crowdloop_edge_model_swaps", "Model versions swapped in.", registry=self.registry)
        self.feedback = Counter(
            "crowdloop_edge_feedback_queued", "Inputs queued to go back to the crowd, by reason.", ["reason"],
            registry=self.registry,
        )  # fmt: skip
        self.deliveries = Counter(
            "crowdloop_edge_deliveries", "Outbox deliveries, by kind and outcome.", ["kind", "outcome"],
            registry=self.registry,
        )  # fmt: skip

    def observe(self, version: int, confidence: float, latency: float) -> None:
        counter = self._per_version.get(version)
        if counter is None:  # labels() costs a lock and a look-up: keep each version's child
            counter = self._per_version[version] = self.predictions.labels(str(version))
        counter.inc()
        self.latency.observe(latency)
        self.confidence.observe(confidence)

    def text(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
