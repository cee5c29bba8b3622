"""``streamwatch report``: every model's days over a period, as Markdown or HTML.

:mod:`streamwatch.cli` registers :func:`report` on its group (``main.add_command(report)``).
This module imports the CLI's helpers only when the command runs, so either module may be
imported first without a circular import.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from streamwatch.core.durations import parse_duration_ms


def _duration_ms(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("report")
@click.option(
    "--since",
    "since_ms",
    default="7d",
    show_default=True,
    callback=_duration_ms,
    help="How far back, e.g. 7d, 36h; reported by whole UTC days from the day this falls in.",
)
@click.option("--model", "model_id", default=None, help="Only this model id (every version).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["md", "html"]),
    default="md",
    show_default=True,
    help="Markdown, or a standalone HTML page.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report to this file [default: stdout].",
)
def report(since_ms: int, model_id: str | None, output_format: str, out: Path | None) -> None:
    """Summarise each model's days: events, errors, latency, accuracy, drift, alerts, business.

    Reads the day summaries the workers of STREAMWATCH_GROUP_ID store in Redis. Today's row
    counts the windows closed so far. Exits 1, saying so, when no day is stored for the period.
    """
    from streamwatch.cli import _fail_cleanly

    _fail_cleanly(_report)(since_ms, model_id, output_format, out)


def _report(since_ms: int, model_id: str | None, output_format: str, out: Path | None) -> None:

    from streamwatch.adapters.ledger_store import load_days
    from streamwatch.cli import _redis_reachable, _settings
    from streamwatch.core.ledger import day_start_ms
    from streamwatch.report import render_html, render_markdown, series_reports

    settings = _settings()
    until_ms = time.time_ns() // 1_000_000
    start_ms = day_start_ms(until_ms - since_ms)
    from streamwatch.client import redis_from_settings

    client = redis_from_settings(settings)
    try:
        with _redis_reachable():
            days = load_days(client, settings.group_id, start_ms, until_ms, model_id)
    finally:
        client.close()
    if not days:
        which = f"model {model_id!r}" if model_id else "any model"
        click.echo(
            f"streamwatch: no day summaries stored for {which} since {_date(start_ms)} (group"
            f" {settings.group_id!r}); workers store a day as its windows close, so check that"
            " they run with this STREAMWATCH_GROUP_ID and STREAMWATCH_REDIS_URL",
            err=True,
        )
        sys.exit(1)
    render = render_html if output_format == "html" else render_markdown
    text = render(series_reports(days, start_ms, until_ms), start_ms=start_ms, end_ms=until_ms)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(out), hint=exc.strerror or str(exc)) from None
    series = len({(d.model_id, d.model_version) for d in days})
    click.echo(f"wrote {out}: {series} model version(s), {len(days)} day(s)", err=True)


def _date(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms // 1000, tz=UTC).strftime("%Y-%m-%d")
