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

Memory is bounded per partition: at most ``max_models`` (model, version) series hold state (the
events of further new series are dead-lettered as ``too_many_models``; a series silent for
longer than its state can live gives its place up), each tracks at most ``max_features``
feature and stage names (further names' values are counted in ``features_over_limit`` /
``stages_over_limit``), categories are folded into ``__other__`` beyond ``max_categories`` per
window, and pending predictions and detector series have their own caps.

On top of the windows it keeps the model-quality state: predictions waiting for their labels
(joined by ``request_id``, scored in the *prediction's* window), online drift detectors per
series, and the drift of each closed window against the model's baseline (or the windows being
adopted as one). Baselines themselves are shared, read-only input from the edge.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, Literal, TypeVar

import numpy as np

from streamwatch.core.absence import AbsenceRule, AbsenceWatch
from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.baseline import BaselineBuilder, BaselineProfile
from streamwatch.core.columns import (
    BoolArray,
    EventColumns,
    InferenceBatch,
    IntArray,
    NameLimit,
)
from streamwatch.core.decode import REASON_TOO_MANY_MODELS, Reject, encode_original
from streamwatch.core.detector_feed import DetectorFeed
from streamwatch.core.drift import DriftPolicy, FeatureDrift
from streamwatch.core.fast_decode import DecodedStep, InferenceDecoder
from streamwatch.core.identity import fingerprint
from streamwatch.core.inhibition import InhibitRule, apply_inhibitions
from streamwatch.core.labels import Judged, LabelWindow, PendingPredictions, judge_all
from streamwatch.core.ledger import DayLedger
from streamwatch.core.rules import (
    AlertEngine,
    ClosedWindow,
    DetectorRule,
    ThresholdRule,
    drift_cause,
)
from streamwatch.core.side_decode import DecodedSide, SideBatch, SideDecoder
from streamwatch.core.summary import segment_metrics, window_metrics
from streamwatch.core.window_drift import assess_window, drift_metrics, root_cause
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
    DriftCause,
    FeedbackEvent,
    WindowRef,
)
from streamwatch.exceptions import StateFormatError

CHECKPOINT_FORMAT_VERSION = 4
#: Version under which business/feedback events without ``model_version`` are aggregated.
ANY_VERSION = "*"
#: Dead-letter records keep at most this much of the original message.
MAX_DEADLETTER_ORIGINAL_BYTES = 256 * 1024
_NO_WATERMARK = -(2**62)

TopicKind = Literal["inference", "feedback", "business"]
WindowKey = tuple[str, str, int, int]
"""(model_id, model_version, size_ms, start_ms)."""
ModelKey = tuple[str, str]
"""(model_id, model_version)."""
Baselines = Mapping[ModelKey, BaselineProfile]


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
    detectors: tuple[DetectorRule, ...] = ()
    absence: tuple[AbsenceRule, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()
    label_horizon_ms: int = 3_600_000
    label_min_coverage: float = 0.8
    label_wait_ms: int = 60_000
    max_pending_labels: int = 200_000
    baseline_auto_windows: int = 0
    drift_policy: DriftPolicy = field(default_factory=DriftPolicy)
    max_detector_series: int = 10_000
    ledger_window_ms: int | None = None
    """Window size whose closes feed the daily/weekly summaries (None: no summaries)."""
    max_models: int = 1_000
    """(model, version) series holding state per partition; new ones beyond are dead-lettered."""
    max_message_bytes: int = 8 << 20
    """Larger messages are dead-lettered as ``payload_too_large`` without being parsed."""
    max_batch_events: int = 10_000
    """Messages with more events are dead-lettered whole as ``too_many_events``."""

    @property
    def series_retention_ms(self) -> int:
        """Event time after its last event for which a series' state may still be needed.

        Its largest window closes (plus lateness), its label windows finalise (the label
        horizon) and absence rules forget it; future skew covers event time running ahead of
        the watermark. After that, a series no longer counts against ``max_models``.
        """
        forget_ms = max((rule.forget_after_ms for rule in self.absence), default=0)
        windows_ms = (
            max(self.window_sizes_ms)
            + self.allowed_lateness_ms
            + self.label_horizon_ms
            + self.max_future_skew_ms
        )
        return max(windows_ms, forget_ms)


@dataclass(slots=True)
class _Series:
    """What a partition keeps per tracked (model, version) besides its windows."""

    last_seen_ms: int
    """The partition's series clock at the series' latest event."""
    features: NameLimit
    stages: NameLimit


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """A window whose stored value changed in this step."""

    key: WindowKey
    aggregate: WindowAggregate
    closed: bool
    drift: tuple[FeatureDrift, ...] = ()
    """For a window closing in this step: its drift against the baseline, as judged then."""


@dataclass(frozen=True, slots=True)
class LabelUpdate:
    """Label outcomes of a prediction window that changed in this step."""

    key: WindowKey
    window: LabelWindow
    final: bool


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
    labels: list[LabelUpdate] = field(default_factory=list)
    pending_chunk: tuple[int, dict[str, Any]] | None = None
    """The step's changes to the predictions awaiting labels (see :class:`PendingChanges`)."""
    pending_dropped: list[int] = field(default_factory=list)
    """Stored pending chunks no longer needed."""
    builders: dict[ModelKey, BaselineBuilder | None] = field(default_factory=dict)
    """Baseline adoption state that changed (None: finished, delete it)."""
    detectors: dict[str, str] = field(default_factory=dict)
    """Detector monitors fed in this step, serialised, by joined series key."""
    detectors_removed: list[str] = field(default_factory=list)
    """Detector monitors freed in this step (their series went away)."""
    adopted: list[BaselineProfile] = field(default_factory=list)
    ledger_days: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Day summaries that changed, by ledger field."""
    ledger_removed: list[str] = field(default_factory=list)

    @property
    def changed_state(self) -> bool:
        """Whether the step changed anything stored besides the checkpoint's clock fields."""
        return bool(
            self.windows
            or self.alerts
            or self.deadletters
            or self.labels
            or self.pending_chunk is not None
            or self.pending_dropped
            or self.builders
            or self.adopted
            or self.detectors
            or self.detectors_removed
            or self.ledger_days
            or self.ledger_removed
        )


class PartitionProcessor:
    """Monitoring state of one partition number; see the module docstring."""

    def __init__(
        self,
        partition: int,
        config: ProcessorConfig,
        baselines: MutableMapping[ModelKey, BaselineProfile] | None = None,
    ) -> None:
        """Create an empty processor (a partition never seen before).

        Args:
            partition: The partition number it owns.
            config: The core's configuration.
            baselines: Profiles by (model, version), shared with the edge that refreshes them;
                a profile this processor adopts is added to it.
        """
        self.partition = partition
        self._config = config
        self._inference = InferenceDecoder(config.max_message_bytes, config.max_batch_events)
        self._business = SideDecoder(
            BusinessEvent, config.max_message_bytes, config.max_batch_events
        )
        self._feedback = SideDecoder(
            FeedbackEvent, config.max_message_bytes, config.max_batch_events
        )
        smallest_ms = min(config.window_sizes_ms)
        self._engine = AlertEngine(config.rules, smallest_ms)
        self._baselines: MutableMapping[ModelKey, BaselineProfile] = (
            baselines if baselines is not None else {}
        )
        self._windows: dict[WindowKey, WindowAggregate] = {}
        self._labels: dict[WindowKey, LabelWindow] = {}
        self._pending = PendingPredictions(config.label_horizon_ms, config.max_pending_labels)
        self._builders: dict[ModelKey, BaselineBuilder] = {}
        self._detectors = DetectorFeed(config.detectors, smallest_ms, config.max_detector_series)
        self._absence = AbsenceWatch(config.absence, smallest_ms)
        # Summaries wait for late windows and final labels: lateness + the label horizon.
        self._ledger = DayLedger(config.allowed_lateness_ms + config.label_horizon_ms)
        self._next_offsets: dict[str, int] = {}
        self._watermark_ms = _NO_WATERMARK
        self._watermark_at_last_event_ms = _NO_WATERMARK
        self._last_event_wall_ms = 0
        self._counters: dict[str, int] = {}
        self._deadletters: dict[str, int] = {}
        # Tracked series, least recently seen first; the clock is the largest event time of
        # any admitted event (inference or not), so admission depends on the events alone.
        self._series: dict[ModelKey, _Series] = {}
        self._series_clock_ms = _NO_WATERMARK
        self._series_retention_ms = config.series_retention_ms

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
    def label_windows(self) -> dict[WindowKey, LabelWindow]:
        """Prediction windows still inside the label horizon, by key."""
        return self._labels

    @property
    def pending_predictions(self) -> PendingPredictions:
        """Predictions waiting for their label."""
        return self._pending

    @property
    def counters(self) -> dict[str, int]:
        """Totals since the partition was first seen: events, late events, replays skipped.

        Drops at the state limits are here too: ``features_over_limit`` / ``stages_over_limit``
        (values of names beyond ``max_features`` for their model), ``series_evicted`` (series
        silent past their retention that gave their place to a new one),
        ``label_join_evicted`` (predictions beyond ``max_pending_labels``) and
        ``detector_feeds_unwatched`` (series beyond ``max_detector_series``); events refused
        for ``max_models`` are dead-lettered as ``too_many_models``.
        """
        return dict(self._counters)

    @property
    def tracked_series(self) -> list[ModelKey]:
        """The (model, version) series holding state, least recently seen first."""
        return list(self._series)

    def tracked_names(self, model_id: str, model_version: str) -> tuple[list[str], list[str]]:
        """Return the feature and stage names tracked for a series (empty if not tracked)."""
        series = self._series.get((model_id, model_version))
        if series is None:
            return [], []
        return list(series.features.names), list(series.stages.names)

    @property
    def deadletter_counts(self) -> dict[str, int]:
        """Dead-lettered messages/events by reason code."""
        return dict(self._deadletters)

    def baseline_for(self, model_id: str, model_version: str) -> BaselineProfile | None:
        """Return the model version's baseline, or the model's ``*`` baseline, or None."""
        return self._baselines.get((model_id, model_version)) or self._baselines.get(
            (model_id, ANY_VERSION)
        )

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
            "labels_open": [list(key) for key in self._labels],
            "adopting": [list(key) for key in self._builders],
            "alerts": self._engine.to_state(),
            "detector_alerts": self._detectors.alerts_state(),
            "absence": self._absence.to_state(),
            "ledger": self._ledger.to_state(),
            "counters": dict(self._counters),
            "deadletters": dict(self._deadletters),
            "series_clock_ms": self._series_clock_ms,
            "series": [[m, v, s.last_seen_ms] for (m, v), s in self._series.items()],
        }

    @classmethod
    def restore(
        cls,
        partition: int,
        config: ProcessorConfig,
        meta: dict[str, Any],
        windows: dict[WindowKey, WindowAggregate],
        *,
        labels: Mapping[WindowKey, LabelWindow] | None = None,
        builders: Mapping[ModelKey, BaselineBuilder] | None = None,
        pending: Mapping[int, dict[str, Any]] | None = None,
        detectors: Mapping[str, str] | None = None,
        ledger_days: Mapping[str, dict[str, Any]] | None = None,
        baselines: MutableMapping[ModelKey, BaselineProfile] | None = None,
    ) -> PartitionProcessor:
        """Rebuild a processor from :meth:`checkpoint` output and the state it lists.

        Raises:
            StateFormatError: If the checkpoint has another format version or lists state
                that is missing.
        """
        if meta.get("fmt") != CHECKPOINT_FORMAT_VERSION:
            raise StateFormatError(
                f"partition {partition} checkpoint format {meta.get('fmt')!r} is not"
                f" {CHECKPOINT_FORMAT_VERSION}; delete it and restart the worker"
            )
        processor = cls(partition, config, baselines)
        processor._next_offsets = {k: int(v) for k, v in meta["next_offsets"].items()}
        processor._watermark_ms = int(meta["watermark_ms"])
        processor._watermark_at_last_event_ms = int(meta["watermark_at_last_event_ms"])
        processor._last_event_wall_ms = int(meta["last_event_wall_ms"])
        processor._engine.restore(meta["alerts"])
        processor._detectors.restore(meta["detector_alerts"], dict(detectors or {}))
        processor._absence.restore(meta["absence"])
        processor._ledger.restore(ledger_days or {}, meta["ledger"])
        processor._counters = dict(meta["counters"])
        processor._count("detector_states_discarded", processor._detectors.discarded)
        processor._deadletters = dict(meta["deadletters"])
        processor._windows = _listed(partition, "open window", meta["open"], windows)
        processor._labels = _listed(partition, "label window", meta["labels_open"], labels or {})
        for raw in meta["adopting"]:
            key = (str(raw[0]), str(raw[1]))
            builder = (builders or {}).get(key)
            if builder is None:
                raise StateFormatError(
                    f"partition {partition} checkpoint lists a baseline adoption for {key} but"
                    " its state is missing; delete the partition checkpoint and restart"
                )
            processor._builders[key] = builder
        processor._pending.restore(pending or {})
        processor._restore_series(meta)
        return processor

    def _restore_series(self, meta: dict[str, Any]) -> None:
        """Rebuild the tracked series; their names are those their open windows hold.

        Checkpoints written before series were tracked list none: the series of the open
        windows and label windows are tracked then, as last seen at the watermark.
        """
        clock = meta.get("series_clock_ms")
        self._series_clock_ms = int(clock) if clock is not None else self._watermark_ms
        raw = meta.get("series")
        if raw is None:
            keys = sorted({(k[0], k[1]) for k in (*self._windows, *self._labels)})
            raw = [[m, v, self._watermark_ms] for m, v in keys]
        limit = self._config.max_features
        for model_id, version, last_seen_ms in raw:
            if len(self._series) >= self._config.max_models:
                break
            self._series[(str(model_id), str(version))] = _Series(
                int(last_seen_ms), NameLimit(limit), NameLimit(limit)
            )
        for key in sorted(self._windows, key=lambda k: (k[3], k[2])):
            series = self._series.get((key[0], key[1]))
            if series is not None:
                window = self._windows[key]
                for name in window.features:
                    series.features.admit(name)
                for name in window.stages_ms:
                    series.stages.admit(name)
        for series in self._series.values():
            series.features.refused = series.stages.refused = 0

    # -- steps -------------------------------------------------------------------------------

    def process(self, messages: Iterable[RawMessage], now_wall_ms: int) -> StepResult:
        """Apply a batch of messages (skipping any already applied) and close due windows.

        Messages are decoded a kind at a time (:meth:`InferenceDecoder.decode_step`,
        :meth:`SideDecoder.decode_step`), so the columns of many small messages are built once;
        inference series are admitted before those of the step's business and feedback events.
        """
        inference: list[RawMessage] = []
        side: list[RawMessage] = []
        result = StepResult()
        future_limit_ms = now_wall_ms + self._config.max_future_skew_ms
        for message in messages:
            next_offset = self._next_offsets.get(message.topic)
            if next_offset is not None and message.offset < next_offset:
                self._count("replayed_messages_skipped")
                continue
            self._next_offsets[message.topic] = message.offset + 1
            (inference if message.kind == "inference" else side).append(message)
        # Counted once per step: single-event messages come thousands to a step.
        self._count("inference_messages", len(inference))
        batch: InferenceBatch | None = None
        groups: list[tuple[ModelKey, IntArray]] = []
        if inference:
            step = self._inference.decode_step(
                [m.value for m in inference], not_after_ms=future_limit_ms
            )
            batch, groups = self._admit_batch(step, inference, result, now_wall_ms)
        business, feedback = self._admit_side(side, future_limit_ms, result, now_wall_ms)
        touched: set[WindowKey] = set()
        labelled: set[WindowKey] = set()
        watermark_at_step_start = self._watermark_ms
        if batch is not None and batch.size:
            self._apply_inference(batch, groups, touched, result, now_wall_ms)
            self._last_event_wall_ms = now_wall_ms
            self._watermark_at_last_event_ms = self._watermark_ms
        self._apply_business(business, watermark_at_step_start, touched)
        unmatched = self._join_labels(feedback, labelled, result, now_wall_ms)
        self._apply_feedback(feedback, unmatched, watermark_at_step_start, touched)
        self._finish(result, touched, labelled, now_wall_ms)
        return result

    def restart_idle_clock(self, now_wall_ms: int) -> None:
        """Count the partition's idle time from ``now_wall_ms``.

        For when it could not receive events until now: just restored (the previous owner
        died a while ago and a backlog may be waiting), or the worker was stalled (a Redis
        outage). Idle time measured from before would advance event time over the backlog and
        make it late.
        """
        self._last_event_wall_ms = max(self._last_event_wall_ms, now_wall_ms)
        self._watermark_at_last_event_ms = self._watermark_ms

    def tick(self, now_wall_ms: int) -> StepResult:
        """Advance event time while the partition is idle, closing windows of a quiet stream.

        After ``idle_timeout_ms`` without inference events, the watermark advances at wall-clock
        speed from where the last event left it, so the last windows of a stream that stopped
        still close (a short window soon, an hour window after an hour).
        """
        result = StepResult()
        idle_ms = now_wall_ms - self._last_event_wall_ms
        busy = self._windows or self._labels or self._absence.watching
        if busy and idle_ms >= self._config.idle_timeout_ms:
            advanced = self._watermark_at_last_event_ms + idle_ms
            if advanced > self._watermark_ms:
                self._watermark_ms = advanced
        self._finish(result, set(), set(), now_wall_ms)
        return result

    # -- inference ---------------------------------------------------------------------------

    def _admit(self, model_id: str, version: str | None, ts_ms: int, result: StepResult) -> bool:
        """Track the event's series (unless ``max_models`` are tracked); return whether it is.

        A full table first gives up its least recently seen series if that one has been silent
        past :attr:`ProcessorConfig.series_retention_ms` (its windows are closed by then).
        """
        if ts_ms > self._series_clock_ms:
            self._series_clock_ms = ts_ms
        key = (model_id, version or ANY_VERSION)
        series = self._series.pop(key, None)
        if series is None:
            if len(self._series) >= self._config.max_models and not self._evict_one(result):
                return False
            limit = self._config.max_features
            series = _Series(self._series_clock_ms, NameLimit(limit), NameLimit(limit))
        series.last_seen_ms = self._series_clock_ms
        self._series[key] = series  # re-inserted last: the table stays in last-seen order
        return True

    def _evict_one(self, result: StepResult) -> bool:
        key, oldest = next(iter(self._series.items()))
        if self._series_clock_ms - oldest.last_seen_ms <= self._series_retention_ms:
            return False
        del self._series[key]
        if self._builders.pop(key, None) is not None:
            result.builders[key] = None  # an adoption that stalled for that long starts over
        # Its alerts would never be judged again, its monitors never fed: let them go.
        result.alerts.extend(self._engine.forget_model(*key, self._last_event_wall_ms))
        result.detectors_removed.extend(self._detectors.forget(*key))
        self._count("series_evicted")
        return True

    def _admit_batch(
        self,
        step: DecodedStep,
        messages: Sequence[RawMessage],
        result: StepResult,
        now_wall_ms: int,
    ) -> tuple[InferenceBatch, list[tuple[ModelKey, IntArray]]]:
        """Admit the series of a step's inference events; dead-letter the rest and the rejects.

        The outcome is that of admitting the events one by one, whatever the batching; it is
        only computed that way when a series not tracked yet appears.
        """
        batch = step.batch
        rejects = [list(r) for r in step.rejects]
        n = batch.size
        refused_rows: list[int] = []
        groups = _model_groups(batch) if n else []
        if any(key not in self._series for key, _ in groups):
            # A new series may need a place: decide event by event, as the table changes.
            times = batch.columns.event_ts_ms.tolist()
            for i, key in enumerate(zip(batch.model_id, batch.model_version, strict=True)):
                if not self._admit(key[0], key[1], times[i], result):
                    refused_rows.append(i)
        elif groups:
            # Every series is tracked: only their clocks and order change.
            clock = np.maximum.accumulate(batch.columns.event_ts_ms)
            np.maximum(clock, self._series_clock_ms, out=clock)
            for last, key in sorted((int(rows[-1]), key) for key, rows in groups):
                series = self._series.pop(key)
                series.last_seen_ms = int(clock[last])
                self._series[key] = series
            self._series_clock_ms = int(clock[-1])
        if refused_rows:
            for i in refused_rows:
                rejects[step.message_of[i]].append(
                    _too_many_models_reject(
                        batch.model_id[i],
                        batch.model_version[i],
                        batch.row(i),
                        batch.positions[i],
                        self._config,
                    )
                )
            keep = np.ones(n, dtype=np.bool_)
            keep[refused_rows] = False
            batch = batch.take(np.flatnonzero(keep))
            groups = _model_groups(batch) if batch.size else []
        for message, message_rejects in zip(messages, rejects, strict=True):
            if refused_rows:
                message_rejects.sort(key=_reject_order)
            for reject in message_rejects:
                result.deadletters.append(self._deadletter(message, reject, now_wall_ms))
        return batch, groups

    def _admit_side(
        self,
        messages: Sequence[RawMessage],
        not_after_ms: int,
        result: StepResult,
        now_wall_ms: int,
    ) -> tuple[SideBatch, SideBatch]:
        """Decode business and feedback messages and admit their series; dead-letter the rest.

        Returns the admitted business and feedback events. As for inference, the outcome is
        that of admitting the events one by one, in message order.
        """
        decoders: dict[str, SideDecoder[Any]] = {
            "business": self._business,
            "feedback": self._feedback,
        }
        decoded: dict[str, DecodedSide] = {}
        for kind, decoder in decoders.items():
            values = [m.value for m in messages if m.kind == kind]
            self._count(f"{kind}_messages", len(values))
            decoded[kind] = decoder.decode_step(values, not_after_ms)
        # Each message's (kind, index among its kind, first row, end row).
        spans: list[tuple[str, int, int, int]] = []
        seen = dict.fromkeys(decoders, 0)
        for message in messages:
            kind = message.kind
            j = seen[kind]
            seen[kind] += 1
            starts = decoded[kind].starts
            spans.append((kind, j, starts[j], starts[j + 1]))
        keys = {kind: _series_keys(d.batch) for kind, d in decoded.items()}
        if all(seen.values()):  # both kinds: admit in message order
            ordered = list(chain.from_iterable(keys[k][lo:hi] for k, _, lo, hi in spans))
            times = np.concatenate(
                [decoded[k].batch.ts_ms[lo:hi] for k, _, lo, hi in spans]
            ).astype(np.int64, copy=False)
        else:
            kind = "business" if seen["business"] else "feedback"
            ordered, times = keys[kind], decoded[kind].batch.ts_ms
        refused = self._admit_rows(ordered, times, result)
        rejects = {kind: [list(r) for r in d.rejects] for kind, d in decoded.items()}
        kept = {kind: d.batch for kind, d in decoded.items()}
        if refused:
            # Rows are admitted in message order: find each refused one's message and row.
            owner = [(at, row) for at, (_, _, lo, hi) in enumerate(spans) for row in range(lo, hi)]
            dropped: dict[str, list[int]] = {kind: [] for kind in decoders}
            refused_in: set[int] = set()
            for at, row in map(owner.__getitem__, refused):
                kind, j, _, _ = spans[at]
                batch = decoded[kind].batch
                rejects[kind][j].append(
                    _too_many_models_reject(
                        batch.model_id[row],
                        batch.model_version[row],
                        decoders[kind].dump(batch.sources[row]),
                        batch.positions[row],
                        self._config,
                    )
                )
                dropped[kind].append(row)
                refused_in.add(at)
            for at in refused_in:
                kind, j, _, _ = spans[at]
                rejects[kind][j].sort(key=_reject_order)
            for kind, rows in dropped.items():
                if rows:
                    keep = np.ones(kept[kind].size, dtype=np.bool_)
                    keep[rows] = False
                    kept[kind] = kept[kind].take(np.flatnonzero(keep))
        for message, (kind, j, _, _) in zip(messages, spans, strict=True):
            for reject in rejects[kind][j]:
                result.deadletters.append(self._deadletter(message, reject, now_wall_ms))
        return kept["business"], kept["feedback"]

    def _admit_rows(
        self, keys: list[ModelKey], times_ms: IntArray, result: StepResult
    ) -> list[int]:
        """Admit the series of events in order (:meth:`_admit`); return the rows refused."""
        if not keys:
            return []
        if any(key not in self._series for key in dict.fromkeys(keys)):
            # A new series may need a place: decide event by event, as the table changes.
            return [
                i
                for i, (key, ts_ms) in enumerate(zip(keys, times_ms.tolist(), strict=True))
                if not self._admit(key[0], key[1], ts_ms, result)
            ]
        # Every series is tracked: only their clocks and order change.
        clock = np.maximum.accumulate(times_ms)
        np.maximum(clock, self._series_clock_ms, out=clock)
        last_row = {key: i for i, key in enumerate(keys)}
        for key, i in sorted(last_row.items(), key=itemgetter(1)):
            series = self._series.pop(key)
            series.last_seen_ms = int(clock[i])
            self._series[key] = series
        self._series_clock_ms = int(clock[-1])
        return []

    def _apply_inference(
        self,
        batch: InferenceBatch,
        groups: list[tuple[ModelKey, IntArray]],
        touched: set[WindowKey],
        result: StepResult,
        now_wall_ms: int,
    ) -> None:
        config = self._config
        n = batch.size
        ts = batch.columns.event_ts_ms
        watermark_before = running_watermark_ms(ts, self._watermark_ms)
        self._count("inference_events", n)
        late = {
            size: late_mask(ts, watermark_before, size, config.allowed_lateness_ms)
            for size in config.window_sizes_ms
        }
        # Columns per model version: each has its own feature names, and a batch of many
        # models holds at most max_features feature columns per model at a time.
        per_model: list[tuple[ModelKey, EventColumns]] = []
        for key, rows in groups:
            series = self._series.get(key)
            if series is None:  # evicted later in the same step (event time leapt ahead)
                series = _Series(0, NameLimit(config.max_features), NameLimit(config.max_features))
            features_refused, stages_refused = series.features.refused, series.stages.refused
            columns = batch.columns if rows.size == n else batch.columns.take(rows)
            columns = columns.admitted(series.features, series.stages)
            self._count("features_over_limit", series.features.refused - features_refused)
            self._count("stages_over_limit", series.stages.refused - stages_refused)
            whole = _WholeBatch(columns)
            for size, late_at_size in late.items():
                self._add_to_windows(
                    key, size, columns, rows, late_at_size, watermark_before, touched, whole
                )
            per_model.append((key, columns))
        self._watermark_ms = max(self._watermark_ms, int(ts.max()))
        self._remember_predictions(batch)
        for (model_id, version), columns in per_model:
            last_ms = int(columns.event_ts_ms.max())
            result.alerts.extend(self._absence.seen(model_id, version, last_ms, now_wall_ms))
            baseline = self.baseline_for(model_id, version)
            result.alerts.extend(
                self._detectors.feed_inference(
                    model_id,
                    version,
                    columns,
                    np.arange(columns.size, dtype=np.int64),
                    baseline,
                    now_wall_ms,
                )
            )

    def _add_to_windows(
        self,
        model: ModelKey,
        size: int,
        columns: EventColumns,
        rows: IntArray,
        late: BoolArray,
        watermark_before: IntArray,
        touched: set[WindowKey],
        whole: _WholeBatch,
    ) -> None:
        """Add one model's events (``rows`` of the batch) to its windows of one size."""
        model_id, version = model
        late_here = late[rows]
        starts = window_starts_ms(columns.event_ts_ms, size)
        first, last = int(starts.min()), int(starts.max())
        any_late = bool(late_here.any())
        if first == last and not any_late:
            # The usual case: every event in one window of this size. The batch is aggregated
            # once and merged into its window of each size (merging equals adding).
            key = (model_id, version, size, first)
            self._window(key).merge(whole.aggregate())
            touched.add(key)
            return
        on_time = np.flatnonzero(~late_here)
        if on_time.size:
            ordered = on_time[np.argsort(starts[on_time], kind="stable")]
            cuts = np.flatnonzero(np.diff(starts[ordered])) + 1
            for group in np.split(ordered, cuts):
                key = (model_id, version, size, int(starts[group[0]]))
                self._window(key).add_columns(columns, group)
                touched.add(key)
        late_rows = rows[late_here]
        for row in late_rows.tolist():
            key = (model_id, version, size, window_start_ms(int(watermark_before[row]), size))
            self._window(key).late_events += 1
            touched.add(key)
        self._count(f"late_events_{size}ms", int(late_rows.size))

    def _remember_predictions(self, batch: InferenceBatch) -> None:
        columns = batch.columns
        replaced, evicted = self._pending.remember_many(
            batch.request_id,
            columns.event_ts_ms,
            batch.model_id,
            batch.model_version,
            columns.prediction_label,
            columns.prediction_value,
        )
        self._count("duplicate_request_ids", replaced)
        self._count("label_join_evicted", evicted)

    # -- business and feedback ---------------------------------------------------------------

    def _apply_business(
        self, events: SideBatch, watermark_ms: int, touched: set[WindowKey]
    ) -> None:
        if not events.size:
            return
        # Each window's values are added per kind at once: numpy on one value at a time cost
        # ~35 us per event (a recommender sends an impression per request).
        kinds, names = _codes(events.kind)
        values = events.value
        times = events.ts_ms
        for window, rows in self._side_windows("business_events", events, watermark_ms, touched):
            here = kinds[rows]
            present, first = np.unique(here, return_index=True)
            for code in present[np.argsort(first)].tolist():  # in order of first appearance
                at = rows[here == code]
                window.add_business_values(
                    names[code], values[at], int(times[at].min()), int(times[at].max())
                )

    def _apply_feedback(
        self,
        events: SideBatch,
        unmatched: BoolArray,
        watermark_ms: int,
        touched: set[WindowKey],
    ) -> None:
        if not events.size:
            return
        for window, rows in self._side_windows("feedback_events", events, watermark_ms, touched):
            window.feedback_count += int(rows.size)
            window.feedback_unmatched += int(unmatched[rows].sum())

    def _join_labels(
        self,
        events: SideBatch,
        labelled: set[WindowKey],
        result: StepResult,
        now_wall_ms: int,
    ) -> BoolArray:
        """Score each feedback's prediction in the prediction's windows.

        Returns:
            Which feedback events matched no remembered prediction.
        """
        n = events.size
        unmatched = np.ones(n, dtype=np.bool_)
        if not n:
            return unmatched
        taken = self._pending.take_many(events.request_id, events.model_id)
        matched = len(taken.rows)
        unmatched[taken.rows] = False
        self._count("feedback_unmatched", n - matched)
        self._count("feedback_matched", matched)
        if not matched:
            return unmatched
        verdicts = judge_all(
            [events.label[i] for i in taken.rows], taken.predicted_class, taken.predicted_value
        )
        series, keys = _codes(list(zip(taken.model_id, taken.model_version, strict=True)))
        recorded = np.zeros(matched, dtype=np.bool_)
        horizon = self._config.label_horizon_ms
        everything: Judged | None = None  # all the labels, summed once for every size
        for size in self._config.window_sizes_ms:
            starts = window_starts_ms(taken.event_ts_ms, size)
            for key, rows in _window_groups(series, keys, size, starts):
                label_window = self._labels.get(key)
                if label_window is None:
                    if key[3] + size + horizon <= self._watermark_ms:
                        # The window's labels are final and stored; never reopen them.
                        self._count(f"labels_after_horizon_{size}ms", int(rows.size))
                        continue
                    label_window = self._labels[key] = LabelWindow()
                if rows.size == matched:
                    everything = everything or verdicts.judged()
                    label_window.stats.record_judged(everything)
                else:
                    label_window.stats.record_judged(verdicts.judged(rows.tolist()))
                recorded[rows] = True
                labelled.add(key)
        correctness: dict[ModelKey, tuple[list[float], list[int]]] = {}
        feedback_ts_ms = events.ts_ms[taken.rows].tolist()
        for i, (correct, was_recorded) in enumerate(
            zip(verdicts.correct, recorded.tolist(), strict=True)
        ):
            if correct is not None and was_recorded:
                values, times = correctness.setdefault(keys[int(series[i])], ([], []))
                values.append(float(correct))
                times.append(feedback_ts_ms[i])
        for (model_id, version), (values, times) in correctness.items():
            result.alerts.extend(
                self._detectors.feed(
                    (model_id, version, "correctness", "correctness"),
                    np.array(values, dtype=np.float64),
                    np.array(times, dtype=np.int64),
                    self.baseline_for(model_id, version),
                    now_wall_ms,
                )
            )
        return unmatched

    def _side_windows(
        self,
        counter: str,
        events: SideBatch,
        watermark_ms: int,
        touched: set[WindowKey],
    ) -> Iterator[tuple[WindowAggregate, IntArray]]:
        """Attribute business/feedback events to their windows of every size.

        An event before the oldest open window of a size (the watermark's frontier) is late:
        it is counted in the watermark's window. Yields each window with the rows of ``events``
        on time for it, windows in order of their first event (as one event at a time would
        create them).
        """
        self._count(counter, events.size)
        series, keys = _codes(_series_keys(events))
        ts_ms = events.ts_ms
        lateness = self._config.allowed_lateness_ms
        for size in self._config.window_sizes_ms:
            starts = window_starts_ms(ts_ms, size)
            late = np.zeros(events.size, dtype=np.bool_)
            if watermark_ms != _NO_WATERMARK:
                late = starts < first_open_start_ms(watermark_ms, size, lateness)
                starts = np.where(late, window_start_ms(watermark_ms, size), starts)
            buckets = (starts - starts.min()) // size
            group_of = (series * (int(buckets.max()) + 1) + buckets) * 2 + late
            groups, first, inverse = np.unique(group_of, return_index=True, return_inverse=True)
            order = np.argsort(first)
            rows_of = np.split(
                np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1]
            )
            for g in order.tolist():
                row = int(first[g])
                model_id, version = keys[int(series[row])]
                key = (model_id, version, size, int(starts[row]))
                window = self._window(key)
                touched.add(key)
                rows = rows_of[g]
                if groups[g] & 1:
                    window.late_events += int(rows.size)
                else:
                    yield window, rows

    def _window(self, key: WindowKey) -> WindowAggregate:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = WindowAggregate(
                max_categories=self._config.max_categories
            )
        return window

    # -- closing -----------------------------------------------------------------------------

    def _finish(
        self,
        result: StepResult,
        touched: set[WindowKey],
        labelled: set[WindowKey],
        now_wall_ms: int,
    ) -> None:
        lateness = self._config.allowed_lateness_ms
        due = sorted(
            (k for k in self._windows if k[3] + k[2] + lateness <= self._watermark_ms),
            key=lambda k: (k[3], k[2], k[0], k[1]),
        )
        for key in due:
            aggregate = self._windows.pop(key)
            touched.discard(key)
            drift = self._close(key, aggregate, result, labelled, now_wall_ms)
            if key[2] == self._config.ledger_window_ms and (aggregate.count or aggregate.business):
                drifted = [f.feature for f in drift if f.drifted]
                self._ledger.window_closed(key[0], key[1], key[3], aggregate, drifted)
            result.windows.append(WindowUpdate(key, aggregate, closed=True, drift=drift))
            self._count("windows_closed")
        for key in sorted(touched):
            result.windows.append(WindowUpdate(key, self._windows[key], closed=False))
        self._judge_labels(result, labelled, now_wall_ms)
        if self._watermark_ms != _NO_WATERMARK:
            self._count("label_join_expired", self._pending.expire(self._watermark_ms))
            result.alerts.extend(self._detectors.resolve_due(self._watermark_ms, now_wall_ms))
            result.alerts.extend(self._absence.check(self._watermark_ms, now_wall_ms))
            self._engine.forget_history(
                self._watermark_ms, self._config.allowed_lateness_ms + self._config.label_horizon_ms
            )
        self._ledger.count_alerts(result.alerts)
        if self._watermark_ms != _NO_WATERMARK and self._config.ledger_window_ms is not None:
            result.alerts.extend(self._ledger.due(self._watermark_ms, now_wall_ms))
            self._ledger.prune(self._watermark_ms)
        result.ledger_days, result.ledger_removed = self._ledger.drain_changes()
        self._count("ledger_stale_updates", self._ledger.drain_stale())
        if result.alerts and self._config.inhibit:
            firing = [
                *self._engine.firing_refs(),
                *self._detectors.firing_refs(),
                *self._absence.firing_refs(),
            ]
            result.alerts = apply_inhibitions(result.alerts, firing, self._config.inhibit)
        pending = self._pending.drain_changes()
        if pending.chunk_id is not None and pending.chunk is not None:
            result.pending_chunk = (pending.chunk_id, pending.chunk)
        result.pending_dropped = pending.dropped
        self._count("detections", self._detectors.drain_detections())
        self._count("detector_feeds_unwatched", self._detectors.drain_unwatched())
        result.detectors = self._detectors.drain_monitor_changes()
        self._count("alerts_emitted", len(result.alerts))
        result.checkpoint = self.checkpoint()

    def _close(
        self,
        key: WindowKey,
        aggregate: WindowAggregate,
        result: StepResult,
        labelled: set[WindowKey],
        now_wall_ms: int,
    ) -> tuple[FeatureDrift, ...]:
        """Judge a closed window (drift, rules) and start waiting for its labels.

        Returns:
            The window's drift findings against its baseline, ranked (none without one).
        """
        model_id, version, size, start = key
        metrics = window_metrics(aggregate, size, start, closed=True)
        causes: tuple[DriftCause, ...] = ()
        findings: list[FeatureDrift] = []
        baseline = self.baseline_for(model_id, version)
        if baseline is not None and aggregate.count:
            findings = assess_window(baseline, aggregate, self._config.drift_policy)
            metrics.update(drift_metrics(findings, baseline, metrics))
            causes = tuple(drift_cause(f) for f in root_cause(findings))
        elif size == min(self._config.window_sizes_ms) and aggregate.count:
            self._adopt(model_id, version, aggregate, start, size, result, now_wall_ms)
        segments = {
            name: segment_metrics(stats, size) for name, stats in aggregate.segments.items()
        }
        window = ClosedWindow(
            model_id, version, size, start, metrics, drift=causes, segments=segments
        )
        result.alerts.extend(self._engine.evaluate(window, now_wall_ms))
        if aggregate.count:
            label_window = self._labels.get(key)
            if label_window is None:
                label_window = self._labels[key] = LabelWindow()
            label_window.predictions = aggregate.count
            label_window.drift = [c.model_dump(mode="json") for c in causes]
            # Stored now, so a restart knows the window's prediction count when labels come.
            labelled.add(key)
        return tuple(findings)

    def _adopt(
        self,
        model_id: str,
        version: str,
        aggregate: WindowAggregate,
        start_ms: int,
        size_ms: int,
        result: StepResult,
        now_wall_ms: int,
    ) -> None:
        """Fold a closed window into the model's adopted baseline; adopt it after N windows."""
        wanted = self._config.baseline_auto_windows
        if wanted <= 0:
            return
        key = (model_id, version)
        builder = self._builders.setdefault(key, BaselineBuilder())
        builder.add(aggregate, start_ms, size_ms)
        if builder.windows < wanted:
            result.builders[key] = builder
            return
        del self._builders[key]
        result.builders[key] = None
        profile = builder.profile(model_id, version, now_wall_ms)
        profile.version = 1
        self._baselines[key] = profile
        result.adopted.append(profile)
        result.alerts.append(_adopted_notice(profile, size_ms, now_wall_ms))
        self._count("baselines_adopted")

    def _judge_labels(self, result: StepResult, labelled: set[WindowKey], now_wall_ms: int) -> None:
        """Run label rules on windows whose labels are complete enough; retire old windows.

        A closed window is judged once ``label_min_coverage`` of its predictions have labels,
        or ``label_wait_ms`` after it closed, whichever comes first (with at least one label).
        Its stored label outcomes keep updating until the label horizon has passed.
        """
        horizon = self._config.label_horizon_ms
        coverage = self._config.label_min_coverage
        wait_ms = self._config.allowed_lateness_ms + self._config.label_wait_ms
        watermark = self._watermark_ms
        # Up to an hour of windows wait here; only those that may change state are ordered.
        due = [
            key
            for key, w in self._labels.items()
            if key[3] + key[2] + horizon <= watermark
            or (not w.evaluated and w.stats.labelled and w.predictions is not None)
        ]
        for key in sorted(due, key=lambda k: (k[3], k[2], k[0], k[1])):
            label_window = self._labels[key]
            model_id, version, size, start = key
            expired = start + size + horizon <= self._watermark_ms
            if label_window.predictions is None and not expired:
                continue
            settled = expired or start + size + wait_ms <= self._watermark_ms
            if (
                not label_window.evaluated
                and label_window.stats.labelled
                and (settled or label_window.coverage_reached(coverage))
            ):
                label_window.evaluated = True
                labelled.add(key)
                metrics: dict[str, Any] = dict(label_window.stats.metrics(label_window.predictions))
                metrics["count"] = label_window.stats.labelled
                baseline = self.baseline_for(model_id, version)
                accuracy = metrics.get("accuracy")
                if baseline is not None and baseline.accuracy is not None and accuracy is not None:
                    metrics["accuracy_vs_baseline"] = accuracy - baseline.accuracy
                causes = tuple(DriftCause.model_validate(c) for c in label_window.drift)
                window = ClosedWindow(
                    model_id, version, size, start, metrics, phase="labels", drift=causes
                )
                result.alerts.extend(self._engine.evaluate(window, now_wall_ms))
            if expired:
                del self._labels[key]
                if size == self._config.ledger_window_ms:
                    self._ledger.labels_final(model_id, version, start, label_window.stats)
                if label_window.stats.labelled or label_window.predictions is not None:
                    result.labels.append(LabelUpdate(key, label_window, final=True))
                labelled.discard(key)
        for key in sorted(labelled):
            result.labels.append(LabelUpdate(key, self._labels[key], final=False))

    # -- bookkeeping -------------------------------------------------------------------------

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


Stored = TypeVar("Stored")


def _listed(
    partition: int, what: str, raw_keys: list[list[Any]], stored: Mapping[WindowKey, Stored]
) -> dict[WindowKey, Stored]:
    """Return the stored values of the window keys a checkpoint lists, all of them."""
    result: dict[WindowKey, Stored] = {}
    for raw in raw_keys:
        key: WindowKey = (str(raw[0]), str(raw[1]), int(raw[2]), int(raw[3]))
        value = stored.get(key)
        if value is None:
            raise StateFormatError(
                f"partition {partition} checkpoint lists {what} {key} but its state is"
                " missing; delete the partition checkpoint and restart the worker"
            )
        result[key] = value
    return result


def _adopted_notice(profile: BaselineProfile, size_ms: int, now_wall_ms: int) -> AlertEvent:
    """An info event saying a model now compares against its own first windows."""
    first = profile.source
    fp = fingerprint("baseline_adopted", profile.model_id, profile.model_version, size_ms)
    start = int(profile.aggregate.first_event_ms or 0)
    end = int(profile.aggregate.last_event_ms or start) + 1
    return AlertEvent(
        alert_id=f"{fp}-{start}",
        fingerprint=fp,
        rule="baseline_adopted",
        severity="info",
        state="firing",
        model_id=profile.model_id,
        model_version=profile.model_version,
        metric="baseline_rows",
        value=float(profile.rows),
        threshold=None,
        window=WindowRef(size_ms=size_ms, start_ms=start, end_ms=end),
        message=(
            f"[INFO] baseline adopted for {profile.model_id}@{profile.model_version}: no"
            f" reference profile was stored, so drift is now measured against a profile"
            f" {first} ({profile.rows} events); build one from training data with"
            " 'streamwatch baseline build' to replace it"
        ),
        labels={"kind": "notice"},
        emitted_at_ms=now_wall_ms,
    )


def _too_many_models_reject(
    model_id: str,
    model_version: str | None,
    original: Any,
    position: int | None,
    config: ProcessorConfig,
) -> Reject:
    model = f"{model_id}@{model_version or ANY_VERSION}"
    return Reject(
        REASON_TOO_MANY_MODELS,
        f"{model} would be series {config.max_models + 1} on this partition; the limit is"
        f" {config.max_models} (STREAMWATCH_MAX_MODELS), and a series gives its place up"
        f" {config.series_retention_ms // 60_000} minutes (event time) after its last event."
        " Raise the limit, or check the producer for model ids or versions made per request",
        encode_original(original),
        position,
    )


class _WholeBatch:
    """One model's events of a step, aggregated on first use (for every window size)."""

    __slots__ = ("_aggregate", "_columns")

    def __init__(self, columns: EventColumns) -> None:
        self._columns = columns
        self._aggregate: WindowAggregate | None = None

    def aggregate(self) -> WindowAggregate:
        if self._aggregate is None:
            # Uncapped: the window it is merged into folds categories beyond its own cap
            # exactly as if the events were added to it one batch at a time.
            self._aggregate = WindowAggregate(max_categories=sys.maxsize)
            self._aggregate.add_columns(self._columns)
        return self._aggregate


def _reject_order(reject: Reject) -> int:
    return -1 if reject.batch_index is None else reject.batch_index


def _model_groups(batch: InferenceBatch) -> list[tuple[ModelKey, IntArray]]:
    """The batch's rows per (model, version), in order of each one's first event."""
    n = batch.size
    ids, versions = batch.model_id, batch.model_version
    if ids.count(ids[0]) == n and versions.count(versions[0]) == n:
        return [((ids[0], versions[0]), np.arange(n, dtype=np.int64))]
    # Messages usually hold one model each: find the runs of equal (model, version) with
    # element-wise comparisons, and look up one key per run rather than per event.
    id_array = np.array(ids, dtype=object)
    version_array = np.array(versions, dtype=object)
    changed = (id_array[1:] != id_array[:-1]) | (version_array[1:] != version_array[:-1])
    starts = np.concatenate(([0], np.flatnonzero(changed) + 1))
    run_codes, keys = _codes((ids[i], versions[i]) for i in starts.tolist())
    codes = np.repeat(run_codes, np.diff(np.append(starts, n)))
    order = np.argsort(codes, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    return list(zip(keys, groups, strict=True))


def _series_keys(events: SideBatch) -> list[ModelKey]:
    """The (model, version) series of each event; no version is :data:`ANY_VERSION`."""
    return list(zip(events.model_id, [v or ANY_VERSION for v in events.model_version], strict=True))


def _window_groups(
    series: IntArray, keys: list[ModelKey], size: int, starts: IntArray
) -> Iterator[tuple[WindowKey, IntArray]]:
    """Rows per window of one size (series code and start), in order of first appearance."""
    if starts.min() == starts.max() and series.min() == series.max():  # the usual case
        model_id, version = keys[int(series[0])]
        yield (model_id, version, size, int(starts[0])), np.arange(series.size, dtype=np.int64)
        return
    buckets = (starts - starts.min()) // size
    group_of = series * (int(buckets.max()) + 1) + buckets
    _, first, inverse = np.unique(group_of, return_index=True, return_inverse=True)
    rows_of = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    for g in np.argsort(first).tolist():
        row = int(first[g])
        model_id, version = keys[int(series[row])]
        yield (model_id, version, size, int(starts[row])), rows_of[g]


Key = TypeVar("Key", bound=Hashable)


def _codes(keys: Iterable[Key]) -> tuple[IntArray, list[Key]]:
    """A code for each key, the distinct keys numbered in order of first appearance; and them."""
    keys = keys if isinstance(keys, list) else list(keys)
    distinct = list(dict.fromkeys(keys))  # C-level passes: ~40 ns a key against ~300 in Python
    code_of = dict(zip(distinct, range(len(distinct)), strict=True))
    return np.fromiter(map(code_of.__getitem__, keys), np.int64, len(keys)), distinct
