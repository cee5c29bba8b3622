"""Decode raw Kafka message bytes into validated events, or into reasons for rejecting them.

Never raises on input: whatever the bytes, the result is ``(events, rejects)``. A message may hold
one event, a JSON array of events, or an envelope ``{"events": [...]}``; in a batch, good events
are kept and each bad one is rejected on its own, with its index.

Fast path: a whole batch is validated by pydantic-core straight from bytes; only when that fails
is the batch split to find the bad events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from streamwatch.events import EVENT_SCHEMA_VERSION

E = TypeVar("E", bound=BaseModel)

#: Reason codes, stable for dashboards and the dead-letter topic.
REASON_EMPTY = "empty_message"
REASON_TOO_LARGE = "payload_too_large"
REASON_NOT_UTF8 = "not_utf8"
REASON_INVALID_JSON = "invalid_json"
REASON_BAD_ENVELOPE = "invalid_envelope"
REASON_SCHEMA_VERSION = "unsupported_schema_version"
REASON_INVALID_EVENT = "invalid_event"
REASON_FUTURE_TIMESTAMP = "timestamp_in_future"
REASON_TOO_MANY_EVENTS = "too_many_events"

MAX_ERRORS_IN_DETAIL = 5


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a message, or one event of a batch, was not accepted."""

    reason: str
    detail: str
    original: bytes
    batch_index: int | None = None


def describe_validation_error(error: ValidationError) -> str:
    """Return a one-line, field-by-field summary of a pydantic error."""
    parts = []
    for item in error.errors(include_url=False)[:MAX_ERRORS_IN_DETAIL]:
        location = ".".join(str(p) for p in item["loc"]) or "event"
        parts.append(f"{location}: {item['msg']}")
    extra = error.error_count() - MAX_ERRORS_IN_DETAIL
    if extra > 0:
        parts.append(f"... and {extra} more")
    return "; ".join(parts)


class EventDecoder(Generic[E]):
    """Decodes messages carrying events of one model class."""

    def __init__(
        self, model: type[E], max_message_bytes: int = 8 << 20, max_events: int = 100_000
    ) -> None:
        """Create a decoder.

        Args:
            model: The pydantic event model (e.g. ``InferenceEvent``).
            max_message_bytes: Larger messages are rejected whole as ``payload_too_large``.
            max_events: Larger batches are rejected whole as ``too_many_events``.
        """
        self._model = model
        self._list_adapter = TypeAdapter(list[model])  # type: ignore[valid-type]
        self._max_bytes = max_message_bytes
        self._max_events = max_events

    def decode(self, value: bytes | None) -> tuple[list[E], list[Reject]]:
        """Return the valid events of one message and the rejects, in message order."""
        if not value or not value.strip():
            return [], [Reject(REASON_EMPTY, "message has no body", value or b"")]
        if len(value) > self._max_bytes:
            return [], [
                Reject(
                    REASON_TOO_LARGE,
                    f"message is {len(value)} bytes; the limit is {self._max_bytes}"
                    " (STREAMWATCH_MAX_MESSAGE_BYTES); split the batch",
                    value,
                )
            ]
        if value.lstrip()[:1] == b"[":
            try:
                events = self._list_adapter.validate_json(value)
            except ValidationError:
                pass  # fall through: find which events are bad
            else:
                if len(events) > self._max_events:
                    return [], [self._too_many(len(events), value)]
                return events, []
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return [], [_json_reject(value, exc)]
        return self._decode_document(document, value)

    def _too_many(self, n: int, value: bytes) -> Reject:
        return Reject(
            REASON_TOO_MANY_EVENTS,
            f"batch has {n} events; the limit is {self._max_events}; split the batch",
            value,
        )

    def _decode_document(self, document: Any, value: bytes) -> tuple[list[E], list[Reject]]:
        if isinstance(document, list):
            items: list[Any] = document
        elif isinstance(document, dict) and "events" in document and "request_id" not in document:
            version = document.get("schema_version", EVENT_SCHEMA_VERSION)
            unknown = set(document) - {"events", "schema_version"}
            if version != EVENT_SCHEMA_VERSION:
                return [], [
                    Reject(
                        REASON_SCHEMA_VERSION,
                        f"envelope schema_version {version!r} is not supported;"
                        f" this worker reads {EVENT_SCHEMA_VERSION}",
                        value,
                    )
                ]
            if not isinstance(document["events"], list) or unknown:
                detail = (
                    f"unknown envelope keys {sorted(unknown)}"
                    if unknown
                    else "'events' must be a JSON array"
                )
                return [], [Reject(REASON_BAD_ENVELOPE, detail, value)]
            items = document["events"]
        elif isinstance(document, dict):
            event, reject = self._validate_one(document, value, None)
            return ([event], []) if event is not None else ([], [reject] if reject else [])
        else:
            return [], [
                Reject(
                    REASON_BAD_ENVELOPE,
                    f"expected a JSON object or array, got {type(document).__name__}",
                    value,
                )
            ]
        if len(items) > self._max_events:
            return [], [self._too_many(len(items), value)]
        events: list[E] = []
        rejects: list[Reject] = []
        for index, item in enumerate(items):
            event, reject = self._validate_one(item, None, index)
            if event is not None:
                events.append(event)
            elif reject is not None:
                rejects.append(reject)
        return events, rejects

    def _validate_one(
        self, item: Any, original: bytes | None, index: int | None
    ) -> tuple[E | None, Reject | None]:
        try:
            return self._model.model_validate(item), None
        except ValidationError as exc:
            raw = original if original is not None else orjson.dumps(item)
            version = item.get("schema_version") if isinstance(item, dict) else None
            if version is not None and version != EVENT_SCHEMA_VERSION:
                return None, Reject(
                    REASON_SCHEMA_VERSION,
                    f"schema_version {version!r} is not supported;"
                    f" this worker reads {EVENT_SCHEMA_VERSION}",
                    raw,
                    index,
                )
            return None, Reject(REASON_INVALID_EVENT, describe_validation_error(exc), raw, index)


def _json_reject(value: bytes, exc: orjson.JSONDecodeError) -> Reject:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        return Reject(REASON_NOT_UTF8, f"message is not UTF-8: {utf8_error}", value)
    return Reject(REASON_INVALID_JSON, f"message is not valid JSON: {exc}", value)
