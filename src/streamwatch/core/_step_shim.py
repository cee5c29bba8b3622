"""TEMPORARY reference decode_step until fast_decode lands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamwatch.core.columns import InferenceBatch
from streamwatch.core.decode import (
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_MESSAGE_BYTES,
    EventDecoder,
    Reject,
)
from streamwatch.events import InferenceEvent


@dataclass(frozen=True, slots=True)
class DecodedStep:
    batch: InferenceBatch
    message_of: list[int]
    rejects: list[list[Reject]]


class InferenceDecoder:
    def __init__(
        self,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self._decoder = EventDecoder(InferenceEvent, max_message_bytes, max_events)

    def decode_step(
        self, values: Sequence[bytes | None], *, not_after_ms: int | None = None
    ) -> DecodedStep:
        events: list[InferenceEvent] = []
        positions: list[int | None] = []
        times: list[int] = []
        message_of: list[int] = []
        rejects: list[list[Reject]] = []
        for index, value in enumerate(values):
            d = self._decoder.decode_indexed(value, not_after_ms=not_after_ms)
            events.extend(d.events)
            positions.extend(d.positions)
            times.extend(d.timestamps_ms)
            message_of.extend([index] * len(d.events))
            rejects.append(d.rejects)
        return DecodedStep(
            InferenceBatch.from_events(events, positions, times), message_of, rejects
        )
