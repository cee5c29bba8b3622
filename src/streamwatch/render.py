"""Human rendering of window state: status marks and the ``streamwatch status`` table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
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


def _styled(text: str, mark: str) -> str:
    """Colour a cell by its status mark (the row's last column carries the mark itself)."""
    style = {MARK_CRITICAL: "bold red", MARK_WARNING: "yellow"}.get(mark)
    return f"[{style}]{text}[/{style}]" if style else text


def status_table(windows: Sequence[WindowState], rules: Sequence[ThresholdRule]) -> Table:
    """Build the status table: one row per window, newest first per series.

    Fits an 80-column terminal: model and version share a cell on two lines, the window is its
    size and UTC start time, and an open (in-progress) window is marked ``…``.
    """
    table = Table(
        title="streamwatch windows · latency in ms · times UTC",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    table.add_column("model / version", min_width=12, overflow="fold")
    table.add_column("window", no_wrap=True)
    for column in ("events", "ev/s", "errors", "p95", "p99", "acc", "drift", "late", ""):
        table.add_column(column, justify="right", no_wrap=True)
    for window in windows:
        m = window.metrics
        when = format_ts_ms(window.start_ms)[11:] + ("" if window.closed else "…")
        table.add_row(
            f"{window.model_id}\n[dim]{window.model_version}[/dim]",
            f"{format_duration_ms(window.size_ms)} {when}",
            str(m["count"]),
            _num(m.get("throughput_eps"), ".0f"),
            _styled(_num(m.get("error_rate"), ".1%"), status_mark(window, rules, "error_rate")),
            _num(m.get("latency_p50_ms"), ".0f"),
            _styled(
                _num(m.get("latency_p95_ms"), ".0f"), status_mark(window, rules, "latency_p95_ms")
            ),
            _num(m.get("latency_p99_ms"), ".0f"),
            _styled(_num(m.get("accuracy"), ".1%"), status_mark(window, rules, "accuracy")),
            _styled(_drift_cell(window), status_mark(window, rules, "drifted_features")),
            str(m.get("late_events", 0)),
            status_mark(window, rules),
        )
    return table


def _drift_cell(window: WindowState) -> str:
    """The most drifted input feature and its PSI, ``ok`` if none drifted, ``-`` if unknown."""
    inputs = [f for f in window.drift if not f.feature.startswith("@")]
    if not inputs:
        return "-"
    top = inputs[0]
    if not top.drifted:
        return "ok"
    name = top.feature if len(top.feature) <= 10 else top.feature[:9] + "…"
    return f"{name} {top.psi:.2f}"


def describe_alert(record: dict[str, Any]) -> str:
    """One line per alert event for ``streamwatch alerts``, with its reason when known."""
    window = record["window"]
    value = record.get("value")
    where = f"{record['model_id']}@{record['model_version']}"
    segment = (record.get("labels") or {}).get("segment")
    if segment:
        where += f"[{segment}]"
    line = (
        f"{format_ts_ms(window['start_ms'])} {record['state']:<8} {record['severity']:<8}"
        f" {record['rule']:<22} {where} {record['metric']}={_num(value, '.4g')}"
    )
    summary = record.get("summary")
    if summary:
        line += f" — {record['message']}"
    detection = record.get("detection")
    if detection:
        line += (
            f" [{detection['detector']} on {detection['series']}:"
            f" {detection['before_mean']:.4g} -> {detection['after_mean']:.4g}]"
        )
    causes = [c for c in record.get("root_cause") or [] if c.get("drifted")]
    if causes:
        line += " drift: " + ", ".join(
            f"{c['feature']} (psi {_num(c.get('psi'), '.2f')})" for c in causes[:3]
        )
    if record.get("silenced_by"):
        line += f" (silenced by {record['silenced_by']})"
    if record.get("inhibited_by"):
        line += f" (inhibited by {record['inhibited_by']})"
    return f"{line}  id={record['alert_id']}"


_MARKS = {
    ("firing", "critical"): (MARK_CRITICAL, "bold red"),
    ("firing", "warning"): (MARK_WARNING, "yellow"),
    ("firing", "info"): ("ℹ️", "cyan"),
}


def pretty_alert(record: dict[str, Any]) -> str:
    """Rich markup for ``streamwatch alerts --follow``: a coloured mark, then the alert line.

    Resolves are green, muted (silenced or inhibited) alerts dim: what needs a human stands out.
    """
    from rich.markup import escape

    mark, style = _MARKS.get((record["state"], record["severity"]), (MARK_OK, "green"))
    if record.get("silenced_by") or record.get("inhibited_by"):
        style = "dim"
    return f"{mark} [{style}]{escape(describe_alert(record))}[/{style}]"
