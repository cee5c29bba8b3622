"""Columnar view of a batch of inference events, built once per batch.

Aggregation runs on numpy columns rather than per-event Python objects: each window then takes
its rows by index (``idx``), so one batch feeds several window sizes without re-reading events.
Missing numbers are NaN; missing labels and categories are ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamwatch.events import InferenceEvent

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RESOURCE_NAMES = ("cpu_pct", "memory_mb", "gpu_pct")


def category_of(value: object) -> str:
    """Return the category label for a non-numeric (or boolean) feature or prediction value."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


@dataclass(slots=True)
class FeatureColumn:
    """One feature across a batch: numeric values (NaN elsewhere) and categorical labels."""

    numeric: FloatArray
    categorical: list[str | None] | None = None


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
    def from_events(cls, events: Sequence[InferenceEvent], max_features: int) -> EventColumns:
        """Build the columns; features beyond ``max_features`` distinct names are not tracked.

        Args:
            events: Validated events in arrival order.
            max_features: Cap on distinct feature names per batch, bounding memory.
        """
        n = len(events)
        nan = float("nan")
        ts = np.fromiter((e.timestamp_ms for e in events), dtype=np.int64, count=n)
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
            _split_prediction(event.prediction, i, labels, values)
            for name, value in event.features.items():
                column = features.get(name)
                if column is None:
                    if len(features) >= max_features:
                        continue
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
        return cls(
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


def _split_prediction(
    prediction: object, i: int, labels: list[str | None], values: FloatArray
) -> None:
    """Record a prediction as a class label, a numeric value, or both (integers are both)."""
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
