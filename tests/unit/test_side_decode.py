"""Business and feedback events in bulk: the same outcome as one message and one label at a time.

:class:`SideDecoder` must give, message by message, what ``EventDecoder.decode_indexed`` gives
(events, values and their types, positions, rejects); the label join's batched take and record
must equal :meth:`PendingPredictions.take` and :meth:`LabelStats.record` on each label in turn;
and the processor's batched admission and join must not depend on how messages are batched.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamwatch.core.decode import EventDecoder
from streamwatch.core.labels import (
    LabelStats,
    PendingPredictions,
    Prediction,
    encode_chunk,
    judge,
    judge_all,
)
from streamwatch.core.processor import PartitionProcessor, RawMessage, StepResult
from streamwatch.core.side_decode import SideDecoder
from streamwatch.events import BusinessEvent, FeedbackEvent

from .helpers import BASE_MS, cut, event, messages
from .test_cardinality import NOW_MS, config
from .test_fuzz import MAX_BYTES, MAX_EVENTS, NOT_AFTER_MS, any_message

SIDE = {"business": BusinessEvent, "feedback": FeedbackEvent}
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Each field's values: valid ones first and most often, then ones a check must doubt.
VERSIONS = [None, "1.0", "2", "", "bad version", "a:b", 1, "v" * 129]
TIMES: list[Any] = [
    (BASE_MS + 1_234) / 1000,
    BASE_MS + 5_678,
    "2023-11-14T22:13:21.125Z",
    "2023-11-14T23:13:21.5+01:00",
    "2023-11-14 22:13:21Z",
    "2023-11-14T22:13:21.1234567891Z",
    "2023-11-14t22:13:21Z",
    -1.5,
    NOT_AFTER_MS / 1000 + 60,
    True,
    "soon",
    None,
]
LABELS: list[Any] = [
    "fraud",
    True,
    False,
    0,
    3,
    2.5,
    1.0,
    -0.0,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    1e19,
    "x" * 4097,
    "",
    None,
    [1],
    {"a": 1},
]
VALUES: list[Any] = [1.0, 2.5, -3, 0, True, 2**63, 1e300, "1.5", None, [1]]
KINDS = ["click", "revenue", "a" * 64, "a" * 65, "Click", "9lives", "", 5, None]
REQUEST_IDS: list[Any] = ["r1", "r2", "r" * 256, "r" * 257, "", None, 7]
SCHEMA_VERSIONS: list[Any] = [1, True, 1.0, 2, "1"]


def pick(options: list[Any], usual: int = 1) -> st.SearchStrategy[Any]:
    """One of the first ``usual`` options, or (one time in eight) any of them.

    Rows are mostly plain, so that an odd value often sits in a message the bulk checks
    would otherwise take whole: there, a check that misses it shows.
    """
    return st.integers(0, 7).flatmap(
        lambda r: st.sampled_from(options if r == 0 else options[:usual])
    )


@st.composite
def side_row(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model_id": draw(pick(["m", "fraud-2", "bad id", "", None, 3], usual=2)),
        "timestamp": draw(pick(TIMES, usual=4)),
    }
    if draw(st.booleans()):
        row["model_version"] = draw(pick(VERSIONS, usual=3))
    if draw(st.booleans()):
        row["schema_version"] = draw(pick(SCHEMA_VERSIONS))
    if kind == "feedback":
        row["request_id"] = draw(pick(REQUEST_IDS))
        row["label"] = draw(pick(LABELS, usual=8))
    else:
        if draw(st.booleans()):
            row["request_id"] = draw(pick(REQUEST_IDS))
        row["kind"] = draw(pick(KINDS, usual=3))
        if draw(st.booleans()):
            row["value"] = draw(pick(VALUES, usual=4))
    if draw(st.integers(0, 9)) == 0:
        del row[draw(st.sampled_from(sorted(row)))]  # a missing field
    if draw(st.integers(0, 19)) == 0:
        row["unknown"] = 1
    return row


@st.composite
def side_message(draw: st.DrawFn, kind: str) -> bytes:
    """Rows as a list, an envelope or a single object; sometimes with a repeated key."""
    rows = draw(st.lists(side_row(kind), max_size=6))
    form = draw(st.sampled_from(["list", "envelope", "single"] if len(rows) == 1 else ["list"]))
    spaced = draw(st.booleans())
    separators = (", ", ": ") if spaced else (",", ":")

    def dump(row: dict[str, Any]) -> str:
        return json.dumps(row, separators=separators)

    if form == "single":
        text = dump(rows[0])
    elif form == "envelope":
        text = '{"events": [' + ", ".join(map(dump, rows)) + "]}"
    else:
        text = "[" + ",".join(map(dump, rows)) + "]"
    if rows and draw(st.integers(0, 9)) == 0:
        text = text.replace('"model_id":', '"model_id": "m", "model_id":', 1)
    return text.encode()


def side_messages(kind: str) -> st.SearchStrategy[list[bytes]]:
    """Mostly messages of odd rows; one in four of the fuzz tests' (garbage, corruption)."""
    one = st.integers(0, 3).flatmap(
        lambda r: any_message(kind) if r == 0 else side_message(kind)  # type: ignore[arg-type]
    )
    return st.lists(one, max_size=8)


def columns_of(events: list[Any], kind: str) -> dict[str, list[Any]]:
    """What the processor reads of pydantic events, values with their types."""
    out: dict[str, list[Any]] = {
        "model_id": [e.model_id for e in events],
        "model_version": [e.model_version for e in events],
        "request_id": [e.request_id for e in events],
    }
    if kind == "business":
        out["kind"] = [e.kind for e in events]
        out["value"] = [e.value for e in events]
    else:
        out["label"] = [(type(e.label), e.label) for e in events]
    return out


def assert_decoded_as_message_by_message(kind: str, values: list[bytes]) -> None:
    step = SideDecoder(SIDE[kind], MAX_BYTES, MAX_EVENTS).decode_step(values, NOT_AFTER_MS)
    exact = EventDecoder(SIDE[kind], MAX_BYTES, MAX_EVENTS)
    batch = step.batch
    assert step.starts[0] == 0 and step.starts[-1] == batch.size
    for i, value in enumerate(values):
        decoded = exact.decode_indexed(value, not_after_ms=NOT_AFTER_MS)
        assert step.rejects[i] == decoded.rejects
        rows = np.arange(step.starts[i], step.starts[i + 1])
        part = batch.take(rows)
        got = {
            "model_id": part.model_id,
            "model_version": part.model_version,
            "request_id": part.request_id,
        }
        if kind == "business":
            got["kind"] = part.kind
            got["value"] = part.value.tolist()
        else:
            got["label"] = [(type(v), v) for v in part.label]
        assert got == columns_of(decoded.events, kind)
        assert part.ts_ms.tolist() == decoded.timestamps_ms
        assert part.positions == decoded.positions
        decoder = SideDecoder(SIDE[kind], MAX_BYTES, MAX_EVENTS)
        assert [decoder.dump(s) for s in part.sources] == [
            e.model_dump(mode="json") for e in decoded.events
        ]


ODD_VALUES = [
    *(("feedback", "label", v) for v in LABELS),
    *(("business", "value", v) for v in VALUES),
    *(("business", "kind", v) for v in KINDS),
    *((kind, "request_id", v) for kind in SIDE for v in REQUEST_IDS),
    *((kind, "model_version", v) for kind in SIDE for v in VERSIONS),
    *((kind, "timestamp", v) for kind in SIDE for v in TIMES),
    *((kind, "schema_version", v) for kind in SIDE for v in SCHEMA_VERSIONS),
]


@pytest.mark.parametrize(("kind", "field", "value"), ODD_VALUES)
def test_each_odd_value_among_plain_rows_is_decoded_as_pydantic_decodes_it(
    kind: str, field: str, value: Any
) -> None:
    plain: dict[str, Any] = {"model_id": "m", "timestamp": (BASE_MS + 1) / 1000}
    if kind == "feedback":
        plain.update(request_id="r1", label="yes")
    else:
        plain.update(kind="click", value=2.5)
    odd = {**plain, field: value}
    plain_message = json.dumps([plain, plain]).encode()
    values = [plain_message, json.dumps([plain, odd, plain]).encode(), json.dumps(odd).encode()]
    assert_decoded_as_message_by_message(kind, [*values, plain_message])


@EXAMPLES
@given(st.sampled_from(sorted(SIDE)), st.data())
def test_a_step_of_side_messages_is_decoded_as_message_by_message(
    kind: str, data: st.DataObject
) -> None:
    assert_decoded_as_message_by_message(kind, data.draw(side_messages(kind)))


# -- the label join ------------------------------------------------------------------------

label_values = st.sampled_from(["a", "b", "c", True, False, 0, 1, 2.0, 2.5, -1.25])
predicted = st.tuples(st.sampled_from(["a", "b", "1", "true", None]), st.sampled_from([None, 1.0]))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(label_values | st.text(max_size=2), predicted), max_size=200),
    st.integers(0, 70),
)
def test_recording_judged_labels_at_once_equals_one_at_a_time(
    labels: list[tuple[Any, tuple[str | None, float | None]]], classes_before: int
) -> None:
    """Including the cap of 64 label classes, reached part way through."""
    one = LabelStats(label_classes={f"k{i}": 1 for i in range(classes_before)})
    many = LabelStats(label_classes=dict(one.label_classes))
    for label, (cls, value) in labels:
        one.record(judge(label, cls, value))
    verdicts = judge_all(
        [label for label, _ in labels], [c for _, (c, _) in labels], [v for _, (_, v) in labels]
    )
    many.record_judged(verdicts.judged())
    assert many == one
    assert list(many.label_classes) == list(one.label_classes)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["m", "n"]), min_size=1, max_size=60),
    st.lists(
        st.tuples(
            st.integers(-2, 70).map(lambda i: None if i < 0 else f"r{i}"),
            st.sampled_from(["m", "n"]),
        ),
        max_size=80,
    ),
    st.integers(1, 20),
)
def test_taking_many_labels_equals_taking_them_one_at_a_time(
    models: list[str], labels: list[tuple[str | None, str]], step: int
) -> None:
    """Unknown ids, repeated ids and labels naming another model, over several chunks."""

    def pending() -> PendingPredictions:
        p = PendingPredictions(horizon_ms=10**9, max_pending=1_000)
        for start in range(0, len(models), step):
            part = range(start, min(start + step, len(models)))
            p.remember_many(
                [f"r{i % 50}" for i in part],
                [BASE_MS + i for i in part],
                [models[i] for i in part],
                ["1" for _ in part],
                [None if i % 3 else f"c{i}" for i in part],
                [float(i) if i % 2 else None for i in part],
            )
            p.drain_changes()
        return p

    one, many = pending(), pending()
    expected: list[tuple[int, Prediction]] = []
    for i, (request_id, model_id) in enumerate(labels):
        taken = one.take(request_id, model_id) if request_id is not None else None
        if taken is not None:
            expected.append((i, taken._replace(seq=0)))
    got = many.take_many([r for r, _ in labels], [m for _, m in labels])
    assert got.rows == [i for i, _ in expected]
    assert got.event_ts_ms.tolist() == [p.event_ts_ms for _, p in expected]
    assert got.model_id == [p.model_id for _, p in expected]
    assert got.model_version == [p.model_version for _, p in expected]
    assert got.predicted_class == [p.predicted_class for _, p in expected]
    assert got.predicted_value == [p.predicted_value for _, p in expected]
    assert dict(many) == dict(one)
    changed, expected_changes = many.drain_changes(), one.drain_changes()
    assert (changed.chunk_id, changed.dropped) == (
        expected_changes.chunk_id,
        expected_changes.dropped,
    )
    assert (changed.chunk and encode_chunk(changed.chunk)) == (
        expected_changes.chunk and encode_chunk(expected_changes.chunk)
    )


# -- the processor -------------------------------------------------------------------------


def side(kind: str, offset: int, rows: list[dict[str, Any]]) -> RawMessage:
    return RawMessage(f"streamwatch.{kind}", kind, 0, offset, orjson.dumps(rows))  # type: ignore[arg-type]


def outcome(processor: PartitionProcessor, results: list[StepResult]) -> tuple[Any, ...]:
    windows: dict[Any, Any] = {}
    labels: dict[Any, Any] = {}
    for result in results:
        for update in result.windows:
            windows[update.key] = update.aggregate.to_dict()
        for label in result.labels:
            labels[label.key] = label.window.to_dict(label.final)
    dead = [
        (d.source.topic, d.source.offset, d.source.batch_index, d.reason, d.detail, d.original_b64)
        for r in results
        for d in r.deadletters
    ]
    counters = {k: v for k, v in processor.counters.items() if not k.endswith("_messages")}
    return windows, labels, dead, processor.tracked_series, counters


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["business", "feedback"]),
            st.lists(
                st.tuples(st.integers(0, 6), st.integers(0, 30_000), st.integers(0, 40)),
                min_size=1,
                max_size=5,
            ),
        ),
        min_size=1,
        max_size=14,
    ),
    st.lists(st.integers(1, 6), min_size=1, max_size=5),
)
def test_side_events_do_not_depend_on_batching(
    sent: list[tuple[str, list[tuple[int, int, int]]]], sizes: list[int]
) -> None:
    """Series admission (3 of 7 models), dead letters, windows and the label join.

    Predictions of two models come first; then business and feedback messages, as one step
    or cut into steps of any sizes, give the same state as one message a step.
    """
    predictions = [
        event(i, BASE_MS + 100 * i, model=f"m{i % 2}", version="1", prediction="yes")
        for i in range(40)
    ]
    side_messages = []
    for offset, (kind, rows) in enumerate(sent):
        body = []
        for model, ts, request in rows:
            row: dict[str, Any] = {"model_id": f"m{model}", "timestamp": (BASE_MS + ts) / 1000}
            if kind == "feedback":
                row.update(request_id=f"r{request}", label="yes" if request % 3 else "no")
            else:
                # One value: moments merged per step differ in their last bits (not this test).
                row.update(kind="click" if request % 2 else "impression", value=2.0)
            if model < 2:
                row["model_version"] = "1"
            body.append(row)
        side_messages.append(side(kind, offset, body))

    def run(parts: list[list[RawMessage]]) -> tuple[Any, ...]:
        processor = PartitionProcessor(0, config(max_models=3, label_horizon_ms=60_000))
        results = [processor.process(messages([predictions]), NOW_MS)]
        results += [processor.process(part, NOW_MS) for part in parts]
        return outcome(processor, results)

    one_each = run([[m] for m in side_messages])
    assert run([side_messages]) == one_each
    assert run(cut(side_messages, sizes)) == one_each
