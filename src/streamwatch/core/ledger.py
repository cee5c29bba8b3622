"""The day ledger: per-model daily totals, and the daily and weekly summary events built on them.

:class:`DayStats` is one model version's UTC day: events, errors, a latency sketch, business
counts and sums, label outcomes, drifted windows and fired alerts. It is a plain, mergeable value
with a format version: the same day written by two partitions merges into the whole day, and the
days of a week merge into the week. :class:`DayLedger` keeps one partition's recent days and
says when a day's or a week's summary is due; each summary is emitted once.

The ledger is fed closed windows of *one* size (the largest configured size that divides a day,
see :func:`ledger_window_ms`), so no event is counted twice and no window straddles two days.
Days are UTC ``[00:00, 24:00)``; weeks are ISO weeks, Monday 00:00 UTC to the next Monday.

Pure Python: it must not import Kafka, Faust or Redis. Storing the days (one hash field per day,
named by :func:`day_field`) and the emitted-summary marks (:meth:`DayLedger.to_state`, in the
partition checkpoint) is the edge's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from streamwatch.core.aggregate import LATENCY_RELATIVE_ACCURACY, WindowAggregate
from streamwatch.core.identity import fingerprint
from streamwatch.core.labels import LabelStats
from streamwatch.core.sketch import LogHistogram
from streamwatch.events import AlertEvent, PeriodSummary, WindowRef
from streamwatch.exceptions import StateFormatError

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
#: 1970-01-05 00:00 UTC, the first Monday after the epoch (1970-01-01 was a Thursday).
_FIRST_MONDAY_MS = 4 * DAY_MS
#: Days are kept this long after they end: a full week for the weekly summary and for
#: ``streamwatch report --since 7d``, plus a day.
DEFAULT_RETENTION_MS = 8 * DAY_MS
#: Bumped whenever a stored day's layout changes; old days are then refused, never misread.
DAY_FORMAT_VERSION = 1
#: Version of :meth:`DayLedger.to_state` (the checkpoint part).
LEDGER_STATE_FORMAT_VERSION = 1
DAILY_RULE = "daily_summary"
WEEKLY_RULE = "weekly_summary"
#: Alerts with these ``labels["kind"]`` are notices, not alerts, and are not counted.
UNCOUNTED_ALERT_KINDS = frozenset({"summary", "notice"})
TOP_DRIFTED_FEATURES = 10
_SEVERITIES = ("critical", "warning", "info")
_NEVER = -(2**62)

Period = Literal["day", "week"]
ModelKey = tuple[str, str]
DayKey = tuple[str, str, int]
"""(model_id, model_version, day_start_ms)."""


def day_start_ms(ts_ms: int) -> int:
    """Return the start of the UTC day containing ``ts_ms`` (works before 1970 too).

    >>> day_start_ms(86_400_000 + 5)
    86400000
    """
    return ts_ms - ts_ms % DAY_MS


def week_start_ms(ts_ms: int) -> int:
    """Return the start of the ISO week (Monday 00:00 UTC) containing ``ts_ms``.

    >>> week_start_ms(0) == -3 * DAY_MS  # Thursday 1970-01-01 -> Monday 1969-12-29
    True
    """
    return ts_ms - (ts_ms - _FIRST_MONDAY_MS) % WEEK_MS


def day_field(model_id: str, model_version: str, day_ms: int) -> str:
    """Return the storage name of one model version's day.

    It is the same string as :func:`streamwatch.state_keys.ledger_field` (a test pins this);
    model ids and versions cannot contain ``:``, so it is unambiguous.
    """
    return f"{model_id}:{model_version}:{day_ms}"


def ledger_window_ms(window_sizes_ms: Iterable[int]) -> int | None:
    """Return the largest window size that divides a day (None if none does).

    Those windows are the ones to feed a :class:`DayLedger`.

    >>> ledger_window_ms([10_000, 60_000, 3_600_000, 7 * 3_600_000])
    3600000
    """
    sizes = [size for size in window_sizes_ms if size > 0 and DAY_MS % size == 0]
    return max(sizes, default=None)


def _latency_histogram() -> LogHistogram:
    return LogHistogram(relative_accuracy=LATENCY_RELATIVE_ACCURACY)


def _add_counts(target: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, n in counts.items():
        target[name] = target.get(name, 0) + n


@dataclass(slots=True)
class DayStats:
    """One model version's totals over one UTC day; mergeable and serialisable.

    ``windows`` and ``drifted_windows`` count the closed windows of the ledger's size (see the
    module docstring); ``drifted_features`` counts, per feature, the windows in which it drifted.
    Label counts are the final outcomes of the day's windows, added once per window. A
    ``DayStats`` can also hold a longer period: :meth:`merge` adds any other day of the same
    model version (that is how a week is built).
    """

    model_id: str
    model_version: str
    day_start_ms: int
    events: int = 0
    errors: int = 0
    latency: LogHistogram = field(default_factory=_latency_histogram)
    business_counts: dict[str, int] = field(default_factory=dict)
    business_sums: dict[str, float] = field(default_factory=dict)
    labelled: int = 0
    classified: int = 0
    correct: int = 0
    regressed: int = 0
    abs_error_sum: float = 0.0
    windows: int = 0
    drifted_windows: int = 0
    drifted_features: dict[str, int] = field(default_factory=dict)
    alerts_fired: dict[str, int] = field(default_factory=dict)
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    @property
    def day_end_ms(self) -> int:
        """Exclusive end of the day."""
        return self.day_start_ms + DAY_MS

    def add_window(self, aggregate: WindowAggregate, drifted_features: Sequence[str]) -> None:
        """Add one closed window of the ledger's size.

        Args:
            aggregate: The window's (final) aggregate.
            drifted_features: Features judged drifted in the window (empty: not drifted).
        """
        self.events += aggregate.count
        self.errors += aggregate.error_count
        self.latency.merge(aggregate.latency)
        for kind, moments in aggregate.business.items():
            self.business_counts[kind] = self.business_counts.get(kind, 0) + moments.n
            self.business_sums[kind] = self.business_sums.get(kind, 0.0) + moments.n * moments.mean
        self.windows += 1
        drifted = set(drifted_features)
        if drifted:
            self.drifted_windows += 1
            _add_counts(self.drifted_features, dict.fromkeys(drifted, 1))
        self._see_times(aggregate.first_event_ms, aggregate.last_event_ms)

    def add_labels(self, stats: LabelStats) -> None:
        """Add the final label outcomes of one window (call once per window)."""
        self.labelled += stats.labelled
        self.classified += stats.classified
        self.correct += stats.correct
        self.regressed += stats.regressed
        self.abs_error_sum += stats.abs_error_sum

    def add_alert(self, severity: str) -> None:
        """Count one alert that fired (``critical``, ``warning`` or ``info``)."""
        self.alerts_fired[severity] = self.alerts_fired.get(severity, 0) + 1

    def merge(self, other: DayStats) -> None:
        """Fold ``other`` (the same day from another partition, or another day) into this one.

        ``day_start_ms`` stays this one's: merging the days of a week into
        ``DayStats(model, version, week_start)`` gives the week.

        Raises:
            ValueError: If ``other`` belongs to another model version.
        """
        if (other.model_id, other.model_version) != (self.model_id, self.model_version):
            raise ValueError(
                f"cannot merge the days of {other.model_id}@{other.model_version} into"
                f" {self.model_id}@{self.model_version}: merge days of one model version only"
            )
        self.events += other.events
        self.errors += other.errors
        self.latency.merge(other.latency)
        _add_counts(self.business_counts, other.business_counts)
        for kind, total in other.business_sums.items():
            self.business_sums[kind] = self.business_sums.get(kind, 0.0) + total
        self.labelled += other.labelled
        self.classified += other.classified
        self.correct += other.correct
        self.regressed += other.regressed
        self.abs_error_sum += other.abs_error_sum
        self.windows += other.windows
        self.drifted_windows += other.drifted_windows
        _add_counts(self.drifted_features, other.drifted_features)
        _add_counts(self.alerts_fired, other.alerts_fired)
        self._see_times(other.first_event_ms, other.last_event_ms)

    def _see_times(self, lo: int | None, hi: int | None) -> None:
        if lo is not None:
            self.first_event_ms = (
                lo if self.first_event_ms is None else min(self.first_event_ms, lo)
            )
        if hi is not None:
            self.last_event_ms = hi if self.last_event_ms is None else max(self.last_event_ms, hi)

    def summary(self, period: Period, start_ms: int, end_ms: int) -> PeriodSummary:
        """Return the summary of these stats as the period ``[start_ms, end_ms)``.

        ``throughput_eps`` is the mean over the *whole* period: events divided by
        ``end_ms - start_ms`` in seconds, including hours without traffic (like a closed
        window's throughput). Pass a shorter ``end_ms`` for a day still in progress.

        Raises:
            ValueError: If ``end_ms`` is not after ``start_ms``.
        """
        if end_ms <= start_ms:
            raise ValueError(
                f"a period must end after it starts, got [{start_ms}, {end_ms}) ms;"
                " pass its exclusive end"
            )
        p50 = p95 = p99 = None
        if self.latency.count:
            p50, p95, p99 = self.latency.quantiles([0.5, 0.95, 0.99])
        top = sorted(self.drifted_features.items(), key=lambda kv: (-kv[1], kv[0]))
        business: dict[str, float] = {}
        for kind in sorted(self.business_counts):
            business[f"{kind}_count"] = float(self.business_counts[kind])
            business[f"{kind}_sum"] = self.business_sums.get(kind, 0.0)
        return PeriodSummary(
            period=period,
            start_ms=start_ms,
            end_ms=end_ms,
            events=self.events,
            errors=self.errors,
            error_rate=self.errors / self.events if self.events else None,
            throughput_eps=self.events * 1000.0 / (end_ms - start_ms),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            latency_p99_ms=p99,
            labelled=self.labelled,
            accuracy=self.correct / self.classified if self.classified else None,
            mae=self.abs_error_sum / self.regressed if self.regressed else None,
            windows=self.windows,
            drifted_windows=self.drifted_windows,
            drifted_features=dict(top[:TOP_DRIFTED_FEATURES]),
            alerts_fired={s: self.alerts_fired[s] for s in sorted(self.alerts_fired)},
            business=business,
        )

    def to_dict(self) -> dict[str, Any]:
        """Serialise to a JSON-able dict carrying :data:`DAY_FORMAT_VERSION`."""
        return {
            "fmt": DAY_FORMAT_VERSION,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "day_ms": self.day_start_ms,
            "events": self.events,
            "errors": self.errors,
            "latency": self.latency.to_dict(),
            "business": {
                kind: [n, self.business_sums.get(kind, 0.0)]
                for kind, n in sorted(self.business_counts.items())
            },
            "labels": [
                self.labelled,
                self.classified,
                self.correct,
                self.regressed,
                self.abs_error_sum,
            ],
            "windows": self.windows,
            "drifted_windows": self.drifted_windows,
            "drifted": dict(self.drifted_features),
            "alerts": dict(self.alerts_fired),
            "first_ms": self.first_event_ms,
            "last_ms": self.last_event_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DayStats:
        """Inverse of :meth:`to_dict`.

        Raises:
            StateFormatError: If the dict was written in another format version.
        """
        StateFormatError.require(
            data,
            DAY_FORMAT_VERSION,
            "day ledger entry",
            "delete the sw:v1:ledger:* keys and restart the worker (past days' summaries are lost)",
        )
        labelled, classified, correct, regressed, abs_error_sum = data["labels"]
        return cls(
            model_id=str(data["model_id"]),
            model_version=str(data["model_version"]),
            day_start_ms=int(data["day_ms"]),
            events=int(data["events"]),
            errors=int(data["errors"]),
            latency=LogHistogram.from_dict(data["latency"]),
            business_counts={str(k): int(v[0]) for k, v in data["business"].items()},
            business_sums={str(k): float(v[1]) for k, v in data["business"].items()},
            labelled=int(labelled),
            classified=int(classified),
            correct=int(correct),
            regressed=int(regressed),
            abs_error_sum=float(abs_error_sum),
            windows=int(data["windows"]),
            drifted_windows=int(data["drifted_windows"]),
            drifted_features={str(k): int(v) for k, v in data["drifted"].items()},
            alerts_fired={str(k): int(v) for k, v in data["alerts"].items()},
            first_event_ms=data["first_ms"],
            last_event_ms=data["last_ms"],
        )


class DayLedger:
    """One partition's recent days per model version, and the summaries they are due for.

    Feed it, in each step: closed windows of the ledger's size (:meth:`window_closed`), their
    final label outcomes (:meth:`labels_final`) and the alerts emitted (:meth:`count_alerts`);
    then call :meth:`due`, :meth:`prune` and :meth:`drain_changes`.

    A day's ``daily_summary`` is due once ``day end + settle_ms <= watermark``; a week's
    ``weekly_summary`` (the merge of its days held here) once ``week end + settle_ms <=
    watermark``. With ``settle_ms >= allowed lateness`` every window of the day has closed by
    then, and with ``settle_ms >= allowed lateness + label horizon`` every window's labels are
    final too. Updates that still come for an emitted day are stored (``streamwatch report``
    shows them) but not re-emitted: each summary goes out once, tracked per model version by
    the newest day and week emitted (:meth:`to_state`).

    A day that ended ``retention_ms`` before the watermark, and whose daily and weekly summaries
    have gone out, is pruned; updates for a pruned day are dropped and counted
    (:meth:`drain_stale`), so an old day can never come back and be summarised twice.
    """

    def __init__(self, settle_ms: int, retention_ms: int = DEFAULT_RETENTION_MS) -> None:
        """Create an empty ledger.

        Args:
            settle_ms: How long after a day (or week) ends, in event time, its summary waits
                for late windows and labels; e.g. allowed lateness + label horizon.
            retention_ms: How long after a day ends it is kept (and stored) at least.

        Raises:
            ValueError: If either is negative.
        """
        if settle_ms < 0 or retention_ms < 0:
            raise ValueError(
                f"settle_ms and retention_ms must be >= 0, got {settle_ms} and {retention_ms}"
            )
        self._settle_ms = settle_ms
        self._retention_ms = retention_ms
        self._days: dict[DayKey, DayStats] = {}
        # Per model version: start of the newest day / week whose summary was emitted.
        self._daily_done: dict[ModelKey, int] = {}
        self._weekly_done: dict[ModelKey, int] = {}
        # Days ending at or before this were pruned for good (or may be).
        self._floor_ms = _NEVER
        self._changed: set[DayKey] = set()
        self._removed: set[DayKey] = set()
        self._stale = 0

    def __len__(self) -> int:
        return len(self._days)

    @property
    def days(self) -> list[DayStats]:
        """The days held, by (day, model, version)."""
        return [self._days[key] for key in sorted(self._days, key=_by_day)]

    def day(self, model_id: str, model_version: str, day_ms: int) -> DayStats | None:
        """Return the stats of one held day (``day_ms``: its start), or None."""
        return self._days.get((model_id, model_version, day_ms))

    # -- feeding -----------------------------------------------------------------------------

    def _day_of(self, model_id: str, model_version: str, ts_ms: int) -> DayStats | None:
        key = (model_id, model_version, day_start_ms(ts_ms))
        stats = self._days.get(key)
        if stats is None:
            if key[2] + DAY_MS <= self._floor_ms:
                self._stale += 1
                return None
            stats = self._days[key] = DayStats(*key)
        self._changed.add(key)
        self._removed.discard(key)
        return stats

    def window_closed(
        self,
        model_id: str,
        model_version: str,
        start_ms: int,
        aggregate: WindowAggregate,
        drifted_features: Sequence[str],
    ) -> None:
        """Add a closed window of the ledger's size to the day containing ``start_ms``."""
        stats = self._day_of(model_id, model_version, start_ms)
        if stats is not None:
            stats.add_window(aggregate, drifted_features)

    def labels_final(
        self, model_id: str, model_version: str, start_ms: int, stats: LabelStats
    ) -> None:
        """Add the final label outcomes of the window (of the ledger's size) at ``start_ms``."""
        day = self._day_of(model_id, model_version, start_ms)
        if day is not None:
            day.add_labels(stats)

    def alert_fired(
        self, model_id: str, model_version: str, event_ts_ms: int, severity: str
    ) -> None:
        """Count an alert that fired, on the day containing ``event_ts_ms``."""
        day = self._day_of(model_id, model_version, event_ts_ms)
        if day is not None:
            day.add_alert(severity)

    def count_alerts(self, alerts: Iterable[AlertEvent]) -> None:
        """Count the firing alerts among ``alerts`` on the day their window starts.

        Resolves and notices (``labels["kind"]`` in :data:`UNCOUNTED_ALERT_KINDS`, which
        includes this ledger's own summaries) are skipped; silenced and inhibited alerts count,
        since they fired.
        """
        for alert in alerts:
            if alert.state != "firing" or alert.labels.get("kind") in UNCOUNTED_ALERT_KINDS:
                continue
            self.alert_fired(
                alert.model_id, alert.model_version, alert.window.start_ms, alert.severity
            )

    # -- summaries ---------------------------------------------------------------------------

    def due(self, watermark_ms: int, emitted_at_ms: int) -> list[AlertEvent]:
        """Return the summaries due at ``watermark_ms`` and not emitted yet, marking them sent.

        Daily summaries come first, then weekly ones, each in time order.
        """
        settle = self._settle_ms
        events: list[AlertEvent] = []
        weeks: dict[DayKey, DayStats] = {}
        for key in sorted(self._days, key=_by_day):
            model_id, version, day = key
            model = (model_id, version)
            stats = self._days[key]
            if day + DAY_MS + settle <= watermark_ms and day > self._daily_done.get(model, _NEVER):
                self._daily_done[model] = day
                summary = stats.summary("day", day, day + DAY_MS)
                events.append(summary_event(DAILY_RULE, model_id, version, summary, emitted_at_ms))
            week = week_start_ms(day)
            if week + WEEK_MS + settle <= watermark_ms and week > self._weekly_done.get(
                model, _NEVER
            ):
                week_key = (model_id, version, week)
                merged = weeks.get(week_key)
                if merged is None:
                    merged = weeks[week_key] = DayStats(model_id, version, week)
                merged.merge(stats)
        for (model_id, version, week), stats in sorted(
            weeks.items(), key=lambda kv: _by_day(kv[0])
        ):
            model = (model_id, version)
            self._weekly_done[model] = max(self._weekly_done.get(model, _NEVER), week)
            summary = stats.summary("week", week, week + WEEK_MS)
            events.append(summary_event(WEEKLY_RULE, model_id, version, summary, emitted_at_ms))
        return events

    # -- bookkeeping -------------------------------------------------------------------------

    def prune(self, watermark_ms: int) -> None:
        """Drop days that ended ``retention_ms`` before ``watermark_ms`` and were summarised.

        A day whose daily or weekly summary has not gone out yet is kept, however old.
        """
        self._floor_ms = max(self._floor_ms, watermark_ms - self._retention_ms)
        for key in [k for k in self._days if k[2] + DAY_MS <= self._floor_ms]:
            model_id, version, day = key
            model = (model_id, version)
            if day <= self._daily_done.get(model, _NEVER) and week_start_ms(
                day
            ) <= self._weekly_done.get(model, _NEVER):
                del self._days[key]
                self._changed.discard(key)
                self._removed.add(key)
        # A model's marks go once it holds no day and the marked day and week are below the
        # floor: any update of them is stale then, and any new day lies after them.
        held = {(model_id, version) for model_id, version, _ in self._days}
        for marks, length_ms in ((self._daily_done, DAY_MS), (self._weekly_done, WEEK_MS)):
            for model, start_ms in list(marks.items()):
                if model not in held and start_ms + length_ms <= self._floor_ms:
                    del marks[model]

    def drain_changes(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Return and reset (changed days as field -> :meth:`DayStats.to_dict`, removed fields).

        Fields are :func:`day_field` names; write the changed ones and delete the removed ones
        in the same transaction as the checkpoint holding :meth:`to_state`.
        """
        changed = {
            day_field(*key): self._days[key].to_dict() for key in sorted(self._changed, key=_by_day)
        }
        removed = [day_field(*key) for key in sorted(self._removed, key=_by_day)]
        self._changed, self._removed = set(), set()
        return changed, removed

    def drain_stale(self) -> int:
        """Return and reset the number of updates dropped because their day was pruned."""
        count, self._stale = self._stale, 0
        return count

    def to_state(self) -> dict[str, Any]:
        """The small part of the state for the partition checkpoint: what was emitted."""
        return {
            "fmt": LEDGER_STATE_FORMAT_VERSION,
            "floor_ms": None if self._floor_ms == _NEVER else self._floor_ms,
            "daily": [[m, v, day] for (m, v), day in sorted(self._daily_done.items())],
            "weekly": [[m, v, week] for (m, v), week in sorted(self._weekly_done.items())],
        }

    def restore(self, days: Mapping[str, dict[str, Any]], state: dict[str, Any] | None) -> None:
        """Load the stored days (field -> :meth:`DayStats.to_dict`) and :meth:`to_state` output.

        ``state`` None (a checkpoint from before the ledger existed) means no summary was
        emitted yet. Nothing is pending to store afterwards.

        Raises:
            StateFormatError: If a day or the state has another format version.
        """
        self._days = {}
        for data in days.values():
            stats = DayStats.from_dict(data)
            self._days[(stats.model_id, stats.model_version, stats.day_start_ms)] = stats
        self._daily_done, self._weekly_done, self._floor_ms = {}, {}, _NEVER
        if state is not None:
            StateFormatError.require(
                state,
                LEDGER_STATE_FORMAT_VERSION,
                "day ledger checkpoint state",
                "delete the partition checkpoint and restart the worker",
            )
            floor = state["floor_ms"]
            self._floor_ms = _NEVER if floor is None else int(floor)
            self._daily_done = {(str(m), str(v)): int(day) for m, v, day in state["daily"]}
            self._weekly_done = {(str(m), str(v)): int(week) for m, v, week in state["weekly"]}
        self._changed, self._removed, self._stale = set(), set(), 0


def _by_day(key: DayKey) -> tuple[int, str, str]:
    return key[2], key[0], key[1]


def summary_event(
    rule: str, model_id: str, model_version: str, summary: PeriodSummary, emitted_at_ms: int
) -> AlertEvent:
    """Return the info event carrying ``summary``, with a replay-stable id.

    The id is the fingerprint of (``rule``, model, version) plus ``-{period start}``, so a
    replayed step emits the same id and consumers can de-duplicate.
    """
    fp = fingerprint(rule, model_id, model_version, 0)
    return AlertEvent(
        alert_id=f"{fp}-{summary.start_ms}",
        fingerprint=fp,
        rule=rule,
        severity="info",
        state="firing",
        model_id=model_id,
        model_version=model_version,
        metric="events",
        value=float(summary.events),
        threshold=None,
        window=WindowRef(
            size_ms=summary.end_ms - summary.start_ms,
            start_ms=summary.start_ms,
            end_ms=summary.end_ms,
        ),
        message=summary_message(model_id, model_version, summary),
        labels={"kind": "summary", "period": summary.period},
        summary=summary,
        emitted_at_ms=emitted_at_ms,
    )


def summary_message(model_id: str, model_version: str, summary: PeriodSummary) -> str:
    """Return the one-line text of a summary event.

    >>> day = DayStats("m", "1", day_start_ms=0, events=86_400, errors=345, windows=24)
    >>> summary_message("m", "1", day.summary("day", 0, DAY_MS))
    '[INFO] daily summary m@1 1970-01-01: 86,400 events, error rate 0.4 %, no labels, no alerts'
    """
    if summary.period == "day":
        when = _date(summary.start_ms)
        label = "daily"
    else:
        when = f"{_date(summary.start_ms)} to {_date(summary.end_ms - 1)}"
        label = "weekly"
    parts = [_plural(summary.events, "event")]
    if summary.error_rate is not None:
        parts.append(f"error rate {_percent(summary.error_rate)}")
    if summary.latency_p95_ms is not None:
        parts.append(f"p95 {_ms(summary.latency_p95_ms)}")
    labelled = f"{summary.labelled:,} labelled"
    if summary.accuracy is not None:
        parts.append(f"accuracy {_percent(summary.accuracy)} ({labelled})")
    elif summary.mae is not None:
        parts.append(f"mae {summary.mae:.4g} ({labelled})")
    elif summary.labelled:
        parts.append(labelled)
    else:
        parts.append("no labels")
    if summary.drifted_windows:
        features = ", ".join(list(summary.drifted_features)[:3])
        drift = f"{summary.drifted_windows} of {_plural(summary.windows, 'window')} drifted"
        parts.append(f"{drift} ({features})" if features else drift)
    fired = sum(summary.alerts_fired.values())
    if fired:
        by_severity = ", ".join(
            f"{summary.alerts_fired[s]} {s}" for s in _SEVERITIES if summary.alerts_fired.get(s)
        )
        parts.append(f"{_plural(fired, 'alert')} ({by_severity})")
    else:
        parts.append("no alerts")
    return f"[INFO] {label} summary {model_id}@{model_version} {when}: " + ", ".join(parts)


def _date(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms // 1000, tz=UTC).strftime("%Y-%m-%d")


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _percent(value: float) -> str:
    if 0 < value < 0.001:
        return "<0.1 %"
    return f"{value * 100:.1f} %"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"
