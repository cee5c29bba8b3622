"""Columnar view of a batch of inference events, built once per batch.

Aggregation runs on numpy columns rather than per-event Python objects: each window then takes
its rows by index (``idx``), so one batch feeds several window sizes without re-reading events.
Missing numbers are NaN; missing labels and categories are ``None``.

Feature and stage names are admitted through a :class:`NameLimit`: the processor keeps one per
model version, so a model's tracked names are its first ``max_features`` ones whatever the
batching, and ever-new names cannot grow its windows without bound.
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
        if feature_names is None:
            feature_names = NameLimit(max_features)
        if stage_names is None:
            stage_names = NameLimit(max_features)
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
            _split_prediction(event.prediction, i, labels, values)
            for name, value in event.features.items():
                column = features.get(name)
                if column is None:
                    if not feature_names.admit(name):
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
                    if not stage_names.admit(stage):
                        continue
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
