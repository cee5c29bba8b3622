"""One partition's monitoring state machine: raw messages in, window updates and alerts out.

:class:`PartitionProcessor` owns everything derived from one partition number of the input topics
(inference, feedback and business are co-partitioned by model id): the open windows, the
watermark, the next offset to apply per topic, the firing alerts and the counters. A step takes a
batch of raw messages (or a clock tick) and returns a :class:`StepResult` that the I/O edge
persists atomically. It performs no I/O itself.

Exactness rests on two rules: a message at an offset below the checkpointed next offset is
skipped (so replays after a crash change nothing), and lateness is decided per event against the
watermark just before it (so results do not depend on how messages happened to be batched).
Only inference events advance the watermark; business and feedback events are attributed to
their event-time window while it is open and counted as late otherwise.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import orjson

from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.columns import EventColumns
from streamwatch.core.decode import REASON_FUTURE_TIMESTAMP, EventDecoder, Reject
from streamwatch.core.rules import AlertEngine, ClosedWindow, ThresholdRule
from streamwatch.core.summary import window_metrics
from streamwatch.core.windows import (
    first_open_start_ms,
    late_mask,
    running_watermark_ms,
    window_start_ms,
    window_starts_ms,
)
from streamwatch.events import (
    AlertEvent,
    BusinessEvent,
    DeadLetterEvent,
    DeadLetterSource,
    FeedbackEvent,
    InferenceEvent,
)
from streamwatch.exceptions import StateFormatError

CHECKPOINT_FORMAT_VERSION = 1
#: Version under which business/feedback events without ``model_version`` are aggregated.
ANY_VERSION = "*"
#: Dead-letter records keep at most this much of the original message.
MAX_DEADLETTER_ORIGINAL_BYTES = 256 * 1024
_NO_WATERMARK = -(2**62)

TopicKind = Literal["inference", "feedback", "business"]
SideEvent = TypeVar("SideEvent", BusinessEvent, FeedbackEvent)
WindowKey = tuple[str, str, int, int]
"""(model_id, model_version, size_ms, start_ms)."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One Kafka record as the edge received it."""

    topic: str
    kind: TopicKind
    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """The part of the settings the pure core needs."""

    window_sizes_ms: tuple[int, ...]
    allowed_lateness_ms: int
    idle_timeout_ms: int
    max_future_skew_ms: int
    rules: tuple[ThresholdRule, ...]
    max_categories: int = 64
    max_features: int = 64


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """A window whose stored value changed in this step."""

    key: WindowKey
    aggregate: WindowAggregate
    closed: bool


@dataclass(slots=True)
class StepResult:
    """Everything one step asks the edge to persist and publish, in this order.

    Publish ``deadletters`` and ``alerts`` first, then write ``windows`` and ``checkpoint`` in one
    atomic transaction: a crash in between replays the step, which re-publishes the same
    (deterministically identified) records and rewrites the same absolute values.
    """

    windows: list[WindowUpdate] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    deadletters: list[DeadLetterEvent] = field(default_factory=list)
    checkpoint: dict[str, Any] = field(default_factory=dict)


class PartitionProcessor:
    """Monitoring state of one partition number; see the module docstring."""

    def __init__(self, partition: int, config: ProcessorConfig) -> None:
        """Create an empty processor (a partition never seen before)."""
        self.partition = partition
        self._config = config
        self._decoders: dict[str, EventDecoder[Any]] = {
            "inference": EventDecoder(InferenceEvent),
            "feedback": EventDecoder(FeedbackEvent),
            "business": EventDecoder(BusinessEvent),
        }
        self._engine = AlertEngine(config.rules, min(config.window_sizes_ms))
        self._windows: dict[WindowKey, WindowAggregate] = {}
        self._next_offsets: dict[str, int] = {}
        self._watermark_ms = _NO_WATERMARK
        self._watermark_at_last_event_ms = _NO_WATERMARK
        self._last_event_wall_ms = 0
        self._counters: dict[str, int] = {}
        self._deadletters: dict[str, int] = {}

    # -- state -------------------------------------------------------------------------------

    @property
    def watermark_ms(self) -> int | None:
        """Largest inference event time seen (advanced by the idle timeout); None before any."""
        return None if self._watermark_ms == _NO_WATERMARK else self._watermark_ms

    @property
    def open_windows(self) -> dict[WindowKey, WindowAggregate]:
        """The windows not yet closed, by key."""
        return self._windows

    @property
    def counters(self) -> dict[str, int]:
        """Totals since the partition was first seen: events, late events, replays skipped."""
        return dict(self._counters)

    @property
    def deadletter_counts(self) -> dict[str, int]:
        """Dead-lettered messages/events by reason code."""
        return dict(self._deadletters)

    def checkpoint(self) -> dict[str, Any]:
        """Return the partition's metadata; with the open windows it restores the processor."""
        return {
            "fmt": CHECKPOINT_FORMAT_VERSION,
            "partition": self.partition,
            "next_offsets": dict(self._next_offsets),
            "watermark_ms": self._watermark_ms,
            "watermark_at_last_event_ms": self._watermark_at_last_event_ms,
            "last_event_wall_ms": self._last_event_wall_ms,
            "open": [list(key) for key in self._windows],
            "alerts": self._engine.to_state(),
            "counters": dict(self._counters),
            "deadletters": dict(self._deadletters),
        }

    @classmethod
    def restore(
        cls,
        partition: int,
        config: ProcessorConfig,
        meta: dict[str, Any],
        windows: dict[WindowKey, WindowAggregate],
    ) -> PartitionProcessor:
        """Rebuild a processor from :meth:`checkpoint` output and its open windows.

        Raises:
            StateFormatError: If the checkpoint has another format version.
        """
        if meta.get("fmt") != CHECKPOINT_FORMAT_VERSION:
            raise StateFormatError(
                f"partition {partition} checkpoint format {meta.get('fmt')!r} is not"
                f" {CHECKPOINT_FORMAT_VERSION}; delete it and restart the worker"
            )
        processor = cls(partition, config)
        processor._next_offsets = {k: int(v) for k, v in meta["next_offsets"].items()}
        processor._watermark_ms = int(meta["watermark_ms"])
        processor._watermark_at_last_event_ms = int(meta["watermark_at_last_event_ms"])
        processor._last_event_wall_ms = int(meta["last_event_wall_ms"])
        processor._engine.restore(meta["alerts"])
        processor._counters = dict(meta["counters"])
        processor._deadletters = dict(meta["deadletters"])
        for raw_key in meta["open"]:
            key: WindowKey = (str(raw_key[0]), str(raw_key[1]), int(raw_key[2]), int(raw_key[3]))
            aggregate = windows.get(key)
            if aggregate is None:
                raise StateFormatError(
                    f"partition {partition} checkpoint lists open window {key} but its state is"
                    " missing; delete the partition checkpoint and restart the worker"
                )
            processor._windows[key] = aggregate
        return processor

    # -- steps -------------------------------------------------------------------------------

    def process(self, messages: Iterable[RawMessage], now_wall_ms: int) -> StepResult:
        """Apply a batch of messages (skipping any already applied) and close due windows."""
        inference: list[InferenceEvent] = []
        business: list[BusinessEvent] = []
        feedback: list[FeedbackEvent] = []
        result = StepResult()
        future_limit_ms = now_wall_ms + self._config.max_future_skew_ms
        for message in messages:
            next_offset = self._next_offsets.get(message.topic)
            if next_offset is not None and message.offset < next_offset:
                self._count("replayed_messages_skipped")
                continue
            self._next_offsets[message.topic] = message.offset + 1
            self._count(f"{message.kind}_messages")
            events, rejects = self._decoders[message.kind].decode(message.value)
            for event in events:
                if event.timestamp_ms > future_limit_ms:
                    rejects.append(_future_reject(event, future_limit_ms))
                elif message.kind == "inference":
                    inference.append(event)
                elif message.kind == "business":
                    business.append(event)
                else:
                    feedback.append(event)
            for reject in rejects:
                result.deadletters.append(self._deadletter(message, reject, now_wall_ms))
        touched: set[WindowKey] = set()
        watermark_at_step_start = self._watermark_ms
        if inference:
            self._apply_inference(inference, touched)
            self._last_event_wall_ms = now_wall_ms
            self._watermark_at_last_event_ms = self._watermark_ms
        self._apply_business(business, watermark_at_step_start, touched)
        self._apply_feedback(feedback, watermark_at_step_start, touched)
        self._finish(result, touched, now_wall_ms)
        return result

    def tick(self, now_wall_ms: int) -> StepResult:
        """Advance event time while the partition is idle, closing windows of a quiet stream.

        After ``idle_timeout_ms`` without inference events, the watermark advances at wall-clock
        speed from where the last event left it, so the last windows of a stream that stopped
        still close (a short window soon, an hour window after an hour).
        """
        result = StepResult()
        idle_ms = now_wall_ms - self._last_event_wall_ms
        if self._windows and idle_ms >= self._config.idle_timeout_ms:
            advanced = self._watermark_at_last_event_ms + idle_ms
            if advanced > self._watermark_ms:
                self._watermark_ms = advanced
        self._finish(result, set(), now_wall_ms)
        return result

    # -- internals ---------------------------------------------------------------------------

    def _apply_inference(self, events: Sequence[InferenceEvent], touched: set[WindowKey]) -> None:
        config = self._config
        columns = EventColumns.from_events(events, config.max_features)
        ts = columns.event_ts_ms
        watermark_before = running_watermark_ms(ts, self._watermark_ms)
        code_of: dict[tuple[str, str], int] = {}
        codes = np.fromiter(
            (code_of.setdefault((e.model_id, e.model_version), len(code_of)) for e in events),
            dtype=np.int64,
            count=len(events),
        )
        models = list(code_of)
        self._count("inference_events", len(events))
        for size in config.window_sizes_ms:
            late = late_mask(ts, watermark_before, size, config.allowed_lateness_ms)
            starts = window_starts_ms(ts, size)
            on_time = np.flatnonzero(~late)
            if on_time.size:
                order = on_time[np.lexsort((starts[on_time], codes[on_time]))]
                sorted_codes, sorted_starts = codes[order], starts[order]
                cuts = np.flatnonzero((np.diff(sorted_codes) != 0) | (np.diff(sorted_starts) != 0))
                for group in np.split(order, cuts + 1):
                    first = int(group[0])
                    model_id, version = models[int(codes[first])]
                    key = (model_id, version, size, int(starts[first]))
                    self._window(key).add_columns(columns, group)
                    touched.add(key)
            for i in np.flatnonzero(late):
                model_id, version = models[int(codes[i])]
                key = (model_id, version, size, window_start_ms(int(watermark_before[i]), size))
                self._window(key).late_events += 1
                touched.add(key)
                self._count(f"late_events_{size}ms")
        self._watermark_ms = max(self._watermark_ms, int(ts.max()))

    def _business_key(
        self, model_id: str, version: str | None, size: int, ts_ms: int, watermark_ms: int
    ) -> tuple[WindowKey, bool]:
        """Return the window for a business/feedback event and whether it is late."""
        version = version or ANY_VERSION
        start = window_start_ms(ts_ms, size)
        if watermark_ms != _NO_WATERMARK:
            frontier = first_open_start_ms(watermark_ms, size, self._config.allowed_lateness_ms)
            if start < frontier:
                return (model_id, version, size, window_start_ms(watermark_ms, size)), True
        return (model_id, version, size, start), False

    def _apply_business(
        self, events: Sequence[BusinessEvent], watermark_ms: int, touched: set[WindowKey]
    ) -> None:
        def add(window: WindowAggregate, event: BusinessEvent) -> None:
            window.add_business(event.kind, event.value, event.timestamp_ms)

        self._apply_side_events("business_events", events, watermark_ms, touched, add)

    def _apply_feedback(
        self, events: Sequence[FeedbackEvent], watermark_ms: int, touched: set[WindowKey]
    ) -> None:
        def add(window: WindowAggregate, _: FeedbackEvent) -> None:
            window.feedback_count += 1

        self._apply_side_events("feedback_events", events, watermark_ms, touched, add)

    def _apply_side_events(
        self,
        counter: str,
        events: Sequence[SideEvent],
        watermark_ms: int,
        touched: set[WindowKey],
        add: Callable[[WindowAggregate, SideEvent], None],
    ) -> None:
        """Attribute business/feedback events to their open windows, or count them late."""
        if events:
            self._count(counter, len(events))
        for event in events:
            ts = event.timestamp_ms
            for size in self._config.window_sizes_ms:
                key, late = self._business_key(
                    event.model_id, event.model_version, size, ts, watermark_ms
                )
                window = self._window(key)
                if late:
                    window.late_events += 1
                else:
                    add(window, event)
                touched.add(key)

    def _window(self, key: WindowKey) -> WindowAggregate:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = WindowAggregate(
                max_categories=self._config.max_categories
            )
        return window

    def _finish(self, result: StepResult, touched: set[WindowKey], now_wall_ms: int) -> None:
        lateness = self._config.allowed_lateness_ms
        due = sorted(
            (k for k in self._windows if k[3] + k[2] + lateness <= self._watermark_ms),
            key=lambda k: (k[3], k[2], k[0], k[1]),
        )
        for key in due:
            aggregate = self._windows.pop(key)
            touched.discard(key)
            result.windows.append(WindowUpdate(key, aggregate, closed=True))
            model_id, version, size, start = key
            metrics = window_metrics(aggregate, size, start, closed=True)
            window = ClosedWindow(model_id, version, size, start, metrics)
            result.alerts.extend(self._engine.evaluate(window, now_wall_ms))
            self._count("windows_closed")
        for key in sorted(touched):
            result.windows.append(WindowUpdate(key, self._windows[key], closed=False))
        self._count("alerts_emitted", len(result.alerts))
        result.checkpoint = self.checkpoint()

    def _count(self, name: str, n: int = 1) -> None:
        if n:
            self._counters[name] = self._counters.get(name, 0) + n

    def _deadletter(self, message: RawMessage, reject: Reject, now_wall_ms: int) -> DeadLetterEvent:
        self._deadletters[reject.reason] = self._deadletters.get(reject.reason, 0) + 1
        original = reject.original[:MAX_DEADLETTER_ORIGINAL_BYTES]
        return DeadLetterEvent(
            reason=reject.reason,
            detail=reject.detail,
            source=DeadLetterSource(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                batch_index=reject.batch_index,
            ),
            original_b64=base64.b64encode(original).decode("ascii"),
            original_truncated=len(reject.original) > MAX_DEADLETTER_ORIGINAL_BYTES,
            received_at_ms=now_wall_ms,
        )


def _future_reject(event: Any, limit_ms: int) -> Reject:
    # No batch index: the decoder returns only the valid events, so their position in the
    # original batch is not known here; the detail names the request instead.
    request = getattr(event, "request_id", None)
    return Reject(
        REASON_FUTURE_TIMESTAMP,
        f"event {request or ''} time {event.timestamp_ms} ms is after the allowed limit"
        f" {limit_ms} ms (wall clock + STREAMWATCH_MAX_FUTURE_SKEW); check the producer's clock",
        orjson.dumps(event.model_dump(mode="json")),
    )
