"""Delayed labels: join feedback to its prediction and score the prediction's window.

Ground truth arrives late (seconds for a click, days for a chargeback). :class:`PendingPredictions`
remembers each recent prediction by ``request_id`` for the *label horizon* (event time, bounded in
count); a feedback event that finds its prediction adds one labelled outcome to the
:class:`LabelStats` of the prediction's window, not the feedback's. A feedback event that finds
nothing is *unmatched*: counted, never silently dropped.

Pure Python; persistence of the pending set is the edge's job (see ``StepResult``).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from streamwatch.exceptions import StateFormatError

LABEL_FORMAT_VERSION = 1
#: When the pending set is full, this share of its cap (oldest first) is evicted at once:
#: removing entries one by one from the front of a dict rescans its deleted slots each time,
#: which made every prediction cost 30-120 µs at the cap (measured at 200,000).
EVICT_SHARE = 0.01


def label_class(label: object) -> str | None:
    """Return the class label of a ground-truth value, comparable with a prediction's class.

    Booleans are ``"true"``/``"false"``, integers and integral floats their decimal digits,
    strings themselves. Other floats are regression targets and have no class.
    """
    if label is True:
        return "true"
    if label is False:
        return "false"
    if isinstance(label, int):
        return str(label)
    if isinstance(label, float):
        return str(int(label)) if label.is_integer() else None
    if isinstance(label, str):
        return label
    return None


def label_number(label: object) -> float | None:
    """Return the numeric value of a ground-truth value (None for booleans and strings)."""
    if isinstance(label, bool) or not isinstance(label, int | float):
        return None
    return float(label)


@dataclass(slots=True)
class LabelStats:
    """Outcomes of labelled predictions in one window; mergeable across partitions."""

    labelled: int = 0
    classified: int = 0
    correct: int = 0
    regressed: int = 0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0
    label_classes: dict[str, int] = field(default_factory=dict)

    def add(
        self, label: object, predicted_class: str | None, predicted_value: float | None
    ) -> bool | None:
        """Record one labelled prediction; return whether it was correct (None if not a class)."""
        self.labelled += 1
        outcome: bool | None = None
        truth_class = label_class(label)
        if truth_class is not None:
            if len(self.label_classes) < 64 or truth_class in self.label_classes:
                self.label_classes[truth_class] = self.label_classes.get(truth_class, 0) + 1
            if predicted_class is not None:
                self.classified += 1
                outcome = truth_class == predicted_class
                self.correct += outcome
        truth_number = label_number(label)
        if truth_number is not None and predicted_value is not None:
            error = predicted_value - truth_number
            self.regressed += 1
            self.abs_error_sum += abs(error)
            self.sq_error_sum += error * error
        return outcome

    def merge(self, other: LabelStats) -> None:
        """Fold ``other`` into this one."""
        self.labelled += other.labelled
        self.classified += other.classified
        self.correct += other.correct
        self.regressed += other.regressed
        self.abs_error_sum += other.abs_error_sum
        self.sq_error_sum += other.sq_error_sum
        for label, n in other.label_classes.items():
            self.label_classes[label] = self.label_classes.get(label, 0) + n

    @property
    def accuracy(self) -> float | None:
        """Share of class predictions that matched their label."""
        return self.correct / self.classified if self.classified else None

    @property
    def mae_value(self) -> float | None:
        """Mean absolute error of numeric predictions."""
        return self.abs_error_sum / self.regressed if self.regressed else None

    @property
    def rmse_value(self) -> float | None:
        """Root mean squared error of numeric predictions."""
        return math.sqrt(self.sq_error_sum / self.regressed) if self.regressed else None

    def metrics(self, predictions: int | None) -> dict[str, float | int]:
        """Return the label metrics (``accuracy``, ``mae``, ``rmse``, ``label_coverage``, ...)."""
        result: dict[str, float | int] = {"labelled_count": self.labelled}
        if self.accuracy is not None:
            result["accuracy"] = self.accuracy
        if self.mae_value is not None:
            result["mae"] = self.mae_value
        if self.rmse_value is not None:
            result["rmse"] = self.rmse_value
        if predictions:
            result["label_coverage"] = min(1.0, self.labelled / predictions)
        return result

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a JSON-able dict with a format version."""
        return {
            "fmt": LABEL_FORMAT_VERSION,
            "n": self.labelled,
            "cls": self.classified,
            "ok": self.correct,
            "reg": self.regressed,
            "abs": self.abs_error_sum,
            "sq": self.sq_error_sum,
            "classes": self.label_classes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelStats:
        """Inverse of :meth:`to_dict`.

        Raises:
            StateFormatError: If written in another format version.
        """
        StateFormatError.require(
            data, LABEL_FORMAT_VERSION, "label stats", "delete the key and restart the worker"
        )
        return cls(
            labelled=int(data["n"]),
            classified=int(data["cls"]),
            correct=int(data["ok"]),
            regressed=int(data["reg"]),
            abs_error_sum=float(data["abs"]),
            sq_error_sum=float(data["sq"]),
            label_classes=dict(data["classes"]),
        )


class Prediction(NamedTuple):
    """What a label needs to know about its prediction.

    The pending set stores the same fields as plain tuples (:data:`PredictionRow`), built in
    C from the batch's columns; a ``Prediction`` is made only for the ones asked for.
    """

    event_ts_ms: int
    model_id: str
    model_version: str
    predicted_class: str | None
    predicted_value: float | None
    seq: int = 0
    """Arrival order on the partition (set by :class:`PendingPredictions`)."""

    def to_list(self) -> list[Any]:
        """Compact form for storage."""
        return list(self)

    @classmethod
    def from_list(cls, data: list[Any]) -> Prediction:
        """Inverse of :meth:`to_list`."""
        ts, model_id, version, predicted_class, value, seq = data
        return cls(int(ts), str(model_id), str(version), predicted_class, value, int(seq))


@dataclass(frozen=True, slots=True)
class PendingChanges:
    """What one step changed in the pending set, as storage records.

    The set is stored as a log of *chunks*, one per step that changed it: the predictions the
    step added (columns, for a fast encoding) and the request ids it removed. Replaying the
    stored chunks in id order rebuilds the set (:meth:`PendingPredictions.restore`). A chunk
    is dropped from storage once it is the oldest and none of its predictions is pending any
    more: its removals only concern older chunks, which are gone by then.
    """

    chunk_id: int | None
    """Id of the new chunk (None: the step changed nothing)."""
    chunk: dict[str, Any] | None
    dropped: list[int]
    """Ids of stored chunks to delete."""


PredictionRow = tuple[int, str, str, str | None, float | None, int]
"""A :class:`Prediction`'s fields, in order, as a plain tuple."""
_PREDICTION_FIELDS = tuple(operator.itemgetter(i) for i in range(len(Prediction._fields)))


class PendingPredictions:
    """Predictions waiting for their label, by request id, bounded in time and count.

    Each step reports its changes as one chunk (:meth:`drain_changes`, :class:`PendingChanges`)
    so the edge writes one record per step, not one per prediction, in the same transaction
    as the checkpoint.
    """

    def __init__(self, horizon_ms: int, max_pending: int) -> None:
        """Keep predictions for ``horizon_ms`` of event time, at most ``max_pending`` of them.

        When full, the oldest :data:`EVICT_SHARE` of ``max_pending`` are evicted at once.
        """
        self._horizon_ms = horizon_ms
        self._max_pending = max_pending
        self._evict_at_once = max(1, int(max_pending * EVICT_SHARE))
        self._items: dict[str, PredictionRow] = {}
        self._added: dict[str, PredictionRow] = {}
        self._removed: dict[str, None] = {}  # a dict: its order is reproducible
        self._next_seq = 0
        # Stored chunks, oldest first: their ids (the first seq each could hold) and how
        # many of their predictions are still pending.
        self._chunk_ids: list[int] = []
        self._chunk_live: list[int] = []
        self._open_chunk_id = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, Prediction]]:
        return ((rid, Prediction._make(row)) for rid, row in self._items.items())

    @property
    def stored_chunks(self) -> int:
        """Chunks the storage holds after the last :meth:`drain_changes`."""
        return len(self._chunk_ids)

    def add(self, request_id: str, prediction: Prediction) -> tuple[bool, int]:
        """Remember a prediction (its ``seq`` is replaced); see :meth:`remember_many`."""
        replaced, evicted = self.remember_many(
            [request_id],
            [prediction.event_ts_ms],
            [prediction.model_id],
            [prediction.model_version],
            [prediction.predicted_class],
            [prediction.predicted_value],
        )
        return replaced > 0, evicted

    def remember_many(
        self,
        request_ids: Sequence[str],
        event_ts_ms: Sequence[int],
        model_ids: Sequence[str],
        model_versions: Sequence[str],
        predicted_classes: Sequence[str | None],
        predicted_values: Sequence[float | None],
    ) -> tuple[int, int]:
        """Remember predictions in arrival order; return (how many replaced one, evicted).

        A request id seen again replaces its earlier prediction and moves to the back (the
        newest), as if the earlier one had been taken first. Called once per batch: the
        stored tuples are built in C from the columns.
        """
        n = len(request_ids)
        seq = self._next_seq
        self._next_seq += n
        rows = zip(
            event_ts_ms,
            model_ids,
            model_versions,
            predicted_classes,
            predicted_values,
            range(seq, seq + n),
            strict=True,
        )
        items = self._items
        new: dict[str, PredictionRow] = dict(zip(request_ids, rows, strict=True))
        replaced = n - len(new)  # repeated inside the batch
        again = new.keys() & items.keys()
        if again:
            replaced += len(again)
            for request_id in again:
                self._forget(request_id)  # re-inserted below, at the back
        if replaced > len(again):
            # Within the batch, dict() kept the last prediction but the first one's place.
            new = {request_id: new[request_id] for request_id in reversed(request_ids)}
            new = dict(reversed(new.items()))
        items.update(new)
        self._added.update(new)
        overflow = len(items) - self._max_pending
        if overflow <= 0:
            return replaced, 0
        oldest = list(itertools.islice(items, max(overflow, self._evict_at_once)))
        self._forget_many(oldest)
        return replaced, len(oldest)

    def get(self, request_id: str) -> Prediction | None:
        """Return the prediction for ``request_id`` without removing it."""
        row = self._items.get(request_id)
        return None if row is None else Prediction._make(row)

    def take(self, request_id: str) -> Prediction | None:
        """Remove and return the prediction for ``request_id`` (None if unknown or expired)."""
        row = self._items.get(request_id)
        if row is None:
            return None
        self._forget(request_id)
        return Prediction._make(row)

    def expire(self, watermark_ms: int) -> int:
        """Drop predictions older than the horizon behind ``watermark_ms``; return how many.

        Predictions are kept in arrival order, which is close to event-time order; the scan
        stops at the first one still within the horizon (a slightly older one behind it waits
        for the next scan).
        """
        limit_ms = watermark_ms - self._horizon_ms
        # One pass, then delete: see EVICT_SHARE for why not one front lookup per entry.
        due = list(itertools.takewhile(lambda item: item[1][0] < limit_ms, self._items.items()))
        self._forget_many([request_id for request_id, _ in due])
        return len(due)

    def _forget(self, request_id: str) -> None:
        row = self._items.pop(request_id)
        # Removed even when added in this step: an earlier chunk may hold the same id.
        self._removed[request_id] = None
        if self._added.pop(request_id, None) is None:
            # Stored in an earlier step's chunk: that one has a pending prediction less.
            at = bisect.bisect_right(self._chunk_ids, row[5]) - 1  # its seq
            if at >= 0:
                self._chunk_live[at] -= 1

    def _forget_many(self, request_ids: list[str]) -> None:
        """:meth:`_forget` for many ids at once (evictions and expiry come in thousands)."""
        if not request_ids:
            return
        rows = list(map(self._items.pop, request_ids))
        self._removed.update(dict.fromkeys(request_ids))
        added = self._added
        stored = [
            row[5]
            for request_id, row in zip(request_ids, rows, strict=True)
            if added.pop(request_id, None) is None
        ]
        if stored and self._chunk_ids:
            at = np.searchsorted(self._chunk_ids, stored, side="right") - 1
            counts = np.bincount(at[at >= 0], minlength=len(self._chunk_ids))
            for index in np.flatnonzero(counts).tolist():
                self._chunk_live[index] -= int(counts[index])

    def drain_changes(self) -> PendingChanges:
        """Return the step's changes as one chunk, and the stored chunks no longer needed."""
        chunk_id: int | None = None
        chunk: dict[str, Any] | None = None
        if self._added or self._removed:
            chunk_id = self._open_chunk_id
            added = self._added
            predictions = list(added.values())
            chunk = {
                "ids": list(added),
                # Columns (one list per Prediction field) encode faster than rows.
                "rows": [list(map(field, predictions)) for field in _PREDICTION_FIELDS],
                # Applied before the additions on restore: an id may be in both.
                "removed": list(self._removed),
            }
            self._chunk_ids.append(chunk_id)
            self._chunk_live.append(len(added))
            # Every chunk takes at least one seq, so ids stay unique and ordered.
            self._next_seq = max(self._next_seq, chunk_id + 1)
            self._open_chunk_id = self._next_seq
            self._added, self._removed = {}, {}
        dropped = 0
        while dropped < len(self._chunk_ids) and self._chunk_live[dropped] <= 0:
            dropped += 1
        gone = self._chunk_ids[:dropped]
        if dropped:
            del self._chunk_ids[:dropped], self._chunk_live[:dropped]
            if chunk_id in gone:  # nothing of it is pending: no need to write it at all
                gone.remove(chunk_id)
                chunk_id, chunk = None, None
        return PendingChanges(chunk_id, chunk, gone)

    def restore(self, chunks: Mapping[int, dict[str, Any]]) -> None:
        """Rebuild the set from its stored chunks (:meth:`drain_changes`), with no changes.

        Raises:
            StateFormatError: If a chunk does not have the stored layout.
        """
        self.__init__(self._horizon_ms, self._max_pending)  # type: ignore[misc]
        items = self._items
        try:
            for chunk_id in sorted(chunks):
                chunk = chunks[chunk_id]
                for request_id in chunk["removed"]:
                    items.pop(request_id, None)
                columns = chunk["rows"]
                rows = zip(*columns, strict=True) if columns else iter(())
                for request_id, row in zip(chunk["ids"], rows, strict=True):
                    items.pop(request_id, None)
                    ts, model_id, version, predicted_class, value, seq = row
                    items[request_id] = (
                        int(ts),
                        str(model_id),
                        str(version),
                        predicted_class,
                        value,
                        int(seq),
                    )
                self._chunk_ids.append(int(chunk_id))
                self._chunk_live.append(0)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(
                f"stored pending predictions are unreadable ({exc!r}); delete the partition's"
                " pending hash and checkpoint and restart the worker"
            ) from exc
        for row in items.values():
            self._chunk_live[bisect.bisect_right(self._chunk_ids, row[5]) - 1] += 1
        last_seq = max((row[5] for row in items.values()), default=-1)
        self._next_seq = max(last_seq, self._chunk_ids[-1] if self._chunk_ids else -1) + 1
        self._open_chunk_id = self._next_seq


@dataclass(slots=True)
class LabelWindow:
    """Label outcomes of one prediction window, tracked until the label horizon has passed.

    ``predictions`` is the window's event count, known once the window closes; ``evaluated``
    records that label rules have judged it; ``drift`` holds the root-cause features (as alert
    dicts) computed when the window closed, for the accuracy alert that may come later.
    """

    stats: LabelStats = field(default_factory=LabelStats)
    predictions: int | None = None
    evaluated: bool = False
    drift: list[dict[str, Any]] = field(default_factory=list)

    def coverage_reached(self, min_coverage: float) -> bool:
        """Whether enough of the window's predictions have labels to judge it."""
        if self.predictions is None or self.stats.labelled == 0:
            return False
        return self.stats.labelled >= math.ceil(min_coverage * self.predictions)

    def to_dict(self, final: bool) -> dict[str, Any]:
        """Serialise as the window hash's label field."""
        return {
            "state": "final" if final else "open",
            "predictions": self.predictions,
            "evaluated": self.evaluated,
            "labels": self.stats.to_dict(),
            "drift": self.drift,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelWindow:
        """Inverse of :meth:`to_dict`."""
        return cls(
            stats=LabelStats.from_dict(data["labels"]),
            predictions=data["predictions"],
            evaluated=bool(data["evaluated"]),
            drift=list(data["drift"]),
        )
