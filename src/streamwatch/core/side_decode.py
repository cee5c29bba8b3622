"""Decode a step's business or feedback messages into columns, in bulk.

Business and feedback events are small (six fields) and many: a recommender sends an impression
per request. Validating each with pydantic and reading its fields back cost ~5 µs an event; here
each message is parsed by orjson, the rows of all of a step's messages are checked a column at a
time with the checks of :mod:`.bulk_columns`, and the fields stay columns (:class:`SideBatch`).

A message any check doubts goes whole to :meth:`EventDecoder.decode_indexed`, the exact path, and
its pydantic events become rows like the others. So the outcome is ``decode_indexed``'s, message
by message: the same events, values, positions and rejects. Checks may be stricter than the
contract (a numeric string, a negative or future time, a label past 2^63 are doubted), never
laxer. Nothing here knows about windows or series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Final, Generic

import numpy as np
import orjson
from pydantic import BaseModel

from streamwatch.core.bulk_columns import (
    INTEGER_DOUBT,
    MAX_REQUEST_ID,
    MAX_STR,
    ColumnBuilder,
    KnownTexts,
    any_rows,
    check_strings,
    checked_numbers,
    rows_where,
    schema_version_doubts,
)
from streamwatch.core.columns import BoolArray, FloatArray, IntArray
from streamwatch.core.decode import E, EventDecoder, Reject, written_keys
from streamwatch.events import EVENT_SCHEMA_VERSION, BusinessEvent, FeedbackEvent

NoneType = type(None)

#: The business event's ``kind`` pattern (events.py), checked once per distinct kind.
_KIND = re.compile(BusinessEvent.model_fields["kind"].metadata[0].pattern)
_LABEL_TYPES: Final = frozenset({str, int, float, bool})
_ENVELOPE_KEYS: Final = frozenset({"events", "schema_version"})
_EMPTY_FLOATS: Final[FloatArray] = np.empty(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class SideBatch:
    """Business or feedback events as columns, in message order.

    ``kind`` and ``value`` are a business event's (empty for feedback), ``label`` a feedback
    event's (empty for business).
    """

    model_id: list[str]
    model_version: list[str | None]
    request_id: list[str | None]
    ts_ms: IntArray
    """Event time in Unix ms."""
    kind: list[str]
    value: FloatArray
    label: list[Any]
    positions: list[int | None]
    """Index of each event in its batch (None for a single-event message)."""
    sources: list[Any]
    """Each event as validated: a parsed JSON row, or the pydantic event of the exact path."""

    @property
    def size(self) -> int:
        """Number of events."""
        return len(self.model_id)

    def take(self, rows: IntArray) -> SideBatch:
        """The events at ``rows``, in that order."""
        at = rows.tolist()

        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in at] if values else values

        return SideBatch(
            model_id=pick(self.model_id),
            model_version=pick(self.model_version),
            request_id=pick(self.request_id),
            ts_ms=self.ts_ms[rows],
            kind=pick(self.kind),
            value=self.value[rows] if self.value.size else self.value,
            label=pick(self.label),
            positions=pick(self.positions),
            sources=pick(self.sources),
        )

    @classmethod
    def concat(cls, parts: list[SideBatch]) -> SideBatch:
        """The events of ``parts``, one after the other."""
        if len(parts) == 1:
            return parts[0]

        def joined(name: str) -> list[Any]:
            return list(chain.from_iterable(getattr(p, name) for p in parts))

        return cls(
            model_id=joined("model_id"),
            model_version=joined("model_version"),
            request_id=joined("request_id"),
            ts_ms=np.concatenate([p.ts_ms for p in parts]).astype(np.int64, copy=False),
            kind=joined("kind"),
            value=np.concatenate([p.value for p in parts]).astype(np.float64, copy=False),
            label=joined("label"),
            positions=joined("positions"),
            sources=joined("sources"),
        )


@dataclass(frozen=True, slots=True)
class DecodedSide:
    """A step's messages of one kind, decoded: their events and each message's rejects."""

    batch: SideBatch
    starts: list[int]
    """Row of each message's first event; one more entry, the batch size, ends the last."""
    rejects: list[list[Reject]]
    """Each message's rejects, in message order."""


@dataclass(frozen=True, slots=True)
class _Parsed:
    """The rows of a message the bulk checks may take, and where they came from."""

    rows: list[dict[str, Any]]
    single: bool


class SideDecoder(Generic[E]):
    """Decodes business or feedback messages a step at a time (see the module docstring)."""

    def __init__(self, model: type[E], max_message_bytes: int, max_events: int) -> None:
        """Create a decoder for ``BusinessEvent`` or ``FeedbackEvent`` messages.

        Args:
            model: The event class.
            max_message_bytes: As for :class:`EventDecoder`.
            max_events: As for :class:`EventDecoder`.
        """
        if model is not BusinessEvent and model is not FeedbackEvent:
            raise ValueError(f"SideDecoder decodes BusinessEvent or FeedbackEvent, not {model}")
        self._model: type[E] = model
        self._business = model is BusinessEvent
        self._exact: EventDecoder[E] = EventDecoder(model, max_message_bytes, max_events)
        self._fields: frozenset[str] = frozenset(model.model_fields)
        self._max_bytes = max_message_bytes
        self._max_events = max_events
        self._builder = ColumnBuilder()
        self._kinds = KnownTexts(_KIND)

    def dump(self, source: Any) -> dict[str, Any]:
        """An event of :attr:`SideBatch.sources` as pydantic writes it (for dead letters)."""
        event = source if isinstance(source, BaseModel) else self._model.model_validate(source)
        return event.model_dump(mode="json")

    def decode_step(self, values: list[bytes | None], not_after_ms: int) -> DecodedSide:
        """Decode the messages of one kind of a step; events after ``not_after_ms`` are rejected.

        The same outcome as ``decode_indexed`` on each message in turn, as columns.
        """
        parsed: list[_Parsed | None] = [self._parse(value) for value in values]
        rows: list[dict[str, Any]] = []
        positions: list[int | None] = []
        message_of: list[int] = []
        for i, p in enumerate(parsed):
            if p is not None:
                rows.extend(p.rows)
                positions.extend([None] if p.single else range(len(p.rows)))
                message_of.extend(repeat(i, len(p.rows)))
        fast, doubted = self._build(rows, positions, not_after_ms)
        owners = np.asarray(message_of, dtype=np.int64)
        if doubted is not None:
            for i in np.unique(owners[doubted]).tolist():
                parsed[i] = None
        rejects: list[list[Reject]] = [[] for _ in values]
        if all(p is not None for p in parsed):
            starts = [0]
            for p in parsed:
                starts.append(starts[-1] + len(p.rows) if p is not None else starts[-1])
            return DecodedSide(fast, starts, rejects)
        # Some messages take the exact path: assemble the batch message by message.
        parts: list[SideBatch] = []
        starts = [0]
        for i, p in enumerate(parsed):
            if p is None:
                part = self._exactly(values[i], not_after_ms, rejects[i])
            else:
                part = fast.take(np.flatnonzero(owners == i))
            parts.append(part)
            starts.append(starts[-1] + part.size)
        return DecodedSide(SideBatch.concat(parts), starts, rejects)

    # -- bulk path ---------------------------------------------------------------------------

    def _parse(self, value: bytes | None) -> _Parsed | None:
        """The rows of a message, or None if its shape needs the exact path."""
        if not value or len(value) > self._max_bytes:
            return None
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        single = False
        envelope_keys = 0
        if type(document) is list:
            rows = document
        elif type(document) is dict:
            if "events" in document and "request_id" not in document:
                rows = document["events"]
                version = document.get("schema_version", EVENT_SCHEMA_VERSION)
                if (
                    type(rows) is not list
                    or not document.keys() <= _ENVELOPE_KEYS
                    or type(version) is not int
                    or version != EVENT_SCHEMA_VERSION
                ):
                    return None
                envelope_keys = len(document)
            else:
                rows, single = [document], True
        else:
            return None
        if len(rows) > self._max_events or not set(map(type, rows)) <= {dict}:
            return None
        # Fewer parsed keys than written ones: a repeated key (orjson keeps the last), or a
        # string holding what looks like a key's end. The exact path decides.
        if written_keys(value) != envelope_keys + sum(map(len, rows)):
            return None
        return _Parsed(rows, single)

    def _build(
        self, rows: list[dict[str, Any]], positions: list[int | None], not_after_ms: int
    ) -> tuple[SideBatch, BoolArray | None]:
        """Check and convert the rows' columns; return them and the rows doubted (if any)."""
        n = len(rows)
        doubts: list[BoolArray] = []

        def note(found: BoolArray | None) -> None:
            if found is not None:
                doubts.append(found)

        present: set[str] = set().union(*rows)
        if not present <= self._fields:
            note(rows_where(rows, lambda r: not r.keys() <= self._fields))

        # Rows that all have the same keys (the usual case) are transposed at once.
        uniform: dict[str, tuple[Any, ...]] = {}
        if n and sum(map(len, rows)) == n * len(present):
            names = list(present)
            if len(names) == 1:
                uniform = {names[0]: tuple(map(itemgetter(names[0]), rows))}
            else:
                transposed = zip(*map(itemgetter(*names), rows), strict=True)
                uniform = dict(zip(names, transposed, strict=True))

        def column(key: str, default: Any = None) -> list[Any]:
            if key not in present:
                return [default] * n
            if uniform:
                return list(uniform[key])
            return list(map(dict.get, rows, repeat(key), repeat(default)))

        if "schema_version" in present:
            note(schema_version_doubts(rows))
        model_id, found = self._builder.model_names(column("model_id"))
        note(found)
        model_version, found = self._versions(column("model_version"))
        note(found)
        request_id = column("request_id")
        business = self._business
        note(
            check_strings(
                request_id, MAX_REQUEST_ID, min_len=0 if business else 1, nullable=business
            )
        )
        ts_ms, found = self._builder.event_times_ms(column("timestamp"))
        note(found)
        late = ts_ms > not_after_ms
        if late.any():
            note(late)
        kind: list[str] = []
        value = _EMPTY_FLOATS
        label: list[Any] = []
        if self._business:
            kind, found = self._kinds.check(column("kind"))
            note(found)
            value, found = checked_numbers(column("value", 1.0), lo=-math.inf, nullable=False)
            note(found)
        else:
            label, found = _labels(column("label"))
            note(found)
        doubted = any_rows(doubts)
        batch = SideBatch(
            model_id=model_id,
            model_version=model_version,
            request_id=request_id,
            ts_ms=ts_ms,
            kind=kind,
            value=value,
            label=label,
            positions=positions,
            sources=rows,
        )
        return batch, doubted

    def _versions(self, values: list[Any]) -> tuple[list[Any], BoolArray | None]:
        """Model versions (None where absent or null); doubt rows without a valid name."""
        if values.count(None) == len(values):
            return values, None
        if None not in values:
            return self._builder.model_names(values)
        at = [i for i, v in enumerate(values) if v is not None]
        named, found = self._builder.model_names([values[i] for i in at])
        out = list(values)
        for i, name in zip(at, named, strict=True):
            out[i] = name
        if found is None:
            return out, None
        doubted = np.zeros(len(values), dtype=np.bool_)
        doubted[at] = found
        return out, doubted

    # -- exact path --------------------------------------------------------------------------

    def _exactly(self, value: bytes | None, not_after_ms: int, rejects: list[Reject]) -> SideBatch:
        """One message by ``decode_indexed``: its events as columns; its rejects to ``rejects``."""
        decoded = self._exact.decode_indexed(value, not_after_ms=not_after_ms)
        rejects.extend(decoded.rejects)
        events: list[Any] = decoded.events
        business = self._business
        return SideBatch(
            model_id=[e.model_id for e in events],
            model_version=[e.model_version for e in events],
            request_id=[e.request_id for e in events],
            ts_ms=np.array(decoded.timestamps_ms, dtype=np.int64),
            kind=[e.kind for e in events] if business else [],
            value=(
                np.array([e.value for e in events], dtype=np.float64) if business else _EMPTY_FLOATS
            ),
            label=[] if business else [e.label for e in events],
            positions=decoded.positions,
            sources=events,
        )


def _labels(values: list[Any]) -> tuple[list[Any], BoolArray | None]:
    """Ground-truth labels as parsed; doubt rows that are not a plain label.

    A label is a boolean, a number or a string (up to ``MAX_STR`` characters); a float past
    2^63 may have been an integer pydantic keeps exact.
    """
    kinds = set(map(type, values))
    if kinds <= _LABEL_TYPES:
        plain = True
        if str in kinds:
            texts = [v for v in values if type(v) is str] if len(kinds) > 1 else values
            plain = max(map(len, texts)) <= MAX_STR
        if plain and float in kinds:
            floats = [v for v in values if type(v) is float] if len(kinds) > 1 else values
            plain = max(map(abs, floats)) < INTEGER_DOUBT
        if plain:
            return values, None
    return values, rows_where(values, lambda v: not _plain_label(v))


def _plain_label(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) <= MAX_STR
    if kind is float:
        return bool(abs(value) < INTEGER_DOUBT)
    return kind is int or kind is bool
