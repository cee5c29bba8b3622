import re

import numpy as np

from streamwatch.core.labels import LabelStats
from streamwatch.core.ledger import DAY_MS, DayStats
from streamwatch.report import (
    MARK_CRITICAL,
    MARK_OK,
    MARK_WARNING,
    Thresholds,
    render_html,
    render_markdown,
    series_reports,
    status_mark,
)

MON_23 = 1_795_392_000_000  # Monday 2026-11-23 00:00 UTC
NOW = MON_23 + 2 * DAY_MS + 6 * 3_600_000  # Wednesday 06:00


def day(
    model: str,
    day_ms: int,
    events: int,
    errors: int = 0,
    latency_ms: float = 50.0,
    correct: int = 0,
    classified: int = 0,
    drifted: dict[str, int] | None = None,
) -> DayStats:
    stats = DayStats(model, "1.4.0", day_ms, events=events, errors=errors)
    stats.latency.add_array(np.full(events, latency_ms))
    stats.add_labels(LabelStats(labelled=classified, classified=classified, correct=correct))
    stats.drifted_features = dict(drifted or {})
    stats.drifted_windows = max(stats.drifted_features.values(), default=0)
    stats.windows = 24
    stats.business_counts, stats.business_sums = (
        {"click": 30, "revenue": 3},
        {
            "click": 30.0,
            "revenue": 412.5,
        },
    )
    stats.add_alert("critical")
    return stats


def test_markdown_has_a_row_per_day_and_the_total_with_marks() -> None:
    days = [
        day("fraud-detector", MON_23, 86_400, errors=43, correct=95, classified=100),
        day("fraud-detector", MON_23 + DAY_MS, 1_000, errors=20, latency_ms=250.0),
        day("fraud-detector", MON_23 + 2 * DAY_MS, 600, correct=80, classified=100),
        day("churn", MON_23, 10, drifted={"tenure": 3, "plan|tier": 1}),
    ]
    reports = series_reports(days, MON_23, NOW)
    assert [(r.model_id, len(r.days)) for r in reports] == [("churn", 1), ("fraud-detector", 3)]
    text = render_markdown(reports, start_ms=MON_23, end_ms=NOW)
    lines = text.splitlines()
    assert lines[0] == "# streamwatch report"
    assert "2026-11-23 00:00 to 2026-11-25 06:00 UTC" in lines[2]
    assert "## fraud\\-detector@1.4.0" not in text  # '-' needs no escape
    assert "## fraud-detector@1.4.0" in lines
    header = "| Period | Events | Error rate | Throughput | p50 | p95 | p99 | Accuracy | MAE |"
    assert any(line.startswith(header) for line in lines)
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines if "| 2026" in line}
    monday = rows["2026-11-23 Mon"]
    assert "| 86,400 | 0.0 %" not in monday and f"| 86,400 | {MARK_OK}" not in monday
    assert "| 86,400 | <0.1 % | 1/s |" in monday  # 43 errors; 86,400 events a day is 1/s
    assert "| 95.0 % (100) |" in monday
    assert monday.endswith(f"| {MARK_OK} |")
    tuesday = rows["2026-11-24 Tue"]
    assert f"| {MARK_CRITICAL} 2.0 % |" in tuesday
    assert f"| {MARK_WARNING} 25" in tuesday  # p95 of 250 ms, within the sketch's 1 %
    assert tuesday.endswith(f"| {MARK_CRITICAL} |")
    wednesday = rows["2026-11-25 Wed (so far)"]
    assert f"| {MARK_WARNING} 80.0 % (100) |" in wednesday
    # 600 events in the 6 hours so far.
    assert "| 600 | 0.0 % | 1.67/min |" in wednesday
    churn_total, total = [line for line in lines if line.startswith("| **Total**")]
    assert "| 10 | 0.0 % | 4.44/d |" in churn_total  # 10 events over the 2.25 days reported
    assert "| 88,000 |" in total and "| 3 (3 critical) |" in total
    assert f"| {MARK_WARNING} 87.5 % (200) |" in total and total.endswith(f"| {MARK_WARNING} |")
    assert "click 90; revenue 9 (sum 1,237.50)" in total
    # A feature name cannot break the table.
    assert "| 3/24 (tenure 3, plan\\|tier 1) |" in text


def test_thresholds_are_arguments() -> None:
    (report,) = series_reports([day("m", MON_23, 100, errors=2)], MON_23, MON_23 + DAY_MS)
    assert status_mark(report.total) == MARK_CRITICAL
    assert status_mark(report.total, Thresholds(error_rate_critical=0.05)) == MARK_OK
    lax = render_markdown(
        [report], start_ms=MON_23, end_ms=MON_23 + DAY_MS, thresholds=Thresholds(0.05, 300, 0.5)
    )
    assert MARK_CRITICAL not in lax.split("\n", 3)[3]  # only the legend names it
    assert "error rate > 5.0 %" in lax


def test_html_escapes_every_name() -> None:
    hostile = "<script>alert(1)</script>"
    stats = day(hostile, MON_23, 5, drifted={"<img src=x onerror=alert(1)>": 1})
    page = render_html(series_reports([stats], MON_23, NOW), start_ms=MON_23, end_ms=NOW)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@1.4.0" in page
    assert "&lt;img src=x onerror=alert(1)&gt; 1" in page
    assert '<tr class="total">' in page
    markdown = render_markdown(series_reports([stats], MON_23, NOW), start_ms=MON_23, end_ms=NOW)
    assert re.search(r"(?<!\\)<[A-Za-z/]", markdown) is None  # every tag opener escaped
    assert "\\<script>alert(1)\\</script>" in markdown
