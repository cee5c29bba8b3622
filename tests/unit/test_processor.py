import base64

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core.processor import (
    PartitionProcessor,
    ProcessorConfig,
    RawMessage,
    StepResult,
)
from streamwatch.core.rules import ThresholdRule

from .helpers import BASE_MS, INFERENCE_TOPIC, event, messages

NOW_MS = BASE_MS + 3_600_000
ERROR_RULE = ThresholdRule(
    name="error_rate_high",
    metric="error_rate",
    op=">",
    threshold=0.01,
    severity="critical",
    min_events=10,
)


def config(**overrides) -> ProcessorConfig:
    values = dict(
        window_sizes_ms=(1_000, 10_000),
        allowed_lateness_ms=500,
        idle_timeout_ms=2_000,
        max_future_skew_ms=300_000,
        rules=(ERROR_RULE,),
    )
    values.update(overrides)
    return ProcessorConfig(**values)


def stored(results: list[StepResult]) -> dict:
    """Fold step results into what Redis would hold: the last value written per window."""
    state: dict = {}
    for result in results:
        for update in result.windows:
            state[update.key] = (update.closed, update.aggregate.to_dict())
    return state


def run(batches_of_messages, processor=None, now=NOW_MS):
    processor = processor or PartitionProcessor(0, config())
    return processor, [processor.process(batch, now) for batch in batches_of_messages]


def test_windows_hold_exact_counts_and_close_on_watermark() -> None:
    batches = [
        [event(s * 100 + i, BASE_MS + s * 1_000 + i * 5) for i in range(100)] for s in range(4)
    ]
    processor, results = run([messages(batches)])
    closed = {u.key: u.aggregate.count for u in results[0].windows if u.closed}
    # Watermark 3.495 s, lateness 0.5 s: [2 s, 3 s) closes only at 3.5 s.
    assert closed == {("m", "1", 1_000, BASE_MS + s * 1_000): 100 for s in range(2)}
    open_ = {k: a.count for k, a in processor.open_windows.items()}
    assert open_ == {
        ("m", "1", 1_000, BASE_MS + 2_000): 100,
        ("m", "1", 1_000, BASE_MS + 3_000): 100,
        ("m", "1", 10_000, BASE_MS): 400,
    }


def test_replayed_messages_change_nothing() -> None:
    msgs = messages([[event(i, BASE_MS + i * 10)] for i in range(50)])
    processor, _ = run([msgs])
    before = processor.checkpoint()
    result = processor.process(msgs[10:], NOW_MS)
    assert result.windows == []
    after = processor.checkpoint()
    assert after["counters"]["replayed_messages_skipped"] == 40
    after["counters"].pop("replayed_messages_skipped")
    assert after == before


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30_000), st.booleans()), min_size=1, max_size=120),
    st.lists(st.integers(1, 20), min_size=1, max_size=10),
)
def test_results_do_not_depend_on_batching(events, cuts) -> None:
    """A replay after a crash may batch differently; windows and late counts must not change."""
    msgs = messages([[event(i, BASE_MS + ts, error=err)] for i, (ts, err) in enumerate(events)])
    _, whole = run([msgs])
    batches, start = [], 0
    for size in cuts * (len(msgs) // max(1, sum(cuts)) + 1):
        if start >= len(msgs):
            break
        batches.append(msgs[start : start + size])
        start += size
    _, split = run(batches)
    assert stored(split) == stored(whole)
    assert [a.alert_id for r in split for a in r.alerts] == [
        a.alert_id for r in whole for a in r.alerts
    ]


def test_late_events_are_counted_on_the_current_window_not_dropped() -> None:
    msgs = messages([[event(0, BASE_MS + 5_000)], [event(1, BASE_MS + 100)]])
    processor, _ = run([msgs])
    current = processor.open_windows[("m", "1", 1_000, BASE_MS + 5_000)]
    assert current.count == 1 and current.late_events == 1
    # The 10 s window [0, 10 s) is still open: the same event is on time there.
    assert processor.open_windows[("m", "1", 10_000, BASE_MS)].count == 2


def test_idle_partition_closes_its_last_windows() -> None:
    processor, _ = run([messages([[event(0, BASE_MS + 200)]])], now=NOW_MS)
    assert processor.tick(NOW_MS + 1_000).windows == []  # not idle long enough
    result = processor.tick(NOW_MS + 2_000)
    assert [u.key for u in result.windows if u.closed] == [("m", "1", 1_000, BASE_MS)]
    result = processor.tick(NOW_MS + 12_000)
    assert [u.key for u in result.windows if u.closed] == [("m", "1", 10_000, BASE_MS)]
    assert processor.open_windows == {}


def test_error_spike_fires_once_then_resolves() -> None:
    batches = []
    for second in range(8):
        spike = 2 <= second < 5
        batches.append(
            [
                event(second * 100 + i, BASE_MS + second * 1_000 + i * 10, error=spike and i < 20)
                for i in range(100)
            ]
        )
    _, results = run([messages(batches)])
    alerts = [a for r in results for a in r.alerts]
    assert [(a.state, a.window.start_ms - BASE_MS) for a in alerts] == [
        ("firing", 2_000),
        ("resolved", 5_000),
    ]
    assert alerts[0].alert_id == alerts[1].alert_id
    assert alerts[0].severity == "critical" and alerts[0].value == 0.2


def test_checkpoint_restore_continues_exactly() -> None:
    msgs = messages([[event(i, BASE_MS + i * 37, error=i % 7 == 0)] for i in range(300)])
    _, whole = run([msgs])
    first, results = run([msgs[:120]])
    restored = PartitionProcessor.restore(
        0,
        config(),
        orjson.loads(orjson.dumps(first.checkpoint())),
        {
            k: type(a).from_dict(orjson.loads(orjson.dumps(a.to_dict())))
            for k, a in first.open_windows.items()
        },
        labels={
            k: type(w).from_dict(orjson.loads(orjson.dumps(w.to_dict(final=False))))
            for k, w in first.label_windows.items()
        },
    )
    # The restarted worker re-reads from an older committed offset: the overlap is skipped.
    results.append(restored.process(msgs[100:], NOW_MS))
    assert stored(results) == stored(whole)


def test_malformed_messages_are_dead_lettered_with_source_and_bytes() -> None:
    good = event(0, BASE_MS)
    bad = dict(event(1, BASE_MS), latency_ms=-5)
    msgs = [
        RawMessage(INFERENCE_TOPIC, "inference", 3, 10, b"\xff\xfe not json"),
        RawMessage(INFERENCE_TOPIC, "inference", 3, 11, orjson.dumps([good, bad])),
    ]
    processor = PartitionProcessor(3, config())
    result = processor.process(msgs, NOW_MS)
    assert [(d.reason, d.source.offset, d.source.batch_index) for d in result.deadletters] == [
        ("not_utf8", 10, None),
        ("invalid_event", 11, 1),
    ]
    assert base64.b64decode(result.deadletters[0].original_b64) == b"\xff\xfe not json"
    assert "latency_ms" in result.deadletters[1].detail
    assert processor.open_windows[("m", "1", 1_000, BASE_MS)].count == 1
    assert processor.deadletter_counts == {"not_utf8": 1, "invalid_event": 1}


def test_events_far_in_the_future_are_rejected() -> None:
    processor = PartitionProcessor(0, config())
    result = processor.process(messages([[event(0, NOW_MS + 301_000)]]), NOW_MS)
    assert [d.reason for d in result.deadletters] == ["timestamp_in_future"]
    assert "r0" in result.deadletters[0].detail
    assert processor.watermark_ms is None


def test_business_and_feedback_land_in_their_model_windows() -> None:
    business = RawMessage(
        "streamwatch.business",
        "business",
        0,
        0,
        orjson.dumps([{"model_id": "m", "kind": "click", "timestamp": (BASE_MS + 10) / 1000}]),
    )
    feedback = RawMessage(
        "streamwatch.feedback",
        "feedback",
        0,
        0,
        orjson.dumps(
            {
                "model_id": "m",
                "request_id": "r0",
                "label": "cat",
                "timestamp": (BASE_MS + 20) / 1000,
            }
        ),
    )
    processor = PartitionProcessor(0, config())
    processor.process([business, feedback], NOW_MS)
    window = processor.open_windows[("m", "*", 1_000, BASE_MS)]
    assert window.business["click"].n == 1 and window.feedback_count == 1


def test_business_events_of_one_step_equal_the_same_events_one_step_each() -> None:
    kinds = ["impression", "click", "impression", "revenue", "impression", "click"]
    events = [
        {
            "model_id": "m",
            "model_version": "1",
            "kind": kind,
            "value": 1.0 + 2.5 * i,
            "timestamp": (BASE_MS + 300 * i) / 1000,  # spans 1 s windows
        }
        for i, kind in enumerate(kinds * 3)
    ]

    def business(offset: int, batch: list) -> RawMessage:
        return RawMessage("streamwatch.business", "business", 0, offset, orjson.dumps(batch))

    together, _ = run([[business(0, events)]])
    apart, _ = run([[business(i, [e])] for i, e in enumerate(events)])
    ten_second = [w for k, w in together.open_windows.items() if k[2] == 10_000]
    assert sum(m.n for w in ten_second for m in w.business.values()) == len(events)
    assert together.open_windows.keys() == apart.open_windows.keys()
    for key, window in together.open_windows.items():
        other = apart.open_windows[key]
        assert list(window.business) == list(other.business)  # first-seen order kept
        for kind, moments in window.business.items():
            mine, theirs = moments.to_list(), other.business[kind].to_list()
            assert mine[0] == theirs[0] and mine[3:] == theirs[3:]  # n, min, max exact
            assert mine[1:3] == pytest.approx(theirs[1:3])  # mean, m2 up to rounding
        assert (window.first_event_ms, window.last_event_ms) == (
            other.first_event_ms,
            other.last_event_ms,
        )


def test_restore_refuses_unknown_checkpoint_format() -> None:
    from streamwatch.exceptions import StateFormatError

    with pytest.raises(StateFormatError, match="delete it and restart"):
        PartitionProcessor.restore(0, config(), {"fmt": 42}, {})
