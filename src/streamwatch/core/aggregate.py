"""The mergeable window aggregate: everything streamwatch knows about one model in one window.

A :class:`WindowAggregate` is a plain value: built from event columns, merged with another
partial aggregate of the same window (``a.merge(b)`` equals aggregating both event sets at once —
counts and histograms exactly, means and variances up to float rounding), serialised to a
JSON-able dict with a format version, and summarised into the metrics rules and dashboards read.

It must not know about Kafka, Redis or Faust.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamwatch.core.columns import EventColumns, FloatArray
from streamwatch.core.distribution import ValueSketch
from streamwatch.core.sketch import LogHistogram
from streamwatch.exceptions import StateFormatError

#: Bumped whenever the serialised layout changes; old state is then ignored, never misread.
AGGREGATE_FORMAT_VERSION = 2
#: Label under which categories beyond the per-window cap are folded.
OTHER_CATEGORY = "__other__"
LATENCY_RELATIVE_ACCURACY = 0.01

IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class Moments:
    """Count, mean, sum of squared deviations, min and max; merged with Chan's formula."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add_array(self, values: FloatArray) -> None:
        """Add finite values (callers drop NaN first)."""
        if values.size == 0:
            return
        mean = float(values.mean())
        deviations = values - mean
        np.square(deviations, out=deviations)
        other = Moments(
            n=int(values.size),
            mean=mean,
            # Not np.dot: on long arrays it hands the work to BLAS threads, which spin against
            # the worker's own threads (measured: 0.9 ms instead of 3 us per call on 2 cores).
            m2=float(deviations.sum()),
            min=float(values.min()),
            max=float(values.max()),
        )
        self.merge(other)

    def merge(self, other: Moments) -> None:
        """Fold ``other`` into this one."""
        if other.n == 0:
            return
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean, other.m2
            self.min, self.max = other.min, other.max
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def std(self) -> float:
        """Population standard deviation (NaN when empty)."""
        return math.sqrt(self.m2 / self.n) if self.n else math.nan

    def to_list(self) -> list[float | int | None]:
        """Serialise compactly as ``[n, mean, m2, min, max]``."""
        if self.n == 0:
            return [0, 0.0, 0.0, None, None]
        return [self.n, self.mean, self.m2, self.min, self.max]

    @classmethod
    def from_list(cls, data: list[Any]) -> Moments:
        """Inverse of :meth:`to_list`."""
        n, mean, m2, lo, hi = data
        if n == 0:
            return cls()
        return cls(int(n), float(mean), float(m2), float(lo), float(hi))


def add_category_counts(target: dict[str, int], counts: dict[str, int], cap: int) -> None:
    """Add ``counts`` into ``target``, folding new categories beyond ``cap`` into ``__other__``.

    Categories are admitted in the order of ``counts`` while there is room. Once ``target`` is
    full, the rest only adds to the categories it holds or to ``__other__``: that part runs on
    set and sum operations, as an id-like feature brings thousands of categories a step
    (~105 ns each one at a time).
    """
    items = iter(counts.items())
    for label, count in items:
        if label in target:
            target[label] += count
        elif len(target) < cap or label == OTHER_CATEGORY:
            target[label] = count
        else:
            rest = dict(items)
            kept = rest.keys() & target.keys()
            for known in kept:
                target[known] += rest[known]
            folded = count + sum(rest.values()) - sum(map(rest.__getitem__, kept))
            target[OTHER_CATEGORY] = target.get(OTHER_CATEGORY, 0) + folded
            return


@dataclass(slots=True)
class FeatureStats:
    """One feature in one window: numeric moments and sketch, and categorical counts."""

    numeric: Moments = field(default_factory=Moments)
    categories: dict[str, int] = field(default_factory=dict)
    sketch: ValueSketch = field(default_factory=ValueSketch)

    def add_numeric(self, values: FloatArray) -> None:
        """Add finite numeric values."""
        if values.size:
            self.numeric.add_array(values)
            self.sketch.add_array(values)

    @property
    def present(self) -> int:
        """Events in which the feature had a non-null value."""
        return self.numeric.n + sum(self.categories.values())

    def merge(self, other: FeatureStats, max_categories: int) -> None:
        """Fold ``other`` into this one."""
        self.numeric.merge(other.numeric)
        self.sketch.merge(other.sketch)
        add_category_counts(self.categories, other.categories, max_categories)


@dataclass(slots=True)
class SegmentStats:
    """Traffic of one segment (region, tenant, ...) in one window: what segment rules read."""

    count: int = 0
    error_count: int = 0
    latency: LogHistogram = field(
        default_factory=lambda: LogHistogram(relative_accuracy=LATENCY_RELATIVE_ACCURACY)
    )

    def merge(self, other: SegmentStats) -> None:
        """Fold ``other`` into this one."""
        self.count += other.count
        self.error_count += other.error_count
        self.latency.merge(other.latency)

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a JSON-able dict."""
        return {"n": self.count, "errors": self.error_count, "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentStats:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["n"]), int(data["errors"]), LogHistogram.from_dict(data["latency"]))


def add_segments(
    target: dict[str, SegmentStats], source: dict[str, SegmentStats], cap: int
) -> None:
    """Merge ``source`` into ``target``, folding segments beyond ``cap`` into ``__other__``."""
    for name, stats in source.items():
        if name not in target and len(target) >= cap:
            name = OTHER_CATEGORY
        target.setdefault(name, SegmentStats()).merge(stats)


@dataclass(slots=True)
class WindowAggregate:
    """Mergeable statistics of one (model, version) in one window, from one or more partitions."""

    max_categories: int = 64
    count: int = 0
    error_count: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    latency: LogHistogram = field(
        default_factory=lambda: LogHistogram(relative_accuracy=LATENCY_RELATIVE_ACCURACY)
    )
    latency_moments: Moments = field(default_factory=Moments)
    score: Moments = field(default_factory=Moments)
    score_sketch: ValueSketch = field(default_factory=ValueSketch)
    prediction_classes: dict[str, int] = field(default_factory=dict)
    prediction_values: Moments = field(default_factory=Moments)
    prediction_sketch: ValueSketch = field(default_factory=ValueSketch)
    features: dict[str, FeatureStats] = field(default_factory=dict)
    stages_ms: dict[str, Moments] = field(default_factory=dict)
    resources: dict[str, Moments] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    segments: dict[str, SegmentStats] = field(default_factory=dict)
    business: dict[str, Moments] = field(default_factory=dict)
    feedback_count: int = 0
    feedback_unmatched: int = 0
    late_events: int = 0
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    def add_columns(self, columns: EventColumns, idx: IntArray | None = None) -> None:
        """Add the events at positions ``idx`` of ``columns`` (None: all of them)."""
        n = columns.size if idx is None else int(idx.size)
        if n == 0:
            return
        rows = _Rows(idx)
        cap = self.max_categories
        self.count += n
        errors = rows.of(columns.is_error)
        n_errors = int(errors.sum())
        if n_errors:
            self.error_count += n_errors
            at = np.flatnonzero(errors) if idx is None else idx[errors]
            types = Counter(columns.error_type[i] or "unknown" for i in at.tolist())
            add_category_counts(self.error_types, types, cap)
        latency = rows.of(columns.latency_ms)
        self.latency.add_array(latency)
        self.latency_moments.add_array(latency)
        scores = _finite(rows.of(columns.score))
        self.score.add_array(scores)
        self.score_sketch.add_array(scores)
        add_category_counts(self.prediction_classes, rows.count(columns.prediction_label), cap)
        predicted = _finite(rows.of(columns.prediction_value))
        self.prediction_values.add_array(predicted)
        self.prediction_sketch.add_array(predicted)
        for name, column in columns.features.items():
            values = _finite(rows.of(column.numeric))
            categorical = column.categorical
            cats = rows.count(categorical) if categorical is not None else {}
            if values.size == 0 and not cats:
                continue
            stats = self.features.get(name)
            if stats is None:
                stats = self.features[name] = FeatureStats()
            stats.add_numeric(values)
            add_category_counts(stats.categories, cats, cap)
        for target, source in (
            (self.stages_ms, columns.stages_ms),
            (self.resources, columns.resources),
        ):
            for name, measured in source.items():
                values = _finite(rows.of(measured))
                if values.size:
                    target.setdefault(name, Moments()).add_array(values)
        add_category_counts(self.traffic, rows.count(columns.traffic), cap)
        if columns.segment:
            self._add_segments(columns, rows)
        ts = rows.of(columns.event_ts_ms)
        self._see_times(int(ts.min()), int(ts.max()))

    def _add_segments(self, columns: EventColumns, rows: _Rows) -> None:
        segment = columns.segment
        members: dict[str, list[int]] = {}
        for i in rows.indices(len(segment)):
            name = segment[i]
            if name is not None:
                members.setdefault(name, []).append(i)
        if not members:
            return
        batch: dict[str, SegmentStats] = {}
        for name, at_rows in members.items():
            stats = batch[name] = SegmentStats(count=len(at_rows))
            at = np.asarray(at_rows, dtype=np.int64)
            stats.error_count = int(columns.is_error[at].sum())
            stats.latency.add_array(columns.latency_ms[at])
        add_segments(self.segments, batch, self.max_categories)

    def add_business(self, kind: str, value: float, event_ts_ms: int) -> None:
        """Add one business event (click, conversion, revenue, ...)."""
        self.add_business_values(
            kind, np.array([value], dtype=np.float64), event_ts_ms, event_ts_ms
        )

    def add_business_values(
        self, kind: str, values: FloatArray, first_ms: int, last_ms: int
    ) -> None:
        """Add business events of one kind at once: their values and their time span (ms)."""
        moments = self.business.get(kind)
        if moments is None:
            if len(self.business) >= self.max_categories:
                kind = OTHER_CATEGORY
                moments = self.business.setdefault(kind, Moments())
            else:
                moments = self.business[kind] = Moments()
        moments.add_array(values)
        self._see_times(first_ms, last_ms)

    def _see_times(self, lo: int, hi: int) -> None:
        self.first_event_ms = lo if self.first_event_ms is None else min(self.first_event_ms, lo)
        self.last_event_ms = hi if self.last_event_ms is None else max(self.last_event_ms, hi)

    def merge(self, other: WindowAggregate) -> None:
        """Fold another partial aggregate of the same window into this one."""
        cap = self.max_categories
        self.count += other.count
        self.error_count += other.error_count
        add_category_counts(self.error_types, other.error_types, cap)
        self.latency.merge(other.latency)
        self.latency_moments.merge(other.latency_moments)
        self.score.merge(other.score)
        self.score_sketch.merge(other.score_sketch)
        add_category_counts(self.prediction_classes, other.prediction_classes, cap)
        self.prediction_values.merge(other.prediction_values)
        self.prediction_sketch.merge(other.prediction_sketch)
        for name, stats in other.features.items():
            mine = self.features.setdefault(name, FeatureStats())
            mine.merge(stats, cap)
        for target, source in (
            (self.stages_ms, other.stages_ms),
            (self.resources, other.resources),
            (self.business, other.business),
        ):
            for name, moments in source.items():
                target.setdefault(name, Moments()).merge(moments)
        add_category_counts(self.traffic, other.traffic, cap)
        add_segments(self.segments, other.segments, cap)
        self.feedback_count += other.feedback_count
        self.feedback_unmatched += other.feedback_unmatched
        self.late_events += other.late_events
        if other.first_event_ms is not None and other.last_event_ms is not None:
            self._see_times(other.first_event_ms, other.last_event_ms)

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a JSON-able dict carrying :data:`AGGREGATE_FORMAT_VERSION`."""
        return {
            "fmt": AGGREGATE_FORMAT_VERSION,
            "cap": self.max_categories,
            "count": self.count,
            "errors": self.error_count,
            "error_types": self.error_types,
            "latency": self.latency.to_dict(),
            "latency_moments": self.latency_moments.to_list(),
            "score": self.score.to_list(),
            "score_sk": self.score_sketch.to_dict(),
            "pred_classes": self.prediction_classes,
            "pred_values": self.prediction_values.to_list(),
            "pred_sk": self.prediction_sketch.to_dict(),
            "features": {
                name: {"num": s.numeric.to_list(), "cat": s.categories, "sk": s.sketch.to_dict()}
                for name, s in self.features.items()
            },
            "stages_ms": {k: m.to_list() for k, m in self.stages_ms.items()},
            "resources": {k: m.to_list() for k, m in self.resources.items()},
            "traffic": self.traffic,
            "segments": {k: v.to_dict() for k, v in self.segments.items()},
            "business": {k: m.to_list() for k, m in self.business.items()},
            "feedback": self.feedback_count,
            "feedback_unmatched": self.feedback_unmatched,
            "late": self.late_events,
            "first_ms": self.first_event_ms,
            "last_ms": self.last_event_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowAggregate:
        """Inverse of :meth:`to_dict`.

        Raises:
            StateFormatError: If the dict was written in another format version.
        """
        StateFormatError.require(
            data,
            AGGREGATE_FORMAT_VERSION,
            "window aggregate",
            "delete the key and restart the worker",
        )
        return cls(
            max_categories=int(data["cap"]),
            count=int(data["count"]),
            error_count=int(data["errors"]),
            error_types=dict(data["error_types"]),
            latency=LogHistogram.from_dict(data["latency"]),
            latency_moments=Moments.from_list(data["latency_moments"]),
            score=Moments.from_list(data["score"]),
            score_sketch=ValueSketch.from_dict(data["score_sk"]),
            prediction_classes=dict(data["pred_classes"]),
            prediction_values=Moments.from_list(data["pred_values"]),
            prediction_sketch=ValueSketch.from_dict(data["pred_sk"]),
            features={
                name: FeatureStats(
                    Moments.from_list(f["num"]), dict(f["cat"]), ValueSketch.from_dict(f["sk"])
                )
                for name, f in data["features"].items()
            },
            stages_ms={k: Moments.from_list(v) for k, v in data["stages_ms"].items()},
            resources={k: Moments.from_list(v) for k, v in data["resources"].items()},
            traffic=dict(data["traffic"]),
            # Absent in aggregates written before segments were tracked (same format otherwise).
            segments={k: SegmentStats.from_dict(v) for k, v in data.get("segments", {}).items()},
            business={k: Moments.from_list(v) for k, v in data["business"].items()},
            feedback_count=int(data["feedback"]),
            feedback_unmatched=int(data["feedback_unmatched"]),
            late_events=int(data["late"]),
            first_event_ms=data["first_ms"],
            last_event_ms=data["last_ms"],
        )


def _finite(values: FloatArray) -> FloatArray:
    result: FloatArray = values[~np.isnan(values)]
    return result


class _Rows:
    """Some rows of a batch's columns (``idx``), or all of them (None: no copy, no index)."""

    __slots__ = ("_idx", "_list")

    def __init__(self, idx: IntArray | None) -> None:
        self._idx = idx
        self._list: list[int] | None = None

    def of(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return column if self._idx is None else column[self._idx]

    def indices(self, n: int) -> list[int]:
        if self._idx is None:
            return list(range(n))
        if self._list is None:
            self._list = self._idx.tolist()
        return self._list

    def pick(self, labels: list[str | None]) -> list[str | None]:
        """The labels of these rows, in order."""
        if self._idx is None:
            return labels
        return [labels[i] for i in self.indices(len(labels))]

    def count(self, labels: list[str | None]) -> dict[str, int]:
        """Occurrences of each label (None left out), in order of first occurrence."""
        counts = Counter(self.pick(labels))
        counts.pop(None, None)
        return counts  # type: ignore[return-value]
