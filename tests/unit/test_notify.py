"""The webhook sink's pure core: grouping, de-duplication, payloads, backoff, offsets."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from streamwatch.cli_notify import notify
from streamwatch.core.notify import (
    AlertGrouper,
    BackoffPolicy,
    DeliveryQueue,
    Notification,
    OffsetLedger,
    classify_status,
)
from streamwatch.events import AlertEvent, DriftCause, WindowRef
from streamwatch.exceptions import ConfigError
from streamwatch.notifier import check_webhook_url, redacted_url

WAIT_MS = 10_000
INTERVAL_MS = 60_000


def alert(
    model: str = "fraud-detector",
    rule: str = "latency_p95_high",
    state: str = "firing",
    severity: str = "warning",
    incident: int = 0,
    **extra: Any,
) -> AlertEvent:
    return AlertEvent(
        alert_id=f"{model}:{rule}:{incident}",
        fingerprint=f"{model}:{rule}",
        rule=rule,
        severity=severity,
        state=state,
        model_id=model,
        model_version="2.1.0",
        metric="latency_p95_ms",
        value=812.0,
        threshold=500.0,
        window=WindowRef(size_ms=60_000, start_ms=0, end_ms=60_000),
        message=f"{rule}: p95 latency 812 ms > 500 ms",
        emitted_at_ms=0,
        **extra,
    )


def rules(notification: Notification) -> list[tuple[str, str]]:
    return [(a.rule, a.state) for a in notification.alerts]


# --- grouping --------------------------------------------------------------------------------


def test_first_alert_waits_group_wait_and_the_batch_takes_what_arrived_meanwhile() -> None:
    grouper = AlertGrouper(WAIT_MS, INTERVAL_MS)
    grouper.add(alert(rule="a"), now_ms=1_000)
    grouper.add(alert(rule="b"), now_ms=5_000)
    grouper.add(alert(model="churn", rule="c"), now_ms=6_000)
    grouper.add(alert(rule="d"), now_ms=10_999)

    assert grouper.next_due_ms() == 11_000
    assert grouper.due(10_999) == []
    (fraud,) = grouper.due(11_000)
    assert (fraud.group_key, rules(fraud), fraud.created_at_ms) == (
        "fraud-detector",
        [("a", "firing"), ("b", "firing"), ("d", "firing")],
        11_000,
    )
    assert grouper.next_due_ms() == 16_000
    (churn,) = grouper.due(16_000)
    assert (churn.group_key, rules(churn)) == ("churn", [("c", "firing")])
    assert grouper.next_due_ms() is None
    assert grouper.queued() == 0


def test_groups_due_together_come_out_oldest_first() -> None:
    grouper = AlertGrouper(WAIT_MS, INTERVAL_MS)
    grouper.add(alert(model="b"), now_ms=2)
    grouper.add(alert(model="a"), now_ms=3)
    assert [n.group_key for n in grouper.due(100_000)] == ["b", "a"]


def test_after_a_notification_the_group_waits_group_interval() -> None:
    grouper = AlertGrouper(WAIT_MS, INTERVAL_MS)
    grouper.add(alert(rule="a"), now_ms=0)
    assert len(grouper.due(10_000)) == 1

    grouper.add(alert(rule="b"), now_ms=20_000)
    grouper.add(alert(rule="c"), now_ms=69_000)
    assert grouper.next_due_ms() == 70_000  # previous notification + interval
    assert grouper.due(69_999) == []
    (second,) = grouper.due(70_000)
    assert rules(second) == [("b", "firing"), ("c", "firing")]

    # Quiet for a whole interval: the next alert starts a new burst, waiting group_wait.
    grouper.add(alert(rule="e"), now_ms=130_000)
    assert grouper.next_due_ms() == 140_000


def test_a_firing_and_its_resolve_in_one_batch_are_both_kept_in_order() -> None:
    grouper = AlertGrouper(WAIT_MS, INTERVAL_MS)
    assert grouper.add(alert(state="firing"), 0) == "queued"
    assert grouper.add(alert(state="resolved"), 1) == "queued"
    (notification,) = grouper.due(WAIT_MS)
    assert rules(notification) == [("latency_p95_high", "firing"), ("latency_p95_high", "resolved")]


def test_replayed_alert_ids_are_dropped_while_queued_and_after_notification() -> None:
    grouper = AlertGrouper(WAIT_MS, INTERVAL_MS)
    assert grouper.add(alert(), 0) == "queued"
    assert grouper.add(alert(), 1) == "duplicate"
    assert len(grouper.due(WAIT_MS)) == 1
    assert grouper.add(alert(), 100_000) == "duplicate"
    assert grouper.add(alert(incident=1), 100_000) == "queued"  # a new incident of the rule
    assert grouper.next_due_ms() == 110_000
    assert grouper.counters["dropped_duplicate"] == 2
    assert grouper.counters["queued"] == 2


def test_dedup_memory_is_bounded() -> None:
    grouper = AlertGrouper(0, 0, dedup_memory=2)
    for incident in range(3):
        assert grouper.add(alert(incident=incident), 0) == "queued"
    assert grouper.add(alert(incident=2), 0) == "duplicate"
    assert grouper.add(alert(incident=0), 0) == "queued"  # forgotten: oldest of three


def test_silenced_and_inhibited_alerts_are_dropped_and_counted() -> None:
    grouper = AlertGrouper(WAIT_MS, INTERVAL_MS)
    assert grouper.add(alert(silenced_by="s1"), 0) == "silenced"
    assert grouper.add(alert(rule="warn", inhibited_by="crit-1"), 0) == "inhibited"
    assert grouper.next_due_ms() is None
    assert grouper.due(10**12) == []
    assert dict(grouper.counters) == {
        "queued": 0,
        "dropped_silenced": 1,
        "dropped_inhibited": 1,
        "dropped_duplicate": 0,
        "released_inhibited": 0,
    }


def test_an_inhibited_resolve_is_dropped_with_its_firing() -> None:
    grouper = AlertGrouper(0, 0)
    critical = alert(rule="errors", severity="critical")
    grouper.add(critical, 0)
    assert grouper.add(alert(inhibited_by=critical.alert_id), 0) == "inhibited"
    assert grouper.add(alert(state="resolved"), 0) == "inhibited"
    grouper.add(critical.model_copy(update={"state": "resolved"}), 0)
    # Nothing is released: the warning resolved while it was muted.
    assert [rules(n) for n in grouper.due(0)] == [[("errors", "firing"), ("errors", "resolved")]]


def test_a_warning_still_firing_when_its_critical_resolves_is_notified_then() -> None:
    grouper = AlertGrouper(0, 0)
    critical = alert(rule="errors", severity="critical")
    grouper.add(critical, 0)
    grouper.add(alert(inhibited_by=critical.alert_id), 0)
    assert rules(grouper.due(0)[0]) == [("errors", "firing")]
    grouper.add(critical.model_copy(update={"state": "resolved"}), 1)
    (released,) = grouper.due(1)
    assert rules(released) == [("errors", "resolved"), ("latency_p95_high", "firing")]
    assert released.alerts[1].inhibited_by is None
    assert grouper.counters["released_inhibited"] == 1
    # Its own resolve, later, is notified like any other.
    assert grouper.add(alert(state="resolved"), 2) == "queued"


def test_negative_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        AlertGrouper(-1, INTERVAL_MS)


# --- payloads --------------------------------------------------------------------------------


def notification(*alerts: AlertEvent) -> Notification:
    return Notification(alerts[0].model_id, alerts, created_at_ms=123)


def test_json_body_counts_states_and_severities_and_carries_every_alert() -> None:
    alerts = (
        alert(rule="a", severity="critical"),
        alert(rule="b"),
        alert(rule="c", state="resolved"),
    )
    body = notification(*alerts).json_body()
    assert body == {
        "version": 1,
        "group_key": "fraud-detector",
        "status": "firing",
        "created_at_ms": 123,
        "counts": {
            "state": {"firing": 2, "resolved": 1},
            "severity": {"critical": 1, "warning": 2, "info": 0},
        },
        "alerts": [a.model_dump(mode="json") for a in alerts],
    }
    assert notification(alerts[2]).json_body()["status"] == "resolved"


def test_slack_body_has_a_headline_and_one_escaped_line_per_alert() -> None:
    causes = [
        DriftCause(feature="country", drifted=False, psi=0.9),
        DriftCause(feature="amount", drifted=True, psi=0.4321),
    ]
    body = notification(
        alert(rule="error_rate_high", severity="critical", root_cause=causes),
        alert(rule="latency_p95_high"),
        alert(rule="score_drift", state="resolved", severity="info"),
    ).slack_body()
    assert body == {
        "text": "\n".join(
            [
                ":red_circle: 2 firing, 1 resolved — *fraud-detector*",
                ":red_circle: *error_rate_high* `2.1.0` error_rate_high: p95 latency 812 ms &gt;"
                " 500 ms · top drift: amount (PSI 0.43)",
                ":warning: *latency_p95_high* `2.1.0` latency_p95_high: p95 latency 812 ms &gt;"
                " 500 ms",
                ":white_check_mark: *score_drift* `2.1.0` resolved: score_drift: p95 latency"
                " 812 ms &gt; 500 ms",
            ]
        )
    }


def test_slack_headline_of_resolved_only_and_long_batches() -> None:
    resolved = notification(alert(state="resolved")).slack_body()["text"]
    assert resolved.splitlines()[0] == ":white_check_mark: 1 resolved — *fraud-detector*"
    many = notification(*(alert(incident=i) for i in range(25))).slack_body()["text"]
    lines = many.splitlines()
    assert lines[0] == ":warning: 25 firing — *fraud-detector*"
    assert len(lines) == 1 + 20 + 1
    assert lines[-1] == "… and 5 more"


# --- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "reject"),
        (400, "reject"),
        (404, "reject"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (None, "retry"),
    ],
)
def test_classify_status(status: int | None, verdict: str) -> None:
    assert classify_status(status) == verdict


def test_backoff_doubles_from_initial_up_to_the_cap() -> None:
    policy = BackoffPolicy(initial_ms=1_000, max_ms=60_000, max_attempts=6)
    assert [policy.delay_ms(a) for a in range(1, 9)] == [
        1_000,
        2_000,
        4_000,
        8_000,
        16_000,
        32_000,
        60_000,
        60_000,
    ]
    assert policy.delay_ms(10_000) == 60_000
    assert [policy.gives_up(a) for a in range(1, 8)] == [False] * 5 + [True] * 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_ms": 0, "max_ms": 1, "max_attempts": 1}, "must be > 0"),
        ({"initial_ms": 1, "max_ms": 1, "max_attempts": 0}, "max_attempts must be >= 1"),
    ],
)
def test_backoff_rejects_bad_values(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackoffPolicy(**kwargs)


def test_retries_follow_the_backoff_and_do_not_hold_up_other_groups() -> None:
    queue = DeliveryQueue(BackoffPolicy(initial_ms=100, max_ms=1_000, max_attempts=3))
    fraud_1, fraud_2 = notification(alert(rule="a")), notification(alert(rule="b"))
    churn = notification(alert(model="churn"))
    queue.push([fraud_1, fraud_2, churn], now_ms=0)

    first = queue.due(0)
    assert [d.notification for d in first] == [fraud_1, churn]  # heads only
    fraud_head, churn_head = first
    queue.failed(fraud_head, "HTTP 503", now_ms=10, retryable=True)
    queue.finish(churn_head)
    assert queue.due(10) == []  # fraud_2 waits behind its group's head
    assert queue.next_due_ms() == 110
    queue.failed(fraud_head, "HTTP 503", now_ms=110, retryable=True)
    assert queue.next_due_ms() == 310
    queue.failed(fraud_head, "HTTP 503", now_ms=310, retryable=True)
    assert (fraud_head.gave_up, fraud_head.attempts, fraud_head.last_error) == (
        True,
        3,
        "HTTP 503",
    )
    queue.finish(fraud_head)
    assert [d.notification for d in queue.due(310)] == [fraud_2]
    assert len(queue) == 1


def test_a_rejected_delivery_is_given_up_at_once() -> None:
    queue = DeliveryQueue(BackoffPolicy(initial_ms=100, max_ms=1_000, max_attempts=6))
    queue.push([notification(alert())], now_ms=0)
    (delivery,) = queue.due(0)
    queue.failed(delivery, "HTTP 400", now_ms=5, retryable=False)
    assert delivery.gave_up
    assert delivery.attempts == 1
    queue.postpone(delivery, until_ms=1_005)  # e.g. the dead-letter could not be published
    assert queue.due(1_004) == []
    assert queue.due(1_005) == [delivery]


def test_offset_ledger_commits_up_to_the_oldest_unhandled_record() -> None:
    ledger = OffsetLedger()
    for offset in (5, 6, 7, 8):
        ledger.track(0, offset)
    ledger.track(1, 0)
    ledger.settle(0, 5)
    ledger.settle(0, 7)
    ledger.settle(1, 0)
    assert ledger.committable() == {0: 6, 1: 1}
    ledger.settle(0, 6)
    assert ledger.committable() == {0: 8, 1: 1}
    ledger.settle(0, 8)
    assert ledger.committable() == {0: 9, 1: 1}
    ledger.forget([0])
    ledger.settle(0, 9)  # a partition no longer owned is ignored
    assert ledger.committable() == {1: 1}


# --- the webhook URL and the command ---------------------------------------------------------


def test_only_scheme_host_and_port_of_the_webhook_url_are_shown() -> None:
    assert redacted_url("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com"
    assert redacted_url("http://u:pw@127.0.0.1:8080/hook?token=s3cret") == "http://127.0.0.1:8080"
    assert redacted_url("http://[::1]:9/x") == "http://[::1]:9"


@pytest.mark.parametrize("url", ["hooks.example.com/x?token=s3cret", "ftp://h/x", "http:///x"])
def test_a_bad_webhook_url_is_rejected_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError, match="STREAMWATCH_WEBHOOK_URL") as info:
        check_webhook_url(url)
    assert url not in str(info.value)


def test_notify_without_a_webhook_url_says_which_variable_to_set() -> None:
    result = CliRunner().invoke(notify, [], env={"STREAMWATCH_WEBHOOK_URL": None})
    assert result.exit_code == 2
    assert "set STREAMWATCH_WEBHOOK_URL" in result.output
    assert result.output.count("\n") == 1


def test_notify_with_a_bad_url_fails_before_connecting() -> None:
    result = CliRunner().invoke(notify, ["--webhook-url", "hooks.example.com/?token=s3cret"])
    assert result.exit_code == 2
    assert "STREAMWATCH_WEBHOOK_URL must be an http" in result.output
    assert "s3cret" not in result.output
