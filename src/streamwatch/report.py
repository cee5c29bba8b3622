"""Render model summaries over a period as Markdown or standalone HTML (``streamwatch report``).

Pure formatting: :func:`series_reports` turns stored days into one :class:`SeriesReport` per
model version (a row per day and the period total), and :func:`render_markdown` /
:func:`render_html` turn those into text. Every name that comes from data (model ids, versions,
feature names, business kinds) is escaped, so no name can inject markup.

Cells are marked by fixed thresholds (:class:`Thresholds`), not by the alert rules: a report
reads the same whichever rules file a worker ran with.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from streamwatch.core.ledger import DAY_MS, DayStats, Period
from streamwatch.events import PeriodSummary

MARK_OK = "✅"
MARK_WARNING = "⚠️"
MARK_CRITICAL = "🔴"
_RANK = {MARK_OK: 0, MARK_WARNING: 1, MARK_CRITICAL: 2}
_SEVERITIES = ("critical", "warning", "info")
COLUMNS = (
    "Period",
    "Events",
    "Error rate",
    "Throughput",
    "p50",
    "p95",
    "p99",
    "Accuracy",
    "MAE",
    "Drifted windows",
    "Alerts",
    "Business",
    "Status",
)
#: Columns of text (left-aligned); the others are numbers (right-aligned).
_TEXT_COLUMNS = frozenset({"Period", "Drifted windows", "Alerts", "Business", "Status"})
# Markdown: backslash-escape what could start markup inside a table cell or break the cell:
# emphasis, code, links, pipes, and '<' / '&' where they could open a tag or an entity.
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]|~]|<(?=[A-Za-z/!?])|&(?=[A-Za-z#])")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a report marks a number: 🔴 above ``error_rate_critical``, ⚠️ for the others."""

    error_rate_critical: float = 0.01
    latency_p95_warning_ms: float = 200.0
    accuracy_warning: float = 0.90


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True, slots=True)
class SeriesReport:
    """One model version over the report's period: its total and (optionally) its days."""

    model_id: str
    model_version: str
    total: PeriodSummary
    days: tuple[PeriodSummary, ...] = ()


@dataclass(frozen=True, slots=True)
class _Cell:
    text: str
    mark: str = ""


def series_reports(days: Iterable[DayStats], start_ms: int, end_ms: int) -> list[SeriesReport]:
    """Group stored days by model version into reports over ``[start_ms, end_ms)``.

    A day still in progress at ``end_ms`` is summarised up to ``end_ms``, so its throughput is
    the mean so far. The total's period is ``"day"`` when the range is at most a day long and
    ``"week"`` otherwise (:class:`PeriodSummary` knows no other periods); its throughput is the
    mean over the whole range.

    Args:
        days: Days of any model versions, one per (model, version, day) (merge partitions first).
        start_ms: Start of the reported range (usually a UTC midnight).
        end_ms: Exclusive end of the range (usually now).
    """
    by_series: dict[tuple[str, str], list[DayStats]] = {}
    for day in sorted(days, key=lambda d: (d.model_id, d.model_version, d.day_start_ms)):
        if day.day_start_ms < end_ms and day.day_end_ms > start_ms:
            by_series.setdefault((day.model_id, day.model_version), []).append(day)
    period: Period = "day" if end_ms - start_ms <= DAY_MS else "week"
    reports = []
    for (model_id, version), series in by_series.items():
        total = DayStats(model_id, version, start_ms)
        for day in series:
            total.merge(day)
        rows = tuple(
            day.summary("day", day.day_start_ms, min(day.day_end_ms, end_ms)) for day in series
        )
        reports.append(
            SeriesReport(model_id, version, total.summary(period, start_ms, end_ms), rows)
        )
    return reports


def summary_marks(summary: PeriodSummary, thresholds: Thresholds) -> dict[str, str]:
    """Return the marks of a summary's breached numbers, by column name."""
    marks: dict[str, str] = {}
    if summary.error_rate is not None and summary.error_rate > thresholds.error_rate_critical:
        marks["Error rate"] = MARK_CRITICAL
    p95 = summary.latency_p95_ms
    if p95 is not None and p95 > thresholds.latency_p95_warning_ms:
        marks["p95"] = MARK_WARNING
    if summary.accuracy is not None and summary.accuracy < thresholds.accuracy_warning:
        marks["Accuracy"] = MARK_WARNING
    return marks


def status_mark(summary: PeriodSummary, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> str:
    """Return the worst mark of a summary: 🔴, ⚠️ or ✅."""
    return max(summary_marks(summary, thresholds).values(), key=_RANK.__getitem__, default=MARK_OK)


def render_markdown(
    reports: Sequence[SeriesReport],
    *,
    start_ms: int,
    end_ms: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    daily_rows: bool = True,
) -> str:
    """Return the report as GitHub-flavoured Markdown: a table per model version."""
    lines = [
        "# streamwatch report",
        "",
        f"{_range_text(start_ms, end_ms)}. {_legend(thresholds)}",
    ]
    if not reports:
        lines += ["", "No model has stored days in this period."]
    for report in reports:
        lines += ["", f"## {_markdown(f'{report.model_id}@{report.model_version}')}", ""]
        lines.append("| " + " | ".join(COLUMNS) + " |")
        lines.append("|" + "|".join("---" if c in _TEXT_COLUMNS else "---:" for c in COLUMNS) + "|")
        for label, summary in _rows(report, daily_rows):
            cells = _cells(label, summary, thresholds)
            texts = [_markdown(cell.text) for cell in cells]
            texts[0] = f"**{texts[0]}**" if summary is report.total else texts[0]
            lines.append(
                "| "
                + " | ".join(
                    _marked(cell.mark, text) for cell, text in zip(cells, texts, strict=True)
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: right; }
th, td { white-space: nowrap; }
th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; white-space: normal; }
tr.total td { font-weight: 600; background: #f6f8fa; }
td.critical { background: #ffebe9; } td.warning { background: #fff8c5; }
p.legend { color: #59636e; }
""".strip()


def render_html(
    reports: Sequence[SeriesReport],
    *,
    start_ms: int,
    end_ms: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    daily_rows: bool = True,
) -> str:
    """Return the report as one standalone HTML page (inline CSS, no scripts or links)."""
    esc = html.escape
    title = "streamwatch report"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="legend">{esc(_range_text(start_ms, end_ms))}. {esc(_legend(thresholds))}</p>',
    ]
    if not reports:
        parts.append("<p>No model has stored days in this period.</p>")
    classes = {MARK_CRITICAL: "critical", MARK_WARNING: "warning"}
    for report in reports:
        parts.append(f"<h2>{esc(report.model_id)}@{esc(report.model_version)}</h2>")
        parts.append("<table>")
        parts.append("<tr>" + "".join(f"<th>{esc(c)}</th>" for c in COLUMNS) + "</tr>")
        for label, summary in _rows(report, daily_rows):
            row_class = ' class="total"' if summary is report.total else ""
            cells = []
            for column, cell in zip(COLUMNS, _cells(label, summary, thresholds), strict=True):
                css = [classes[cell.mark]] if cell.mark in classes else []
                css += ["text"] if column in _TEXT_COLUMNS else []
                attr = f' class="{" ".join(css)}"' if css else ""
                cells.append(f"<td{attr}>{esc(_marked(cell.mark, cell.text))}</td>")
            parts.append(f"<tr{row_class}>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _marked(mark: str, text: str) -> str:
    return " ".join(part for part in (mark, text) if part)


def _rows(report: SeriesReport, daily_rows: bool) -> list[tuple[str, PeriodSummary]]:
    rows = [(_day_label(day), day) for day in report.days] if daily_rows else []
    rows.append(("Total", report.total))
    return rows


def _cells(label: str, summary: PeriodSummary, thresholds: Thresholds) -> list[_Cell]:
    marks = summary_marks(summary, thresholds)
    labelled = f" ({summary.labelled:,})" if summary.labelled else ""
    values = {
        "Period": label,
        "Events": f"{summary.events:,}",
        "Error rate": _percent(summary.error_rate),
        "Throughput": _rate(summary.throughput_eps),
        "p50": _ms(summary.latency_p50_ms),
        "p95": _ms(summary.latency_p95_ms),
        "p99": _ms(summary.latency_p99_ms),
        "Accuracy": "-" if summary.accuracy is None else _percent(summary.accuracy) + labelled,
        "MAE": "-" if summary.mae is None else f"{summary.mae:.4g}",
        "Drifted windows": _drift(summary),
        "Alerts": _alerts(summary),
        "Business": _business(summary),
        "Status": "",
    }
    cells = [_Cell(values[column], marks.get(column, "")) for column in COLUMNS]
    cells[-1] = _Cell("", status_mark(summary, thresholds))
    return cells


def _day_label(day: PeriodSummary) -> str:
    moment = datetime.fromtimestamp(day.start_ms // 1000, tz=UTC)
    label = moment.strftime("%Y-%m-%d %a")
    return label + " (so far)" if day.end_ms - day.start_ms < DAY_MS else label


def _range_text(start_ms: int, end_ms: int) -> str:
    def moment(ts_ms: int) -> str:
        return datetime.fromtimestamp(ts_ms // 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")

    return f"{moment(start_ms)} to {moment(end_ms)} UTC, by UTC day"


def _legend(thresholds: Thresholds) -> str:
    return (
        f"{MARK_CRITICAL} error rate > {_percent(thresholds.error_rate_critical)};"
        f" {MARK_WARNING} p95 > {thresholds.latency_p95_warning_ms:g} ms"
        f" or accuracy < {_percent(thresholds.accuracy_warning)}"
    )


def _percent(value: float | None) -> str:
    if value is None:
        return "-"
    if 0 < value < 0.001:
        return "<0.1 %"
    return f"{value * 100:.1f} %"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _rate(events_per_s: float | None) -> str:
    """Events per second, or per minute, hour or day when that reads better than 0.00x/s."""
    if events_per_s is None:
        return "-"
    for unit, factor in (("s", 1), ("min", 60), ("h", 3_600), ("d", 86_400)):
        value = events_per_s * factor
        if value >= 1 or unit == "d":
            break
    return f"{value:,.0f}/{unit}" if value >= 100 else f"{value:.3g}/{unit}"


def _drift(summary: PeriodSummary) -> str:
    if not summary.windows:
        return "-"
    text = f"{summary.drifted_windows}/{summary.windows}"
    top = list(summary.drifted_features.items())[:3]
    if top:
        text += " (" + ", ".join(f"{name} {n}" for name, n in top) + ")"
    return text


def _alerts(summary: PeriodSummary) -> str:
    fired = summary.alerts_fired
    total = sum(fired.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{fired[s]} {s}" for s in _SEVERITIES if fired.get(s)) + ")"


def _business(summary: PeriodSummary) -> str:
    items = []
    for key, count in summary.business.items():
        if not key.endswith("_count"):
            continue
        kind = key.removesuffix("_count")
        total = summary.business.get(f"{kind}_sum", count)
        text = f"{kind} {count:,.0f}"
        # Counted kinds (clicks, conversions) have value 1 each; show the sum only when it adds.
        items.append(text if total == count else f"{text} (sum {total:,.2f})")
    return "; ".join(items) if items else "-"


def _markdown(text: str) -> str:
    flat = " ".join(text.splitlines())
    return _MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), flat)
