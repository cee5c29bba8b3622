import math

import pytest

from streamwatch.core.labels import (
    LabelStats,
    LabelWindow,
    PendingPredictions,
    Prediction,
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
    added, removed = pending.drain_changes()
    assert sorted(added) == ["a", "b"] and removed == []
    assert pending.take("a") == prediction(0)
    assert pending.take("a") is None
    assert pending.drain_changes() == ({}, ["a"])


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
    _, removed = pending.drain_changes()
    assert removed == ["r0", "r1"]


def test_a_request_added_and_taken_in_one_step_is_still_deleted_from_storage() -> None:
    # An earlier step may have stored the same id; the delete must reach storage.
    pending = PendingPredictions(horizon_ms=1_000, max_pending=10)
    pending.add("a", prediction(0))
    pending.drain_changes()
    pending.add("a", prediction(5))
    pending.take("a")
    assert pending.drain_changes() == ({}, ["a"])
