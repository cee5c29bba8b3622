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
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, NamedTuple, cast

import numpy as np
import orjson

from streamwatch.core.columns import FloatArray, IntArray
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


class Outcome(NamedTuple):
    """A label judged against its prediction, once for all the windows that record it."""

    truth_class: str | None
    """The label's class (:func:`label_class`)."""
    correct: bool | None
    """Whether the predicted class is the label's; None if either has no class."""
    error: float | None
    """Predicted minus true number; None unless both are numbers."""


def judge(label: object, predicted_class: str | None, predicted_value: float | None) -> Outcome:
    """Judge one label against its prediction."""
    truth_class = label_class(label)
    correct = None
    if truth_class is not None and predicted_class is not None:
        correct = truth_class == predicted_class
    truth_number = label_number(label)
    error = None
    if truth_number is not None and predicted_value is not None:
        error = predicted_value - truth_number
    return Outcome(truth_class, correct, error)


@dataclass(frozen=True, slots=True)
class Judged:
    """Some labels judged against their predictions (:func:`judge_all`), summed to record."""

    labelled: int
    class_counts: dict[str, int]
    """Labels per class, classes in order of first appearance."""
    classified: int
    correct: int
    errors: list[float]
    """Predicted minus true number of each regression label, in order."""


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Labels judged one by one, as columns: :func:`judge` of each."""

    truth_class: list[str | None]
    correct: list[bool | None]
    error: list[float | None]

    def judged(self, rows: list[int] | None = None) -> Judged:
        """The verdicts at ``rows`` (all if None), summed."""
        classes, correct, errors = self.truth_class, self.correct, self.error
        if rows is not None:
            classes = [classes[i] for i in rows]
            correct = [correct[i] for i in rows]
            errors = [errors[i] for i in rows]
        verdicts = [c for c in correct if c is not None]
        return Judged(
            labelled=len(classes),
            class_counts=dict(Counter([c for c in classes if c is not None])),
            classified=len(verdicts),
            correct=sum(verdicts),
            errors=[e for e in errors if e is not None],
        )


def judge_all(
    labels: list[object],
    predicted_classes: list[str | None],
    predicted_values: list[float | None],
) -> Verdicts:
    """:func:`judge` each label against its prediction, as columns."""
    truth_classes = list(map(label_class, labels))
    truth_numbers = list(map(label_number, labels))
    return Verdicts(
        truth_class=truth_classes,
        correct=[
            None if truth is None or predicted is None else truth == predicted
            for truth, predicted in zip(truth_classes, predicted_classes, strict=True)
        ],
        error=[
            None if truth is None or predicted is None else predicted - truth
            for truth, predicted in zip(truth_numbers, predicted_values, strict=True)
        ],
    )


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
        return self.record(judge(label, predicted_class, predicted_value))

    def record(self, outcome: Outcome) -> bool | None:
        """Record one judged prediction (:func:`judge`); return whether it was correct."""
        self.labelled += 1
        truth_class = outcome.truth_class
        if truth_class is not None:
            if len(self.label_classes) < 64 or truth_class in self.label_classes:
                self.label_classes[truth_class] = self.label_classes.get(truth_class, 0) + 1
            if outcome.correct is not None:
                self.classified += 1
                self.correct += outcome.correct
        error = outcome.error
        if error is not None:
            self.regressed += 1
            self.abs_error_sum += abs(error)
            self.sq_error_sum += error * error
        return outcome.correct

    def record_judged(self, judged: Judged) -> None:
        """Record labels judged at once, as :meth:`record` on each in turn would."""
        self.labelled += judged.labelled
        classes = self.label_classes
        # Whether a class is counted is decided at its first appearance (while fewer than 64
        # are counted), so counting each class's appearances at once gives the same counts.
        for truth_class, n in judged.class_counts.items():
            if len(classes) < 64 or truth_class in classes:
                classes[truth_class] = classes.get(truth_class, 0) + n
        self.classified += judged.classified
        self.correct += judged.correct
        self.regressed += len(judged.errors)
        for error in judged.errors:  # in order: float sums depend on it
            self.abs_error_sum += abs(error)
            self.sq_error_sum += error * error

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

    The pending set keeps these fields as the columns of the batches that brought them; a
    ``Prediction`` is made only for the ones asked for.
    """

    event_ts_ms: int
    model_id: str
    model_version: str
    predicted_class: str | None
    predicted_value: float | None
    seq: int = 0
    """Arrival order on the partition (set by :class:`PendingPredictions`)."""


@dataclass(frozen=True, slots=True)
class Taken:
    """Predictions taken for some labels (:meth:`PendingPredictions.take_many`), as columns."""

    rows: list[int]
    """Index of each label that found its prediction, in order."""
    event_ts_ms: IntArray
    model_id: list[str]
    model_version: list[str]
    predicted_class: list[str | None]
    predicted_value: list[float | None]


@dataclass(frozen=True, slots=True)
class PendingChanges:
    """What one step changed in the pending set, as storage records.

    The set is stored as a log of *chunks*, one per step that changed it: the predictions the
    step added, as columns (``ids``, ``ts``, ``model``, ``version``, ``cls``, ``val``), and
    the rows of chunks that stopped pending in it (``dead``: chunk id -> row numbers). ``ts``
    and ``val`` are numpy arrays (NaN: no predicted value), written as JSON lists (NaN as
    null) by :func:`encode_chunk`.
    Replaying the chunks in id order rebuilds the set (:meth:`PendingPredictions.restore`): a
    request id added again points at its newest row, and dead rows are forgotten. Chunks are
    dropped from the oldest while the oldest holds nothing pending: death records only name
    older chunks, which are gone by then.
    """

    chunk_id: int | None
    """Id of the new chunk (None: the step changed nothing)."""
    chunk: dict[str, Any] | None
    dropped: list[int]
    """Ids of stored chunks to delete."""


def encode_chunk(chunk: dict[str, Any]) -> bytes:
    """A pending chunk (:attr:`PendingChanges.chunk`) as stored: JSON, NaN written as null.

    orjson writes the number columns straight from their arrays: the same bytes as from
    lists of Python numbers, at about a quarter of the cost (times and values together ~26
    against ~104 ns a prediction, measured on 10,000 rows).
    """
    return orjson.dumps(chunk, option=orjson.OPT_SERIALIZE_NUMPY)


class _Chunk:
    """The predictions one step added: the step's own columns, not copied (but the numbers).

    Event times are an int64 array (8 bytes a prediction; a list of ints took 40), predicted
    values a float64 one (NaN: none).
    """

    __slots__ = ("cursor", "first_seq", "ids", "models", "predicted", "ts", "values", "versions")

    def __init__(
        self,
        first_seq: int,
        ids: list[str],
        ts: IntArray,
        models: list[str],
        versions: list[str],
        predicted: list[str | None],
        values: FloatArray,
    ) -> None:
        self.first_seq = first_seq
        self.ids = ids
        self.ts = ts
        self.models = models
        self.versions = versions
        self.predicted = predicted
        self.values = values
        #: Rows before this one are known not to be pending (scans resume here).
        self.cursor = 0

    def prediction(self, row: int) -> Prediction:
        return Prediction(
            int(self.ts[row]),
            self.models[row],
            self.versions[row],
            self.predicted[row],
            _value(self.values.item(row)),
            self.first_seq + row,
        )

    def record(self, dead: dict[int, list[int]]) -> dict[str, Any]:
        return {
            "ids": self.ids,
            "ts": self.ts,
            "model": self.models,
            "version": self.versions,
            "cls": self.predicted,
            "val": self.values,
            "dead": {str(k): v for k, v in dead.items()},
        }


def _value(value: float) -> float | None:
    return None if value != value else value  # NaN: no value


#: The bisect key of the chunks, which are kept in order of their first seq (C-level: a key
#: function call per comparison would cost more than the search on a label's hot path).
_first_seq = operator.attrgetter("first_seq")


class PendingPredictions:
    """Predictions waiting for their label, by request id, bounded in time and count.

    Kept as the columns of the steps that added them plus one index from request id to arrival
    number (``seq``): remembering a batch is one dict update, not an object per prediction. A
    request id seen again points at its newest prediction; the older row is no longer pending.
    Each step reports its changes as one chunk (:meth:`drain_changes`), so the edge writes one
    record per step, not one per prediction.
    """

    def __init__(self, horizon_ms: int, max_pending: int) -> None:
        """Keep predictions for ``horizon_ms`` of event time, at most ``max_pending`` of them.

        When full, the oldest :data:`EVICT_SHARE` of ``max_pending`` are evicted at once.
        """
        self._horizon_ms = horizon_ms
        self._max_pending = max_pending
        self._evict_at_once = max(1, int(max_pending * EVICT_SHARE))
        self._index: dict[str, int] = {}
        self._chunks: list[_Chunk] = []  # oldest first
        self._next_seq = 0
        self._fresh = 0  # chunks added since the last drain (the last ones of _chunks)
        self._dead: dict[int, list[int]] = {}  # chunk id -> rows that stopped pending

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[tuple[str, Prediction]]:
        """Pending predictions in arrival order."""
        index = self._index
        for chunk in self._chunks:
            base, ids = chunk.first_seq, chunk.ids
            for row in range(chunk.cursor, len(ids)):
                if index.get(ids[row]) == base + row:
                    yield ids[row], chunk.prediction(row)

    @property
    def stored_chunks(self) -> int:
        """Chunks the storage holds after the last :meth:`drain_changes`."""
        return len(self._chunks) - self._fresh

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
        request_ids: list[str],
        event_ts_ms: IntArray | list[int],
        model_ids: list[str],
        model_versions: list[str],
        predicted_classes: list[str | None],
        predicted_values: FloatArray | list[float | None],
    ) -> tuple[int, int]:
        """Remember predictions in arrival order; return (how many replaced one, evicted).

        The lists are kept, not copied: the caller must not change them afterwards (the
        numbers are copied into arrays). A missing predicted value is None or NaN.
        """
        n = len(request_ids)
        if n == 0:
            return 0, 0
        seq = self._next_seq
        self._next_seq += n
        index = self._index
        before = len(index)
        index.update(zip(request_ids, range(seq, seq + n), strict=True))
        replaced = n - (len(index) - before)  # the older rows are simply not pending now
        self._chunks.append(
            _Chunk(
                seq,
                request_ids,
                # Copies: a view would keep the step's whole column alive.
                np.array(event_ts_ms, dtype=np.int64),
                model_ids,
                model_versions,
                predicted_classes,
                np.array(predicted_values, dtype=np.float64),  # None: NaN
            )
        )
        self._fresh += 1
        overflow = len(index) - self._max_pending
        if overflow <= 0:
            return replaced, 0
        return replaced, self._drop_oldest(max(overflow, self._evict_at_once), None)

    def take(self, request_id: str, model_id: str | None = None) -> Prediction | None:
        """Remove and return the prediction for ``request_id`` (None if unknown or expired).

        With ``model_id``, only a prediction that model made: a label naming another model
        must not use up the prediction's label, which stays pending (None is returned).
        """
        seq = self._index.get(request_id)
        if seq is None:
            return None
        chunk = self._chunk_of(seq)
        row = seq - chunk.first_seq
        if model_id is not None and chunk.models[row] != model_id:
            return None
        del self._index[request_id]
        self._dead.setdefault(chunk.first_seq, []).append(row)
        return chunk.prediction(row)

    def take_many(self, request_ids: Sequence[str | None], model_ids: Sequence[str]) -> Taken:
        """:meth:`take` each (request id, model id) in turn; return the predictions taken."""
        index = self._index
        # One lookup a label (the index is large and cold: ~0.4 µs each), and a request id's
        # second label in the call finds nothing, as with one call per label.
        pop = cast("Callable[[str | None, None], int | None]", index.pop)
        popped = list(map(pop, request_ids, repeat(None)))
        asked = [i for i, seq in enumerate(popped) if seq is not None]
        chunks = self._chunks
        firsts = np.array([chunk.first_seq for chunk in chunks], dtype=np.int64)
        seqs = np.array([popped[i] for i in asked], dtype=np.int64)
        chunk_at = np.searchsorted(firsts, seqs, side="right") - 1
        row_at = seqs - firsts[chunk_at]
        chunk_of, row_of = chunk_at.tolist(), row_at.tolist()
        models = [chunks[c].models[row] for c, row in zip(chunk_of, row_of, strict=True)]
        if any(model != model_ids[i] for model, i in zip(models, asked, strict=True)):
            # A label naming another model leaves its prediction pending, for a later label
            # of the same request id: put everything back and take one label at a time.
            for i in asked:
                index[request_ids[i]] = popped[i]  # type: ignore[index,assignment]
            return self._take_each(request_ids, model_ids)
        ts = np.empty(len(asked), dtype=np.int64)
        values = np.empty(len(asked), dtype=np.float64)
        for c in dict.fromkeys(chunk_of):
            mine = np.flatnonzero(chunk_at == c)
            chunk = chunks[c]
            rows = row_at[mine]
            ts[mine] = chunk.ts[rows]
            values[mine] = chunk.values[rows]
            self._dead.setdefault(chunk.first_seq, []).extend(rows.tolist())
        pairs = list(zip(chunk_of, row_of, strict=True))
        return Taken(
            rows=asked,
            event_ts_ms=ts,
            model_id=models,
            model_version=[chunks[c].versions[row] for c, row in pairs],
            predicted_class=[chunks[c].predicted[row] for c, row in pairs],
            predicted_value=[None if v != v else v for v in values.tolist()],  # NaN: none
        )

    def _take_each(self, request_ids: Sequence[str | None], model_ids: Sequence[str]) -> Taken:
        """:meth:`take_many`, one :meth:`take` at a time."""
        rows: list[int] = []
        taken: list[Prediction] = []
        for i, (request_id, model_id) in enumerate(zip(request_ids, model_ids, strict=True)):
            prediction = self.take(request_id, model_id) if request_id is not None else None
            if prediction is not None:
                rows.append(i)
                taken.append(prediction)
        return Taken(
            rows=rows,
            event_ts_ms=np.array([p.event_ts_ms for p in taken], dtype=np.int64),
            model_id=[p.model_id for p in taken],
            model_version=[p.model_version for p in taken],
            predicted_class=[p.predicted_class for p in taken],
            predicted_value=[p.predicted_value for p in taken],
        )

    def expire(self, watermark_ms: int) -> int:
        """Drop predictions older than the horizon behind ``watermark_ms``; return how many.

        Predictions are scanned in arrival order, which is close to event-time order; the scan
        stops at the first one still within the horizon (a slightly older one behind it waits
        for the next scan).
        """
        return self._drop_oldest(None, watermark_ms - self._horizon_ms)

    def _drop_oldest(self, count: int | None, before_ms: int | None) -> int:
        """Drop pending predictions, oldest first; return how many.

        Stops after ``count`` of them, or (with ``before_ms``) at the first pending prediction
        not older than ``before_ms``.
        """
        index = self._index
        dropped = 0
        for chunk in self._chunks:
            base, ids, ts = chunk.first_seq, chunk.ids, chunk.ts
            row, end = chunk.cursor, len(ids)
            # Rows before ``older`` are all older than ``before_ms`` (found at C speed); a
            # scan that passes it (over rows no longer pending) compares row by row.
            older = end
            if before_ms is not None:
                newer = np.flatnonzero(ts[row:] >= before_ms)
                if newer.size:
                    older = row + int(newer[0])
            rows: list[int] = []
            while row < end:
                request_id = ids[row]
                if index.get(request_id) == base + row:
                    if count is not None and dropped + len(rows) >= count:
                        break
                    if row >= older and ts[row] >= before_ms:
                        break
                    del index[request_id]
                    rows.append(row)
                row += 1
            chunk.cursor = row
            if rows:
                self._dead.setdefault(base, []).extend(rows)
                dropped += len(rows)
            if row < end:
                break
        return dropped

    def _chunk_of(self, seq: int) -> _Chunk:
        return self._chunks[bisect.bisect_right(self._chunks, seq, key=_first_seq) - 1]

    def _spent(self, chunk: _Chunk) -> bool:
        """Whether nothing of ``chunk`` is pending (advancing its cursor over dead rows)."""
        base, ids, index = chunk.first_seq, chunk.ids, self._index
        row = chunk.cursor
        while row < len(ids) and index.get(ids[row]) != base + row:
            row += 1
        chunk.cursor = row
        return row == len(ids)

    def drain_changes(self) -> PendingChanges:
        """Return the step's changes as one chunk, and the stored chunks no longer needed."""
        fresh = self._chunks[len(self._chunks) - self._fresh :]
        if len(fresh) > 1:  # more than one batch this step: one chunk for storage
            merged = _Chunk(
                fresh[0].first_seq,
                list(chain.from_iterable(c.ids for c in fresh)),
                np.concatenate([c.ts for c in fresh]),
                list(chain.from_iterable(c.models for c in fresh)),
                list(chain.from_iterable(c.versions for c in fresh)),
                list(chain.from_iterable(c.predicted for c in fresh)),
                np.concatenate([c.values for c in fresh]),
            )
            for c in fresh[1:]:
                rows = self._dead.pop(c.first_seq, None)
                if rows:
                    offset = c.first_seq - merged.first_seq
                    self._dead.setdefault(merged.first_seq, []).extend(r + offset for r in rows)
            del self._chunks[-len(fresh) :]
            self._chunks.append(merged)
            fresh = [merged]
        elif not fresh and self._dead:
            # Only deaths this step: they get a chunk of their own (it takes one seq).
            empty = _Chunk(self._next_seq, [], np.empty(0, np.int64), [], [], [], np.empty(0))
            self._next_seq += 1
            self._chunks.append(empty)
            fresh = [empty]
        self._fresh = 0
        spent = 0
        while spent < len(self._chunks) and self._spent(self._chunks[spent]):
            spent += 1
        gone = {c.first_seq for c in self._chunks[:spent]}
        del self._chunks[:spent]
        dead = {k: sorted(v) for k, v in self._dead.items() if k not in gone}
        self._dead = {}
        new = fresh[0] if fresh else None
        if new is None or new.first_seq in gone:
            return PendingChanges(None, None, sorted(gone - {new.first_seq} if new else gone))
        dropped = sorted(gone)
        return PendingChanges(new.first_seq, new.record(dead), dropped)

    def restore(self, chunks: Mapping[int, dict[str, Any]]) -> None:
        """Rebuild the set from its stored chunks (:meth:`drain_changes`), with no changes.

        Raises:
            StateFormatError: If a chunk does not have the stored layout.
        """
        self.__init__(self._horizon_ms, self._max_pending)  # type: ignore[misc]
        index = self._index
        try:
            for chunk_id in sorted(chunks):
                record = chunks[chunk_id]
                seq = int(chunk_id)
                chunk = _Chunk(
                    seq,
                    [str(x) for x in record["ids"]],
                    np.array([int(x) for x in record["ts"]], dtype=np.int64),
                    [str(x) for x in record["model"]],
                    [str(x) for x in record["version"]],
                    list(record["cls"]),
                    np.array(
                        [math.nan if v is None else float(v) for v in record["val"]],
                        dtype=np.float64,
                    ),
                )
                n = len(chunk.ids)
                lengths = {len(chunk.ts), len(chunk.models), len(chunk.versions)}
                if lengths | {len(chunk.predicted), len(chunk.values)} != {n}:
                    raise ValueError(f"chunk {chunk_id} has columns of different lengths")
                self._chunks.append(chunk)
                index.update(zip(chunk.ids, range(seq, seq + n), strict=True))
                for owner, rows in record["dead"].items():
                    first = int(owner)
                    at = bisect.bisect_right(self._chunks, first, key=_first_seq) - 1
                    if at < 0 or self._chunks[at].first_seq != first:
                        continue  # that chunk was dropped: nothing of it is pending
                    dead_ids = self._chunks[at].ids
                    for row in rows:
                        if index.get(dead_ids[row]) == first + row:
                            del index[dead_ids[row]]
                self._next_seq = max(self._next_seq, seq + max(n, 1))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise StateFormatError(
                f"stored pending predictions are unreadable ({exc!r}); delete the partition's"
                " pending hash and checkpoint and restart the worker"
            ) from exc


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
