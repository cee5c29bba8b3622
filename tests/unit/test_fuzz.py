"""Generated garbage against the decoder and the processor: never an exception, nothing lost.

Three sources of bad input: arbitrary bytes; JSON-shaped messages built from valid events and
known kinds of bad ones (so the expected outcome of every item is known); and valid batches with
random byte-level corruption. Every message must be accounted for: rejected whole once, or each
of its items kept as an event or rejected with its index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streamwatch.core.decode import Decoded, EventDecoder
from streamwatch.core.fast_decode import InferenceDecoder
from streamwatch.core.processor import (
    PartitionProcessor,
    ProcessorConfig,
    RawMessage,
    StepResult,
    TopicKind,
)
from streamwatch.events import BusinessEvent, FeedbackEvent, InferenceEvent

from .helpers import BASE_MS

NOW_MS = BASE_MS + 3_600_000
SKEW_MS = 300_000
NOT_AFTER_MS = NOW_MS + SKEW_MS
MAX_BYTES = 32 * 1024
MAX_EVENTS = 40
MODELS = {"inference": InferenceEvent, "feedback": FeedbackEvent, "business": BusinessEvent}
KINDS: tuple[TopicKind, ...] = ("inference", "feedback", "business")
DECODERS = {k: EventDecoder(m, MAX_BYTES, MAX_EVENTS) for k, m in MODELS.items()}
STEP_DECODER = InferenceDecoder(MAX_BYTES, MAX_EVENTS)
REQUIRED = {
    "inference": ("request_id", "model_id", "model_version", "timestamp", "latency_ms"),
    "feedback": ("request_id", "model_id", "label", "timestamp"),
    "business": ("model_id", "kind", "timestamp"),
}
BIG = 10**400
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Item:
    """One batch member: its JSON value, a key to repeat, and the reason it must get."""

    value: Any
    reason: str | None  # None: a valid event
    repeat: tuple[str, Any] | None = None
    garbage: bool = False  # any JSON value: alone in a message it may read as an envelope

    def render(self, separators: tuple[str, str]) -> str:
        text = json.dumps(self.value, separators=separators)
        if self.repeat is None:
            return text
        key, value = self.repeat
        return f"{text[:-1]}{separators[0]}{json.dumps(key)}{separators[1]}{json.dumps(value)}}}"


# -- strategies ----------------------------------------------------------------------------

names = st.sampled_from(["m", "fraud", "rank-2"])
times_ms = st.integers(BASE_MS, BASE_MS + 60_000)
finite = st.floats(-1e6, 1e6, allow_nan=False)
feature_values = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), finite, st.text(max_size=6)
)


@st.composite
def valid_event(draw: st.DrawFn, kind: TopicKind, i: int) -> dict[str, Any]:
    ts = draw(times_ms) / 1000
    if kind == "inference":
        body: dict[str, Any] = {
            "request_id": f"r{i}",
            "model_id": draw(names),
            "model_version": draw(st.sampled_from(["1", "2.0"])),
            "timestamp": ts,
            "latency_ms": draw(st.floats(0, 5_000)),
        }
        if draw(st.booleans()):
            body["features"] = draw(
                st.dictionaries(st.sampled_from("abcdefgh"), feature_values, max_size=4)
            )
        if draw(st.booleans()):
            body["score"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            body["segment"] = draw(st.sampled_from(["eu", "us", "apac"]))
        return body
    if kind == "feedback":
        return {
            "request_id": f"r{draw(st.integers(0, 50))}",
            "model_id": draw(names),
            "label": draw(st.one_of(st.booleans(), st.integers(0, 3), st.sampled_from("xy"))),
            "timestamp": ts,
        }
    return {
        "model_id": draw(names),
        "kind": draw(st.sampled_from(["click", "conversion", "revenue"])),
        "value": draw(finite),
        "timestamp": ts,
    }


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def bad_event(draw: st.DrawFn, kind: TopicKind, i: int) -> Item:
    body = draw(valid_event(kind, i))
    how = draw(
        st.sampled_from(
            [
                "missing",
                "wrong_type",
                "unknown_key",
                "schema_version",
                "nan",
                "infinity",
                "big",
                "repeat",
                "before_1970",
                "future",
                "garbage",
            ]
        )
    )
    if how == "missing":
        del body[draw(st.sampled_from(REQUIRED[kind]))]
        return Item(body, "invalid_event")
    if how == "wrong_type":
        return Item(
            dict(body, timestamp=draw(st.sampled_from([[1], {"a": 1}, "soon", True]))),
            "invalid_event",
        )
    if how == "unknown_key":
        return Item(dict(body, unknown_field=1), "invalid_event")
    if how == "schema_version":
        return Item(
            dict(body, schema_version=draw(st.sampled_from([0, 2, "1"]))),
            "unsupported_schema_version",
        )
    if how in ("nan", "infinity"):
        bad = float("nan") if how == "nan" else float(draw(st.sampled_from(["inf", "-inf"])))
        return Item(dict(body, timestamp=bad), "non_finite_number")
    if how == "big":
        return Item(dict(body, timestamp=BIG), "number_out_of_range")
    if how == "repeat":
        return Item(body, "duplicate_key", repeat=("model_id", "other"))
    if how == "before_1970":
        return Item(
            dict(body, timestamp=-draw(st.integers(1, 10**9)) / 1000), "timestamp_before_1970"
        )
    if how == "future":
        return Item(
            dict(body, timestamp=(NOT_AFTER_MS + draw(st.integers(1, 10**9))) / 1000),
            "timestamp_in_future",
        )
    garbage = draw(json_values)
    return Item(garbage, "invalid_event", garbage=True)


@st.composite
def structured_message(
    draw: st.DrawFn, kind: TopicKind, first_id: int = 0
) -> tuple[bytes, list[Item], str]:
    """A batch of known items: (bytes, items, form) with form list, envelope or single."""
    n = draw(st.integers(0, 12))
    items = [
        draw(bad_event(kind, first_id + i))
        if draw(st.booleans())
        else Item(draw(valid_event(kind, first_id + i)), None)
        for i in range(n)
    ]
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : "), (",\n", ":\t")]))
    parts = separators[0].join(item.render(separators) for item in items)
    single = n == 1 and not items[0].garbage
    form = draw(st.sampled_from(["list", "envelope", "single"] if single else ["list", "envelope"]))
    if form == "single":
        text = items[0].render(separators)
    elif form == "list":
        text = f"[{parts}]"
    else:
        version = draw(st.sampled_from(["", f'"schema_version"{separators[1]}1{separators[0]}']))
        text = f'{{{version}"events"{separators[1]}[{parts}]}}'
    return text.encode(), items, form


@st.composite
def corrupted(draw: st.DrawFn, kind: TopicKind) -> bytes:
    value, _, _ = draw(structured_message(kind))
    data = bytearray(value)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=4)
                | st.sampled_from([b"NaN", b"[", b"{", b'"', b","])
            )
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def any_message(kind: TopicKind) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        structured_message(kind).map(lambda m: m[0]),
        corrupted(kind),
        st.sampled_from([b"", b"null", b"[]", b'{"events": []}', b"[" * 40 + b"]" * 40]),
    )


# -- invariants ----------------------------------------------------------------------------


def assert_accounted(decoded: Decoded[Any], value: bytes) -> None:
    """Rejected whole once, or each item of the batch is an event or a reject, exactly once."""
    assert all(r.reason and r.detail and isinstance(r.original, bytes) for r in decoded.rejects)
    indices = [*decoded.positions, *(r.batch_index for r in decoded.rejects)]
    if None in indices:
        assert len(indices) == 1, indices  # a whole message: one event or one reject
        return
    assert sorted(indices) == list(range(len(indices))), indices  # type: ignore[type-var]
    document = json.loads(value)  # the lenient parser: the decoder read it too
    items = document["events"] if isinstance(document, dict) else document
    assert len(items) == len(indices)


def units(kind: TopicKind, value: bytes) -> tuple[int, int]:
    """(events, rejects) the decoder makes of a message: what the processor must account for."""
    decoded = DECODERS[kind].decode_indexed(value, not_after_ms=NOT_AFTER_MS)
    return len(decoded.events), len(decoded.rejects)


# -- decoder -------------------------------------------------------------------------------


@FAST
@given(st.sampled_from(KINDS), st.binary(max_size=400))
def test_arbitrary_bytes_are_accounted_for(kind: TopicKind, value: bytes) -> None:
    decoded = DECODERS[kind].decode_indexed(value, not_after_ms=NOT_AFTER_MS)
    assert_accounted(decoded, value)


@FAST
@given(st.data())
def test_every_item_of_a_built_message_gets_its_known_outcome(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS))
    value, items, form = data.draw(structured_message(kind))
    decoded = DECODERS[kind].decode_indexed(value, not_after_ms=NOT_AFTER_MS)
    assert_accounted(decoded, value)
    at = (lambda i: None) if form == "single" else (lambda i: i)
    assert decoded.positions == [at(i) for i, item in enumerate(items) if item.reason is None]
    assert [(r.batch_index, r.reason) for r in decoded.rejects] == [
        (at(i), item.reason) for i, item in enumerate(items) if item.reason is not None
    ]
    # The good events of a mixed batch are kept, as sent.
    good = [MODELS[kind].model_validate(item.value) for item in items if item.reason is None]
    assert decoded.events == good


@FAST
@given(st.data())
def test_corrupted_batches_are_accounted_for(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS))
    value = data.draw(corrupted(kind))
    decoded = DECODERS[kind].decode_indexed(value, not_after_ms=NOT_AFTER_MS)
    assert_accounted(decoded, value)


@FAST
@given(st.lists(any_message("inference"), max_size=8))
def test_a_step_of_any_inference_messages_is_decoded_as_message_by_message(
    values: list[bytes],
) -> None:
    assume(not any(b'"columns"' in v for v in values))  # the columnar form has its own tests
    step = STEP_DECODER.decode_step(values, not_after_ms=NOT_AFTER_MS)
    positions: list[int | None] = []
    for index, value in enumerate(values):
        decoded = DECODERS["inference"].decode_indexed(value, not_after_ms=NOT_AFTER_MS)
        assert step.rejects[index] == decoded.rejects
        assert step.message_of.count(index) == len(decoded.events)
        positions += decoded.positions
        assert_accounted(decoded, value)
    assert step.batch.positions == positions
    assert step.message_of == sorted(step.message_of)


# -- processor -----------------------------------------------------------------------------


def config(max_models: int = 4) -> ProcessorConfig:
    return ProcessorConfig(
        window_sizes_ms=(1_000, 10_000),
        allowed_lateness_ms=500,
        idle_timeout_ms=2_000,
        max_future_skew_ms=SKEW_MS,
        rules=(),
        max_message_bytes=MAX_BYTES,
        max_batch_events=MAX_EVENTS,
        max_models=max_models,
    )


def stored_counts(results: list[StepResult], size_ms: int) -> int:
    """Inference events in the last stored value of every window of one size."""
    last: dict[Any, int] = {}
    for result in results:
        for update in result.windows:
            if update.key[2] == size_ms:
                last[update.key] = update.aggregate.count
    return sum(last.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_processor_never_raises_and_loses_nothing(data: st.DataObject) -> None:
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=12))
    messages = [
        RawMessage(kind, kind, 0, offset, data.draw(any_message(kind)))
        for offset, kind in enumerate(kinds)
    ]
    cut = data.draw(st.integers(0, len(messages)))
    processor = PartitionProcessor(0, config())
    results = [processor.process(messages[:cut], NOW_MS), processor.process(messages[cut:], NOW_MS)]
    results.append(processor.tick(NOW_MS + 120_000))

    expected_events = {kind: 0 for kind in KINDS}
    expected_rejects = 0
    for message in messages:
        events, rejects = units(message.kind, message.value or b"")
        expected_events[message.kind] += events
        expected_rejects += rejects
    counters = processor.counters
    dead = processor.deadletter_counts
    too_many_models = dead.get("too_many_models", 0)
    applied = sum(counters.get(f"{kind}_events", 0) for kind in KINDS)
    # Every item is applied or dead-lettered; only the series limit moves items between them.
    assert applied + sum(dead.values()) == sum(expected_events.values()) + expected_rejects
    assert sum(dead.values()) - too_many_models == expected_rejects
    assert len([d for r in results for d in r.deadletters]) == sum(dead.values())
    assert len(processor.tracked_series) <= 4
    for size in (1_000, 10_000):
        late = counters.get(f"late_events_{size}ms", 0)
        assert stored_counts(results, size) == counters.get("inference_events", 0) - late


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_good_events_of_mixed_batches_all_reach_their_windows(data: st.DataObject) -> None:
    values, good = [], 0
    for _ in range(data.draw(st.integers(1, 6))):
        value, items, _ = data.draw(structured_message("inference", first_id=len(values) * 100))
        values.append(value)
        good += sum(item.reason is None for item in items)
    processor = PartitionProcessor(0, config(max_models=1_000))
    messages = [RawMessage("inference", "inference", 0, i, v) for i, v in enumerate(values)]
    results = [processor.process(messages, NOW_MS)]
    counters = processor.counters
    assert counters.get("inference_events", 0) == good
    for size in (1_000, 10_000):  # on time in its window, or counted late
        assert stored_counts(results, size) + counters.get(f"late_events_{size}ms", 0) == good
