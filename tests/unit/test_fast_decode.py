"""InferenceDecoder.decode_step against the reference: EventDecoder message by message.

The reference of a step is what today's decoder gives for each message
(``EventDecoder(InferenceEvent).decode_indexed``), its events turned into columns by
``InferenceBatch.from_events``. For the row form the fast decoder must give exactly that: the
same columns (NaN-aware, same dtypes, features in first-appearance order), the same message of
each event and the same rejects (reason, detail, original bytes, batch index). A columnar
envelope must give what its rows, sent as a JSON array, give (its features in the envelope's
order), except for the envelope's own errors.
"""

from __future__ import annotations

import doctest
import json
import math
import random
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter

from streamwatch.core import bulk_columns, fast_decode
from streamwatch.core.columns import InferenceBatch
from streamwatch.core.decode import EventDecoder, Reject
from streamwatch.core.fast_decode import (
    COLUMNAR_CHUNK_ROWS,
    ROW_CHUNK_ROWS,
    DecodedStep,
    InferenceDecoder,
)
from streamwatch.events import InferenceEvent, epoch_ms
from streamwatch.generator import columnar_envelope

from .helpers import BASE_MS, event
from .test_decode import POISON

MAX_BYTES = 64 * 1024
MAX_EVENTS = 50
NOT_AFTER_MS = BASE_MS + 3_600_000
FAST = InferenceDecoder(MAX_BYTES, MAX_EVENTS)
REFERENCE = EventDecoder(InferenceEvent, MAX_BYTES, MAX_EVENTS)
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

# -- the reference and the comparison --------------------------------------------------------


def rows_of(value: bytes) -> bytes:
    """The row-form JSON array a columnar envelope stands for (row i: the i-th entries)."""
    columns = json.loads(value)["columns"]
    rows = []
    for i in range(len(columns["request_id"])):
        row: dict[str, Any] = {}
        for name, column in columns.items():
            if name in ("features", "stages_ms", "resources", "tags"):
                members = {k: v[i] for k, v in column.items() if v[i] is not None}
                if members:
                    row[name] = members
            else:
                entry = column[i] if isinstance(column, list) else column
                if entry is not None:
                    row[name] = entry
        rows.append(row)
    return json.dumps(rows).encode()


def reference(
    values: list[bytes | None], not_after_ms: int | None = NOT_AFTER_MS
) -> tuple[InferenceBatch, list[int], list[list[Reject]]]:
    """(batch, message of each event, rejects per message) as today's decoder gives them."""
    events, positions, times, owners, rejects = [], [], [], [], []
    for index, value in enumerate(values):
        decoded = REFERENCE.decode_indexed(value, not_after_ms=not_after_ms)
        events += decoded.events
        positions += decoded.positions
        times += decoded.timestamps_ms
        owners += [index] * len(decoded.events)
        rejects.append(decoded.rejects)
    return InferenceBatch.from_events(events, positions, times), owners, rejects


def same_array(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype, what
    assert got.shape == want.shape, what
    assert np.array_equal(got, want, equal_nan=True), (what, got, want)
    if got.dtype.kind == "f":  # -0.0 and 0.0 are equal; their signs must agree too
        assert np.array_equal(np.signbit(got), np.signbit(want)), what


def assert_same_batch(got: InferenceBatch, want: InferenceBatch, *, ordered: bool = True) -> None:
    """Every column equal; features in the same order unless ``ordered`` is False."""
    assert got.request_id == want.request_id
    assert got.model_id == want.model_id
    assert got.model_version == want.model_version
    assert got.positions == want.positions
    g, w = got.columns, want.columns
    for name in ("event_ts_ms", "latency_ms", "is_error", "score", "prediction_value"):
        same_array(getattr(g, name), getattr(w, name), name)
    for name in ("error_type", "prediction_label", "traffic", "segment"):
        assert getattr(g, name) == getattr(w, name), name
    if ordered:
        assert list(g.features) == list(w.features)
        assert list(g.stages_ms) == list(w.stages_ms)
    assert set(g.features) == set(w.features)
    for name, column in w.features.items():
        same_array(g.features[name].numeric, column.numeric, f"feature {name}")
        assert g.features[name].categorical == column.categorical, f"feature {name}"
    for kind in ("stages_ms", "resources"):
        got_arrays, want_arrays = getattr(g, kind), getattr(w, kind)
        assert set(got_arrays) == set(want_arrays), kind
        for name, values in want_arrays.items():
            same_array(got_arrays[name], values, f"{kind}.{name}")


def assert_same_step(
    values: list[bytes | None],
    *,
    not_after_ms: int | None = NOT_AFTER_MS,
    step: DecodedStep | None = None,
) -> DecodedStep:
    """decode_step of row-form messages equals the reference exactly."""
    got = step if step is not None else FAST.decode_step(values, not_after_ms=not_after_ms)
    batch, owners, rejects = reference(values, not_after_ms)
    assert got.rejects == rejects
    assert got.message_of == owners
    assert_same_batch(got.batch, batch)
    return got


def assert_same_as_rows(values: list[bytes], not_after_ms: int | None = NOT_AFTER_MS) -> None:
    """A step with columnar envelopes equals the step with each sent as its rows."""
    got = FAST.decode_step(values, not_after_ms=not_after_ms)
    as_rows = [rows_of(v) if is_columnar(v) else v for v in values]
    batch, owners, rejects = reference(as_rows, not_after_ms)  # type: ignore[arg-type]
    assert got.message_of == owners
    assert_same_batch(got.batch, batch, ordered=False)
    for value, got_rejects, want_rejects in zip(values, got.rejects, rejects, strict=True):
        if not is_columnar(value):
            assert got_rejects == want_rejects
        else:  # a row's original is the row as JSON; a whole message's is the envelope
            assert [(r.reason, r.detail, r.batch_index) for r in got_rejects] == [
                (r.reason, r.detail, r.batch_index) for r in want_rejects
            ]
            # As JSON, not byte for byte: whether the reference wrote a row with the stdlib
            # (escaped, spaced) depends on how the rows' text happens to look.
            assert [normal(r.original) for r in got_rejects] == [
                normal(r.original if r.batch_index is not None else value) for r in want_rejects
            ]


def is_columnar(value: bytes) -> bool:
    try:
        document = json.loads(value)
    except ValueError:
        return False
    return isinstance(document, dict) and "columns" in document


def normal(original: bytes) -> str:
    return json.dumps(json.loads(original))


def columnar(rows: list[dict[str, Any]], **columns: Any) -> bytes:
    envelope = columnar_envelope(rows) if rows else {"columns": {"request_id": []}}
    envelope["columns"].update(columns)
    return orjson.dumps(envelope)


def good(i: int = 0, **extra: Any) -> dict[str, Any]:
    body = event(i, BASE_MS + i, latency_ms=10.0 + i)
    body.update(extra)
    return body


RICH = good(
    0,
    prediction="legit",
    score=0.9,
    features={"amount": 12.5, "age": 3, "country": "de", "new": True, "none": None},
    stages_ms={"pre": 1, "inference": 7.5},
    resources={"cpu_pct": 40, "memory_mb": 900.5, "gpu_pct": 12.0},
    traffic="control",
    segment="eu",
    tags={"region": "eu-west-1"},
)


# -- the three row forms ---------------------------------------------------------------------


def test_every_row_form_gives_what_the_reference_gives() -> None:
    rows = [dict(RICH, request_id=f"r{i}", timestamp=(BASE_MS + i) / 1000) for i in range(5)]
    rows[2] = dict(rows[2], status="error", error_type="timeout", prediction=None)
    assert_same_step(
        [
            orjson.dumps(rows[0]),
            orjson.dumps(rows),
            orjson.dumps({"events": rows}),
            orjson.dumps({"schema_version": 1, "events": rows[:2]}),
            orjson.dumps([]),
        ]
    )


@pytest.mark.parametrize(("value", "reason"), POISON.values(), ids=POISON.keys())
def test_every_kind_of_poison_gets_the_reference_reject(value: bytes, reason: str) -> None:
    step = assert_same_step([value])
    assert [r.reason for r in step.rejects[0]] == [reason]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", ""),
        ("request_id", "r" * 256),
        ("request_id", "r" * 257),
        ("request_id", 5),
        ("model_id", "a:b"),
        ("model_id", "a\n"),
        ("model_id", "-a"),
        ("model_id", "a" * 128),
        ("model_id", "a" * 129),
        ("model_id", "é"),
        ("model_id", "a/b+c@d.e_f-g"),
        ("model_version", None),
        ("schema_version", 1),
        ("schema_version", 1.0),
        ("schema_version", True),
        ("schema_version", 2),
        ("schema_version", "1"),
        ("schema_version", None),
        ("timestamp", 0),
        ("timestamp", -1),
        ("timestamp", -0.0000001),
        ("timestamp", 1_700_000_000),
        ("timestamp", 20_000_000_000),
        ("timestamp", 20_000_000_001),
        ("timestamp", 20_000_000_000.5),
        ("timestamp", 1_700_000_000_000.9996),
        ("timestamp", 253_402_300_799_999),
        ("timestamp", 253_402_300_800_000),
        ("timestamp", 1e15),
        ("timestamp", "2023-11-14T22:13:20.123456+01:00"),
        ("timestamp", "2023-11-14T22:13:20Z"),
        ("timestamp", "2023-11-14T22:13:20"),
        ("timestamp", "1700000000"),
        ("timestamp", "1969-12-31T23:59:59Z"),
        ("timestamp", ""),
        ("timestamp", "2023-11-14T22:13:20Z" + " " * 80),
        ("timestamp", True),
        ("timestamp", None),
        ("latency_ms", -0.0),
        ("latency_ms", -1e-300),
        ("latency_ms", 0),
        ("latency_ms", 2**64 - 1),
        ("latency_ms", 1e308),
        ("latency_ms", "5"),
        ("latency_ms", True),
        ("status", "error"),
        ("status", "OK"),
        ("status", None),
        ("error_type", "e" * 256),
        ("error_type", "e" * 257),
        ("prediction", True),
        ("prediction", 3),
        ("prediction", -(2**63)),
        ("prediction", 2**64 - 1),
        ("prediction", 2**64),
        ("prediction", 1.8e19),
        ("prediction", 0.25),
        ("prediction", "p" * 4096),
        ("prediction", "p" * 4097),
        ("prediction", []),
        ("prediction", [0.1, 0.7, 0.2]),
        ("prediction", [3, 1.5, 7]),
        ("prediction", [1, True]),
        ("prediction", [1e19]),
        ("prediction", [[1]]),
        ("prediction", {"a": 1}),
        ("score", 0),
        ("score", 1),
        ("score", 1.0000001),
        ("score", -0.0),
        ("score", "0.5"),
        ("score", True),
        ("features", None),
        ("features", []),
        ("features", {"x": [1]}),
        ("features", {"x": {"a": 1}}),
        ("features", {"f" * 128: 1}),
        ("features", {"f" * 129: 1}),
        ("features", {"x": "v" * 4096, "y": False}),
        ("features", {"x": "v" * 4097}),
        ("features", {"x": 2**64, "y": -(2**63)}),
        ("features", {"x": 1, "y": "a", "z": None, "w": 2.5, "v": True}),
        ("stages_ms", {"s" * 64: 1}),
        ("stages_ms", {"s" * 65: 1}),
        ("stages_ms", {"pre": None}),
        ("stages_ms", {"pre": -1}),
        ("stages_ms", {"pre": "3"}),
        ("stages_ms", {"pre": True}),
        ("stages_ms", None),
        ("resources", None),
        ("resources", {}),
        ("resources", {"cpu_pct": None}),
        ("resources", {"gpu_pct": 100}),
        ("resources", {"gpu_pct": 100.0001}),
        ("resources", {"memory_mb": -1}),
        ("resources", {"disk": 1}),
        ("resources", [1]),
        ("traffic", "t" * 64),
        ("traffic", "t" * 65),
        ("segment", "s" * 128),
        ("segment", "s" * 129),
        ("tags", {"k": "v" * 4096}),
        ("tags", {"k": "v" * 4097}),
        ("tags", {"k" * 4097: "v"}),
        ("tags", {"k": 1}),
        ("tags", {"k": None}),
        ("tags", None),
        ("latency", 5),
    ],
)
def test_each_field_at_its_limits_gives_the_reference_outcome(field: str, value: Any) -> None:
    bad = dict(RICH, **{field: value})
    batch = [dict(RICH, request_id="a"), bad, dict(RICH, request_id="c")]
    text = json.dumps  # orjson cannot write integers beyond 64 bits
    assert_same_step(
        [
            text(bad).encode(),
            text(batch).encode(),
            text({"events": batch}).encode(),
            orjson.dumps(RICH),
        ],
        not_after_ms=None,
    )


def test_a_row_without_a_required_field_is_rejected_alone() -> None:
    for field in ("request_id", "model_id", "model_version", "timestamp", "latency_ms"):
        batch = [good(0), {k: v for k, v in good(1).items() if k != field}, good(2)]
        step = assert_same_step([orjson.dumps(batch)])
        assert [r.batch_index for r in step.rejects[0]] == [1]


def test_rows_that_are_not_objects_are_rejected_alone() -> None:
    assert_same_step([orjson.dumps([good(0), 5, "x", None, [good(1)], good(2)])])


def test_features_keep_their_first_appearance_order_across_messages() -> None:
    values = [
        orjson.dumps(good(0, features={"b": 1, "a": None})),
        orjson.dumps([good(1, features={"c": "x"}), good(2, features={"a": 2, "d": True})]),
        orjson.dumps(good(3, features={"e": 1.5, "b": "y"})),
    ]
    step = assert_same_step(values)
    assert list(step.batch.columns.features) == ["b", "a", "c", "d", "e"]


def test_repeated_keys_and_key_like_strings_are_told_apart() -> None:
    good_text = orjson.dumps(good(0)).decode()
    values = [
        (good_text[:-1] + ',"latency_ms":-1}').encode(),  # repeated: duplicate_key
        ("[" + good_text + "," + good_text[:-1] + ', "model_id" : "x"}]').encode(),
        orjson.dumps([good(1, tags={"q": 'a": "b":', 'k":': "v"})]),  # valid: colons in text
        orjson.dumps(good(2, features={'x":': 1})),
        json.dumps([good(3), good(4)], indent=2).encode(),
        orjson.dumps({"events": [good(5)]})[:-1] + b',"events":[]}',
    ]
    assert_same_step(values)


def test_times_before_1970_and_after_the_limit_are_rejected_in_batch_order() -> None:
    late = (NOT_AFTER_MS + 1) / 1000
    batch = [good(0), good(1, timestamp=-1.5), good(2), good(3, timestamp=late), good(4)]
    values = [
        orjson.dumps(batch),
        orjson.dumps({"events": batch}),
        orjson.dumps(good(5, timestamp=late)),
        orjson.dumps(good(6, timestamp=NOT_AFTER_MS / 1000)),  # the limit is inclusive
        orjson.dumps(good(7, timestamp=-0.001)),
    ]
    step = assert_same_step(values)
    assert [(r.batch_index, r.reason) for r in step.rejects[0]] == [
        (1, "timestamp_before_1970"),
        (3, "timestamp_in_future"),
    ]
    assert step.rejects[2][0].original == values[2]
    assert_same_step(values, not_after_ms=None)


def test_whole_message_rejects_keep_their_place_among_good_messages() -> None:
    values: list[bytes | None] = [
        orjson.dumps(good(0)),
        None,
        b"",
        b"   ",
        b"{oops",
        b"\xff",
        b"42",
        b"[" + b" " * MAX_BYTES + b"]",
        orjson.dumps([good(1)] * (MAX_EVENTS + 1)),
        orjson.dumps({"events": [1] * (MAX_EVENTS + 1)}),
        orjson.dumps({"events": [], "extra": 1}),
        orjson.dumps({"schema_version": True, "events": [good(2)]}),
        orjson.dumps({"schema_version": 2, "events": [good(2)]}),
        orjson.dumps(dict(good(3), events=[1] * (MAX_EVENTS + 1))),
        b"[" * 40 + b"]" * 40,
        orjson.dumps([good(4), good(5)]),
    ]
    step = assert_same_step(values)
    assert step.message_of == [0, 11, 15, 15]


def test_a_message_over_the_limit_is_rejected_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("a message over the limit was parsed")

    monkeypatch.setattr(fast_decode.orjson, "loads", refuse)
    value = b'{"columns": {"request_id": []}}' + b" " * MAX_BYTES
    step = FAST.decode_step([value])
    assert [r.reason for r in step.rejects[0]] == ["payload_too_large"]


def test_many_single_event_messages_with_bad_ones_among_them() -> None:
    # More rows than one chunk: the step is built in parts, which must join seamlessly.
    rng = random.Random(3)
    values: list[bytes | None] = []
    for i in range(ROW_CHUNK_ROWS + 700):
        body = good(i, features={"x": rng.random(), f"n{i % 7}": "v"}, segment="eu")
        if i % 97 == 0:
            body["latency_ms"] = -1
        if i % 131 == 0:
            body["timestamp"] = (NOT_AFTER_MS + 5) / 1000
        if i % 389 == 0:
            body["score"] = "0.5"  # lax float: pydantic accepts it, the message goes slow
        values.append(orjson.dumps(body))
        if i % 250 == 0:
            values.append(orjson.dumps([good(i), good(i + 1, features={"late": 1})]))
    step = assert_same_step(values)
    assert step.batch.size > ROW_CHUNK_ROWS


# -- columnar envelopes ----------------------------------------------------------------------


def test_a_columnar_envelope_decodes_to_its_rows() -> None:
    rows = [dict(RICH, request_id=f"r{i}", latency_ms=float(i)) for i in range(4)]
    rows[1] = dict(rows[1], status="error", error_type="timeout", features={"amount": None})
    rows[2] = {k: v for k, v in rows[2].items() if k not in ("resources", "tags")}
    value = columnar(rows)
    assert orjson.loads(value)["columns"]["model_id"] == "m"  # one value for all rows
    assert_same_as_rows([value])
    step = FAST.decode_step([value])
    assert step.batch.positions == [0, 1, 2, 3] and step.message_of == [0, 0, 0, 0]
    assert list(step.batch.columns.features) == ["amount", "age", "country", "new"]


def test_columnar_features_keep_the_envelopes_order_and_skip_empty_columns() -> None:
    value = orjson.dumps(
        {
            "columns": {
                "request_id": ["a", "b"],
                "model_id": "m",
                "model_version": ["1", "2"],
                "timestamp": [1.7e9, 1.7e9],
                "latency_ms": [1, 2],
                "features": {"z": [None, 1], "y": [None, None], "x": ["u", None]},
                "stages_ms": {"pre": [None, None], "inf": [1, None]},
                "resources": {"cpu_pct": [None, None], "gpu_pct": [None, 5]},
            }
        }
    )
    step = FAST.decode_step([value])
    assert step.rejects == [[]]
    columns = step.batch.columns
    assert list(columns.features) == ["z", "x"]
    assert list(columns.stages_ms) == ["inf"] and list(columns.resources) == ["gpu_pct"]
    assert columns.features["x"].categorical == ["u", None]
    assert_same_as_rows([value])


def test_bad_rows_of_a_columnar_envelope_are_rejected_alone_as_rows() -> None:
    rows = [dict(RICH, request_id=f"r{i}", timestamp=(BASE_MS + i) / 1000) for i in range(6)]
    rows[1]["latency_ms"] = -1
    rows[2]["model_id"] = "a:b"
    rows[3]["timestamp"] = (NOT_AFTER_MS + 1) / 1000
    rows[4]["features"] = {"amount": "x" * 5000}
    value = columnar(rows)
    step = FAST.decode_step([value], not_after_ms=NOT_AFTER_MS)
    assert [(r.batch_index, r.reason) for r in step.rejects[0]] == [
        (1, "invalid_event"),
        (2, "invalid_event"),
        (3, "timestamp_in_future"),
        (4, "invalid_event"),
    ]
    assert orjson.loads(step.rejects[0][0].original)["request_id"] == "r1"
    assert step.batch.positions == [0, 5]
    assert_same_as_rows([value])


def test_a_row_pydantic_accepts_after_all_sends_its_envelope_down_the_exact_path() -> None:
    rows = [good(0), good(1, latency_ms="5"), good(2, timestamp="2023-11-14T22:13:20Z")]
    value = columnar(rows)
    step = FAST.decode_step([value])
    assert step.rejects == [[]] and step.batch.size == 3
    assert_same_as_rows([value])


def test_a_missing_required_column_rejects_every_row() -> None:
    value = orjson.dumps(
        {"columns": {"request_id": ["a", "b"], "model_id": "m", "timestamp": [1.7e9, 1.7e9]}}
    )
    step = FAST.decode_step([value])
    assert [(r.reason, r.batch_index) for r in step.rejects[0]] == [
        ("invalid_event", 0),
        ("invalid_event", 1),
    ]
    assert "model_version: Field required" in step.rejects[0][0].detail
    assert_same_as_rows([value])


def test_null_entries_are_absent_keys() -> None:
    value = orjson.dumps(
        {
            "columns": {
                "request_id": ["a", "b", "c"],
                "model_id": ["m", None, "m"],
                "model_version": "1",
                "timestamp": [1.7e9, 1.7e9, None],
                "latency_ms": [1, 2, 3],
                "status": [None, "error", "ok"],
                "error_type": "timeout",
                "score": [None, 0.5, 0.5],
            }
        }
    )
    step = FAST.decode_step([value])
    assert [(r.batch_index, r.reason) for r in step.rejects[0]] == [
        (1, "invalid_event"),
        (2, "invalid_event"),
    ]
    assert step.batch.columns.error_type == [None]  # status ok (the default): no error type
    assert_same_as_rows([value])


ENVELOPE = {
    "request_id": ["a", "b"],
    "model_id": "m",
    "model_version": "1",
    "timestamp": [1.7e9, 1.7e9],
    "latency_ms": [1.0, 2.0],
}


@pytest.mark.parametrize(
    ("envelope", "reason", "detail"),
    [
        ({"columns": [ENVELOPE]}, "invalid_envelope", "'columns' must be a JSON object"),
        ({"columns": {**ENVELOPE, "latency": [1, 2]}}, "invalid_envelope", "['latency']"),
        ({"columns": {**ENVELOPE, "request_id": "a"}}, "invalid_envelope", "request_id"),
        (
            {"columns": {k: v for k, v in ENVELOPE.items() if k != "request_id"}},
            "invalid_envelope",
            "its length is the batch size",
        ),
        ({"columns": {**ENVELOPE, "latency_ms": [1.0]}}, "invalid_envelope", "has 1 values"),
        ({"columns": {**ENVELOPE, "timestamp": 1.7e9}}, "invalid_envelope", "array of 2"),
        ({"columns": {**ENVELOPE, "model_id": {"a": 1}}}, "invalid_envelope", "model_id"),
        ({"columns": {**ENVELOPE, "features": [1, 2]}}, "invalid_envelope", "features"),
        ({"columns": {**ENVELOPE, "features": {"x": 1}}}, "invalid_envelope", "features.x"),
        ({"columns": {**ENVELOPE, "tags": {"x": [1]}}}, "invalid_envelope", "has 1 values"),
        ({"columns": ENVELOPE, "rows": 2}, "invalid_envelope", "['rows']"),
        ({"schema_version": 2, "columns": ENVELOPE}, "unsupported_schema_version", "2"),
        ({"schema_version": True, "columns": ENVELOPE}, "unsupported_schema_version", "True"),
        (
            {"columns": {**ENVELOPE, "request_id": ["r"] * (MAX_EVENTS + 1)}},
            "too_many_events",
            "STREAMWATCH_MAX_BATCH_EVENTS",
        ),
    ],
)
def test_a_malformed_envelope_is_rejected_whole_saying_what_to_fix(
    envelope: dict[str, Any], reason: str, detail: str
) -> None:
    value = orjson.dumps(envelope)
    step = FAST.decode_step([value, orjson.dumps(good(0))])
    assert [(r.reason, r.original, r.batch_index) for r in step.rejects[0]] == [
        (reason, value, None)
    ]
    assert detail in step.rejects[0][0].detail
    assert step.message_of == [1]


def test_an_unknown_column_is_named_with_the_valid_ones() -> None:
    step = FAST.decode_step([orjson.dumps({"columns": {**ENVELOPE, "latncy_ms": [1, 2]}})])
    detail = step.rejects[0][0].detail
    assert "latncy_ms" in detail and "'latency_ms'" in detail and "'features'" in detail


def test_a_repeated_key_anywhere_in_an_envelope_rejects_it_whole() -> None:
    text = orjson.dumps({"columns": ENVELOPE}).decode()
    for value in (
        text[:-1] + ',"columns":{}}',
        text[:-2] + ',"latency_ms":[3,4]}}',
        text[:-2] + ',"features":{"x":[1,2],"x":[3,4]}}}',
    ):
        around = [columnar([good(0), good(1)]), columnar([good(2)])]
        step = FAST.decode_step([around[0], value.encode(), around[1]])
        assert step.rejects == [[], [step.rejects[1][0]], []]
        assert step.rejects[1][0].reason == "duplicate_key"
        assert step.batch.request_id == ["r0", "r1", "r2"]
        assert step.batch.positions == [0, 1, 0] and step.message_of == [0, 0, 2]


def test_a_repeated_key_in_a_cell_rejects_its_row_as_in_an_array() -> None:
    text = orjson.dumps({"columns": {**ENVELOPE, "prediction": [1, 2]}}).decode()
    value = text.replace("[1,2]", '[1,{"a":1,"a":2}]').encode()
    step = FAST.decode_step([columnar([good(0)]), value, columnar([good(2)])])
    assert [(r.reason, r.batch_index) for r in step.rejects[1]] == [("duplicate_key", 1)]
    assert step.batch.request_id == ["r0", "a", "r2"]


def test_nan_and_huge_numbers_reject_only_their_rows() -> None:
    text = json.dumps(
        {
            "columns": {
                **ENVELOPE,
                "request_id": ["a", "b", "c", "d"],
                "timestamp": [1.7e9] * 4,
                "latency_ms": [1.0, math.nan, 3.0, 4.0],
                "score": [None, None, math.inf, None],
                "features": {"x": [1, 2, 3, 10**400]},
            }
        }
    )
    step = FAST.decode_step([text.encode()])
    assert [(r.batch_index, r.reason) for r in step.rejects[0]] == [
        (1, "non_finite_number"),
        (2, "non_finite_number"),
        (3, "number_out_of_range"),
    ]
    assert step.batch.request_id == ["a"]
    assert_same_as_rows([text.encode()])


def test_booleans_among_numbers_are_read_as_the_contract_reads_them() -> None:
    """Measures read true as 1, features keep it as a category, a time refuses it.

    The bulk path converts numbers and booleans in one pass and tells them apart only where
    a value came out 0 or 1: every column here has real zeros and ones beside the booleans.
    """
    rows = [
        good(
            i,
            latency_ms=[True, 1.0, 0, 2.5, False, 1][i],
            score=[1.0, True, 0.0, False, None, 0.5][i],
            features={
                "mixed": [1.0, True, 0, False, 2.5, 1][i],
                "ones": [1, 1.0, 0.0, 1, 0, True][i],
                "plain": [1.0, 0.0, 3.5, 1, 0, 7][i],
            },
            stages_ms={"pre": [True, 1, 0.0, 2, False, 1.0][i]},
            resources={"cpu_pct": [False, 1.0, True, 0, 3, 1][i]},
        )
        for i in range(6)
    ]
    rows[3]["timestamp"] = True
    rows[4]["timestamp"] = 1  # one second after the epoch: a valid time
    step = assert_same_step([orjson.dumps(rows), orjson.dumps({"events": rows})], not_after_ms=None)
    assert [r.batch_index for r in step.rejects[0]] == [3]
    mixed = step.batch.columns.features["mixed"]
    assert mixed.categorical is not None
    assert mixed.categorical[:2] == [None, "true"]
    assert_same_as_rows([orjson.dumps(columnar_envelope(rows))], not_after_ms=None)
    plain = FAST.decode_step([orjson.dumps(columnar_envelope([rows[i] for i in (0, 1, 2, 4, 5)]))])
    assert plain.batch.columns.features["plain"].categorical is None
    assert plain.batch.columns.latency_ms.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_few_valued_labels_share_one_object_per_value() -> None:
    """Parsed copies of a label are freed with their message: predictions awaiting labels
    keep one shared string per class, not one per event."""
    rows = [good(i, prediction=["legit", "fraud"][i % 2], features={"c": "de"}) for i in range(40)]
    for value in (orjson.dumps(columnar_envelope(rows)), orjson.dumps(rows)):
        columns = FAST.decode_step([value]).batch.columns
        labels = columns.prediction_label
        assert labels == ["legit", "fraud"] * 20
        assert len({id(label) for label in labels}) == 2
        categories = columns.features["c"].categorical
        assert categories is not None
        assert len({id(category) for category in categories}) == 1


def test_model_versions_share_one_object_per_value() -> None:
    """Predictions awaiting labels keep their model version: one string per version."""
    rows = [good(i, model_version=["2.1.0", "2.2.0-canary"][i % 3 == 0]) for i in range(40)]
    for value in (orjson.dumps(columnar_envelope(rows)), orjson.dumps(rows)):
        batch = FAST.decode_step([value]).batch
        assert batch.model_version == [row["model_version"] for row in rows]
        assert len({id(version) for version in batch.model_version}) == 2
        assert len({id(model) for model in batch.model_id}) == 1


def test_many_valued_text_columns_give_the_reference_outcome() -> None:
    """Ids as features and labels (checked without hashing them all), one of them too long."""
    rows = [
        good(i, prediction=f"item-{i}", features={"user": f"user-{i:06d}", "c": "de"})
        for i in range(200)
    ]
    rows[150]["features"]["user"] = "u" * 4097
    rows[170]["prediction"] = "p" * 4097
    parts = [rows[start : start + 50] for start in range(0, 200, 50)]  # one run of 200 rows
    step = assert_same_step([orjson.dumps(part) for part in parts], not_after_ms=None)
    assert [[r.batch_index for r in rejects] for rejects in step.rejects] == [[], [], [], [0, 20]]
    envelopes = [orjson.dumps(columnar_envelope(part)) for part in parts]
    assert_same_as_rows(envelopes, not_after_ms=None)


@pytest.mark.parametrize(
    "odd",
    [None, [0.5, True], [[1]], ["a", 0.5], [2**60, 2**60 + 1], [1e308, -1e308], [0.2, 0.8]],
)
def test_probability_vectors_predict_their_arg_max_as_row_by_row(odd: Any) -> None:
    """Vectors of several lengths, ties, one-hot integers, empty and null ones in one column,
    with one vector that is fine or needs pydantic's word (bool, nested, text, beyond 2^53)."""
    vectors: list[Any] = [
        [0.1, 0.7, 0.2],
        [0.6, 0.4],
        [0.25, 0.25, 0.5, 0.0],
        [1, 0],
        [0, 1, 0],
        [0.5, 0.5],
        [],
        None,
        [3, 1.5, 7],
        [0.3],
    ] * 3
    vectors[4] = odd
    rows = [good(i, prediction=vector) for i, vector in enumerate(vectors)]
    step = assert_same_step([orjson.dumps(rows)], not_after_ms=None)
    assert_same_as_rows([orjson.dumps(columnar_envelope(rows))], not_after_ms=None)
    labels = step.batch.columns.prediction_label
    assert labels[:4] == ["1", "0", "2", "0"] and labels[-5:] == ["0", None, None, "2", "0"]


def test_integer_predictions_beyond_64_bits_are_numbers_as_in_an_events_envelope() -> None:
    rows = [good(0, prediction=2**64), good(1, prediction=2**63), good(2, prediction=[2**65, 1])]
    value = json.dumps(columnar_envelope(rows)).encode()
    step = FAST.decode_step([value])
    batch, _, _ = reference([json.dumps({"events": rows}).encode()])
    assert_same_batch(step.batch, batch)
    assert step.batch.columns.prediction_label == [None, str(2**63), "0"]


def test_deeply_nested_cells_reject_the_envelope_as_rows_would() -> None:
    deep = json.loads("[" * 40 + "]" * 40)
    value = orjson.dumps({"columns": {**ENVELOPE, "prediction": [deep, 1]}})
    step = FAST.decode_step([value])
    assert [r.reason for r in step.rejects[0]] == ["too_deeply_nested"]


def test_an_empty_envelope_has_no_events_and_no_rejects() -> None:
    step = FAST.decode_step([orjson.dumps({"columns": {"request_id": []}})])
    assert step.batch.size == 0 and step.rejects == [[]]


def test_columnar_and_row_messages_mix_in_one_step() -> None:
    rows = [dict(RICH, request_id=f"r{i}", features={f"f{i}": i}) for i in range(3)]
    values = [
        orjson.dumps(rows[0]),
        columnar(rows[:2]),
        orjson.dumps(rows),
        columnar([rows[2]]),
        b"{oops",
        columnar(rows, latency_ms=[1, -1, 2]),
        orjson.dumps(rows[1]),
    ]
    step = FAST.decode_step(values)
    assert step.message_of == [0, 1, 1, 2, 2, 2, 3, 5, 5, 6]
    assert_same_as_rows(values)


def test_more_columnar_rows_than_a_chunk() -> None:
    rows = [good(i, features={"x": i % 5, "c": "abc"[i % 3]}) for i in range(40)]
    values = [columnar(rows)] * (COLUMNAR_CHUNK_ROWS // 40 + 3)
    rows[7] = dict(rows[7], latency_ms=-1)
    rows[9] = dict(rows[9], timestamp=(NOT_AFTER_MS + 1) / 1000, features={"late": 1})
    values[len(values) // 2] = columnar(rows)
    values[-2] = columnar(rows, score=[0.5] * 39 + ["0.5"])  # pydantic reads this one
    assert_same_as_rows(values)


# -- timestamps: the same milliseconds as pydantic, to the bit --------------------------------

TIMES = TypeAdapter(list[AwareDatetime])


def assert_times_like_pydantic(times: list[float | int]) -> None:
    n = len(times)
    value = orjson.dumps(
        {
            "columns": {
                **ENVELOPE,
                "request_id": ["r"] * n,
                "timestamp": times,
                "latency_ms": [1] * n,
            }
        }
    )
    step = InferenceDecoder().decode_step([value])
    assert len(step.rejects[0]) == n - step.batch.size  # before 1970, or beyond 9999
    want = {i: epoch_ms(t) for i, t in enumerate(TIMES.validate_python(times)) if epoch_ms(t) >= 0}
    assert (
        dict(zip(step.batch.positions, step.batch.columns.event_ts_ms.tolist(), strict=True))
        == want
    )


def test_realistic_times_with_one_to_six_decimals_match_pydantic() -> None:
    rng = random.Random(11)
    for decimals in range(1, 7):
        assert_times_like_pydantic(
            [round(1.75e9 + rng.random() * 1e8, decimals) for _ in range(50)]
        )
        assert_times_like_pydantic(
            [round(1.75e12 + rng.random() * 1e9, decimals) for _ in range(50)]
        )
    assert_times_like_pydantic([k + 0.0078125 * j for k in (0, 1, 1.7e9) for j in range(0, 128, 7)])
    assert_times_like_pydantic([0.9999995, 1.0000005, 1_700_000_000.9999995, 2e10, 2e10 + 1e-5])


@EXAMPLES
@given(
    st.lists(
        st.floats(0, 2.5e14, allow_nan=False)
        | st.integers(0, 2 * 10**10 + 5)
        | st.floats(1.5e9, 2.1e9)
        | st.floats(2e10 - 1, 2e10 + 1),
        min_size=1,
        max_size=MAX_EVENTS,
    )
)
def test_any_epoch_number_pydantic_accepts_gives_its_milliseconds(times: list[float]) -> None:
    assert_times_like_pydantic(times)


# -- generated steps -------------------------------------------------------------------------

NAMES = st.sampled_from(["m", "fraud-detector", "v1.2", "a:b", "x" * 129, "é"])
TEXT = st.text(alphabet='ab:"{}\\ é', max_size=4)
NUMBER = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
FEATURE_VALUE = (
    st.none() | st.booleans() | NUMBER | TEXT | st.sampled_from(["s" * 4097, [1], -math.inf])
)
TIMESTAMP = (
    st.floats(1.6e9, 1.8e9)
    | st.integers(0, 3 * 10**14)
    | st.floats(-1, 3e14, allow_nan=False)
    | st.sampled_from(["2023-11-14T22:13:20.5Z", "2023-11-14T22:13:20", "soon", True, None])
)
MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "schema_version": st.sampled_from([1, 1.0, True, 2, "1", None]),
    "request_id": TEXT | st.sampled_from(["", "r" * 257, 7]),
    "model_id": NAMES | st.none(),
    "model_version": NAMES,
    "timestamp": TIMESTAMP,
    "latency_ms": st.floats(-1, 1e6)
    | st.integers(-2, 2**64)
    | st.sampled_from(["5", True, None, math.nan, math.inf, 10**400]),
    "status": st.sampled_from(["ok", "error", "OK", None]),
    "error_type": st.none() | TEXT | st.sampled_from(["e" * 257, 1]),
    "prediction": st.none()
    | st.booleans()
    | NUMBER
    | TEXT
    | st.lists(st.floats(0, 1) | st.integers(0, 9), max_size=3)
    | st.sampled_from([[True], {"a": 1}, "p" * 4097]),
    "score": st.none() | st.floats(-0.5, 1.5) | st.integers(-1, 2) | st.sampled_from(["0.5", True]),
    "features": st.dictionaries(
        st.sampled_from(["a", "b", "c", "f" * 129]), FEATURE_VALUE, max_size=4
    )
    | st.sampled_from([None, "f", []]),
    "stages_ms": st.dictionaries(
        st.sampled_from(["pre", "inf", "s" * 65]),
        st.floats(-1, 100) | st.integers(-1, 100) | st.sampled_from([None, "3", True]),
        max_size=3,
    )
    | st.none(),
    "resources": st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "cpu_pct": st.none() | st.floats(-1, 200) | st.integers(0, 5),
            "memory_mb": st.none() | st.floats(-1, 1e6),
            "gpu_pct": st.none() | st.floats(-1, 101),
            "disk": st.just(1),
        },
    ),
    "traffic": st.none() | st.sampled_from(["control", "canary", "t" * 65]),
    "segment": st.none() | st.sampled_from(["eu", "us", "s" * 129]),
    "tags": st.dictionaries(TEXT, TEXT | st.sampled_from([1, None]), max_size=2) | st.none(),
    "latency": st.just(5),
}
REQUIRED = ("request_id", "model_id", "model_version", "timestamp", "latency_ms")


@st.composite
def row(draw: st.DrawFn, i: int) -> Any:
    """A valid event, often with a few fields changed to values valid or not."""
    body = good(i, timestamp=draw(st.floats(1.6e9, 1.75e9)), latency_ms=draw(st.floats(0, 1e4)))
    if draw(st.booleans()):
        body.update(
            prediction=draw(st.sampled_from(["legit", "fraud"]) | st.floats(0, 1)),
            score=draw(st.floats(0, 1)),
            features={"a": draw(st.floats(-5, 5)), "c": draw(st.sampled_from(["x", "y"]))},
            stages_ms={"pre": draw(st.floats(0, 5))},
            resources={"cpu_pct": draw(st.floats(0, 100))},
            traffic="control",
        )
    for field in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=2)):
        body[field] = draw(MUTATIONS[field])
    if draw(st.integers(0, 20)) == 0:
        del body[draw(st.sampled_from(REQUIRED))]
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([5, "row", None, [body]]))
    return body


@st.composite
def message(draw: st.DrawFn, first: int) -> bytes:
    """One message of any form, rendered with any JSON spacing (stdlib json: big integers)."""
    form = draw(st.sampled_from(["single", "array", "envelope", "columnar", "bytes"]))
    if form == "bytes":
        return draw(st.binary(max_size=40) | st.sampled_from([b"", b"[]", b"null", b"{}"]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]))
    rows = draw(st.lists(row(first), min_size=1 if form == "single" else 0, max_size=8))
    if form in ("single", "array", "envelope"):
        document = rows[0] if form == "single" else rows if form == "array" else {"events": rows}
        text = json.dumps(document, separators=separators)
        if draw(st.integers(0, 9)) == 0 and '{"' in text:  # repeat a key of the first object
            at = text.index('{"') + 1
            text = f'{text[:at]}"request_id"{separators[1]}"again"{separators[0]}{text[at:]}'
        return text.encode()
    # Every row has a request_id entry, perhaps null: request_id is the batch's length.
    rows = [{"request_id": None, **r} for r in rows if isinstance(r, dict) and _representable(r)]
    if not rows:
        return json.dumps({"columns": {"request_id": []}}).encode()
    return json.dumps(columnar_envelope(rows), separators=separators).encode()


def _representable(body: dict[str, Any]) -> bool:
    """Whether the SDK can send a row as columns (object fields are objects, no unknown key).

    Also leaves out integer predictions beyond 64 bits: orjson reads them as floats, so an
    envelope reads them as ``{"events": [...]}`` does (a number), where pydantic reading a JSON
    array reads them as integers (a class label too).
    """
    prediction = body.get("prediction")
    return (
        "latency" not in body
        and not (type(prediction) is int and not -(2**63) <= prediction < 2**64)
        and all(
            isinstance(body.get(name, {}), dict) or body.get(name) is None
            for name in ("features", "stages_ms", "resources", "tags")
        )
    )


@EXAMPLES
@given(st.data())
def test_generated_row_form_steps_equal_the_reference(data: st.DataObject) -> None:
    values = [
        data.draw(message(first=100 * m).filter(lambda v: not is_columnar(v)))
        for m in range(data.draw(st.integers(1, 6)))
    ]
    not_after_ms = data.draw(st.sampled_from([None, NOT_AFTER_MS, 1_700_000_000_000]))
    assert_same_step(values, not_after_ms=not_after_ms)  # type: ignore[arg-type]


@EXAMPLES
@given(st.data())
def test_generated_steps_with_columnar_envelopes_equal_their_rows(data: st.DataObject) -> None:
    values = [data.draw(message(first=100 * m)) for m in range(data.draw(st.integers(1, 6)))]
    assume(any(is_columnar(v) for v in values))
    not_after_ms = data.draw(st.sampled_from([None, NOT_AFTER_MS, 1_700_000_000_000]))
    assert_same_as_rows(values, not_after_ms)


@EXAMPLES
@given(st.lists(row(0).filter(lambda r: isinstance(r, dict) and _representable(r)), max_size=12))
def test_a_columnar_envelope_equals_the_same_rows_sent_as_an_array(rows: list[Any]) -> None:
    rows = [dict(r, request_id=f"r{i}") for i, r in enumerate(rows)]
    assert_same_as_rows(
        [json.dumps(columnar_envelope(rows) if rows else {"columns": {"request_id": []}}).encode()]
    )


# -- the module ------------------------------------------------------------------------------


def test_the_limits_of_the_bulk_checks_are_the_contracts() -> None:
    fields = InferenceEvent.model_fields
    assert InferenceEvent.model_config["str_max_length"] == bulk_columns.MAX_STR
    for name, limit in (
        ("request_id", bulk_columns.MAX_REQUEST_ID),
        ("error_type", bulk_columns.MAX_ERROR_TYPE),
        ("traffic", bulk_columns.MAX_TRAFFIC),
        ("segment", bulk_columns.MAX_SEGMENT),
    ):
        assert any(getattr(m, "max_length", None) == limit for m in fields[name].metadata), name


def test_doctests() -> None:
    assert doctest.testmod(fast_decode).failed == 0
