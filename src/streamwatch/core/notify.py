"""Webhook notifications: group alerts per model, render them, schedule deliveries and retries.

Alertmanager's model, reduced to what the alert topic needs. :class:`AlertGrouper` batches the
alerts of one model (the *group key*): the first alert of a burst waits ``group_wait_ms`` for
the rest of it; a group notified less than ``group_interval_ms`` ago sends its next batch at
``last + group_interval_ms``. Silenced and inhibited alerts are dropped, and so are replayed
``(alert_id, state)`` pairs (the topic is at-least-once). :class:`DeliveryQueue` retries failed
deliveries with :class:`BackoffPolicy`, one group's notifications in order, without holding up
other groups. :class:`OffsetLedger` says which consumed records are fully handled.

Pure: no Kafka, no HTTP; time is passed in as integer milliseconds.
:mod:`streamwatch.notifier` does the I/O.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from streamwatch.events import AlertEvent

#: Version of the ``json`` webhook payload; bump it when its shape changes.
NOTIFICATION_VERSION = 1
#: ``(alert_id, state)`` pairs remembered to drop replays (bounded memory).
DEDUP_MEMORY = 10_000
#: Alert lines in one Slack message; the JSON payload always carries every alert.
MAX_SLACK_LINES = 20

AlertKey = tuple[str, str]
AddOutcome = Literal["queued", "silenced", "inhibited", "duplicate"]
Verdict = Literal["delivered", "retry", "reject"]

_SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":warning:",
    "info": ":information_source:",
}
_RESOLVED_EMOJI = ":white_check_mark:"
_SEVERITIES = ("critical", "warning", "info")
_STATES = ("firing", "resolved")
_COUNTER_NAMES = (
    "queued",
    "dropped_silenced",
    "dropped_inhibited",
    "dropped_duplicate",
    "released_inhibited",
)


def alert_key(alert: AlertEvent) -> AlertKey:
    """Return what identifies one notification-worthy state change: ``(alert_id, state)``."""
    return (alert.alert_id, alert.state)


def classify_status(status: int | None) -> Verdict:
    """Judge a webhook response status; ``None`` means no response (connection error, timeout).

    2xx is delivered. 408, 429, 5xx and no response are worth retrying. Anything else (other
    4xx, and 3xx: redirects are not followed) will not change by retrying.

    >>> [classify_status(s) for s in (204, 503, 429, None, 404, 301)]
    ['delivered', 'retry', 'retry', 'retry', 'reject', 'reject']
    """
    if status is None or status in (408, 429) or 500 <= status <= 599:
        return "retry"
    return "delivered" if 200 <= status <= 299 else "reject"


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook message: a batch of one group's alerts, in arrival order."""

    group_key: str
    alerts: tuple[AlertEvent, ...]
    created_at_ms: int

    @property
    def status(self) -> Literal["firing", "resolved"]:
        """``firing`` if any alert in the batch fires, else ``resolved``."""
        return "firing" if any(a.state == "firing" for a in self.alerts) else "resolved"

    def json_body(self) -> dict[str, Any]:
        """Return streamwatch's payload: counts per state and severity, and every alert."""
        states: Counter[str] = Counter(a.state for a in self.alerts)
        severities: Counter[str] = Counter(a.severity for a in self.alerts)
        return {
            "version": NOTIFICATION_VERSION,
            "group_key": self.group_key,
            "status": self.status,
            "created_at_ms": self.created_at_ms,
            "counts": {
                "state": {s: states[s] for s in _STATES},
                "severity": {s: severities[s] for s in _SEVERITIES},
            },
            "alerts": [a.model_dump(mode="json") for a in self.alerts],
        }

    def slack_body(self) -> dict[str, str]:
        """Return a Slack incoming-webhook payload: a headline, then one line per alert."""
        states: Counter[str] = Counter(a.state for a in self.alerts)
        firing = [a for a in self.alerts if a.state == "firing"]
        if firing:
            worst = min(_SEVERITIES.index(a.severity) for a in firing)
            emoji = _SEVERITY_EMOJI[_SEVERITIES[worst]]
        else:
            emoji = _RESOLVED_EMOJI
        counts = ", ".join(f"{states[s]} {s}" for s in _STATES if states[s])
        lines = [f"{emoji} {counts} — *{_escape(self.group_key)}*"]
        lines.extend(_slack_line(a) for a in self.alerts[:MAX_SLACK_LINES])
        if len(self.alerts) > MAX_SLACK_LINES:
            lines.append(f"… and {len(self.alerts) - MAX_SLACK_LINES} more")
        return {"text": "\n".join(lines)}


def _escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves (``>`` is common in messages)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_line(alert: AlertEvent) -> str:
    resolved = alert.state == "resolved"
    emoji = _RESOLVED_EMOJI if resolved else _SEVERITY_EMOJI[alert.severity]
    line = (
        f"{emoji} *{_escape(alert.rule)}* `{_escape(alert.model_version)}`"
        f"{' resolved:' if resolved else ''} {_escape(alert.message)}"
    )
    cause = next((c for c in alert.root_cause if c.drifted), None)
    if cause is not None:
        psi = "" if cause.psi is None else f" (PSI {cause.psi:.2f})"
        line += f" · top drift: {_escape(cause.feature)}{psi}"
    return line


@dataclass(slots=True)
class _Group:
    alerts: list[AlertEvent] = field(default_factory=list)
    due_ms: int | None = None
    last_sent_ms: int | None = None


class AlertGrouper:
    """Batch alerts per model into notifications, the way Alertmanager groups them.

    Example:
        >>> grouper = AlertGrouper(group_wait_ms=10_000, group_interval_ms=60_000)
        >>> grouper.due(now_ms=0)
        []
        >>> grouper.next_due_ms() is None
        True
    """

    def __init__(
        self, group_wait_ms: int, group_interval_ms: int, dedup_memory: int = DEDUP_MEMORY
    ) -> None:
        """Create an empty grouper.

        Args:
            group_wait_ms: How long the first alert of a burst waits for the rest of it.
            group_interval_ms: Least time between two notifications of one group.
            dedup_memory: How many ``(alert_id, state)`` pairs to remember to drop replays.

        Raises:
            ValueError: If a duration is negative or ``dedup_memory`` is not positive.
        """
        if group_wait_ms < 0 or group_interval_ms < 0:
            raise ValueError("group_wait_ms and group_interval_ms must be >= 0")
        if dedup_memory < 1:
            raise ValueError("dedup_memory must be >= 1")
        self._wait_ms = group_wait_ms
        self._interval_ms = group_interval_ms
        self._memory = dedup_memory
        self._seen: OrderedDict[AlertKey, None] = OrderedDict()
        self._groups: dict[str, _Group] = {}
        # Inhibited firing alerts by the alert muting them, until that one resolves: then the
        # ones still firing are notified after all (Alertmanager lifts inhibition the same way).
        self._held: dict[str, dict[str, AlertEvent]] = {}
        self._muted: OrderedDict[str, None] = OrderedDict()
        #: ``queued``, ``dropped_silenced``, ``dropped_inhibited``, ``dropped_duplicate``.
        self.counters: Counter[str] = Counter(dict.fromkeys(_COUNTER_NAMES, 0))

    def add(self, alert: AlertEvent, now_ms: int) -> AddOutcome:
        """Queue an alert for its group's next notification, or drop it (and count why)."""
        outcome: AddOutcome
        if alert.silenced_by is not None:
            outcome = "silenced"
        elif alert.inhibited_by is not None:
            outcome = "inhibited"
            self._held.setdefault(alert.inhibited_by, {})[alert.alert_id] = alert
            self._mute(alert.alert_id)
        elif alert.state == "resolved" and alert.alert_id in self._muted:
            # Its firing was never notified: neither is its resolve.
            outcome = "inhibited"
            for held in self._held.values():
                held.pop(alert.alert_id, None)
        elif alert_key(alert) in self._seen:
            outcome = "duplicate"
        else:
            outcome = "queued"
            self._queue(alert, now_ms)
        self.counters["queued" if outcome == "queued" else f"dropped_{outcome}"] += 1
        if alert.state == "resolved" and outcome != "silenced":
            for released in self._held.pop(alert.alert_id, {}).values():
                self._muted.pop(released.alert_id, None)
                if alert_key(released) not in self._seen:
                    self._queue(released.model_copy(update={"inhibited_by": None}), now_ms)
                    self.counters["released_inhibited"] += 1
        return outcome

    def _queue(self, alert: AlertEvent, now_ms: int) -> None:
        self._remember(alert_key(alert))
        group = self._groups.setdefault(alert.model_id, _Group())
        if group.due_ms is None:
            last_ms = group.last_sent_ms
            if last_ms is not None and now_ms < last_ms + self._interval_ms:
                group.due_ms = last_ms + self._interval_ms
            else:
                group.due_ms = now_ms + self._wait_ms
        group.alerts.append(alert)

    def _mute(self, alert_id: str) -> None:
        self._muted[alert_id] = None
        if len(self._muted) > self._memory:
            forgotten, _ = self._muted.popitem(last=False)
            for held in self._held.values():
                held.pop(forgotten, None)

    def due(self, now_ms: int) -> list[Notification]:
        """Return the notifications due at ``now_ms`` (each group at most once), oldest first."""
        ready = sorted(
            (g.due_ms, key)
            for key, g in self._groups.items()
            if g.due_ms is not None and g.due_ms <= now_ms
        )
        notifications = []
        for _, key in ready:
            group = self._groups[key]
            notifications.append(Notification(key, tuple(group.alerts), now_ms))
            group.alerts, group.due_ms, group.last_sent_ms = [], None, now_ms
        # A group quiet for a whole interval starts afresh; forget it (bounded memory).
        for key in [
            k
            for k, g in self._groups.items()
            if g.due_ms is None
            and (g.last_sent_ms is None or g.last_sent_ms + self._interval_ms <= now_ms)
        ]:
            del self._groups[key]
        return notifications

    def next_due_ms(self) -> int | None:
        """Return when the next notification is due, or ``None`` if no alert is queued."""
        return min((g.due_ms for g in self._groups.values() if g.due_ms is not None), default=None)

    def queued(self) -> int:
        """Return how many alerts wait for their group's notification."""
        return sum(len(g.alerts) for g in self._groups.values())

    def _remember(self, key: AlertKey) -> None:
        self._seen[key] = None
        if len(self._seen) > self._memory:
            self._seen.popitem(last=False)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff between delivery attempts: ``initial_ms``, doubling, capped.

    No jitter: a single notifier process has no thundering herd to spread, and a fixed
    schedule is easier to reason about (and to test).

    Example:
        >>> policy = BackoffPolicy(initial_ms=1_000, max_ms=5_000, max_attempts=6)
        >>> [policy.delay_ms(attempt) for attempt in range(1, 6)]
        [1000, 2000, 4000, 5000, 5000]
        >>> policy.gives_up(5), policy.gives_up(6)
        (False, True)
    """

    initial_ms: int
    max_ms: int
    max_attempts: int

    def __post_init__(self) -> None:
        """Validate eagerly: a bad policy must fail at start-up, not at the first failure."""
        if self.initial_ms <= 0 or self.max_ms <= 0:
            raise ValueError("initial_ms and max_ms must be > 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def delay_ms(self, attempt: int) -> int:
        """Return how long to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_ms, self.initial_ms << min(max(attempt - 1, 0), 62))

    def gives_up(self, attempt: int) -> bool:
        """Return whether failed attempt number ``attempt`` was the last one."""
        return attempt >= self.max_attempts


@dataclass(slots=True)
class Delivery:
    """A notification on its way: attempts so far and when to try next."""

    notification: Notification
    next_attempt_ms: int
    attempts: int = 0
    last_error: str = ""
    #: No more webhook attempts: dead-letter it (set by :meth:`DeliveryQueue.failed`).
    gave_up: bool = False


class DeliveryQueue:
    """Deliveries per group, oldest first; only each group's head is attempted.

    Keeping one group's notifications in order means a ``resolved`` never overtakes the
    ``firing`` it resolves while that one is being retried; other groups are not held up.
    """

    def __init__(self, backoff: BackoffPolicy) -> None:
        """Create an empty queue retrying with ``backoff``."""
        self._backoff = backoff
        self._groups: dict[str, deque[Delivery]] = {}

    def push(self, notifications: Iterable[Notification], now_ms: int) -> None:
        """Queue notifications for their first attempt at ``now_ms``."""
        for notification in notifications:
            self._groups.setdefault(notification.group_key, deque()).append(
                Delivery(notification, now_ms)
            )

    def due(self, now_ms: int) -> list[Delivery]:
        """Return the group heads whose next attempt is due, earliest first."""
        heads = [q[0] for q in self._groups.values() if q[0].next_attempt_ms <= now_ms]
        return sorted(heads, key=lambda d: d.next_attempt_ms)

    def next_due_ms(self) -> int | None:
        """Return when the next attempt is due, or ``None`` if the queue is empty."""
        return min((q[0].next_attempt_ms for q in self._groups.values()), default=None)

    def failed(self, delivery: Delivery, error: str, now_ms: int, *, retryable: bool) -> None:
        """Record a failed attempt: schedule the retry, or mark the delivery ``gave_up``."""
        delivery.attempts += 1
        delivery.last_error = error
        if not retryable or self._backoff.gives_up(delivery.attempts):
            delivery.gave_up = True
        else:
            delivery.next_attempt_ms = now_ms + self._backoff.delay_ms(delivery.attempts)

    def postpone(self, delivery: Delivery, until_ms: int) -> None:
        """Try a delivery again at ``until_ms`` without counting an attempt."""
        delivery.next_attempt_ms = until_ms

    def finish(self, delivery: Delivery) -> None:
        """Remove a delivered (or dead-lettered) group head."""
        key = delivery.notification.group_key
        queue = self._groups[key]
        if queue[0] is not delivery:
            raise ValueError("only a group's head delivery can finish")
        queue.popleft()
        if not queue:
            del self._groups[key]

    def __len__(self) -> int:
        """Return the number of deliveries not yet finished."""
        return sum(len(q) for q in self._groups.values())


class OffsetLedger:
    """Consumed records per partition that are not handled yet, and what is safe to commit.

    A record is handled once its alert was dropped, or the notification carrying it was
    delivered or dead-lettered. The committable offset of a partition is its oldest unhandled
    record (or one past the newest record), so a restart re-reads everything not yet handled.
    """

    def __init__(self) -> None:
        """Create an empty ledger."""
        self._pending: dict[int, set[int]] = {}
        self._high: dict[int, int] = {}

    def track(self, partition: int, offset: int) -> None:
        """Record that ``offset`` was consumed and is not handled yet."""
        self._pending.setdefault(partition, set()).add(offset)
        self._high[partition] = max(offset, self._high.get(partition, offset))

    def settle(self, partition: int, offset: int) -> None:
        """Record that ``offset`` is handled (a partition no longer owned is ignored)."""
        self._pending.get(partition, set()).discard(offset)

    def committable(self) -> dict[int, int]:
        """Return ``{partition: offset to commit}``: the next record a restart should read."""
        return {
            p: min(self._pending[p]) if self._pending[p] else high + 1
            for p, high in self._high.items()
        }

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop partitions this consumer no longer owns."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._high.pop(partition, None)
