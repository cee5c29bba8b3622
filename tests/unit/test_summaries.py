"""Daily summaries through the partition processor: once per day, exact, across restores."""

from __future__ import annotations

from typing import Any

import orjson

from streamwatch.core.ledger import DAY_MS, DayStats, day_start_ms
from streamwatch.core.processor import PartitionProcessor, ProcessorConfig, RawMessage
from streamwatch.core.rules import ThresholdRule

from .helpers import BASE_MS, event, messages

MIDNIGHT_MS = day_start_ms(BASE_MS) + DAY_MS
NOW_MS = MIDNIGHT_MS + DAY_MS
MINUTE_MS = 60_000


def config() -> ProcessorConfig:
    return ProcessorConfig(
        window_sizes_ms=(1_000, MINUTE_MS),
        allowed_lateness_ms=0,
        idle_timeout_ms=60_000,
        max_future_skew_ms=300_000,
        label_horizon_ms=1_000,
        rules=(
            ThresholdRule(
                name="error_rate_high",
                metric="error_rate",
                op=">",
                threshold=0.01,
                severity="critical",
                window=MINUTE_MS,
            ),
        ),
        ledger_window_ms=MINUTE_MS,
    )


def minute(first_ms: int, offset: int, errors: bool = False) -> list[RawMessage]:
    """One message per second for a minute from ``first_ms``, 10 events each."""
    batches = [
        [
            event(s * 10 + k, first_ms + s * 1_000 + k, latency_ms=20.0 + k, error=errors and k < 2)
            for k in range(10)
        ]
        for s in range(60)
    ]
    return messages(batches, start_offset=offset)


# Three minutes before midnight (the first with 20 % errors), three after.
STEPS = [minute(MIDNIGHT_MS + m * MINUTE_MS, (m + 3) * 60, errors=m == -3) for m in range(-3, 3)]


def run(split: int | None = None) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """Run the steps, restoring from what Redis would hold before step ``split``."""
    store: dict[str, Any] = {"windows": {}, "labels": {}, "ledger": {}}
    processor = PartitionProcessor(0, config())
    meta: dict[str, Any] = {}
    emitted = []
    for n, step in enumerate(STEPS):
        if n == split:
            processor = PartitionProcessor.restore(
                0,
                config(),
                orjson.loads(orjson.dumps(meta)),
                dict(store["windows"]),
                labels=dict(store["labels"]),
                ledger_days=orjson.loads(orjson.dumps(store["ledger"])),
            )
        result = processor.process(step, NOW_MS)
        meta = result.checkpoint
        store["windows"].update({u.key: u.aggregate for u in result.windows})
        store["labels"].update({u.key: u.window for u in result.labels})
        store["ledger"].update(result.ledger_days)
        for name in result.ledger_removed:
            store["ledger"].pop(name, None)
        emitted.append([a.model_dump(exclude={"emitted_at_ms"}) for a in result.alerts])
    return emitted, store["ledger"]


def test_the_day_is_summarised_once_when_it_is_over() -> None:
    emitted, ledger = run()
    summaries = [a for step in emitted for a in step if a["rule"] == "daily_summary"]
    (daily,) = summaries
    # Due once event time passes midnight + lateness + the label horizon (1 s).
    assert [i for i, step in enumerate(emitted) if daily in step] == [3]
    summary = daily["summary"]
    assert (summary["period"], summary["start_ms"]) == ("day", MIDNIGHT_MS - DAY_MS)
    assert (summary["events"], summary["errors"], summary["windows"]) == (1_800, 120, 3)
    assert summary["alerts_fired"] == {"critical": 1}
    assert daily["severity"] == "info" and daily["state"] == "firing"
    assert "1,800 events" in daily["message"]
    # What `streamwatch report` reads: the day, and today so far.
    days = {name: DayStats.from_dict(value) for name, value in ledger.items()}
    assert sorted((d.day_start_ms, d.events) for d in days.values()) == [
        (MIDNIGHT_MS - DAY_MS, 1_800),
        (MIDNIGHT_MS, 1_200),  # the third minute after midnight has not closed
    ]


def test_a_restore_before_any_step_changes_nothing() -> None:
    unsplit = run()
    for split in range(1, len(STEPS)):
        assert run(split) == unsplit, f"restored before step {split}"
