"""A known stream and its exact window statistics, for the crash and outage tests.

Six models, 30 s of event time, 60 events per model per second, sent as a mix of 10-event
batches and single-event messages, interleaved in event-time order. One event per model 10 s
after the stream closes every window before it, so no idle clock is needed: the tests run with
``STREAMWATCH_IDLE_TIMEOUT=10m`` (they produce old events in bursts, and an idle clock would
advance event time over the pauses between bursts and make the next burst late).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Producer

from streamwatch.client import StreamwatchClient
from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.columns import EventColumns
from streamwatch.events import InferenceEvent
from tests.waiting import wait_for

SIZES_MS = (1_000, 5_000)
MODELS = tuple(f"model-{i}" for i in range(6))
SECONDS = 30
PER_SECOND = 60
NO_IDLE_CLOCK = {"STREAMWATCH_IDLE_TIMEOUT": "10m"}

Record = tuple[bytes, bytes]
WindowId = tuple[str, int, int]


@dataclass(frozen=True)
class KnownStream:
    """The events, the messages carrying them (in order) and the closing messages."""

    start_ms: int
    events: list[dict[str, Any]]
    records: list[Record]
    closers: list[Record]

    @property
    def total_events(self) -> int:
        """Events applied once everything, closers included, is consumed."""
        return len(self.events) + len(self.closers)

    def parts(self, n: int) -> list[list[Record]]:
        """The records in ``n`` consecutive parts; the last one ends with the closers."""
        size = -(-len(self.records) // n)
        parts = [self.records[i : i + size] for i in range(0, len(self.records), size)]
        parts[-1] = parts[-1] + self.closers
        return parts


def known_stream(start_ms: int, seed: int = 21) -> KnownStream:
    """Build the stream with event times from ``start_ms``."""
    rng = np.random.default_rng(seed)
    events = []
    for second in range(SECONDS):
        for model in MODELS:
            for i in range(PER_SECOND):
                events.append(
                    {
                        "request_id": f"{model}-{second}-{i}",
                        "model_id": model,
                        "model_version": "1",
                        "timestamp": (start_ms + second * 1_000 + i * 16) / 1000,
                        "latency_ms": float(rng.lognormal(3.5, 0.6)),
                        "status": "error" if rng.random() < 0.05 else "ok",
                        "error_type": "timeout",
                        "features": {"amount": float(rng.normal(100, 15)), "plan": "pro"},
                    }
                )
    records: list[tuple[float, Record]] = []
    for model in MODELS:
        members = [e for e in events if e["model_id"] == model]
        # A batch spans 144 ms of event time, within the allowed lateness (200 ms): the
        # interleaving of models makes no event late.
        for i in range(0, len(members), 10):
            chunk = members[i : i + 10]
            if (i // 10) % 3 == 2:  # every third stretch goes one event per message
                records.extend((e["timestamp"], (model.encode(), orjson.dumps(e))) for e in chunk)
            else:
                records.append((chunk[0]["timestamp"], (model.encode(), orjson.dumps(chunk))))
    records.sort(key=lambda item: item[0])  # stable: a model's messages keep their order
    closing_s = (start_ms + (SECONDS + 10) * 1_000) / 1000
    closers = [
        (
            model.encode(),
            orjson.dumps(
                dict(events[0], model_id=model, request_id=f"{model}-end", timestamp=closing_s)
            ),
        )
        for model in MODELS
    ]
    return KnownStream(start_ms, events, [r for _, r in records], closers)


def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    """Produce ``records`` in order and wait until the broker has them all."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def exact_windows(events: list[dict[str, Any]]) -> dict[WindowId, WindowAggregate]:
    """Aggregate the events in one go per window: what Redis must hold."""
    groups: dict[WindowId, list[InferenceEvent]] = defaultdict(list)
    for body in events:
        event = InferenceEvent.model_validate(body)
        for size in SIZES_MS:
            start = event.timestamp_ms - event.timestamp_ms % size
            groups[(event.model_id, size, start)].append(event)
    result = {}
    for key, members in groups.items():
        aggregate = WindowAggregate()
        aggregate.add_columns(EventColumns.from_events(members, 64), np.arange(len(members)))
        result[key] = aggregate
    return result


def exact_parts(aggregate: WindowAggregate) -> dict[str, Any]:
    """What must match exactly (means and variances may differ by float rounding)."""
    data = aggregate.to_dict()
    return {
        "count": data["count"],
        "errors": data["errors"],
        "error_types": data["error_types"],
        "latency": data["latency"],
        "latency_min_max": data["latency_moments"][3:],
        "plan": data["features"]["plan"]["cat"],
        "amount_n": data["features"]["amount"]["num"][0],
        "late": data["late"],
    }


def assert_windows_exact(
    client: StreamwatchClient, stream: KnownStream, on_timeout: Callable[[], str]
) -> int:
    """Wait until every window of the stream is closed in Redis; assert each equals the exact one.

    Returns:
        The number of windows compared.
    """
    want = exact_windows(stream.events)
    end_ms = stream.start_ms + SECONDS * 1_000

    def stored() -> dict[WindowId, Any]:
        return {
            (model, size, window.start_ms): window
            for model in MODELS
            for size in SIZES_MS
            for window in client.windows(model, "1", size, limit=100, include_open=True)
            if window.start_ms < end_ms  # not the closers' windows
        }

    def all_closed() -> dict[WindowId, Any] | None:
        windows = stored()
        done = set(windows) == set(want) and all(w.closed for w in windows.values())
        return windows if done else None

    def explain() -> str:
        windows = stored()
        open_ = sorted(k for k, w in windows.items() if not w.closed)
        return (
            f"missing {sorted(set(want) - set(windows))[:5]}, extra"
            f" {sorted(set(windows) - set(want))[:5]}, open {open_[:5]}\n{on_timeout()}"
        )

    windows = wait_for(all_closed, 60, "every window to close in Redis", on_timeout=explain)
    differing = [k for k, w in windows.items() if exact_parts(w.aggregate) != exact_parts(want[k])]
    if differing:
        key = differing[0]
        raise AssertionError(
            f"{len(differing)} of {len(want)} windows differ from the produced events, e.g."
            f" {key}: stored {exact_parts(windows[key].aggregate)['count']} events,"
            f" produced {exact_parts(want[key])['count']}"
        )
    counted = sum(w.aggregate.count for (_, size, _), w in windows.items() if size == 1_000)
    assert counted == len(stream.events)
    return len(want)
