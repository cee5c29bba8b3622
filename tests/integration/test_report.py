"""``streamwatch report`` against a real Redis holding two partitions' day ledgers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
from click.testing import CliRunner

from streamwatch.adapters.ledger_store import load_days
from streamwatch.cli_report import report
from streamwatch.core.labels import LabelStats
from streamwatch.core.ledger import DAY_MS, DayStats, day_start_ms
from streamwatch.embedded import EmbeddedRedis, free_port
from streamwatch.state_keys import ledger_field, ledger_key
from tests.integration.conftest import Pipeline
from tests.integration.test_quality import AlertReader
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

GROUP = "reporting"


def partial_day(
    model: str, day_ms: int, events: int, errors: int, correct: int, classified: int
) -> DayStats:
    stats = DayStats(model, "2.1.0", day_ms, events=events, errors=errors, windows=24)
    stats.latency.add_array(np.full(events, 40.0))
    stats.add_labels(LabelStats(labelled=classified, classified=classified, correct=correct))
    stats.business_counts, stats.business_sums = {"click": events // 10}, {"click": events / 10}
    return stats


def store(client: redis.Redis, partition: int, days: list[DayStats]) -> None:
    client.hset(
        ledger_key(GROUP, partition),
        mapping={
            ledger_field(d.model_id, d.model_version, d.day_start_ms): orjson.dumps(d.to_dict())
            for d in days
        },
    )


def test_report_merges_partitions_and_filters_by_model(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    today = day_start_ms(time.time_ns() // 1_000_000)
    yesterday = today - DAY_MS
    store(
        redis_client,
        0,
        [
            partial_day("fraud-detector", yesterday, 6_000, 30, 900, 1_000),
            partial_day("churn", yesterday, 100, 0, 0, 0),
            partial_day("fraud-detector", today - 20 * DAY_MS, 999, 0, 0, 0),  # before --since
        ],
    )
    store(redis_client, 1, [partial_day("fraud-detector", yesterday, 4_000, 20, 850, 1_000)])
    redis_client.hset(ledger_key("another-group", 0), "x:1:0", b"{}")  # not read
    env = {"STREAMWATCH_REDIS_URL": redis_server.url, "STREAMWATCH_GROUP_ID": GROUP}
    runner = CliRunner()

    result = runner.invoke(report, ["--since", "7d", "--model", "fraud-detector"], env=env)

    assert result.exit_code == 0, result.output
    assert "## fraud-detector@2.1.0" in result.output
    assert "churn" not in result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("| 20")]
    # 6,000 + 4,000 events, 50 errors, 1,750 of 2,000 labels correct, windows from both.
    assert "| 10,000 | 0.5 % |" in row
    assert "87.5 % (2,000)" in row
    assert "| 0/48 |" in row
    assert "click 1,000 |" in row

    out = tmp_path / "report.html"
    written = runner.invoke(
        report, ["--since", "3d", "--format", "html", "--out", str(out)], env=env
    )
    assert written.exit_code == 0, written.output
    assert f"wrote {out}: 2 model version(s), 2 day(s)" in written.output
    page = out.read_text(encoding="utf-8")
    assert "<h2>churn@2.1.0</h2>" in page and "<td>10,000</td>" in page

    days = load_days(redis_client, GROUP, today - 30 * DAY_MS, today + DAY_MS, "fraud-detector")
    assert [(d.day_start_ms, d.events) for d in days] == [
        (today - 20 * DAY_MS, 999),
        (yesterday, 10_000),
    ]


def test_report_says_when_nothing_is_stored_or_redis_is_down(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    runner = CliRunner()
    empty = runner.invoke(report, [], env={"STREAMWATCH_REDIS_URL": redis_server.url})
    assert empty.exit_code == 1
    assert "no day summaries stored for any model since" in empty.output
    assert "STREAMWATCH_GROUP_ID" in empty.output

    down = runner.invoke(
        report, [], env={"STREAMWATCH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    )
    assert down.exit_code == 2
    assert "cannot reach Redis at STREAMWATCH_REDIS_URL" in down.output

    bad = runner.invoke(report, ["--since", "a week"])
    assert bad.exit_code == 2
    assert "invalid duration 'a week'" in bad.output


def test_a_worker_summarises_a_day_on_the_topic_and_for_the_report(pipeline: Pipeline) -> None:
    """End to end: traffic across midnight UTC, a daily_summary event, the same day in the report."""
    pipeline.start_worker(STREAMWATCH_LABEL_HORIZON="1s", STREAMWATCH_BASELINE_AUTO_WINDOWS="0")
    pipeline.wait_until_consuming()
    midnight_ms = day_start_ms(time.time_ns() // 1_000_000)
    # 20 s before midnight (yesterday) and 10 s after: 100 events a second, 2 % errors.
    seconds = range(-20, 10)
    batches = [
        orjson.dumps(
            [
                {
                    "request_id": f"r{s}-{k}",
                    "model_id": "fraud",
                    "model_version": "1",
                    "timestamp": (midnight_ms + s * 1_000 + k * 10) / 1000,
                    "latency_ms": 30.0,
                    "status": "error" if k < 2 else "ok",
                }
                for k in range(100)
            ]
        )
        for s in seconds
    ]
    pipeline.produce("inference", batches, key=b"fraud")
    reader = AlertReader(pipeline)
    try:
        (daily_event,) = wait_for(
            lambda: [r for r in reader.poll() if r["rule"] == "daily_summary"],
            60,
            "the daily summary on the alert topic",
            on_timeout=pipeline.logs,
        )
    finally:
        reader.close()
    daily = daily_event["summary"]
    assert (daily["start_ms"], daily["events"], daily["errors"]) == (
        midnight_ms - DAY_MS,
        2_000,
        40,
    )
    wait_for(lambda: pipeline.counter("inference_events") == 3_000, 30, "every event to be applied")
    result = CliRunner().invoke(
        report,
        ["--since", "2d", "--model", "fraud"],
        env={
            "STREAMWATCH_REDIS_URL": pipeline.env["STREAMWATCH_REDIS_URL"],
            "STREAMWATCH_GROUP_ID": pipeline.env["STREAMWATCH_GROUP_ID"],
        },
    )
    assert result.exit_code == 0, result.output
    assert "2,000" in result.output  # yesterday's row
