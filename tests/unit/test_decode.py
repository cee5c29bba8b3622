import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core.decode import EventDecoder
from streamwatch.events import InferenceEvent

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
    ],
)
def test_each_kind_of_bad_input_has_its_reason(value: bytes, reason: str) -> None:
    assert reasons(value) == [reason]


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
