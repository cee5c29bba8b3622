"""Reference profiles (baselines): what a model's inputs and outputs looked like when it was good.

A :class:`BaselineProfile` is a :class:`~streamwatch.core.aggregate.WindowAggregate` over the
reference data (training or validation set, or a model's first windows in production) plus the
label outcomes and a little metadata. Holding the same sketches the windows hold means a window
and its baseline are bucketed identically: drift statistics compare like with like, and a
stationary stream compares as equal.

Profiles are built from events (:func:`profile_from_events`, used by ``streamwatch baseline
build``) or adopted from closed windows (:class:`BaselineBuilder`). Pure; storing them is the
edge's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.columns import EventColumns
from streamwatch.core.distribution import ValueSketch
from streamwatch.core.drift import NumericReference, numeric_reference, quantile_edges
from streamwatch.core.labels import LabelStats
from streamwatch.events import InferenceEvent
from streamwatch.exceptions import StateFormatError

BASELINE_FORMAT_VERSION = 1
#: Rows aggregated at a time when building a profile from a file.
BUILD_CHUNK_ROWS = 10_000


@dataclass(slots=True)
class BaselineProfile:
    """A versioned reference profile of one model version."""

    model_id: str
    model_version: str
    aggregate: WindowAggregate
    labels: LabelStats = field(default_factory=LabelStats)
    version: int = 0
    created_at_ms: int = 0
    source: str = ""
    adopted: bool = False
    _percentiles: dict[str, Percentiles | None] = field(
        default_factory=dict, repr=False, compare=False
    )
    _edges: dict[tuple[str, int], npt.NDArray[np.float64]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _references: dict[tuple[str, int], NumericReference] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def rows(self) -> int:
        """Number of reference events."""
        return self.aggregate.count

    @property
    def latency_p95_ms(self) -> float | None:
        """p95 latency of the reference events, if they carried latencies."""
        if self.aggregate.latency.count == 0:
            return None
        return self.aggregate.latency.quantile(0.95)

    @property
    def accuracy(self) -> float | None:
        """Accuracy on the labelled reference events, if any."""
        return self.labels.accuracy

    def percentiles_of(self, feature: str) -> Percentiles | None:
        """The feature's baseline CDF (built once, lives with the profile); None if not numeric."""
        if feature not in self._percentiles:
            stats = self.aggregate.features.get(feature)
            table = None
            if stats is not None and stats.sketch.count:
                values, counts = stats.sketch.support()
                table = Percentiles(values, np.cumsum(counts) / stats.sketch.count)
            self._percentiles[feature] = table
        return self._percentiles[feature]

    def edges_of(self, name: str, sketch: ValueSketch, n_bins: int = 10) -> npt.NDArray[np.float64]:
        """Quantile bin edges of one of this profile's sketches, computed once.

        ``name`` is the feature or output the sketch describes; every closing window of the
        model is binned on these edges.
        """
        key = (name, n_bins)
        edges = self._edges.get(key)
        if edges is None:
            edges = self._edges[key] = quantile_edges(sketch, n_bins)
        return edges

    def reference_of(self, name: str, sketch: ValueSketch, n_bins: int = 10) -> NumericReference:
        """One of this profile's non-empty sketches read for drift comparisons, computed once.

        ``name`` is the feature or output the sketch describes (as for :meth:`edges_of`).

        Raises:
            ValueError: If the sketch is empty.
        """
        key = (name, n_bins)
        reference = self._references.get(key)
        if reference is None:
            edges = self.edges_of(name, sketch, n_bins)
            reference = self._references[key] = numeric_reference(sketch, edges)
        return reference

    def same_as(self, other: BaselineProfile) -> bool:
        """Whether ``other`` is the same stored profile version (cheap; no content compare)."""
        return (self.model_id, self.model_version, self.version, self.created_at_ms) == (
            other.model_id,
            other.model_version,
            other.version,
            other.created_at_ms,
        )

    def summary(self) -> dict[str, Any]:
        """Return what ``baseline list`` shows: identity, size, features and headline numbers."""
        agg = self.aggregate
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "version": self.version,
            "created_at_ms": self.created_at_ms,
            "source": self.source,
            "adopted": self.adopted,
            "rows": self.rows,
            "numeric_features": sorted(n for n, f in agg.features.items() if f.numeric.n),
            "categorical_features": sorted(n for n, f in agg.features.items() if f.categories),
            "score_mean": agg.score.mean if agg.score.n else None,
            "prediction_classes": dict(agg.prediction_classes),
            "labelled": self.labels.labelled,
            "accuracy": self.labels.accuracy,
            "mae": self.labels.mae_value,
            "latency_p95_ms": self.latency_p95_ms,
            "error_rate": agg.error_count / agg.count if agg.count else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """Serialise with :data:`BASELINE_FORMAT_VERSION`."""
        return {
            "fmt": BASELINE_FORMAT_VERSION,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "version": self.version,
            "created_at_ms": self.created_at_ms,
            "source": self.source,
            "adopted": self.adopted,
            "aggregate": self.aggregate.to_dict(),
            "labels": self.labels.to_dict(),
            # Derived, for readers of the file: drift compares windows on these decile bins.
            "quantile_bins": {
                name: self.edges_of(name, stats.sketch).tolist()
                for name, stats in sorted(self.aggregate.features.items())
                if stats.sketch.count
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            StateFormatError: If the profile was written in another format version.
        """
        StateFormatError.require(
            data,
            BASELINE_FORMAT_VERSION,
            "baseline",
            "rebuild it with 'streamwatch baseline build'",
        )
        return cls(
            model_id=str(data["model_id"]),
            model_version=str(data["model_version"]),
            aggregate=WindowAggregate.from_dict(data["aggregate"]),
            labels=LabelStats.from_dict(data["labels"]),
            version=int(data["version"]),
            created_at_ms=int(data["created_at_ms"]),
            source=str(data["source"]),
            adopted=bool(data["adopted"]),
        )


def label_outcomes(
    columns: EventColumns, labels: Sequence[object | None], stats: LabelStats
) -> None:
    """Add the labelled rows of a columnar batch to ``stats`` (None means unlabelled)."""
    for i, label in enumerate(labels):
        if label is None:
            continue
        value = float(columns.prediction_value[i])
        stats.add(label, columns.prediction_label[i], None if np.isnan(value) else value)


def profile_from_events(
    model_id: str,
    model_version: str,
    rows: Iterable[tuple[InferenceEvent, object | None]],
    *,
    source: str,
    created_at_ms: int,
    max_features: int = 64,
    max_categories: int = 64,
) -> BaselineProfile:
    """Build a profile from reference events and their (optional) labels.

    Args:
        model_id: Model the profile describes.
        model_version: Its version (``*`` for a profile that any version may use).
        rows: ``(event, label or None)`` pairs, in any order.
        source: Where the data came from, e.g. the file path.
        created_at_ms: Wall-clock creation time.
        max_features: Cap on distinct feature names, as in the worker.
        max_categories: Cap on categories per feature, as in the worker.
    """
    aggregate = WindowAggregate(max_categories=max_categories)
    labels = LabelStats()
    chunk: list[InferenceEvent] = []
    chunk_labels: list[object | None] = []

    def flush() -> None:
        if chunk:
            columns = EventColumns.from_events(chunk, max_features)
            aggregate.add_columns(columns, np.arange(len(chunk), dtype=np.int64))
            label_outcomes(columns, chunk_labels, labels)
            chunk.clear()
            chunk_labels.clear()

    for event, label in rows:
        chunk.append(event)
        chunk_labels.append(label)
        if len(chunk) >= BUILD_CHUNK_ROWS:
            flush()
    flush()
    return BaselineProfile(
        model_id=model_id,
        model_version=model_version,
        aggregate=aggregate,
        labels=labels,
        created_at_ms=created_at_ms,
        source=source,
    )


@dataclass(slots=True)
class BaselineBuilder:
    """Adopts a model's first closed windows (of one size) as its baseline."""

    windows: int = 0
    first_start_ms: int | None = None
    last_end_ms: int | None = None
    aggregate: WindowAggregate = field(default_factory=WindowAggregate)

    def add(self, window: WindowAggregate, start_ms: int, size_ms: int) -> None:
        """Fold one closed window in."""
        self.windows += 1
        self.aggregate.merge(window)
        if self.first_start_ms is None:
            self.first_start_ms = start_ms
        self.last_end_ms = start_ms + size_ms

    def profile(self, model_id: str, model_version: str, created_at_ms: int) -> BaselineProfile:
        """Return the adopted profile, saying where it came from."""
        return BaselineProfile(
            model_id=model_id,
            model_version=model_version,
            aggregate=self.aggregate,
            created_at_ms=created_at_ms,
            source=(
                f"adopted from the first {self.windows} closed windows"
                f" [{self.first_start_ms}, {self.last_end_ms}) ms"
            ),
            adopted=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the partition's state."""
        return {
            "fmt": BASELINE_FORMAT_VERSION,
            "windows": self.windows,
            "first_start_ms": self.first_start_ms,
            "last_end_ms": self.last_end_ms,
            "aggregate": self.aggregate.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineBuilder:
        """Inverse of :meth:`to_dict`.

        Raises:
            StateFormatError: If written in another format version.
        """
        StateFormatError.require(
            data,
            BASELINE_FORMAT_VERSION,
            "baseline builder",
            "delete the partition checkpoint and restart the worker",
        )
        return cls(
            windows=int(data["windows"]),
            first_start_ms=data["first_start_ms"],
            last_end_ms=data["last_end_ms"],
            aggregate=WindowAggregate.from_dict(data["aggregate"]),
        )


@dataclass(frozen=True, slots=True)
class Percentiles:
    """A baseline feature's CDF: value -> baseline percentile, and back."""

    values: npt.NDArray[np.float64]
    cdf: npt.NDArray[np.float64]
    """``cdf[i]`` is the share of baseline values at or below ``values[i]``."""

    def percentiles(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Mid-rank baseline percentile of each value (NaN stays NaN)."""
        below = np.concatenate(([0.0], self.cdf))
        left = np.searchsorted(self.values, x, side="left")
        right = np.searchsorted(self.values, x, side="right")
        result: npt.NDArray[np.float64] = (below[left] + below[right]) / 2.0
        result[np.isnan(x)] = np.nan
        return result

    def value_at(self, percentile: float) -> float:
        """The baseline value at a percentile (its quantile function)."""
        index = int(np.searchsorted(self.cdf, percentile, side="left"))
        return float(self.values[min(index, self.values.size - 1)])
