"""Decode all inference messages of a processor step into one columnar :class:`InferenceBatch`.

:class:`InferenceDecoder` gives, for any message values, exactly what
:meth:`EventDecoder.decode_indexed` gives message by message (the same events as columns, the
same rejects), without building a pydantic object per event:

* **Row form** (one event ``{...}``, an array ``[{...}, ...]``, an envelope
  ``{"events": [...]}``): every message is parsed by orjson, and the rows of consecutive
  messages are validated together, column by column, in bulk (:mod:`.bulk_columns`).
* **Columnar form** (``{"columns": {...}}``, the SDK's default): columns arrive as JSON
  arrays, so the checks run on them directly. Row ``i`` is the row-form event made of the
  ``i``-th entries (a scalar applies to every row; a null entry means the field is absent).

The bulk checks only accept what pydantic accepts, with the same values. A row they doubt is
validated by pydantic on its own (:meth:`EventDecoder.validate_item`): a rejected row is
dead-lettered with the row form's reason; a row pydantic accepts after all sends its whole
message to :meth:`EventDecoder.decode_indexed` (or, columnar, to the item-by-item path over
its rows). So the fast path costs only speed when it is too strict, never correctness.

Whole-message rejects of the columnar form (reason ``invalid_envelope`` unless said):
``columns`` not an object, an unknown column, ``request_id`` not an array, a column whose
length is not ``request_id``'s, a nested column (``features``, ...) not an object of such
arrays, an unknown envelope key; ``unsupported_schema_version``; ``too_many_events``;
``duplicate_key`` for a key repeated in the envelope's shape (a key repeated inside a cell
rejects that row, as in an array); ``too_deeply_nested``. One difference from its rows sent as
a JSON array: an integer prediction beyond 64 bits reads as a number, as it does in an
``{"events": [...]}`` envelope (orjson gives a float), not also as a class label.

Rows of consecutive messages of one form are checked and built together, in chunks of about
:data:`ROW_CHUNK_ROWS` (:data:`COLUMNAR_CHUNK_ROWS`) rows, so a thousand single-event messages
cost one column build; a message the fast path leaves alone splits the run around it.

Example:
    >>> decoder = InferenceDecoder()
    >>> step = decoder.decode_step([
    ...     b'{"columns": {"request_id": ["a", "b"], "model_id": "m", "model_version": "1",'
    ...     b' "timestamp": [1700000000.0, 1700000000.5], "latency_ms": [12, -1],'
    ...     b' "features": {"x": [0.5, null]}}}',
    ...     b'{"request_id": "c", "model_id": "m", "model_version": "1",'
    ...     b' "timestamp": "2023-11-14T22:13:21Z", "latency_ms": 3}',
    ... ])
    >>> step.batch.request_id, step.message_of, step.batch.positions
    (['a', 'c'], [0, 1], [0, None])
    >>> step.batch.columns.event_ts_ms.tolist(), step.batch.columns.features["x"].numeric.tolist()
    ([1700000000000, 1700000001000], [0.5, nan])
    >>> [(r.reason, r.batch_index, r.original) for r in step.rejects[0]]  # doctest: +ELLIPSIS
    [('invalid_event', 1, b'{"request_id":"b","model_id":"m","model_version":"1",...')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson

from streamwatch.core.bulk_columns import (
    NESTED_COLUMNS,
    SCALAR_COLUMNS,
    Built,
    ColumnBuilder,
    Columns,
    columns_of_envelope,
    columns_of_rows,
    count_keys,
)
from streamwatch.core.columns import InferenceBatch
from streamwatch.core.decode import (
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_NESTING_DEPTH,
    REASON_BAD_ENVELOPE,
    REASON_DUPLICATE_KEY,
    REASON_INVALID_JSON,
    REASON_SCHEMA_VERSION,
    DuplicateKeys,
    EventDecoder,
    Reject,
    clip,
    colons,
    document_shape,
    encode_original,
    json_reject,
    lenient_loads,
    time_reject,
    too_deep,
    written_keys,
)
from streamwatch.events import EVENT_SCHEMA_VERSION, InferenceEvent

__all__ = ["COLUMN_NAMES", "DecodedStep", "InferenceDecoder"]

#: The columns of the columnar envelope, in the order of the contract.
COLUMN_NAMES: Final = tuple(n for n in InferenceEvent.model_fields if n != "schema_version")
_ENVELOPE_KEYS: Final = frozenset({"columns", "schema_version"})
#: Rows of consecutive messages are built together up to about this many: enough to make
#: numpy's cost per call small, few enough that parsed rows are still in the CPU cache (JSON
#: rows are ~2 KB of Python objects each; a columnar row is a few list entries).
ROW_CHUNK_ROWS: Final = 1_000
COLUMNAR_CHUNK_ROWS: Final = 10_000


@dataclass(frozen=True, slots=True)
class DecodedStep:
    """The inference messages of one step: their valid events as columns, and the rejects."""

    batch: InferenceBatch
    """Valid events of all messages, in message order, then batch order."""
    message_of: list[int]
    """For each event of ``batch``: the index of its message in the decoded values."""
    rejects: list[list[Reject]]
    """Per message (in the order of the values): its rejects, in batch order."""


# What a step makes of a message when it reads it.
_ROWS, _SINGLE, _COLUMNAR, _EXPAND, _SLOW, _DONE = range(6)
#: Messages of one family are decoded together: row form, or columnar form.
_FAMILY = {_ROWS: 1, _SINGLE: 1, _COLUMNAR: 2, _EXPAND: 0, _SLOW: 0, _DONE: 0}
_CHUNK_ROWS = {1: ROW_CHUNK_ROWS, 2: COLUMNAR_CHUNK_ROWS}


@dataclass(slots=True)
class _Step:
    """The messages of one step on their way: parallel lists, one entry per message.

    No object per message: a step may hold thousands of single-event messages, and every
    object that lives through the step is work for the garbage collector.
    """

    values: Sequence[bytes | None]
    not_after_ms: int | None
    kinds: list[int]
    documents: list[Any]
    """The parsed JSON (``_EXPAND``: perhaps from :func:`lenient_loads`, see ``lenient``)."""
    items: list[Any]
    """Row form: the message's rows, or its one event; columnar form: its columns."""
    rejects: list[list[Reject]]
    lenient: set[int] = field(default_factory=set)

    def value(self, i: int) -> bytes:
        return self.values[i] or b""

    def size(self, i: int) -> int:
        kind = self.kinds[i]
        if kind == _SINGLE:
            return 1
        return len(self.items[i]["request_id"] if kind == _COLUMNAR else self.items[i])

    def item(self, i: int, position: int) -> Any:
        """Row ``position`` of message ``i``, as a row-form event."""
        kind = self.kinds[i]
        if kind == _SINGLE:
            return self.items[i]
        return _expand(self.items[i], position) if kind == _COLUMNAR else self.items[i][position]

    def keys(self, i: int) -> int:
        """Object keys of message ``i`` outside its rows (:func:`count_keys` counts those)."""
        kind = self.kinds[i]
        document = self.documents[i]
        if kind == _COLUMNAR:
            columns = self.items[i]
            nested = sum(len(columns[name]) for name in NESTED_COLUMNS if name in columns)
            return len(document) + len(columns) + nested
        return len(document) if kind == _ROWS and type(document) is dict else 0


@dataclass(slots=True)
class _Part:
    """Events of consecutive messages, as columns."""

    batch: InferenceBatch
    message_of: list[int]


class InferenceDecoder:
    """Decodes the inference messages of a step into one :class:`InferenceBatch`."""

    def __init__(
        self,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        """Create a decoder; the limits are those of :class:`EventDecoder`."""
        self._decoder = EventDecoder(InferenceEvent, max_message_bytes, max_events)
        self._builder = ColumnBuilder()
        self._max_bytes = max_message_bytes
        self._max_events = max_events

    def decode_step(
        self, values: Sequence[bytes | None], *, not_after_ms: int | None = None
    ) -> DecodedStep:
        """Decode the values of a step's inference messages, in order.

        Args:
            values: Raw message values.
            not_after_ms: Events later than this (Unix ms) are rejected as
                ``timestamp_in_future``; None: no limit. Events before 1970 are always rejected.
        """
        n = len(values)
        step = _Step(
            values, not_after_ms, [_SLOW] * n, [None] * n, [None] * n, [[] for _ in values]
        )
        parts: list[_Part] = []
        run: list[int] = []
        run_family = run_rows = 0
        read = self._read
        for i, value in enumerate(values):
            kind = read(step, i, value)
            family = _FAMILY[kind]
            if run and (family != run_family or run_rows >= _CHUNK_ROWS[run_family]):
                parts.extend(self._run(step, run))
                run, run_rows = [], 0
            if family:
                run.append(i)
                run_family = family
                run_rows += 1 if kind == _SINGLE else step.size(i)
            elif kind != _DONE:
                parts.extend(self._alone(step, i))
        if run:
            parts.extend(self._run(step, run))
        for rejects in step.rejects:
            if len(rejects) > 1:
                rejects.sort(key=_batch_order)
        parts = [p for p in parts if p.batch.size]
        if not parts:
            return DecodedStep(InferenceBatch.from_events([], [], []), [], step.rejects)
        return DecodedStep(
            InferenceBatch.concat([p.batch for p in parts]),
            [i for p in parts for i in p.message_of],
            step.rejects,
        )

    # -- reading ----------------------------------------------------------------------------

    def _read(self, step: _Step, i: int, value: bytes | None) -> int:
        """Parse message ``i`` and return its kind; what no fast path can take stays slow."""
        if not value or len(value) > self._max_bytes:
            return _SLOW
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return self._read_lenient(step, i, value, exc)
        kind = type(document)
        if kind is list:
            if len(document) > self._max_events:
                return self._done(step, i, self._decoder.too_many(len(document), value))
            return self._keep(step, i, _ROWS, document, document)
        if kind is not dict:
            return _SLOW
        if "request_id" in document:
            if "events" in document:
                events = document["events"]
                if type(events) is list and len(events) > self._max_events:
                    return self._done(step, i, self._decoder.too_many(len(events), value))
            step.kinds[i] = _SINGLE
            step.documents[i] = step.items[i] = document
            return _SINGLE
        if "events" in document:
            events = document["events"]
            if type(events) is list and len(events) > self._max_events:
                return self._done(step, i, self._decoder.too_many(len(events), value))
            version = document.get("schema_version", EVENT_SCHEMA_VERSION)
            if (
                type(events) is list
                and document.keys() <= {"events", "schema_version"}
                and type(version) is int
                and version == EVENT_SCHEMA_VERSION
            ):
                return self._keep(step, i, _ROWS, document, events)
            return _SLOW
        if "columns" in document:
            reject = self._envelope_reject(document, value)
            if reject is not None:
                if written_keys(value) != document_shape(document)[1]:
                    # A repeated key may be what broke the shape: say so, if it is one.
                    marked = lenient_loads(value, require_marks=False)
                    repeated = None if marked is None else self._envelope_reject(marked, value)
                    if repeated is not None and repeated.reason == REASON_DUPLICATE_KEY:
                        reject = repeated
                return self._done(step, i, reject)
            return self._keep(step, i, _COLUMNAR, document, document["columns"])
        return self._keep(step, i, _SINGLE, document, document)

    def _read_lenient(self, step: _Step, i: int, value: bytes, exc: orjson.JSONDecodeError) -> int:
        """A columnar envelope orjson refuses (NaN, big numbers) is decoded row by row."""
        if b'"columns"' not in value or json_reject(value, exc).reason != REASON_INVALID_JSON:
            return _SLOW
        document = lenient_loads(value, require_marks=True)
        if not _is_columnar(document):
            return _SLOW
        reject = self._envelope_reject(document, value)
        if reject is not None:
            return self._done(step, i, reject)
        step.lenient.add(i)
        return self._keep(step, i, _EXPAND, document, document["columns"])

    @staticmethod
    def _keep(step: _Step, i: int, kind: int, document: Any, items: Any) -> int:
        step.kinds[i], step.documents[i], step.items[i] = kind, document, items
        return kind

    @staticmethod
    def _done(step: _Step, i: int, reject: Reject) -> int:
        step.kinds[i] = _DONE
        step.rejects[i] = [reject]
        return _DONE

    # -- one message on its own -------------------------------------------------------------

    def _alone(self, step: _Step, i: int) -> list[_Part]:
        """The exact path for message ``i``, for what the fast path leaves alone."""
        if step.kinds[i] == _DONE:
            return []
        if step.kinds[i] in (_COLUMNAR, _EXPAND):
            part = self._expanded(step, i)
        else:
            decoded = self._decoder.decode_indexed(step.values[i], not_after_ms=step.not_after_ms)
            step.rejects[i] = decoded.rejects
            part = _Part(
                InferenceBatch.from_events(
                    decoded.events, decoded.positions, decoded.timestamps_ms
                ),
                [i] * len(decoded.events),
            )
        step.documents[i] = step.items[i] = None
        return [] if part is None else [part]

    def _expanded(self, step: _Step, i: int) -> _Part | None:
        """A columnar envelope's rows, item by item, as if sent as a JSON array."""
        columns = step.items[i]
        rows = [_expand(columns, row) for row in range(len(columns["request_id"]))]
        value = step.value(i)
        if document_shape(rows)[0] > MAX_NESTING_DEPTH:
            step.rejects[i] = [too_deep(value)]
            return None
        decoded = self._decoder.decode_parsed(rows, value, i in step.lenient, step.not_after_ms)
        step.rejects[i] = decoded.rejects
        return _Part(
            InferenceBatch.from_events(decoded.events, decoded.positions, decoded.timestamps_ms),
            [i] * len(decoded.events),
        )

    # -- runs of messages -------------------------------------------------------------------

    def _run(self, step: _Step, run: list[int]) -> list[_Part]:
        """Decode consecutive messages of one form: one column build for all their rows."""
        parts = self._decode_run(step, run)
        for i in run:  # the step needs them no longer: let the garbage collector have them
            step.documents[i] = step.items[i] = None
        return parts

    def _decode_run(self, step: _Step, run: list[int]) -> list[_Part]:
        columns, rows = self._gather(step, run)
        positions, owners = _places(step, run)
        sizes = [step.size(i) for i in run]
        suspects = self._repeated_keys(step, run, columns)
        built = self._builder.build(columns, step.not_after_ms)
        if built.batch is not None and not suspects:
            built.batch.positions = positions
            return [_Part(built.batch, owners)]
        # Some rows need a closer look: settle them message by message, then build the other
        # rows again (a check that doubted a row must leave no trace in the columns).
        alone = set(suspects)
        dropped = built.dropped
        start = 0
        for i, size in zip(run, sizes, strict=True):
            end = start + size
            if (
                i not in alone
                and dropped[start:end].any()
                and not self._settle(step, i, built, start)
            ):
                alone.add(i)
            start = end
        parts: list[_Part] = []
        kept: list[int] = []
        start = 0
        for i, size in zip(run, sizes, strict=True):
            end = start + size
            if i in alone:
                parts.extend(self._rebuild(step, columns, rows, kept, positions, owners))
                kept = []
                parts.extend(self._alone(step, i))
            else:
                kept.extend((np.flatnonzero(~dropped[start:end]) + start).tolist())
            start = end
        parts.extend(self._rebuild(step, columns, rows, kept, positions, owners))
        return parts

    @staticmethod
    def _gather(step: _Step, run: list[int]) -> tuple[Columns, list[Any]]:
        """The columns of a run's messages, and (row form) their rows."""
        if step.kinds[run[0]] == _COLUMNAR:
            envelopes = [columns_of_envelope(step.items[i], step.size(i)) for i in run]
            return Columns.concat(envelopes), []
        rows: list[Any] = []
        for i in run:
            if step.kinds[i] == _SINGLE:
                rows.append(step.items[i])
            else:
                rows.extend(step.items[i])
        return columns_of_rows(rows), rows

    def _repeated_keys(self, step: _Step, run: list[int], columns: Columns) -> set[int]:
        """Messages whose bytes repeat a key, or may (orjson keeps the last value silently).

        A row-form message that may goes the exact way, which finds out. A columnar envelope
        is parsed again marking repeats: a repeat in its shape rejects it whole, one in a
        cell sends it the exact way (where that row is rejected); none, and it stays.
        """
        kinds, values = step.kinds, step.values
        parsed = columns.keys + sum([step.keys(i) for i in run if kinds[i] != _SINGLE])
        counted = [colons(values[i] or b"") for i in run]
        if sum(counted) == parsed:
            return set()  # each colon ends a key that was parsed: none was repeated
        if sum(map(written_keys, [values[i] or b"" for i in run], counted)) == parsed:
            return set()  # colons in strings (times, URLs), but no key end more than parsed
        suspects = set()
        for i in run:
            value, keys = step.value(i), step.keys(i)
            if step.kinds[i] != _COLUMNAR:
                keys += count_keys([step.items[i]] if step.kinds[i] == _SINGLE else step.items[i])
                if keys != written_keys(value):
                    suspects.add(i)
            elif keys != written_keys(value):
                marked = lenient_loads(value, require_marks=True)
                if marked is not None:
                    suspects.add(i)
                    reject = self._envelope_reject(marked, value)
                    if reject is not None:
                        self._done(step, i, reject)
                    else:
                        step.documents[i], step.items[i] = marked, marked["columns"]
                        step.lenient.add(i)
        return suspects

    def _settle(self, step: _Step, i: int, built: Built, start: int) -> bool:
        """Reject the dropped rows of message ``i``; False if it must be decoded alone."""
        doubted = built.doubted
        kind = step.kinds[i]
        n = step.size(i)
        if doubted is not None and doubted[start : start + n].any():
            if kind == _SINGLE:
                return False
            if kind == _COLUMNAR:
                # As deep as its rows as an array (one level per column instead of per row):
                # too deep, it goes the exact way, which rejects it whole.
                if document_shape(step.items[i])[0] > MAX_NESTING_DEPTH:
                    return False
            else:
                depth, keys = document_shape(step.documents[i])
                if depth > MAX_NESTING_DEPTH or keys != written_keys(step.value(i)):
                    return False
        rejects: list[Reject] = []
        for position in range(n):
            row = start + position
            if doubted is not None and doubted[row]:
                _event, reject = self._decoder.validate_item(step.item(i, position), position)
                if reject is None:
                    return False  # the bulk checks were stricter than pydantic
                rejects.append(reject)
            elif built.late is not None and built.late[row]:
                item = step.item(i, position)
                ts_ms = int(built.ts_ms[row])
                reason, detail = time_reject(ts_ms, item["request_id"], step.not_after_ms)
                if kind == _SINGLE:
                    rejects.append(Reject(reason, detail, step.value(i)))
                else:
                    rejects.append(Reject(reason, detail, encode_original(item), position))
        step.rejects[i] = rejects
        return True

    def _rebuild(
        self,
        step: _Step,
        columns: Columns,
        rows: list[Any],
        kept: list[int],
        positions: list[int | None],
        owners: list[int],
    ) -> list[_Part]:
        """Build the kept rows (of the run's columns) again."""
        if not kept:
            return []
        subset = columns.take(kept) if not rows else columns_of_rows([rows[r] for r in kept])
        built = self._builder.build(subset, step.not_after_ms)
        if built.batch is None:  # not expected: each of these rows passed before
            parts: list[_Part] = []
            for i in dict.fromkeys(owners[r] for r in kept):
                step.rejects[i] = []
                parts.extend(self._alone(step, i))
            return parts
        built.batch.positions = [positions[r] for r in kept]
        return [_Part(built.batch, [owners[r] for r in kept])]

    def _envelope_reject(self, document: dict[str, Any], value: bytes) -> Reject | None:
        """Why a columnar envelope is rejected whole, or None if its shape is right."""
        columns = document.get("columns")
        for where, member in (("envelope", document), ("columns", columns)):
            if isinstance(member, DuplicateKeys):
                return Reject(REASON_DUPLICATE_KEY, member.describe(where), value)
        if isinstance(columns, dict):
            for name in NESTED_COLUMNS:
                nested = columns.get(name)
                if isinstance(nested, DuplicateKeys):
                    return Reject(REASON_DUPLICATE_KEY, nested.describe(f"columns.{name}"), value)
        unknown = document.keys() - _ENVELOPE_KEYS
        if unknown:
            names = [clip(k, 64) for k in sorted(unknown)[:5]]
            return _bad_envelope(
                f"unknown envelope keys {names}; a columnar envelope has 'columns' and"
                " optionally 'schema_version'",
                value,
            )
        version = document.get("schema_version", EVENT_SCHEMA_VERSION)
        if type(version) is not int or version != EVENT_SCHEMA_VERSION:
            return Reject(
                REASON_SCHEMA_VERSION,
                f"envelope schema_version {clip(repr(version), 64)} is not supported;"
                f" this worker reads {EVENT_SCHEMA_VERSION}",
                value,
            )
        if not isinstance(columns, dict):
            return _bad_envelope("'columns' must be a JSON object: column name -> values", value)
        request_ids = columns.get("request_id")
        if not isinstance(request_ids, list):
            return _bad_envelope(
                "'columns.request_id' must be a JSON array; its length is the batch size", value
            )
        n = len(request_ids)
        if n > self._max_events:
            return self._decoder.too_many(n, value)
        unknown = columns.keys() - set(COLUMN_NAMES)
        if unknown:
            names = [clip(k, 64) for k in sorted(unknown)[:5]]
            return _bad_envelope(
                f"unknown columns {names}; valid columns are {list(COLUMN_NAMES)}", value
            )
        for name, column in columns.items():
            problem = _column_problem(name, column, n)
            if problem is not None:
                return _bad_envelope(problem, value)
        return None


# -- helpers -------------------------------------------------------------------------------


def _batch_order(reject: Reject) -> int:
    return -1 if reject.batch_index is None else reject.batch_index


def _places(step: _Step, run: list[int]) -> tuple[list[int | None], list[int]]:
    """Position in its message (None for a single event) and message of each row of a run."""
    positions: list[int | None] = []
    owners: list[int] = []
    for i in run:
        if step.kinds[i] == _SINGLE:
            positions.append(None)
            owners.append(i)
        else:
            n = step.size(i)
            positions.extend(range(n))
            owners.extend([i] * n)
    return positions, owners


def _is_columnar(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and "columns" in document
        and "events" not in document
        and "request_id" not in document
    )


def _bad_envelope(detail: str, value: bytes) -> Reject:
    return Reject(REASON_BAD_ENVELOPE, detail, value)


def _column_problem(name: str, column: Any, n: int) -> str | None:
    """What is wrong with the shape of one column of ``n`` rows, if anything."""
    if name in NESTED_COLUMNS:
        if not isinstance(column, dict):
            return f"'columns.{name}' must be a JSON object: name -> array of {n} values"
        for key, values in column.items():
            if not isinstance(values, list):
                return (
                    f"'columns.{name}.{clip(key, 64)}' must be an array of {n} values"
                    " (one per row, null where a row has none)"
                )
            if len(values) != n:
                return (
                    f"'columns.{name}.{clip(key, 64)}' has {len(values)} values; request_id"
                    f" has {n}: every column needs one value per row (null where a row has none)"
                )
        return None
    if isinstance(column, list):
        if len(column) != n:
            return (
                f"column '{name}' has {len(column)} values; request_id has {n}:"
                " every column needs one value per row (null where a row has none)"
            )
        return None
    if name not in SCALAR_COLUMNS:
        return f"column '{name}' must be an array of {n} values (one per row)"
    if isinstance(column, dict):
        return f"column '{name}' must be a value for every row, or an array of {n} values"
    return None


def _expand(columns: dict[str, Any], i: int) -> dict[str, Any]:
    """Row ``i`` of a columnar envelope, as the row-form event it stands for."""
    row: dict[str, Any] = {}
    for name, column in columns.items():
        if name in NESTED_COLUMNS:
            entries = {key: values[i] for key, values in column.items() if values[i] is not None}
            if entries:
                row[name] = entries
            continue
        value = column[i] if isinstance(column, list) else column
        if value is not None:
            row[name] = value
    return row
