"""Columnar view of a batch of inference events, built once per batch.

Aggregation runs on numpy columns rather than per-event Python objects: each window then takes
its rows by index (``idx``), so one batch feeds several window sizes without re-reading events.
Missing numbers are NaN; missing labels and categories are ``None``.

Feature and stage names are admitted through a :class:`NameLimit`: the processor keeps one per
model version, so a model's tracked names are its first ``max_features`` ones whatever the
batching, and ever-new names cannot grow its windows without bound.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from streamwatch.events import InferenceEvent

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

T = TypeVar("T")

RESOURCE_NAMES = ("cpu_pct", "memory_mb", "gpu_pct")


def category_of(value: object) -> str:
    """Return the category label for a non-numeric (or boolean) feature or prediction value."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


class NameLimit:
    """Admits at most ``limit`` distinct names, first come first served; counts the refusals.

    Example:
        >>> names = NameLimit(2)
        >>> [names.admit(n) for n in ("a", "b", "c", "a", "c")]
        [True, True, False, True, False]
        >>> names.refused, list(names.names)
        (2, ['a', 'b'])
    """

    __slots__ = ("limit", "names", "refused")

    def __init__(self, limit: int) -> None:
        """Admit up to ``limit`` names."""
        self.limit = limit
        #: The admitted names, in order of admission.
        self.names: dict[str, None] = {}
        #: Calls to :meth:`admit` that were refused (a value of a name not tracked).
        self.refused = 0

    def __len__(self) -> int:
        return len(self.names)

    def admit(self, name: str) -> bool:
        """Return whether ``name`` is tracked, admitting it if there is room."""
        if name in self.names:
            return True
        if len(self.names) < self.limit:
            self.names[name] = None
            return True
        self.refused += 1
        return False


@dataclass(slots=True)
class FeatureColumn:
    """One feature across a batch: numeric values (NaN elsewhere) and categorical labels."""

    numeric: FloatArray
    categorical: list[str | None] | None = None

    def values_present(self) -> int:
        """Number of events with a value (numeric or categorical) for this feature."""
        present = int(np.count_nonzero(~np.isnan(self.numeric)))
        if self.categorical is not None:
            present += len(self.categorical) - self.categorical.count(None)
        return present


@dataclass(slots=True)
class EventColumns:
    """The fields of ``n`` inference events as parallel columns, in arrival order."""

    event_ts_ms: IntArray
    latency_ms: FloatArray
    is_error: BoolArray
    error_type: list[str | None]
    score: FloatArray
    prediction_label: list[str | None]
    prediction_value: FloatArray
    traffic: list[str | None]
    segment: list[str | None] = field(default_factory=list)
    features: dict[str, FeatureColumn] = field(default_factory=dict)
    stages_ms: dict[str, FloatArray] = field(default_factory=dict)
    resources: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of events."""
        return int(self.event_ts_ms.size)

    @classmethod
    def from_events(
        cls,
        events: Sequence[InferenceEvent],
        max_features: int,
        *,
        feature_names: NameLimit | None = None,
        stage_names: NameLimit | None = None,
        event_ts_ms: IntArray | None = None,
    ) -> EventColumns:
        """Build the columns; values of names the limits refuse are not tracked.

        Args:
            events: Validated events in arrival order.
            max_features: Cap on distinct feature (and stage) names in this batch, used when
                no limit is given.
            feature_names: The feature names admitted so far (updated in place); pass the
                same one for every batch of a model version to cap its names over time.
            stage_names: Likewise for ``stages_ms`` names.
            event_ts_ms: The events' times in Unix ms, if the caller has them already.
        """
        columns = _columns_of(events, event_ts_ms)
        return columns.admitted(
            feature_names if feature_names is not None else NameLimit(max_features),
            stage_names if stage_names is not None else NameLimit(max_features),
        )

    def admitted(self, feature_names: NameLimit, stage_names: NameLimit) -> EventColumns:
        """Return these columns without the feature and stage names the limits refuse.

        Names are offered in column order (first appearance, for events decoded from rows);
        each value of a refused name counts once in the limit's ``refused``.
        """
        features = self.features
        refused = [name for name in features if not feature_names.admit(name)]
        if refused:
            features = {k: v for k, v in features.items() if k not in refused}
            # One refusal per value, as if each event had offered its names on its own.
            feature_names.refused += sum(self.features[k].values_present() - 1 for k in refused)
        stages = self.stages_ms
        refused = [name for name in stages if not stage_names.admit(name)]
        if refused:
            stages = {k: v for k, v in stages.items() if k not in refused}
            stage_names.refused += sum(
                int(np.count_nonzero(~np.isnan(self.stages_ms[k]))) - 1 for k in refused
            )
        if features is self.features and stages is self.stages_ms:
            return self
        return dataclasses.replace(self, features=features, stages_ms=stages)

    def take(self, rows: IntArray) -> EventColumns:
        """Return the events at positions ``rows`` (names with no value there are dropped)."""
        pick = _picker(rows)
        features: dict[str, FeatureColumn] = {}
        for name, column in self.features.items():
            taken = FeatureColumn(
                column.numeric[rows],
                None if column.categorical is None else pick(column.categorical),
            )
            if taken.values_present():
                features[name] = taken
        stages = {name: values[rows] for name, values in self.stages_ms.items()}
        resources = {name: values[rows] for name, values in self.resources.items()}
        return EventColumns(
            event_ts_ms=self.event_ts_ms[rows],
            latency_ms=self.latency_ms[rows],
            is_error=self.is_error[rows],
            error_type=pick(self.error_type),
            score=self.score[rows],
            prediction_label=pick(self.prediction_label),
            prediction_value=self.prediction_value[rows],
            traffic=pick(self.traffic),
            segment=pick(self.segment) if self.segment else [],
            features=features,
            stages_ms={k: v for k, v in stages.items() if not np.isnan(v).all()},
            resources={k: v for k, v in resources.items() if not np.isnan(v).all()},
        )

    @classmethod
    def concat(cls, parts: Sequence[EventColumns]) -> EventColumns:
        """Join columns end to end (a name missing from a part is missing for its events)."""
        if len(parts) == 1:
            return parts[0]
        sizes = [p.size for p in parts]
        n = sum(sizes)
        features: dict[str, FeatureColumn] = {}
        for name in dict.fromkeys(name for p in parts for name in p.features):
            numeric = np.concatenate(
                [
                    p.features[name].numeric if name in p.features else np.full(size, np.nan)
                    for p, size in zip(parts, sizes, strict=True)
                ]
            )
            categorical: list[str | None] | None = None
            if any(name in p.features and p.features[name].categorical is not None for p in parts):
                categorical = []
                for p, size in zip(parts, sizes, strict=True):
                    column = p.features.get(name)
                    if column is None or column.categorical is None:
                        categorical.extend([None] * size)
                    else:
                        categorical.extend(column.categorical)
            features[name] = FeatureColumn(numeric, categorical)
        return cls(
            event_ts_ms=np.concatenate([p.event_ts_ms for p in parts]),
            latency_ms=np.concatenate([p.latency_ms for p in parts]),
            is_error=np.concatenate([p.is_error for p in parts]),
            error_type=_joined([p.error_type for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            prediction_label=_joined([p.prediction_label for p in parts]),
            prediction_value=np.concatenate([p.prediction_value for p in parts]),
            traffic=_joined([p.traffic for p in parts]),
            segment=(
                _joined([p.segment or [None] * s for p, s in zip(parts, sizes, strict=True)])
                if any(p.segment for p in parts)
                else []
            ),
            features=features,
            stages_ms=_joined_arrays([p.stages_ms for p in parts], sizes, n),
            resources=_joined_arrays([p.resources for p in parts], sizes, n),
        )


@dataclass(slots=True)
class InferenceBatch:
    """Validated inference events of one or more messages, as columns: the decoders' output.

    ``columns`` holds every feature and stage name as sent; the processor admits names per
    model version (:meth:`EventColumns.admitted`) when it splits the batch by model.
    """

    columns: EventColumns
    request_id: list[str]
    model_id: list[str]
    model_version: list[str]
    positions: list[int | None]
    """Index of each event in its message's batch (None for a single-event message)."""

    @property
    def size(self) -> int:
        """Number of events."""
        return len(self.request_id)

    @classmethod
    def from_events(
        cls,
        events: Sequence[InferenceEvent],
        positions: Sequence[int | None],
        event_ts_ms: Sequence[int],
    ) -> InferenceBatch:
        """Columns of pydantic-validated events (the decoder's item-by-item path)."""
        return cls(
            columns=_columns_of(events, np.array(event_ts_ms, dtype=np.int64)),
            request_id=[e.request_id for e in events],
            model_id=[e.model_id for e in events],
            model_version=[e.model_version for e in events],
            positions=list(positions),
        )

    @classmethod
    def concat(cls, parts: Sequence[InferenceBatch]) -> InferenceBatch:
        """Join batches end to end, in order."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            columns=EventColumns.concat([p.columns for p in parts]),
            request_id=_joined([p.request_id for p in parts]),
            model_id=_joined([p.model_id for p in parts]),
            model_version=_joined([p.model_version for p in parts]),
            positions=_joined([p.positions for p in parts]),
        )

    def take(self, rows: IntArray) -> InferenceBatch:
        """Return the events at positions ``rows``."""
        pick = _picker(rows)
        return InferenceBatch(
            columns=self.columns.take(rows),
            request_id=pick(self.request_id),
            model_id=pick(self.model_id),
            model_version=pick(self.model_version),
            positions=pick(self.positions),
        )

    def row(self, i: int) -> dict[str, Any]:
        """Event ``i`` as a JSON-ready dict, for a dead-letter record."""
        c = self.columns
        event: dict[str, Any] = {
            "request_id": self.request_id[i],
            "model_id": self.model_id[i],
            "model_version": self.model_version[i],
            "timestamp": int(c.event_ts_ms[i]) / 1000,
            "latency_ms": float(c.latency_ms[i]),
            "status": "error" if c.is_error[i] else "ok",
        }
        if c.error_type[i] is not None:
            event["error_type"] = c.error_type[i]
        if c.prediction_label[i] is not None or not np.isnan(c.prediction_value[i]):
            value = c.prediction_value[i]
            event["prediction"] = c.prediction_label[i] if np.isnan(value) else float(value)
        if not np.isnan(c.score[i]):
            event["score"] = float(c.score[i])
        features: dict[str, Any] = {}
        for name, column in c.features.items():
            if column.categorical is not None and column.categorical[i] is not None:
                features[name] = column.categorical[i]
            elif not np.isnan(column.numeric[i]):
                features[name] = float(column.numeric[i])
        event["features"] = features
        for key, source in (("stages_ms", c.stages_ms), ("resources", c.resources)):
            present = {k: float(v[i]) for k, v in source.items() if not np.isnan(v[i])}
            if present:
                event[key] = present
        for key, values in (("traffic", c.traffic), ("segment", c.segment)):
            if values and values[i] is not None:
                event[key] = values[i]
        return event


def _picker(rows: IntArray) -> Callable[[list[T]], list[T]]:
    """Return a function taking ``rows`` of a list.

    A model's events in a step come in runs (a message holds one model): lists are then
    joined from slices, which copies in C, instead of indexed item by item.
    """
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    if breaks.size * 16 < rows.size:
        starts = np.concatenate(([0], breaks))
        ends = np.append(breaks, rows.size)
        first, last = rows[starts].tolist(), rows[ends - 1].tolist()
        runs = [slice(a, b + 1) for a, b in zip(first, last, strict=True)]

        def join(values: list[T]) -> list[T]:
            return list(itertools.chain.from_iterable(values[run] for run in runs))

        return join
    indices = rows.tolist()

    def pick(values: list[T]) -> list[T]:
        return [values[i] for i in indices]

    return pick


def _joined(parts: Sequence[list[T]]) -> list[T]:
    return list(itertools.chain.from_iterable(parts))


def _joined_arrays(
    parts: Sequence[dict[str, FloatArray]], sizes: Sequence[int], n: int
) -> dict[str, FloatArray]:
    joined: dict[str, FloatArray] = {}
    for name in dict.fromkeys(name for p in parts for name in p):
        out = np.full(n, np.nan)
        at = 0
        for p, size in zip(parts, sizes, strict=True):
            values = p.get(name)
            if values is not None:
                out[at : at + size] = values
            at += size
        joined[name] = out
    return joined


def _columns_of(events: Sequence[InferenceEvent], event_ts_ms: IntArray | None) -> EventColumns:
    """Every field of the events as columns, every feature and stage name included."""
    n = len(events)
    nan = float("nan")
    ts = (
        np.fromiter((e.timestamp_ms for e in events), dtype=np.int64, count=n)
        if event_ts_ms is None
        else event_ts_ms
    )
    latency = np.fromiter((e.latency_ms for e in events), dtype=np.float64, count=n)
    is_error = np.fromiter((e.status == "error" for e in events), dtype=np.bool_, count=n)
    error_type = [e.error_type if e.status == "error" else None for e in events]
    score = np.fromiter(
        (nan if e.score is None else e.score for e in events), dtype=np.float64, count=n
    )
    labels: list[str | None] = [None] * n
    values = np.full(n, nan)
    features: dict[str, FeatureColumn] = {}
    stages: dict[str, FloatArray] = {}
    resources: dict[str, FloatArray] = {}
    for i, event in enumerate(events):
        split_prediction(event.prediction, i, labels, values)
        for name, value in event.features.items():
            column = features.get(name)
            if column is None:
                column = features[name] = FeatureColumn(np.full(n, nan))
            if value is None:
                continue
            if isinstance(value, (bool, str)):
                if column.categorical is None:
                    column.categorical = [None] * n
                column.categorical[i] = category_of(value)
            else:
                column.numeric[i] = value
        for stage, stage_ms in event.stages_ms.items():
            stage_column = stages.get(stage)
            if stage_column is None:
                stage_column = stages[stage] = np.full(n, nan)
            stage_column[i] = stage_ms
        if event.resources is not None:
            for name in RESOURCE_NAMES:
                value = getattr(event.resources, name)
                if value is not None:
                    res_column = resources.get(name)
                    if res_column is None:
                        res_column = resources[name] = np.full(n, nan)
                    res_column[i] = value
    return EventColumns(
        event_ts_ms=ts,
        latency_ms=latency,
        is_error=is_error,
        error_type=error_type,
        score=score,
        prediction_label=labels,
        prediction_value=values,
        traffic=[e.traffic for e in events],
        segment=[e.segment for e in events],
        features=features,
        stages_ms=stages,
        resources=resources,
    )


def split_prediction(
    prediction: object, i: int, labels: list[str | None], values: FloatArray
) -> None:
    """Record prediction ``i`` as a class label, a numeric value, or both (integers are both)."""
    if prediction is None:
        return
    if isinstance(prediction, list):
        # A probability vector: the predicted class is its arg-max.
        if prediction:
            labels[i] = str(int(np.argmax(prediction)))
        return
    if isinstance(prediction, (bool, str)):
        labels[i] = category_of(prediction)
        return
    if isinstance(prediction, int):
        labels[i] = str(prediction)
    if isinstance(prediction, int | float):
        values[i] = float(prediction)
