import base64
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core import decode as decode_module
from streamwatch.core.decode import EventDecoder
from streamwatch.core.processor import PartitionProcessor, ProcessorConfig, RawMessage
from streamwatch.events import BusinessEvent, FeedbackEvent, InferenceEvent

from .helpers import BASE_MS, event

decoder = EventDecoder(InferenceEvent, max_message_bytes=64 * 1024, max_events=1_000)


def reasons(value: bytes) -> list[str]:
    return [r.reason for r in decoder.decode(value)[1]]


def test_single_array_and_envelope_forms_decode() -> None:
    e = event(0, BASE_MS, features={"x": 1.5, "c": "de", "b": True, "n": None})
    for value in (
        orjson.dumps(e),
        orjson.dumps([e, e]),
        orjson.dumps({"events": [e]}),
        orjson.dumps({"schema_version": 1, "events": [e]}),
    ):
        events, rejects = decoder.decode(value)
        assert rejects == [] and events and events[0].timestamp_ms == BASE_MS


def test_rfc3339_and_epoch_timestamps_agree() -> None:
    a = InferenceEvent.model_validate(event(0, BASE_MS))
    b = InferenceEvent.model_validate(
        dict(event(0, BASE_MS), timestamp="2023-11-14T22:13:20+00:00")
    )
    assert a.timestamp_ms == b.timestamp_ms == BASE_MS


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty_message"),
        (b"   ", "empty_message"),
        (b"{oops", "invalid_json"),
        (b"\xff\xfe\x00", "not_utf8"),
        (b"42", "invalid_envelope"),
        (b'{"events": 5}', "invalid_envelope"),
        (b'{"events": [], "extra": 1}', "invalid_envelope"),
        (orjson.dumps({"schema_version": 2, "events": []}), "unsupported_schema_version"),
        (orjson.dumps(dict(event(0, BASE_MS), schema_version=9)), "unsupported_schema_version"),
        (orjson.dumps(dict(event(0, BASE_MS), latency="5")), "invalid_event"),
        (orjson.dumps(dict(event(0, BASE_MS), timestamp="2023-11-14T22:13:20")), "invalid_event"),
        (orjson.dumps(dict(event(0, BASE_MS), model_id="a:b")), "invalid_event"),
        (orjson.dumps(dict(event(0, BASE_MS), features={"x": [1]})), "invalid_event"),
        (b"[" + b"1," * 40_000 + b"1]", "payload_too_large"),
        (orjson.dumps([1] * 1_001), "too_many_events"),
        (orjson.dumps({"events": [1] * 1_001}), "too_many_events"),
    ],
)
def test_each_kind_of_bad_input_has_its_reason(value: bytes, reason: str) -> None:
    assert reasons(value) == [reason]


GOOD = orjson.dumps(event(0, BASE_MS)).decode()
BIG = "9" * 400


def with_field(text: str) -> bytes:
    """A good event with one more member written verbatim (NaN, a repeated key, ...)."""
    return (GOOD[:-1] + "," + text + "}").encode()


# Each kind of poison, as one message: a clean reject with its reason, never an exception.
POISON = {
    "empty": (b"", "empty_message"),
    "whitespace": (b" \n\t\r ", "empty_message"),
    "null": (b"null", "invalid_envelope"),
    "scalar": (b'"text"', "invalid_envelope"),
    "boolean": (b"true", "invalid_envelope"),
    "truncated": (GOOD[:-5].encode(), "invalid_json"),
    "trailing garbage": (GOOD.encode() + b"}", "invalid_json"),
    "two documents": (GOOD.encode() * 2, "invalid_json"),
    "byte order mark": (b"\xef\xbb\xbf" + GOOD.encode(), "invalid_json"),
    "lone surrogate escape": (with_field('"segment": "\\ud800"'), "invalid_json"),
    "latin-1": ('{"request_id": "café"}'.encode("latin-1"), "not_utf8"),
    "utf-16": (GOOD.encode("utf-16"), "not_utf8"),
    "nested past orjson's limit": (b"[" * 2_000 + b"]" * 2_000, "too_deeply_nested"),
    "nested in a feature": (
        with_field('"tags": ' + '{"a": ' * 40 + "1" + "}" * 40),
        "too_deeply_nested",
    ),
    "nested in a batch": (
        ("[" + GOOD + ", " + "[" * 300 + "]" * 300 + "]").encode(),
        "too_deeply_nested",
    ),
    "NaN": (with_field('"score": NaN'), "non_finite_number"),
    "Infinity": (with_field('"features": {"x": Infinity}'), "non_finite_number"),
    "-Infinity in a batch": (
        ("[" + GOOD[:-1] + ', "score": -Infinity}]').encode(),
        "non_finite_number",
    ),
    "repeated key": (with_field('"latency_ms": -1'), "duplicate_key"),
    "repeated key, compact batch": (
        ("[" + GOOD[:-1] + ',"request_id":"x"}]').encode(),
        "duplicate_key",
    ),
    "repeated key with spaces": (
        ("[" + GOOD[:-1] + ', "model_id" : "x"}]').encode(),
        "duplicate_key",
    ),
    "repeated feature": (with_field('"features": {"x": 1, "x": 2}'), "duplicate_key"),
    "repeated envelope key": (
        orjson.dumps({"events": []})[:-1] + b', "events": []}',
        "duplicate_key",
    ),
    "integer beyond a double": (with_field(f'"features": {{"x": {BIG}}}'), "number_out_of_range"),
    "integer beyond a double, batch": (
        ("[" + GOOD[:-1] + f', "prediction": {BIG}}}]').encode(),
        "number_out_of_range",
    ),
    "float beyond a double": (with_field('"prediction": [1e400]'), "number_out_of_range"),
    "timestamp before 1970": (
        orjson.dumps(dict(event(0, BASE_MS), timestamp=-1.5)),
        "timestamp_before_1970",
    ),
    "timestamp year 1": (
        orjson.dumps(dict(event(0, BASE_MS), timestamp="0001-01-01T00:00:00Z")),
        "timestamp_before_1970",
    ),
    "timestamp after 9999": (
        orjson.dumps(dict(event(0, BASE_MS), timestamp=1e15)),
        "invalid_event",
    ),
    "timestamp text": (
        orjson.dumps(dict(event(0, BASE_MS), timestamp="yesterday")),
        "invalid_event",
    ),
    "timestamp boolean": (orjson.dumps(dict(event(0, BASE_MS), timestamp=True)), "invalid_event"),
    "missing field": (orjson.dumps({"request_id": "r"}), "invalid_event"),
    "wrong type": (orjson.dumps(dict(event(0, BASE_MS), latency_ms=[1])), "invalid_event"),
    "unknown field": (orjson.dumps(dict(event(0, BASE_MS), latency=5)), "invalid_event"),
    "long string": (
        orjson.dumps(dict(event(0, BASE_MS), request_id="r" * 50_000)),
        "invalid_event",
    ),
    "long feature name": (
        orjson.dumps(dict(event(0, BASE_MS), features={"f" * 50_000: 1})),
        "invalid_event",
    ),
    "schema_version 2": (
        orjson.dumps(dict(event(0, BASE_MS), schema_version=2)),
        "unsupported_schema_version",
    ),
}


@pytest.mark.parametrize(("value", "reason"), POISON.values(), ids=POISON.keys())
def test_every_kind_of_poison_is_a_clean_reject(value: bytes, reason: str) -> None:
    events, rejects = decoder.decode(value)
    assert events == [] and [r.reason for r in rejects] == [reason]
    assert 0 < len(rejects[0].detail) <= 1_000


def test_a_message_over_the_limit_is_rejected_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("a message over the limit was parsed")

    monkeypatch.setattr(decode_module.orjson, "loads", refuse)
    monkeypatch.setattr(decoder, "_list_adapter", None)
    value = b"[" + b" " * (64 * 1024) + b"]"
    assert reasons(value) == ["payload_too_large"]
    assert "STREAMWATCH_MAX_MESSAGE_BYTES" in decoder.decode(value)[1][0].detail


def test_poison_items_of_a_batch_are_rejected_one_by_one() -> None:
    items = [
        GOOD,
        GOOD[:-1] + ', "score": NaN}',
        GOOD,
        GOOD[:-1] + ', "latency_ms": 1}',
        GOOD[:-1] + f', "features": {{"x": {BIG}}}}}',
        orjson.dumps(dict(event(5, BASE_MS), timestamp=-1)).decode(),
        orjson.dumps(dict(event(6, BASE_MS), timestamp=(BASE_MS + 10_000) / 1000)).decode(),
        '{"nope": Infinity}',
        "NaN",
        GOOD,
    ]
    for value in ("[" + ", ".join(items) + "]", '{"events": [' + ", ".join(items) + "]}"):
        decoded = decoder.decode_indexed(value.encode(), not_after_ms=BASE_MS + 5_000)
        assert decoded.positions == [0, 2, 9]
        assert [(r.batch_index, r.reason) for r in decoded.rejects] == [
            (1, "non_finite_number"),
            (3, "duplicate_key"),
            (4, "number_out_of_range"),
            (5, "timestamp_before_1970"),
            (6, "timestamp_in_future"),
            (7, "non_finite_number"),
            (8, "non_finite_number"),
        ]
        # The original of each rejected item, as far as JSON can say it.
        assert b"NaN" in decoded.rejects[0].original
        assert BIG.encode() in decoded.rejects[2].original
        assert orjson.loads(decoded.rejects[3].original)["request_id"] == "r5"


def test_future_and_past_events_of_a_valid_batch_keep_their_index() -> None:
    batch = [event(i, BASE_MS + i * 1_000) for i in range(5)]
    batch[1] = dict(batch[1], timestamp=-0.001)
    decoded = decoder.decode_indexed(orjson.dumps(batch), not_after_ms=BASE_MS + 3_000)
    assert decoded.positions == [0, 2, 3]
    assert [(r.batch_index, r.reason) for r in decoded.rejects] == [
        (1, "timestamp_before_1970"),
        (4, "timestamp_in_future"),
    ]
    assert orjson.loads(decoded.rejects[1].original) == batch[4]
    # The limit is inclusive, to the millisecond.
    edge = decoder.decode_indexed(orjson.dumps(batch[4]), not_after_ms=BASE_MS + 4_000)
    assert edge.rejects == [] and len(edge.events) == 1


@pytest.mark.parametrize(
    "value",
    [
        json.dumps([event(0, BASE_MS), event(1, BASE_MS)], indent=2).encode(),
        json.dumps([event(0, BASE_MS)], separators=(" , ", " : ")).encode(),
        orjson.dumps([dict(event(0, BASE_MS), tags={"q": 'a": "b":', 'k":': "v"})]),
        json.dumps([dict(event(0, BASE_MS), features={"x": 10**300, "y": 2**64})]).encode(),
        orjson.dumps([dict(event(0, BASE_MS), request_id="9" * 256)]),
    ],
    ids=["pretty", "spaced colons", "key-like strings", "large integers", "long digit run"],
)
def test_unusual_but_valid_json_is_accepted(value: bytes) -> None:
    events, rejects = decoder.decode(value)
    assert rejects == [] and len(events) == len(orjson.loads(value))


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (FeedbackEvent, {"request_id": "r", "model_id": "m", "label": 1, "timestamp": 1.7e9}),
        (BusinessEvent, {"model_id": "m", "kind": "click", "timestamp": 1.7e9}),
    ],
)
def test_feedback_and_business_poison_is_rejected_the_same_way(model: type, body: dict) -> None:
    side = EventDecoder(model, max_message_bytes=64 * 1024, max_events=10)
    good = orjson.dumps(body).decode()
    cases = {
        "invalid_json": b"{oops",
        "not_utf8": b"\xff",
        "empty_message": b"",
        "invalid_envelope": b"null",
        "too_deeply_nested": b"[" * 100 + b"]" * 100,
        "non_finite_number": (good[:-1] + ', "model_version": NaN}').encode(),
        "duplicate_key": (good[:-1] + ', "model_id": "n"}').encode(),
        "timestamp_before_1970": orjson.dumps(dict(body, timestamp=-5)),
        "invalid_event": orjson.dumps(dict(body, timestamp="soon")),
        "unsupported_schema_version": orjson.dumps(dict(body, schema_version=3)),
        "too_many_events": orjson.dumps([body] * 11),
        "payload_too_large": b" " * (64 * 1024 + 1),
    }
    if model is FeedbackEvent:
        cases["number_out_of_range"] = good.replace('"label":1', f'"label":{BIG}').encode()
    for reason, value in cases.items():
        events, rejects = side.decode(value, not_after_ms=2_000_000_000_000)
        assert (events, [r.reason for r in rejects]) == ([], [reason]), reason
    events, rejects = side.decode(orjson.dumps([body, dict(body, timestamp="x"), body]))
    assert len(events) == 2 and [r.batch_index for r in rejects] == [1]


def test_a_poisoned_value_never_reaches_the_processor_as_an_event() -> None:
    # Before: a 400-digit integer feature passed validation and crashed the step on float().
    processor = PartitionProcessor(
        0,
        ProcessorConfig(
            window_sizes_ms=(1_000,),
            allowed_lateness_ms=0,
            idle_timeout_ms=1_000,
            max_future_skew_ms=60_000,
            rules=(),
        ),
    )
    values = [v for v, _ in POISON.values()] + [("[" + GOOD + "]").encode()]
    messages = [RawMessage("t", "inference", 0, i, v) for i, v in enumerate(values)]
    result = processor.process(messages, BASE_MS)
    assert [d.reason for d in result.deadletters] == [r for _, r in POISON.values()]
    assert processor.counters["inference_events"] == 1
    assert base64.b64decode(result.deadletters[0].original_b64) == b""


def test_good_events_of_a_mixed_batch_are_kept() -> None:
    good = event(0, BASE_MS)
    events, rejects = decoder.decode(orjson.dumps([good, {"nope": 1}, good, "text"]))
    assert len(events) == 2
    assert [(r.reason, r.batch_index) for r in rejects] == [
        ("invalid_event", 1),
        ("invalid_event", 3),
    ]
    assert orjson.loads(rejects[0].original) == {"nope": 1}
    assert "request_id: Field required" in rejects[0].detail


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_bytes_never_raise(value: bytes) -> None:
    events, rejects = decoder.decode(value)
    if not events and not rejects:
        # The only input that yields nothing is an empty batch.
        assert orjson.loads(value) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_document_is_accepted_or_rejected_with_a_reason(document: object) -> None:
    # stdlib json: it also writes integers beyond 64 bits, which orjson cannot.
    _events, rejects = decoder.decode(json.dumps(document).encode())
    assert all(r.reason and r.detail for r in rejects)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b":", b'"', b'":', b"a", b" ", b'"a":1,']), max_size=50),
    st.integers(min_value=1, max_value=5000),
    st.binary(max_size=3),
)
def test_colon_counts_are_bytes_count_at_any_length(
    pieces: list[bytes], repeats: int, tail: bytes
) -> None:
    # Past a length the counts are numpy's: the two ways must agree, at the edges too.
    text = b"".join(pieces) * repeats
    for value in (text + tail, b":" + text + b'"', b'"' + text + b":", b""):
        assert decode_module.colons(value) == value.count(b":")
        assert decode_module.quoted_colons(value) == value.count(b'":')
        # A caller's own colon count gives what the function counts itself.
        counted = decode_module.written_keys(value, decode_module.colons(value))
        assert counted == decode_module.written_keys(value)


@pytest.mark.parametrize("length", [8191, 8192, 8193, 200_000])
def test_colon_counts_around_the_numpy_length(length: int) -> None:
    value = (b'"k":' * length)[:length]
    assert decode_module.colons(value) == value.count(b":")
    assert decode_module.quoted_colons(value) == value.count(b'":')
    value = b":" * length
    assert decode_module.colons(value) == length
    assert decode_module.quoted_colons(value) == 0
