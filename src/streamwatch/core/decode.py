"""Decode raw Kafka message bytes into validated events, or into reasons for rejecting them.

Never raises on input: whatever the bytes, the result is the valid events and the rejects. A
message may hold one event, a JSON array of events, or an envelope ``{"events": [...]}``; in a
batch, good events are kept and each bad one is rejected on its own, with its index. Every item
is accounted for: either the whole message is rejected once, or each of its ``n`` items is
either an event or a reject.

Fast path: a whole batch is validated by pydantic-core straight from bytes, then two cheap
checks make sure it holds nothing the validator silently accepted (a duplicated key, an integer
too large for a float). Only when one of these fails is the message parsed again, item by item,
to find the bad events. Limits are checked before the expensive work: a message over
``max_message_bytes`` is rejected by its length, and list validation stops at the first bad
item (``fail_fast``) so a garbage array cannot make pydantic collect millions of errors.

Either way, each event here is a pydantic object. Inference messages are decoded a step at a
time by :class:`~streamwatch.core.fast_decode.InferenceDecoder`, which gives the same outcome
without them, and comes back here for whatever it doubts.

Reasons for a whole message: ``empty_message``, ``payload_too_large``, ``not_utf8``,
``invalid_json``, ``too_deeply_nested``, ``invalid_envelope``, ``unsupported_schema_version``,
``duplicate_key`` (in the envelope), ``too_many_events``. Reasons for one event:
``invalid_event``, ``unsupported_schema_version``, ``duplicate_key``, ``non_finite_number``,
``number_out_of_range``, ``timestamp_before_1970``, ``timestamp_in_future``.
"""

from __future__ import annotations

import json
import math
import operator
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

import numpy as np
import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from streamwatch.events import (
    EVENT_SCHEMA_VERSION,
    BusinessEvent,
    FeedbackEvent,
    InferenceEvent,
    epoch_ms,
)

E = TypeVar("E", InferenceEvent, FeedbackEvent, BusinessEvent)

#: Reason codes, stable for dashboards and the dead-letter topic.
REASON_EMPTY = "empty_message"
REASON_TOO_LARGE = "payload_too_large"
REASON_NOT_UTF8 = "not_utf8"
REASON_INVALID_JSON = "invalid_json"
REASON_TOO_DEEP = "too_deeply_nested"
REASON_BAD_ENVELOPE = "invalid_envelope"
REASON_SCHEMA_VERSION = "unsupported_schema_version"
REASON_INVALID_EVENT = "invalid_event"
REASON_DUPLICATE_KEY = "duplicate_key"
REASON_NON_FINITE = "non_finite_number"
REASON_NUMBER_RANGE = "number_out_of_range"
REASON_PAST_TIMESTAMP = "timestamp_before_1970"
REASON_FUTURE_TIMESTAMP = "timestamp_in_future"
REASON_TOO_MANY_EVENTS = "too_many_events"
REASON_TOO_MANY_MODELS = "too_many_models"
"""Given by the processor, not the decoder: the partition tracks ``max_models`` series."""

DEFAULT_MAX_MESSAGE_BYTES = 8 << 20
DEFAULT_MAX_EVENTS = 10_000
MAX_ERRORS_IN_DETAIL = 5
MAX_DETAIL_CHARS = 1_000
#: Containers nested deeper than this cannot be an event message (the deepest valid one, an
#: envelope holding an event with a probability vector, is 4), so the message is rejected whole.
MAX_NESTING_DEPTH = 32
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= b <= 0x39 else 0x30 for b in range(256))
#: The shortest digit run that can be an integer beyond a double (1.8e308 has 309 digits).
_LONG_DIGIT_RUN = b"1" * len(str(int(sys.float_info.max)))
_NO_LIMIT_MS = 2**63
_TIMESTAMP = operator.attrgetter("timestamp")
_FIELDS_SET = operator.attrgetter("__pydantic_fields_set__")
_UNIONS = (Union, UnionType)
_MAX_FLOAT_INT = int(sys.float_info.max)
#: Python refuses to convert longer digit strings to int (CVE-2020-10735).
_MAX_INT_DIGITS = 4_300
_JSON_SPACE = re.compile(rb"[ \t\n\r]*")
_SPACED_KEY_END = re.compile(rb'"[ \t\n\r]+:')
_SPACES = (b" ", b"\t", b"\n", b"\r")
_KEY_END = re.compile(rb'"[ \t\n\r]*:')
#: From this length on a text's bytes are counted by numpy: ``bytes.count`` compares ~0.45 ns a
#: byte (~80 us for a 1,000-event envelope), a numpy comparison ~0.1 plus ~3 us to set up.
_NUMPY_COUNT_BYTES = 8192
_QUOTE = ord('"')
_COLON = ord(":")
_JSON_TYPES = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
}


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a message, or one event of a batch, was not accepted."""

    reason: str
    detail: str
    original: bytes
    batch_index: int | None = None


@dataclass(frozen=True, slots=True)
class Decoded(Generic[E]):
    """The outcome of one message: valid events, their positions in it, and the rejects."""

    events: list[E]
    positions: list[int | None]
    """Index of each event in its batch (None for a single-event message)."""
    rejects: list[Reject]
    timestamps_ms: list[int]
    """Each event's time in Unix milliseconds."""


def describe_validation_error(error: ValidationError) -> str:
    """Return a one-line, field-by-field summary of a pydantic error (at most 1,000 chars)."""
    parts = []
    for item in error.errors(include_url=False)[:MAX_ERRORS_IN_DETAIL]:
        location = ".".join(clip(str(p), 64) for p in item["loc"]) or "event"
        parts.append(f"{location}: {item['msg']}")
    extra = error.error_count() - MAX_ERRORS_IN_DETAIL
    if extra > 0:
        parts.append(f"... and {extra} more")
    return clip("; ".join(parts), MAX_DETAIL_CHARS)


class EventDecoder(Generic[E]):
    """Decodes messages carrying events of one model class."""

    def __init__(
        self,
        model: type[E],
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        """Create a decoder.

        Args:
            model: The pydantic event model (e.g. ``InferenceEvent``).
            max_message_bytes: Larger messages are rejected whole as ``payload_too_large``,
                before any parsing.
            max_events: Larger batches are rejected whole as ``too_many_events``.
        """
        self._model: type[E] = model
        # fail_fast: a garbage array must not cost an error object per item before the batch
        # is split (4 M items took 5 s without it).
        self._list_adapter: TypeAdapter[list[E]] = TypeAdapter(
            Annotated[list[model], Field(fail_fast=True)]  # type: ignore[valid-type,arg-type]
        )
        self._max_bytes = max_message_bytes
        self._max_events = max_events
        self._key_plan = _KeyPlan.of(model)

    def decode(
        self, value: bytes | None, *, not_after_ms: int | None = None
    ) -> tuple[list[E], list[Reject]]:
        """Return the valid events of one message and the rejects, in message order.

        Args:
            value: The raw message value.
            not_after_ms: Events later than this (Unix ms) are rejected as
                ``timestamp_in_future``; None: no limit. Events before 1970 are always rejected.
        """
        decoded = self.decode_indexed(value, not_after_ms=not_after_ms)
        return decoded.events, decoded.rejects

    def decode_indexed(self, value: bytes | None, *, not_after_ms: int | None = None) -> Decoded[E]:
        """Like :meth:`decode`, also giving each event's position in its batch."""
        if not value:
            return _whole(Reject(REASON_EMPTY, "message has no body", b""))
        if len(value) > self._max_bytes:
            return _whole(
                Reject(
                    REASON_TOO_LARGE,
                    f"message is {len(value)} bytes; the limit is {self._max_bytes}"
                    " (STREAMWATCH_MAX_MESSAGE_BYTES); split the batch",
                    value,
                )
            )
        # The first byte after JSON whitespace, without copying a large message (lstrip would).
        skipped = _JSON_SPACE.match(value)
        first = value[skipped.end() : skipped.end() + 1] if skipped else value[:1]
        if not first:
            return _whole(Reject(REASON_EMPTY, "message has only whitespace", value))
        if first == b"[":
            fast = self._fast(value)
            if fast is not None:
                if len(fast) > self._max_events:
                    return _whole(self.too_many(len(fast), value))
                positions: list[int | None] = list(range(len(fast)))
                return _check_times(fast, positions, [], not_after_ms, _lazy_original(value))
        return self._slow(value, not_after_ms)

    # -- fast path ---------------------------------------------------------------------------

    def _fast(self, value: bytes) -> list[E] | None:
        """Validate a JSON array from bytes; None if it needs the item-by-item path."""
        try:
            events = self._list_adapter.validate_json(value)
        except ValidationError:
            return None
        # pydantic-core keeps integers of any size; one beyond a double's range would overflow
        # where features become floats. It has at least 309 digits: look for such a run.
        if _LONG_DIGIT_RUN in value.translate(_DIGITS_AS_ONES):
            return None
        # Fewer parsed keys than written ones means a key was repeated (or a string contains
        # what looks like a key's end); either way the item-by-item path decides.
        if written_keys(value) != self._key_plan.total(events):
            return None
        return events

    # -- slow path ---------------------------------------------------------------------------

    def _slow(self, value: bytes, not_after_ms: int | None) -> Decoded[E]:
        lenient = False
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            reject = json_reject(value, exc)
            if reject.reason != REASON_INVALID_JSON:
                return _whole(reject)
            # NaN / Infinity literals (Python's json.dumps writes them) and numbers beyond a
            # double: keep the batch's good events, reject the items holding them.
            document = lenient_loads(value, require_marks=True)
            if document is None:
                return _whole(reject)
            lenient = True
        items = document.get("events") if isinstance(document, dict) else document
        if isinstance(items, list) and len(items) > self._max_events:
            return _whole(self.too_many(len(items), value))  # before walking millions of items
        depth, keys = document_shape(document)
        if depth > MAX_NESTING_DEPTH:
            return _whole(too_deep(value))
        if not lenient and written_keys(value) != keys:
            # Possibly a repeated key, which orjson silently collapsed: parse again, marking it.
            marked = lenient_loads(value, require_marks=False)
            if marked is not None:
                document, lenient = marked, True
        return self.decode_parsed(document, value, lenient, not_after_ms)

    def too_many(self, n: int, value: bytes) -> Reject:
        """The whole-message reject of a batch of ``n`` events, over ``max_events``."""
        return Reject(
            REASON_TOO_MANY_EVENTS,
            f"batch has {n} events; the limit is {self._max_events}"
            " (STREAMWATCH_MAX_BATCH_EVENTS); split the batch",
            value,
        )

    def decode_parsed(
        self, document: Any, value: bytes, lenient: bool, not_after_ms: int | None
    ) -> Decoded[E]:
        """Decode a parsed message item by item: the exact path, for any document.

        Args:
            document: The parsed JSON (from :func:`lenient_loads` if ``lenient``).
            value: The message bytes: the original of a single event or a whole-message reject.
            lenient: The document may hold marked values (NaN, big numbers, repeated keys).
            not_after_ms: As for :meth:`decode`.
        """
        if isinstance(document, list):
            items: list[Any] = document
        elif isinstance(document, dict) and "events" in document and "request_id" not in document:
            reject = self._envelope_reject(document, value)
            if reject is not None:
                return _whole(reject)
            items = document["events"]
        elif isinstance(document, dict):
            event, reject = self._validate_one(document, value, None, lenient)
            if event is None:
                return Decoded([], [], [reject] if reject else [], [])
            return _check_times([event], [None], [], not_after_ms, lambda _: value)
        else:
            return _whole(
                Reject(
                    REASON_BAD_ENVELOPE,
                    "expected a JSON object or array, got a"
                    f" {_JSON_TYPES.get(type(document), type(document).__name__)}",
                    value,
                )
            )
        if len(items) > self._max_events:
            return _whole(self.too_many(len(items), value))
        events: list[E] = []
        positions: list[int | None] = []
        rejects: list[Reject] = []
        for index, item in enumerate(items):
            event, reject = self._validate_one(item, None, index, lenient)
            if event is not None:
                events.append(event)
                positions.append(index)
            elif reject is not None:
                rejects.append(reject)
        return _check_times(
            events,
            positions,
            rejects,
            not_after_ms,
            lambda index: encode_original(items[index or 0], lenient=lenient),
        )

    def _envelope_reject(self, document: dict[str, Any], value: bytes) -> Reject | None:
        if isinstance(document, DuplicateKeys):
            return Reject(REASON_DUPLICATE_KEY, document.describe("envelope"), value)
        version = document.get("schema_version", EVENT_SCHEMA_VERSION)
        if version != EVENT_SCHEMA_VERSION:
            return Reject(
                REASON_SCHEMA_VERSION,
                f"envelope schema_version {clip(repr(version), 64)} is not supported;"
                f" this worker reads {EVENT_SCHEMA_VERSION}",
                value,
            )
        unknown = set(document) - {"events", "schema_version"}
        if unknown:
            names = [clip(k, 64) for k in sorted(unknown)[:5]]
            return Reject(REASON_BAD_ENVELOPE, f"unknown envelope keys {names}", value)
        if not isinstance(document["events"], list):
            return Reject(REASON_BAD_ENVELOPE, "'events' must be a JSON array", value)
        return None

    def validate_item(self, item: Any, index: int) -> tuple[E | None, Reject | None]:
        """Validate item ``index`` of a batch parsed by orjson: its event, or its reject."""
        return self._validate_one(item, None, index, lenient=False)

    def _validate_one(
        self, item: Any, original: bytes | None, index: int | None, lenient: bool
    ) -> tuple[E | None, Reject | None]:
        if lenient:
            poison = _find_poison(item)
            if poison is not None:
                reason, detail = poison
                raw = original if original is not None else encode_original(item, lenient=True)
                return None, Reject(reason, detail, raw, index)
        try:
            return self._model.model_validate(item), None
        except ValidationError as exc:
            raw = original if original is not None else encode_original(item, lenient=lenient)
            version = item.get("schema_version") if isinstance(item, dict) else None
            if version is not None and version != EVENT_SCHEMA_VERSION:
                return None, Reject(
                    REASON_SCHEMA_VERSION,
                    f"schema_version {clip(repr(version), 64)} is not supported;"
                    f" this worker reads {EVENT_SCHEMA_VERSION}",
                    raw,
                    index,
                )
            return None, Reject(REASON_INVALID_EVENT, describe_validation_error(exc), raw, index)


# -- helpers -------------------------------------------------------------------------------


def _whole(reject: Reject) -> Decoded[Any]:
    return Decoded([], [], [reject], [])


def clip(text: str, limit: int) -> str:
    """Return ``text``, cut to ``limit`` characters (ending in "...") if longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def too_deep(value: bytes) -> Reject:
    """The whole-message reject of a message nested deeper than any event can be."""
    return Reject(
        REASON_TOO_DEEP,
        f"message nests arrays/objects deeper than {MAX_NESTING_DEPTH} levels;"
        " no event is that deep",
        value,
    )


def json_reject(value: bytes, exc: orjson.JSONDecodeError) -> Reject:
    """The whole-message reject of bytes orjson could not parse: the most specific reason."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        return Reject(REASON_NOT_UTF8, f"message is not UTF-8: {utf8_error}", value)
    if "depth" in str(exc):
        return Reject(REASON_TOO_DEEP, f"message is nested too deeply: {exc}", value)
    return Reject(REASON_INVALID_JSON, clip(f"message is not valid JSON: {exc}", 500), value)


def written_keys(value: bytes, colons_in: int | None = None) -> int:
    """Count the key ends (a quote, optional whitespace, a colon) in a JSON text.

    Every object key written in the text ends that way, so the count is at least the number of
    keys written; it is more only if a string value contains such a sequence. Compared with the
    keys actually parsed, equality proves that no key was repeated. ``colons_in``: the text's
    :func:`colons`, if the caller counted them already.
    """
    quoted = quoted_colons(value)
    # Every colon right after a quote (compact JSON, no colons in strings), or no white space
    # at all (compact JSON, colons in strings such as times): no spaced key end. One-byte
    # searches are 30x faster than the regex, which tries every quote of a large message.
    if (
        quoted == (colons(value) if colons_in is None else colons_in)
        or not any(space in value for space in _SPACES)
        or _SPACED_KEY_END.search(value) is None
    ):
        return quoted
    return sum(1 for _ in _KEY_END.finditer(value))


def colons(value: bytes) -> int:
    """How many colons ``value`` holds."""
    if len(value) < _NUMPY_COUNT_BYTES:
        return value.count(b":")
    return int(np.count_nonzero(np.frombuffer(value, np.uint8) == _COLON))


def quoted_colons(value: bytes) -> int:
    """How many colons right after a quote (``":``) ``value`` holds."""
    if len(value) < _NUMPY_COUNT_BYTES:
        return value.count(b'":')
    text = np.frombuffer(value, np.uint8)
    return int(np.count_nonzero((text[1:] == _COLON) & (text[:-1] == _QUOTE)))


def encode_original(item: Any, *, lenient: bool = False) -> bytes:
    """Serialise a rejected item for its dead-letter record, whatever it holds.

    Args:
        item: The parsed item (or any JSON-like value).
        lenient: The item comes from :func:`lenient_loads`: write NaN, Infinity and big
            integers as they were sent (orjson would write null or refuse).
    """
    if not lenient:
        try:
            return orjson.dumps(item)
        except (TypeError, orjson.JSONEncodeError):
            pass  # integers beyond 64 bits, lone surrogates: the stdlib writes them
    try:
        return json.dumps(item, default=str, ensure_ascii=True).encode()
    except ValueError:
        return repr(item).encode()  # an integer of more than 4,300 digits


def _lazy_original(value: bytes) -> Callable[[int | None], bytes]:
    """Originals of the items of a validated JSON array, parsed only when one is needed."""
    parsed: list[Any] = []

    def original(index: int | None) -> bytes:
        if not parsed:
            parsed.append(orjson.loads(value))
        return encode_original(parsed[0][index or 0])

    return original


def _check_times(
    events: list[E],
    positions: list[int | None],
    rejects: list[Reject],
    not_after_ms: int | None,
    original_at: Callable[[int | None], bytes],
) -> Decoded[E]:
    """Reject events before 1970 or after ``not_after_ms``; keep rejects in message order."""
    latest_ms = not_after_ms if not_after_ms is not None else _NO_LIMIT_MS
    times_ms = list(map(epoch_ms, map(_TIMESTAMP, events)))
    if not times_ms or (min(times_ms) >= 0 and max(times_ms) <= latest_ms):
        return Decoded(events, positions, rejects, times_ms)  # the usual case: no loop
    kept: list[E] = []
    kept_at: list[int | None] = []
    kept_ms: list[int] = []
    rejected_before = len(rejects)
    for event, position, ts in zip(events, positions, times_ms, strict=True):
        if 0 <= ts <= latest_ms:
            kept.append(event)
            kept_at.append(position)
            kept_ms.append(ts)
            continue
        reason, detail = time_reject(ts, event.request_id, not_after_ms)
        try:
            original = original_at(position)
        except orjson.JSONDecodeError:  # not expected: the fast path validated the array
            original = encode_original(event.model_dump(mode="json"))
        rejects.append(Reject(reason, detail, original, position))
    if len(rejects) > rejected_before:
        rejects.sort(key=lambda r: -1 if r.batch_index is None else r.batch_index)
    return Decoded(kept, kept_at, rejects, kept_ms)


def time_reject(ts_ms: int, request_id: str | None, not_after_ms: int | None) -> tuple[str, str]:
    """Return (reason, detail) for an event time before 1970 or after ``not_after_ms``."""
    if ts_ms < 0:
        detail = f"event time {ts_ms} ms is before 1970; check the producer's clock and units"
        reason = REASON_PAST_TIMESTAMP
    else:
        detail = (
            f"event time {ts_ms} ms is after the allowed limit {not_after_ms} ms (wall clock"
            " + STREAMWATCH_MAX_FUTURE_SKEW); check the producer's clock"
        )
        reason = REASON_FUTURE_TIMESTAMP
    if request_id:
        detail = f"{detail} (request {clip(request_id, 64)})"
    return reason, detail


@dataclass(frozen=True, slots=True)
class _KeyPlan:
    """Where a model class keeps the JSON keys it was given, to count them fast.

    A validated event was given (each distinct key once) its set fields, the entries of its
    dict fields and the keys of its nested models: with ``extra="forbid"`` nothing else. Fields
    of other shapes (lists, unions) are not looked into; a key there is under-counted, which
    only sends its message down the slow path.
    """

    dicts: tuple[str, ...]
    models: tuple[tuple[str, _KeyPlan], ...]

    @classmethod
    def of(cls, model: type[BaseModel]) -> _KeyPlan:
        dicts: list[str] = []
        models: list[tuple[str, _KeyPlan]] = []
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if get_origin(annotation) is dict:
                dicts.append(name)
                continue
            members = get_args(annotation) if get_origin(annotation) in _UNIONS else (annotation,)
            nested = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            if len(nested) == 1 and set(members) <= {nested[0], type(None)}:
                models.append((name, cls.of(nested[0])))
        return cls(tuple(dicts), tuple(models))

    def total(self, events: list[E]) -> int:
        """The keys the events were given, summed (:meth:`count`)."""
        if not self.dicts and not self.models:  # flat: the fields set are the keys
            return sum(map(len, map(_FIELDS_SET, events)))
        return sum(map(self.count, events))

    def count(self, event: BaseModel) -> int:
        values = event.__dict__
        keys = len(event.__pydantic_fields_set__)
        for name in self.dicts:
            member = values[name]
            if member:
                keys += len(member)
        for name, plan in self.models:
            member = values[name]
            if member is not None:
                keys += plan.count(member)
        return keys


def document_shape(document: Any) -> tuple[int, int]:
    """Return (nesting depth, number of object keys) of a parsed document.

    Stops counting as soon as the depth passes :data:`MAX_NESTING_DEPTH`.
    """
    depth = keys = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            keys += len(current)
            children: Any = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        depth = max(depth, level)
        if depth > MAX_NESTING_DEPTH:
            break
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return depth, keys


class _Overflow(float):
    """A number literal beyond a double's range, kept as infinity with its text."""

    text: str = ""


class DuplicateKeys(dict[str, Any]):
    """A parsed object whose JSON text repeated a key (the last value is kept)."""

    duplicates: tuple[str, ...] = ()

    def describe(self, where: str) -> str:
        """Say which keys ``where`` repeats, and what the producer must do."""
        names = ", ".join(repr(clip(k, 64)) for k in self.duplicates[:3])
        return (
            f"{where} repeats the key {names}; JSON parsers disagree on which value wins,"
            " so the producer must send each key once"
        )


def lenient_loads(value: bytes, *, require_marks: bool) -> Any:
    """Parse with the stdlib, keeping what orjson refuses or hides so it can be rejected.

    NaN and Infinity literals become non-finite floats, integers beyond a double stay Python
    integers (beyond 4,300 digits, an :class:`_Overflow`), float literals beyond a double
    become :class:`_Overflow`, and objects with a repeated key :class:`DuplicateKeys`. The
    stdlib writes all of them back as they were sent, for the dead-letter record.

    Returns:
        The document, or None when it cannot be parsed, or when ``require_marks`` and nothing
        was marked (the strict parser's error then stands).
    """
    marks = 0

    def overflow(text: str) -> _Overflow:
        nonlocal marks
        marks += 1
        marked = _Overflow(math.inf if not text.startswith("-") else -math.inf)
        marked.text = text
        return marked

    def constant(name: str) -> float:
        nonlocal marks
        marks += 1
        return float(name)

    def integer(text: str) -> int | float:
        digits = len(text) - text.startswith("-")
        if digits > _MAX_INT_DIGITS:
            return overflow(text)
        as_int = int(text)
        if -(2**63) <= as_int < 2**64:
            return as_int
        if -_MAX_FLOAT_INT <= as_int <= _MAX_FLOAT_INT:
            return float(as_int)  # as orjson reads integers beyond 64 bits
        nonlocal marks
        marks += 1
        return as_int

    def decimal(text: str) -> float:
        as_float = float(text)
        return overflow(text) if math.isinf(as_float) else as_float

    def obj(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal marks
        result = dict(pairs)
        if len(result) == len(pairs):
            return result
        marks += 1
        seen: set[str] = set()
        repeated: dict[str, None] = {}
        for key, _ in pairs:
            if key in seen:
                repeated[key] = None
            seen.add(key)
        marked = DuplicateKeys(result)
        marked.duplicates = tuple(repeated)
        return marked

    try:
        text = value.decode("utf-8")
        document = json.loads(
            text,
            parse_constant=constant,
            parse_int=integer,
            parse_float=decimal,
            object_pairs_hook=obj,
        )
    except (ValueError, RecursionError):
        return None
    if require_marks and not marks:
        return None
    return document


def _find_poison(item: Any) -> tuple[str, str] | None:
    """Return (reason, detail) for the first value of an item that must be rejected."""
    for path, current in _walk(item):
        where = path or "event"
        kind = type(current)
        if kind is DuplicateKeys:
            return REASON_DUPLICATE_KEY, current.describe(where)
        if kind is _Overflow:
            return (
                REASON_NUMBER_RANGE,
                f"{where}: number {clip(current.text, 32)} does not fit a double",
            )
        if kind is float and not math.isfinite(current):
            literal = json.dumps(current)
            return REASON_NON_FINITE, f"{where}: {literal} is not a JSON number; send null instead"
        if kind is int and not -_MAX_FLOAT_INT <= current <= _MAX_FLOAT_INT:
            return (
                REASON_NUMBER_RANGE,
                f"{where}: number {str(current)[:29]}... does not fit a double",
            )
    return None


def _walk(item: Any) -> Iterator[tuple[str, Any]]:
    stack: list[tuple[str, Any]] = [("", item)]
    while stack:
        path, current = stack.pop()
        yield path, current
        if isinstance(current, dict):
            for key, child in current.items():
                stack.append((clip(f"{path}.{key}" if path else str(key), 200), child))
        elif isinstance(current, list):
            for index, child in enumerate(current):
                stack.append((f"{path}[{index}]", child))
