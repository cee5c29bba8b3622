"""Prometheus metrics of a worker, read at scrape time from what the processors already count.

No second set of counters: :class:`WorkerCollector` asks a :class:`MetricsSource` (the worker's
runtime) for a :class:`WorkerSample` at each scrape and turns it into metric families. The
partition counters are the ones each :class:`~streamwatch.core.processor.PartitionProcessor`
keeps in its checkpoint, so they are totals since the partition was first seen, and they carry
on where they were when a partition moves to another worker or the worker restarts.

It must not import Faust, Kafka or Redis; the registry is always passed in.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> class Fake:
...     def metrics_sample(self) -> WorkerSample:
...         partition = PartitionSample(0, {"windows_closed": 3}, {"invalid_json": 1}, None)
...         return WorkerSample((partition,), partitions_owned=1, redis_retries=0)
>>> registry = CollectorRegistry()
>>> _ = register_worker_metrics(registry, Fake())
>>> 'streamwatch_deadletters_total{partition="0",reason="invalid_json"} 1.0' in (
...     generate_latest(registry).decode())
True
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = [
    "METRIC_NAMES",
    "MetricsSource",
    "PartitionSample",
    "WorkerCollector",
    "WorkerSample",
    "register_worker_metrics",
]

TOPIC_KINDS = ("inference", "feedback", "business")
_LATE_EVENTS = re.compile(r"late_events_(\d+)ms")

#: Every metric the collector exposes: name -> (type, help, label names).
METRIC_NAMES: Mapping[str, tuple[str, str, tuple[str, ...]]] = {
    "streamwatch_messages_total": (
        "counter",
        "Kafka messages applied, by input topic kind (replays skipped are not counted).",
        ("partition", "topic_kind"),
    ),
    "streamwatch_events_total": (
        "counter",
        "Valid events applied, by input topic kind (a message may hold many events).",
        ("partition", "topic_kind"),
    ),
    "streamwatch_deadletters_total": (
        "counter",
        "Messages or events sent to the dead-letter topic, by reason.",
        ("partition", "reason"),
    ),
    "streamwatch_late_events_total": (
        "counter",
        "Inference events too late for their window (counted in the oldest open one instead).",
        ("partition", "window_size_ms"),
    ),
    "streamwatch_windows_closed_total": ("counter", "Windows closed.", ("partition",)),
    "streamwatch_alerts_emitted_total": (
        "counter",
        "Alert events (firing and resolved) published.",
        ("partition",),
    ),
    "streamwatch_replayed_messages_skipped_total": (
        "counter",
        "Messages skipped because the partition's checkpoint had already applied them.",
        ("partition",),
    ),
    "streamwatch_redis_retries_total": (
        "counter",
        "Redis operations retried because Redis was unreachable (since the worker started).",
        (),
    ),
    "streamwatch_partitions_owned": (
        "gauge",
        "Input partitions assigned to this worker.",
        (),
    ),
    "streamwatch_watermark_lag_seconds": (
        "gauge",
        "Wall clock minus the partition's event-time watermark.",
        ("partition",),
    ),
}


@dataclass(frozen=True, slots=True)
class PartitionSample:
    """What one partition's processor has counted, read at scrape time."""

    partition: int
    counters: Mapping[str, int]
    """``PartitionProcessor.counters``."""
    deadletters: Mapping[str, int]
    """``PartitionProcessor.deadletter_counts``: reason -> count."""
    watermark_ms: int | None
    """Event-time watermark; None before the partition's first inference event."""


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """Everything the worker exposes, read in one go (on the event loop: consistent)."""

    partitions: Sequence[PartitionSample]
    partitions_owned: int
    redis_retries: int


class MetricsSource(Protocol):
    """The worker runtime, as the collector sees it."""

    def metrics_sample(self) -> WorkerSample:
        """Return the current counts; must be cheap (it runs at every scrape)."""
        ...


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class WorkerCollector:
    """A prometheus-client collector building :data:`METRIC_NAMES` from a source at scrape."""

    def __init__(self, source: MetricsSource, wall_ms: Callable[[], int] = _wall_ms) -> None:
        """Read ``source`` at every collection; ``wall_ms`` is the clock for the watermark lag."""
        self._source = source
        self._wall_ms = wall_ms

    def describe(self) -> Iterable[Metric]:
        """Return the families without samples (lets the registry detect name clashes)."""
        return self._families().values()

    def collect(self) -> Iterable[Metric]:
        """Return the families with the source's current values."""
        sample = self._source.metrics_sample()
        families = self._families()
        now_ms = self._wall_ms()

        def add(name: str, labels: Sequence[str], value: float) -> None:
            families[name].add_metric(list(labels), value)

        for p in sorted(sample.partitions, key=lambda s: s.partition):
            partition = str(p.partition)
            counters = p.counters
            for kind in TOPIC_KINDS:
                add(
                    "streamwatch_messages_total",
                    (partition, kind),
                    counters.get(f"{kind}_messages", 0),
                )
                add(
                    "streamwatch_events_total", (partition, kind), counters.get(f"{kind}_events", 0)
                )
            for reason, count in sorted(p.deadletters.items()):
                add("streamwatch_deadletters_total", (partition, reason), count)
            for name, count in sorted(counters.items()):
                late = _LATE_EVENTS.fullmatch(name)
                if late is not None:
                    add("streamwatch_late_events_total", (partition, late.group(1)), count)
            add("streamwatch_windows_closed_total", (partition,), counters.get("windows_closed", 0))
            add("streamwatch_alerts_emitted_total", (partition,), counters.get("alerts_emitted", 0))
            add(
                "streamwatch_replayed_messages_skipped_total",
                (partition,),
                counters.get("replayed_messages_skipped", 0),
            )
            if p.watermark_ms is not None:
                lag_s = (now_ms - p.watermark_ms) / 1000
                add("streamwatch_watermark_lag_seconds", (partition,), lag_s)
        add("streamwatch_redis_retries_total", (), sample.redis_retries)
        add("streamwatch_partitions_owned", (), sample.partitions_owned)
        return families.values()

    @staticmethod
    def _families() -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for name, (kind, documentation, labels) in METRIC_NAMES.items():
            if kind == "counter":
                families[name] = CounterMetricFamily(name, documentation, labels=labels)
            else:
                families[name] = GaugeMetricFamily(name, documentation, labels=labels)
        return families


def register_worker_metrics(
    registry: CollectorRegistry, source: MetricsSource, wall_ms: Callable[[], int] = _wall_ms
) -> WorkerCollector:
    """Create a :class:`WorkerCollector` on ``source`` and register it with ``registry``."""
    collector = WorkerCollector(source, wall_ms)
    registry.register(collector)
    return collector
