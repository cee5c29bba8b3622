import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core.labels import (
    LabelStats,
    LabelWindow,
    PendingChanges,
    PendingPredictions,
    Prediction,
    encode_chunk,
    label_class,
    label_number,
)


@pytest.mark.parametrize(
    ("label", "expected"),
    [(True, "true"), (False, "false"), (1, "1"), (1.0, "1"), (0.5, None), ("cat", "cat")],
)
def test_label_class_matches_prediction_classes(label: object, expected: str | None) -> None:
    assert label_class(label) == expected


def test_label_number_excludes_booleans_and_strings() -> None:
    assert label_number(2) == 2.0
    assert label_number(True) is None
    assert label_number("2") is None


def test_label_stats_accuracy_and_regression_errors() -> None:
    stats = LabelStats()
    assert stats.add(1, "1", 1.0) is True
    assert stats.add(0, "1", 1.0) is False
    assert stats.add(2.5, None, 2.0) is None
    metrics = stats.metrics(predictions=4)
    assert metrics["accuracy"] == 0.5
    assert metrics["labelled_count"] == 3
    assert metrics["label_coverage"] == 0.75
    # Errors: 0, 1, 0.5 -> MAE 0.5, RMSE sqrt(1.25 / 3).
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["rmse"] == pytest.approx(math.sqrt(1.25 / 3))


def test_label_stats_merge_equals_adding_everything_once() -> None:
    whole, left, right = LabelStats(), LabelStats(), LabelStats()
    outcomes = [(1, "1", 1.0), (0, "1", 0.7), ("a", "b", None), (3.0, None, 2.0)]
    for i, outcome in enumerate(outcomes):
        whole.add(*outcome)
        (left if i % 2 else right).add(*outcome)
    left.merge(right)
    assert left.to_dict() == whole.to_dict()
    assert LabelStats.from_dict(whole.to_dict()) == whole


def test_label_window_coverage_needs_a_closed_window() -> None:
    window = LabelWindow()
    window.stats.add(1, "1", None)
    assert not window.coverage_reached(0.5)
    window.predictions = 2
    assert window.coverage_reached(0.5)
    assert not window.coverage_reached(0.8)
    assert LabelWindow.from_dict(window.to_dict(final=False)) == window


def prediction(ts_ms: int) -> Prediction:
    return Prediction(ts_ms, "m", "1", "1", 1.0)


def test_pending_predictions_join_once_and_report_changes() -> None:
    pending = PendingPredictions(horizon_ms=1_000, max_pending=10)
    pending.add("a", prediction(0))
    pending.add("b", prediction(10))
    changes = pending.drain_changes()
    assert changes.chunk is not None and changes.chunk["ids"] == ["a", "b"]
    assert changes.chunk["dead"] == {} and changes.dropped == []
    assert pending.take("a") == prediction(0)
    assert pending.take("a") is None
    second = pending.drain_changes()
    # Only a death: a record of its own, naming the row of the first chunk.
    assert second.chunk is not None and second.chunk["ids"] == []
    assert second.chunk["dead"] == {str(changes.chunk_id): [0]}
    # Nothing changed: no record; "b" keeps the first chunk (and so the second) stored.
    assert pending.drain_changes() == PendingChanges(None, None, [])
    pending.take("b")
    last = pending.drain_changes()
    assert last.chunk is None
    assert last.dropped == [changes.chunk_id, second.chunk_id]
    assert pending.stored_chunks == 0


def test_a_label_naming_another_model_leaves_the_prediction_pending() -> None:
    pending = PendingPredictions(horizon_ms=1_000, max_pending=10)
    pending.add("a", prediction(0))  # made by model "m"
    pending.add("b", prediction(0))
    pending.drain_changes()
    assert pending.take("a", "other") is None
    assert pending.take("unknown", "m") is None
    assert pending.take("a", "m") == prediction(0)
    assert pending.take("a", "m") is None
    assert len(pending) == 1
    chunk = pending.drain_changes().chunk
    assert chunk is not None and chunk["dead"] == {"0": [0]}


def test_pending_predictions_expire_by_event_time_and_evict_beyond_the_cap() -> None:
    pending = PendingPredictions(horizon_ms=1_000, max_pending=3)
    for i in range(4):
        replaced, evicted = pending.add(f"r{i}", prediction(i * 400))
        assert not replaced
        assert evicted == (1 if i == 3 else 0)
    assert [rid for rid, _ in pending] == ["r1", "r2", "r3"]
    # Watermark 1.5 s: r1 (0.4 s) is beyond the 1 s horizon, r2 (0.8 s) is not.
    assert pending.expire(1_500) == 1
    assert [rid for rid, _ in pending] == ["r2", "r3"]
    # All four were added in this step: the chunk holds them, and the two gone as dead rows.
    chunk = pending.drain_changes().chunk
    assert chunk is not None
    assert (chunk["ids"], chunk["dead"]) == (["r0", "r1", "r2", "r3"], {"0": [0, 1]})


def test_expiry_stops_at_the_first_pending_prediction_within_the_horizon() -> None:
    """Out-of-order times in one chunk: a newer row no longer pending is passed over, a newer
    pending one stops the scan (the older one behind it waits for a later scan)."""
    times = [100, 500, 200, 250]
    pending = PendingPredictions(horizon_ms=1_000, max_pending=10)
    pending.remember_many(
        [f"r{i}" for i in range(4)], times, ["m"] * 4, ["1"] * 4, ["x"] * 4, [None] * 4
    )
    assert pending.take("r1") is not None
    # Horizon cut at 300: r0 and r2, r3 are older; r1 (500) was taken, so the scan goes on.
    assert pending.expire(1_300) == 3
    assert [rid for rid, _ in pending] == []
    pending.remember_many(
        [f"s{i}" for i in range(3)], [100, 500, 200], ["m"] * 3, ["1"] * 3, ["x"] * 3, [None] * 3
    )
    assert pending.expire(1_300) == 1  # s1 (500) is pending: s2 (200) waits behind it
    assert [rid for rid, _ in pending] == ["s1", "s2"]


def test_a_request_added_and_taken_in_one_step_is_still_deleted_from_storage() -> None:
    # An earlier step may have stored the same id; the delete must reach storage.
    pending = PendingPredictions(horizon_ms=1_000, max_pending=10)
    pending.add("a", prediction(0))
    pending.add("z", prediction(0))
    stored = {}
    first = pending.drain_changes()
    stored[first.chunk_id] = first.chunk
    pending.add("a", prediction(5))
    pending.take("a")
    second = pending.drain_changes()
    assert second.chunk is not None and second.chunk["dead"] == {str(second.chunk_id): [0]}
    stored[second.chunk_id] = second.chunk
    restored = PendingPredictions(horizon_ms=1_000, max_pending=10)
    restored.restore(stored)
    assert [rid for rid, _ in restored] == ["z"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.lists(st.integers(0, 30), max_size=6)),
            st.tuples(st.just("take"), st.lists(st.integers(0, 30), max_size=4)),
            st.tuples(st.just("expire"), st.integers(0, 3_000)),
            st.tuples(st.just("drain"), st.just(0)),
        ),
        max_size=40,
    ),
    st.integers(2, 12),
)
def test_stored_chunks_rebuild_the_pending_set_and_are_dropped_when_spent(
    ops: list[tuple[str, Any]], cap: int
) -> None:
    pending = PendingPredictions(horizon_ms=1_000, max_pending=cap)
    stored: dict[int, Any] = {}
    clock = 0

    def drain() -> None:
        changes = pending.drain_changes()
        if changes.chunk is not None and changes.chunk_id is not None:
            stored[changes.chunk_id] = orjson.loads(encode_chunk(changes.chunk))
        for chunk_id in changes.dropped:
            del stored[chunk_id]

    for op, arg in ops:
        if op == "add":
            clock += 100
            ids = [f"r{i}" for i in arg]
            pending.remember_many(
                ids,
                [clock] * len(ids),
                ["m"] * len(ids),
                ["1"] * len(ids),
                ["x"] * len(ids),
                [None] * len(ids),
            )
        elif op == "take":
            for i in arg:
                pending.take(f"r{i}")
        elif op == "expire":
            pending.expire(arg + clock)
        else:
            drain()
        assert len(pending) <= cap
    drain()
    restored = PendingPredictions(horizon_ms=1_000, max_pending=cap)
    restored.restore(stored)
    assert list(restored) == list(pending)
    # Only chunks that still hold a pending prediction are kept, and the oldest of them does.
    assert len(stored) == pending.stored_chunks
    if not len(pending):
        assert not stored


def test_stored_chunks_write_missing_values_as_null_and_read_them_back() -> None:
    pending = PendingPredictions(horizon_ms=1_000, max_pending=10)
    pending.remember_many(["a", "b"], [5, 6], ["m", "m"], ["1", "1"], ["x", None], [0.25, None])
    changes = pending.drain_changes()
    assert changes.chunk is not None and changes.chunk_id is not None
    stored = orjson.loads(encode_chunk(changes.chunk))
    assert (stored["ts"], stored["val"], stored["cls"]) == ([5, 6], [0.25, None], ["x", None])
    for record in (stored, changes.chunk):  # as Redis holds it, and as the step returned it
        restored = PendingPredictions(horizon_ms=1_000, max_pending=10)
        restored.restore({changes.chunk_id: record})
        assert list(restored) == list(pending)
    assert pending.take("b") == Prediction(6, "m", "1", None, None, 1)
    assert pending.take("a") == Prediction(5, "m", "1", "x", 0.25, 0)
