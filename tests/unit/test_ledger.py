import doctest
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core import ledger as ledger_module
from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.columns import EventColumns
from streamwatch.core.identity import fingerprint
from streamwatch.core.labels import LabelStats
from streamwatch.core.ledger import (
    DAILY_RULE,
    DAY_MS,
    WEEK_MS,
    WEEKLY_RULE,
    DayLedger,
    DayStats,
    day_field,
    day_start_ms,
    ledger_window_ms,
    week_start_ms,
)
from streamwatch.events import AlertEvent, InferenceEvent, WindowRef
from streamwatch.exceptions import StateFormatError
from streamwatch.state_keys import ledger_field

from .helpers import event

HOUR_MS = 3_600_000
SUN_22 = 1_795_305_600_000  # Sunday 2026-11-22 00:00 UTC
MON_23 = 1_795_392_000_000  # Monday 2026-11-23 00:00 UTC
SUN_29 = MON_23 + 6 * DAY_MS
MON_30 = MON_23 + WEEK_MS


def window(
    start_ms: int,
    latencies: list[float],
    errors: int = 0,
    business: tuple[tuple[str, float], ...] = (),
) -> WindowAggregate:
    """An aggregate of one event per latency (the first ``errors`` of them errors)."""
    events = [
        InferenceEvent.model_validate(event(i, start_ms + i, latency_ms=lat, error=i < errors))
        for i, lat in enumerate(latencies)
    ]
    agg = WindowAggregate()
    if events:
        agg.add_columns(
            EventColumns.from_events(events, max_features=8), np.arange(len(events), dtype=np.int64)
        )
    for kind, value in business:
        agg.add_business(kind, value, start_ms)
    return agg


def labels(outcomes: list[tuple[object, str | None, float | None]]) -> LabelStats:
    stats = LabelStats()
    for label, predicted_class, predicted_value in outcomes:
        stats.add(label, predicted_class, predicted_value)
    return stats


class Store:
    """What the edge keeps: the ledger hash and the checkpoint's ledger state."""

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}
        self.state: dict[str, Any] | None = None

    def save(self, ledger: DayLedger) -> None:
        changed, removed = ledger.drain_changes()
        self.fields.update(changed)
        for name in removed:
            del self.fields[name]
        self.state = ledger.to_state()

    def load(self, settle_ms: int) -> DayLedger:
        ledger = DayLedger(settle_ms)
        ledger.restore(self.fields, self.state)
        return ledger


# -- periods ---------------------------------------------------------------------------------


def test_day_and_week_starts_are_utc_midnight_and_monday() -> None:
    assert day_start_ms(MON_23) == MON_23
    assert day_start_ms(MON_23 - 1) == SUN_22
    assert day_start_ms(SUN_29 + 23 * HOUR_MS) == SUN_29
    assert week_start_ms(SUN_29 + 23 * HOUR_MS + 59 * 60_000) == MON_23
    assert week_start_ms(MON_30) == MON_30
    assert week_start_ms(MON_30 - 1) == MON_23
    assert week_start_ms(SUN_22) == MON_23 - WEEK_MS
    assert day_start_ms(-1) == -DAY_MS
    assert week_start_ms(0) == -3 * DAY_MS  # Thursday 1970-01-01 is in the week of Mon 12-29


def test_ledger_window_is_the_largest_size_dividing_a_day() -> None:
    assert ledger_window_ms([10_000, 60_000, 3_600_000]) == 3_600_000
    assert ledger_window_ms([60_000, 7 * HOUR_MS]) == 60_000
    assert ledger_window_ms([7 * HOUR_MS]) is None


def test_day_field_is_the_state_keys_ledger_field() -> None:
    assert day_field("fraud-detector", "1.4.0", MON_23) == ledger_field(
        "fraud-detector", "1.4.0", MON_23
    )


def test_window_on_sunday_2300_belongs_to_sunday_and_its_iso_week() -> None:
    ledger = DayLedger(settle_ms=0)
    ledger.window_closed("m", "1", SUN_29 + 23 * HOUR_MS, window(SUN_29, [10.0] * 5), [])
    ledger.window_closed("m", "1", MON_30, window(MON_30, [10.0] * 7), [])
    assert [d.day_start_ms for d in ledger.days] == [SUN_29, MON_30]

    assert ledger.due(MON_30 - 1, emitted_at_ms=1) == []
    daily, weekly = ledger.due(MON_30, emitted_at_ms=1)
    assert (daily.rule, daily.window.start_ms, daily.window.end_ms) == (DAILY_RULE, SUN_29, MON_30)
    assert (weekly.rule, weekly.window.start_ms, weekly.window.end_ms) == (
        WEEKLY_RULE,
        MON_23,
        MON_30,
    )
    assert weekly.summary is not None and weekly.summary.events == 5  # not Monday's 7
    assert weekly.message.startswith("[INFO] weekly summary m@1 2026-11-23 to 2026-11-29: 5 events")


# -- DayStats --------------------------------------------------------------------------------


window_strategy = st.tuples(
    st.lists(st.floats(0, 5_000, allow_nan=False), max_size=12),
    st.integers(0, 12),
    st.lists(st.tuples(st.sampled_from(["click", "revenue"]), st.integers(0, 100)), max_size=4),
    st.lists(st.sampled_from(["amount", "country", "device"]), max_size=3),
    st.lists(
        st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from(["0", "1", None]), st.integers(0, 3)),
        max_size=5,
    ),
    st.sampled_from(["critical", "warning", "info"]),
)


def fed_day(windows: list[Any], first: int = 0) -> DayStats:
    day = DayStats("m", "1", MON_23)
    for n, (lats, errors, business, drifted, outcomes, severity) in enumerate(windows, first):
        start = MON_23 + n * 60_000
        aggregate = window(
            start, lats, min(errors, len(lats)), tuple((k, float(v)) for k, v in business)
        )
        day.add_window(aggregate, drifted)
        day.add_labels(labels([(lab, c, float(v)) for lab, c, v in outcomes]))
        day.add_alert(severity)
    return day


def assert_same_day(a: DayStats, b: DayStats) -> None:
    da, db = a.to_dict(), b.to_dict()
    # Counts and the latency sketch are exact; sums of floats up to rounding.
    for kind in da["business"].keys() | db["business"].keys():
        assert da["business"][kind][0] == db["business"][kind][0]
        assert da["business"][kind][1] == pytest.approx(db["business"][kind][1])
    assert da.pop("labels")[:4] == db.pop("labels")[:4]
    assert a.abs_error_sum == pytest.approx(b.abs_error_sum)
    del da["business"], db["business"]
    assert da == db


@settings(max_examples=60, deadline=None)
@given(st.lists(window_strategy, max_size=8), st.data())
def test_merging_partial_days_equals_the_whole_day(windows: list[Any], data: st.DataObject) -> None:
    split = data.draw(st.integers(0, len(windows)))
    whole = fed_day(windows)
    part = fed_day(windows[:split])
    part.merge(fed_day(windows[split:], first=split))
    assert_same_day(part, whole)
    assert_same_day(DayStats.from_dict(whole.to_dict()), whole)


def test_summary_numbers_and_message() -> None:
    day = DayStats("fraud-detector", "1.4.0", MON_23)
    latencies = [float(x) for x in range(1, 1001)]
    day.add_window(
        window(MON_23, latencies, errors=4, business=(("click", 1.0), ("click", 1.0))),
        ["amount", "country"],
    )
    day.add_window(window(MON_23 + HOUR_MS, [], business=(("revenue", 12.5),)), ["amount"])
    day.add_window(window(MON_23 + 2 * HOUR_MS, [10.0] * 200), [])
    day.add_labels(labels([(1, "1", None), (0, "1", None), (1, "1", None), (2.5, None, 2.0)]))
    day.add_alert("critical")
    day.add_alert("warning")

    summary = day.summary("day", MON_23, MON_23 + DAY_MS)
    assert (summary.events, summary.errors, summary.error_rate) == (1200, 4, 4 / 1200)
    assert summary.throughput_eps == pytest.approx(1200 / 86_400)
    # 1..1000 and 200 more 10s: rank 599 is 400, rank 1187 is 988 (within the sketch's 1 %).
    assert summary.latency_p50_ms == pytest.approx(400, rel=0.01)
    assert summary.latency_p99_ms == pytest.approx(988, rel=0.01)
    assert (summary.labelled, summary.accuracy, summary.mae) == (4, 2 / 3, 0.5)
    assert (summary.windows, summary.drifted_windows) == (3, 2)
    assert summary.drifted_features == {"amount": 2, "country": 1}
    assert summary.alerts_fired == {"critical": 1, "warning": 1}
    assert summary.business == {
        "click_count": 2.0,
        "click_sum": 2.0,
        "revenue_count": 1.0,
        "revenue_sum": 12.5,
    }
    (event_,) = _due_daily(day)
    assert event_.message == (
        "[INFO] daily summary fraud-detector@1.4.0 2026-11-23: 1,200 events, error rate 0.3 %,"
        f" p95 {summary.latency_p95_ms:,.0f} ms, accuracy 66.7 % (4 labelled),"
        " 2 of 3 windows drifted (amount, country), 2 alerts (1 critical, 1 warning)"
    )


def _due_daily(day: DayStats) -> list[AlertEvent]:
    ledger = DayLedger(settle_ms=0)
    ledger.restore({"f": day.to_dict()}, None)
    return [e for e in ledger.due(day.day_end_ms, 0) if e.rule == DAILY_RULE]


def test_summary_keeps_the_top_ten_drifted_features() -> None:
    day = DayStats("m", "1", MON_23)
    for n in range(12):
        day.add_window(WindowAggregate(), [f"f{i:02d}" for i in range(n, 12)])
    top = day.summary("day", MON_23, MON_23 + DAY_MS).drifted_features
    assert list(top) == [f"f{i:02d}" for i in range(11, 1, -1)]
    assert top["f11"] == 12


def test_empty_day_summary_has_no_rates() -> None:
    summary = DayStats("m", "1", MON_23).summary("day", MON_23, MON_23 + DAY_MS)
    assert summary.error_rate is None and summary.latency_p95_ms is None
    assert summary.accuracy is None and summary.mae is None
    assert summary.throughput_eps == 0.0
    with pytest.raises(ValueError, match="must end after it starts"):
        DayStats("m", "1", MON_23).summary("day", MON_23, MON_23)


def test_merge_refuses_another_model_version_and_old_formats() -> None:
    with pytest.raises(ValueError, match="merge days of one model version only"):
        DayStats("m", "1", MON_23).merge(DayStats("m", "2", MON_23))
    data = DayStats("m", "1", MON_23).to_dict()
    with pytest.raises(StateFormatError, match="day ledger entry format 99 is not 1"):
        DayStats.from_dict({**data, "fmt": 99})
    with pytest.raises(StateFormatError, match="checkpoint state format"):
        DayLedger(0).restore({}, {"fmt": 0})


# -- DayLedger -------------------------------------------------------------------------------


def feed_week(ledger: DayLedger, first_day_ms: int, days: int) -> None:
    for d in range(days):
        for h in (3, 15):
            start = first_day_ms + d * DAY_MS + h * HOUR_MS
            ledger.window_closed("m", "1", start, window(start, [20.0] * (d + 1)), [])


def test_each_summary_is_emitted_once_even_across_restores() -> None:
    settle = 2 * HOUR_MS
    store = Store()
    ledger = DayLedger(settle)
    feed_week(ledger, SUN_22, 3)  # Sun 22, Mon 23, Tue 24
    emitted: list[AlertEvent] = []

    def step(ledger: DayLedger, watermark_ms: int) -> DayLedger:
        emitted.extend(ledger.due(watermark_ms, emitted_at_ms=watermark_ms))
        ledger.prune(watermark_ms)
        store.save(ledger)
        return store.load(settle)  # every step restarts from what was stored

    ledger = step(ledger, MON_23 + settle - 1)
    assert emitted == []
    ledger = step(ledger, MON_23 + settle)
    ledger = step(ledger, MON_23 + settle)
    ledger = step(ledger, MON_23 + DAY_MS + settle + 1)
    feed_week(ledger, MON_23 + 2 * DAY_MS, 4)  # Wed 25 .. Sat 28 (nothing on Sun 29)
    ledger = step(ledger, MON_30 + settle - 1)
    ledger = step(ledger, MON_30 + settle)
    ledger = step(ledger, MON_30 + 3 * DAY_MS)

    assert [(e.rule, e.window.start_ms) for e in emitted] == [
        (DAILY_RULE, SUN_22),
        (WEEKLY_RULE, MON_23 - WEEK_MS),
        (DAILY_RULE, MON_23),
        *((DAILY_RULE, MON_23 + d * DAY_MS) for d in range(1, 6)),
        (WEEKLY_RULE, MON_23),
    ]
    weekly = emitted[-1].summary
    assert weekly is not None
    # Mon..Sat: two windows a day of 2, 3 (first feed) and 1, 2, 3, 4 events (second feed).
    assert (weekly.events, weekly.windows) == (2 * (2 + 3 + 1 + 2 + 3 + 4), 12)
    assert weekly.throughput_eps == pytest.approx(weekly.events / (7 * 86_400))
    assert len({e.alert_id for e in emitted}) == len(emitted)


def test_event_ids_are_deterministic() -> None:
    runs = []
    for emitted_at_ms in (1, 2):
        ledger = DayLedger(settle_ms=0)
        feed_week(ledger, MON_23, 7)
        runs.append(ledger.due(MON_30, emitted_at_ms))
    first, second = runs
    assert [e.alert_id for e in first] == [e.alert_id for e in second]
    assert first[0].alert_id == f"{fingerprint(DAILY_RULE, 'm', '1', 0)}-{MON_23}"
    assert first[-1].alert_id == f"{fingerprint(WEEKLY_RULE, 'm', '1', 0)}-{MON_23}"
    assert first[0].labels == {"kind": "summary", "period": "day"}
    assert first[0].severity == "info" and first[0].state == "firing"
    assert first[0].fingerprint != first[-1].fingerprint


def test_labels_alerts_and_drift_go_to_the_day_of_their_window() -> None:
    ledger = DayLedger(settle_ms=HOUR_MS)
    late_sunday = SUN_22 + 23 * HOUR_MS
    ledger.window_closed("m", "1", late_sunday, window(late_sunday, [5.0] * 10), ["amount"])
    ledger.labels_final("m", "1", late_sunday, labels([(1, "1", None)] * 9 + [(0, "1", None)]))
    ledger.labels_final("m", "1", late_sunday, labels([(3.0, None, 1.0), (3.0, None, 4.0)]))
    alert = AlertEvent(
        alert_id="a",
        fingerprint="f",
        rule="error_rate_high",
        severity="critical",
        state="firing",
        model_id="m",
        model_version="1",
        metric="error_rate",
        value=0.5,
        threshold=0.1,
        window=WindowRef(size_ms=60_000, start_ms=late_sunday, end_ms=late_sunday + 60_000),
        message="",
        emitted_at_ms=0,
    )
    ledger.count_alerts(
        [
            alert,
            alert.model_copy(update={"state": "resolved"}),
            alert.model_copy(update={"labels": {"kind": "notice"}}),
            alert.model_copy(update={"severity": "warning", "silenced_by": "s1"}),
        ]
    )
    (daily,) = [e for e in ledger.due(MON_23 + HOUR_MS, 0) if e.rule == DAILY_RULE]
    summary = daily.summary
    assert summary is not None
    assert (summary.labelled, summary.accuracy, summary.mae) == (12, 0.9, 1.5)
    assert summary.alerts_fired == {"critical": 1, "warning": 1}
    assert summary.drifted_features == {"amount": 1}
    assert "accuracy 90.0 % (12 labelled)" in daily.message


def test_updates_after_the_daily_are_stored_but_not_re_emitted() -> None:
    ledger = DayLedger(settle_ms=0)
    ledger.window_closed("m", "1", MON_23, window(MON_23, [1.0]), [])
    assert len(ledger.due(MON_23 + DAY_MS, 0)) == 1
    ledger.drain_changes()
    ledger.labels_final("m", "1", MON_23, labels([(1, "1", None)]))
    assert ledger.due(MON_23 + 2 * DAY_MS, 0) == []
    changed, removed = ledger.drain_changes()
    assert changed[day_field("m", "1", MON_23)]["labels"][0] == 1
    assert removed == []


def test_prune_keeps_eight_days_and_anything_not_yet_summarised() -> None:
    ledger = DayLedger(settle_ms=0)
    for d in range(12):
        start = SUN_22 + d * DAY_MS
        ledger.window_closed("m", "1", start, window(start, [1.0]), [])
        ledger.window_closed("other", "1", start, window(start, [1.0]), [])
    now = SUN_22 + 12 * DAY_MS
    ledger.prune(now)  # nothing summarised yet: everything stays
    assert len(ledger) == 24
    ledger.drain_changes()
    emitted = ledger.due(now, 0)
    assert len([e for e in emitted if e.rule == DAILY_RULE]) == 24
    assert {e.window.start_ms for e in emitted if e.rule == WEEKLY_RULE} == {
        MON_23 - WEEK_MS,
        MON_23,
    }
    ledger.prune(now)
    kept = sorted({d.day_start_ms for d in ledger.days})
    # Days that ended 8 days before the watermark, with their daily and weekly sent, go.
    assert kept == [now - 8 * DAY_MS + d * DAY_MS for d in range(8)]
    changed, removed = ledger.drain_changes()
    assert changed == {}
    assert removed == [
        day_field(model, "1", SUN_22 + d * DAY_MS) for d in range(4) for model in ("m", "other")
    ]

    # A pruned day never comes back, so it cannot be summarised twice.
    ledger.labels_final("m", "1", SUN_22, labels([(1, "1", None)]))
    assert ledger.drain_stale() == 1
    assert ledger.day("m", "1", SUN_22) is None
    assert ledger.due(now + DAY_MS, 0) == []
    assert ledger.drain_changes() == ({}, [])


def test_prune_keeps_the_days_of_a_week_whose_summary_is_not_out() -> None:
    ledger = DayLedger(settle_ms=0, retention_ms=DAY_MS)
    feed_week(ledger, MON_23, 4)  # Mon..Thu
    ledger.due(MON_23 + 6 * DAY_MS, 0)  # the dailies go out, the week is not over
    ledger.prune(MON_23 + 6 * DAY_MS)
    assert len(ledger) == 4
    (weekly,) = [e for e in ledger.due(MON_30, 0) if e.rule == WEEKLY_RULE]
    assert weekly.summary is not None and weekly.summary.windows == 8
    ledger.prune(MON_30)
    assert len(ledger) == 0


def test_marks_of_a_model_without_days_are_forgotten() -> None:
    ledger = DayLedger(settle_ms=0, retention_ms=0)
    ledger.window_closed("m", "1", MON_23, window(MON_23, [1.0]), [])
    ledger.due(MON_30, 0)
    ledger.prune(MON_30)
    assert len(ledger) == 0
    assert ledger.to_state() == {"fmt": 1, "floor_ms": MON_30, "daily": [], "weekly": []}
    ledger.window_closed("m", "1", MON_30, window(MON_30, [1.0]), [])
    assert [e.window.start_ms for e in ledger.due(MON_30 + DAY_MS, 0)] == [MON_30]


def test_restore_without_state_has_emitted_nothing() -> None:
    day = DayStats("m", "1", MON_23, events=3)
    ledger = DayLedger(settle_ms=0)
    ledger.restore({day_field("m", "1", MON_23): day.to_dict()}, None)
    assert ledger.drain_changes() == ({}, [])
    assert [e.rule for e in ledger.due(MON_30, 0)] == [DAILY_RULE, WEEKLY_RULE]


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        DayLedger(settle_ms=-1)


def test_a_week_already_summarised_is_not_summarised_again_for_a_late_day() -> None:
    ledger = DayLedger(settle_ms=0, retention_ms=2 * DAY_MS)
    ledger.window_closed("m", "1", MON_23, window(MON_23, [1.0]), [])
    assert [e.rule for e in ledger.due(MON_30, 0)] == [DAILY_RULE, WEEKLY_RULE]
    ledger.prune(MON_30)  # Monday goes; the week's mark stays while the week is above the floor
    assert len(ledger) == 0
    saturday = MON_23 + 5 * DAY_MS
    ledger.labels_final("m", "1", saturday, labels([(1, "1", None)]))
    assert [(e.rule, e.window.start_ms) for e in ledger.due(MON_30, 0)] == [(DAILY_RULE, saturday)]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(ledger_module)
    assert result.attempted >= 5 and result.failed == 0
