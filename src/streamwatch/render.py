"""Human rendering of window state: status marks and the ``streamwatch status`` table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from streamwatch.client import WindowState
from streamwatch.core.durations import format_duration_ms
from streamwatch.core.rules import ThresholdRule

MARK_OK = "✅"
MARK_WARNING = "⚠️"
MARK_CRITICAL = "🔴"
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def status_mark(
    window: WindowState, rules: Sequence[ThresholdRule], metric: str | None = None
) -> str:
    """Return ✅/⚠️/🔴 for a window (or one of its metrics) by the worst breached rule."""
    metrics = window.metrics
    worst = -1
    for rule in rules:
        if metric is not None and rule.metric != metric:
            continue
        if rule.matches(window.model_id, window.model_version) and rule.breached(metrics):
            worst = max(worst, _SEVERITY_RANK[rule.severity])
    if worst >= 2:
        return MARK_CRITICAL
    if worst == 1:
        return MARK_WARNING
    return MARK_OK


def format_ts_ms(ts_ms: int) -> str:
    """Return a UTC wall-clock time for a window boundary."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def status_table(windows: Sequence[WindowState], rules: Sequence[ThresholdRule]) -> Table:
    """Build the status table: one row per window, newest first per series."""
    table = Table(title="streamwatch windows", expand=False)
    for column in ("model", "version", "window", "start (UTC)", "state", "events", "ev/s"):
        table.add_column(column, justify="right" if column in ("events", "ev/s") else "left")
    for column in ("error", "p50 ms", "p95 ms", "p99 ms", "score", "cpu %", "late", "ok"):
        table.add_column(column, justify="right")
    for window in windows:
        m = window.metrics
        table.add_row(
            window.model_id,
            window.model_version,
            format_duration_ms(window.size_ms),
            format_ts_ms(window.start_ms),
            "closed" if window.closed else "open",
            str(m["count"]),
            _num(m.get("throughput_eps"), ".1f"),
            _num(m.get("error_rate"), ".2%") + " " + status_mark(window, rules, "error_rate"),
            _num(m.get("latency_p50_ms"), ".1f"),
            _num(m.get("latency_p95_ms"), ".1f")
            + " "
            + status_mark(window, rules, "latency_p95_ms"),
            _num(m.get("latency_p99_ms"), ".1f"),
            _num(m.get("score_mean"), ".3f"),
            _num(m.get("cpu_pct_mean"), ".1f"),
            str(m.get("late_events", 0)),
            status_mark(window, rules),
        )
    return table
