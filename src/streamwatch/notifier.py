"""The webhook sink's edge: consume the alert topic, POST grouped notifications, commit offsets.

:class:`Notifier` wires a confluent-kafka consumer (its own group, ``{group_id}-notify``) and
producer to the pure :mod:`streamwatch.core.notify`: records become :class:`AlertGrouper`
input, due notifications go through a :class:`DeliveryQueue` to the webhook, and what cannot be
delivered is published on the dead-letter topic. Offsets are committed only up to records that
are handled (dropped, delivered or dead-lettered), so delivery is at least once: a restart
re-sends what was in flight, never loses it.

One thread does everything. Retries are scheduled, never slept: the consumer is polled until
the next notification or retry is due. A POST blocks for at most ``webhook_timeout_ms``.

The webhook URL may embed a token: only :func:`redacted_url` (scheme, host, port) is logged or
written to a dead-letter.
"""

from __future__ import annotations

import base64
import http.client
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any, Protocol

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from pydantic import ValidationError

from streamwatch.core.decode import describe_validation_error
from streamwatch.core.notify import (
    AlertGrouper,
    AlertKey,
    BackoffPolicy,
    Delivery,
    DeliveryQueue,
    Notification,
    OffsetLedger,
    alert_key,
    classify_status,
)
from streamwatch.core.processor import MAX_DEADLETTER_ORIGINAL_BYTES
from streamwatch.events import AlertEvent, DeadLetterEvent, DeadLetterSource
from streamwatch.exceptions import ConfigError
from streamwatch.settings import Settings

log = logging.getLogger(__name__)

#: Longest a poll blocks, so a set ``stop`` event is noticed promptly.
MAX_POLL_WAIT_MS = 500
CONSUME_BATCH = 500
#: A dead-letter is acknowledged by the broker within this long, or retried later.
DEADLETTER_TIMEOUT_MS = 10_000
USER_AGENT = "streamwatch-notify/1"
COUNTER_NAMES = ("consumed", "undecodable", "delivered", "retried", "dead_lettered")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def redacted_url(url: str) -> str:
    """Return what may be logged of a webhook URL: scheme, host and port, never path or query.

    >>> redacted_url("https://user:pw@hooks.example.com:8443/hook-path/secret-part?token=s3cret")
    'https://hooks.example.com:8443'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")


def check_webhook_url(url: str) -> None:
    """Raise :class:`ConfigError` unless ``url`` is an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "STREAMWATCH_WEBHOOK_URL must be an http:// or https:// URL with a host"
            " (the value is not shown: it may carry a token)"
        )


@dataclass(frozen=True, slots=True)
class PostResult:
    """A webhook's answer: the HTTP status (``None``: no response) and an error to report."""

    status: int | None
    error: str = ""


class Webhook(Protocol):
    """Where notifications are POSTed: the single I/O boundary of a delivery attempt."""

    def post(self, body: bytes) -> PostResult:
        """POST a JSON body; never raise for network or HTTP errors, report them."""
        ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Do not follow redirects: urllib would turn the POST into a GET and call that success."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


class UrllibWebhook:
    """POST JSON with :mod:`urllib.request`; a 3xx is reported, not followed."""

    def __init__(self, url: str, timeout_ms: int) -> None:
        """Post to ``url`` (may embed a token), waiting at most ``timeout_ms`` for an answer."""
        self._url = url
        self._safe_url = redacted_url(url)
        self._timeout_s = timeout_ms / 1000
        self._opener = urllib.request.build_opener(_NoRedirect())

    def post(self, body: bytes) -> PostResult:
        """POST ``body``; see :class:`Webhook`."""
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                response.read()
                return PostResult(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return PostResult(exc.code, f"HTTP {exc.code} {exc.reason}")
        except (OSError, http.client.HTTPException) as exc:  # URLError and timeouts are OSError
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            # Defence in depth: exception texts do not carry the URL today; make sure.
            text = f"{type(reason).__name__}: {reason}".replace(self._url, self._safe_url)
            return PostResult(None, text)


class Notifier:
    """Consume alerts, group them per model, POST the notifications; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        *,
        webhook: Webhook | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        """Create the consumer and producer (nothing connects until :meth:`run`).

        Args:
            settings: Kafka, topic and ``webhook_*`` settings.
            webhook: Where to POST; default :class:`UrllibWebhook` on ``settings.webhook_url``.
            clock_ms: Wall clock in integer milliseconds.

        Raises:
            ConfigError: If no usable webhook URL is configured.
        """
        if settings.webhook_url is None:
            raise ConfigError("no webhook to notify: set STREAMWATCH_WEBHOOK_URL")
        url = settings.webhook_url.get_secret_value()
        check_webhook_url(url)
        self._safe_url = redacted_url(url)
        self._webhook = webhook or UrllibWebhook(url, settings.webhook_timeout_ms)
        self._format = settings.webhook_format
        self._clock_ms = clock_ms
        self._topic = settings.topic("alerts")
        self._deadletter_topic = settings.topic("deadletter")
        self._group_id = f"{settings.group_id}-notify"
        self._backoff = BackoffPolicy(
            settings.webhook_backoff_initial_ms,
            settings.webhook_backoff_max_ms,
            settings.webhook_max_attempts,
        )
        self._grouper = AlertGrouper(
            settings.webhook_group_wait_ms, settings.webhook_group_interval_ms
        )
        self._queue = DeliveryQueue(self._backoff)
        self._ledger = OffsetLedger()
        # Queued alert -> the records carrying it (replays of a pending alert join the list).
        self._positions: dict[AlertKey, list[tuple[int, int]]] = {}
        self._committed: dict[int, int] = {}
        self._counters: Counter[str] = Counter(dict.fromkeys(COUNTER_NAMES, 0))
        kafka = {"bootstrap.servers": settings.kafka_bootstrap, **settings.librdkafka_security()}
        self._consumer = Consumer(
            {
                **kafka,
                "group.id": self._group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # The embedded test broker forms groups slowly with librdkafka's defaults.
                "session.timeout.ms": 6_000,
                "heartbeat.interval.ms": 1_000,
            }
        )
        self._producer = Producer({**kafka, "message.timeout.ms": DEADLETTER_TIMEOUT_MS})
        self._closed = False

    @property
    def counters(self) -> dict[str, int]:
        """Return a snapshot of the counters (safe to call from another thread)."""
        return {**self._counters, **self._grouper.counters}

    def pending_alerts(self) -> int:
        """Return how many alerts wait for a notification or its delivery."""
        return len(self._positions)

    def committed(self) -> dict[int, int]:
        """Return the offsets committed so far, ``{partition: next offset}``."""
        return dict(self._committed)

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume and notify until ``stop`` is set (forever without one)."""
        stop = stop or threading.Event()
        self._consumer.subscribe(
            [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._lost
        )
        log.info(
            "notify: %s -> %s (%s), consumer group %s",
            self._topic,
            self._safe_url,
            self._format,
            self._group_id,
        )
        while not stop.is_set():
            self.step()

    def step(self) -> None:
        """Send what is due, commit what is handled, then poll until something else is due."""
        now_ms = self._clock_ms()
        self._queue.push(self._grouper.due(now_ms), now_ms)
        for delivery in self._queue.due(now_ms):
            self._deliver(delivery)
        self._commit()
        messages = self._consumer.consume(CONSUME_BATCH, self._poll_wait_ms() / 1000)
        now_ms = self._clock_ms()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("notify: consumer error: %s", error)
                continue
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None:  # always set on a record
                self._handle(partition, offset, message.value(), now_ms)

    def close(self) -> None:
        """Commit what is handled and leave the group; pending alerts are re-read on restart."""
        if self._closed:
            return
        self._closed = True
        try:
            self._commit()
        finally:
            self._consumer.close()
            self._producer.flush(DEADLETTER_TIMEOUT_MS / 1000)

    # --- records in ---------------------------------------------------------------------

    def _handle(self, partition: int, offset: int, value: bytes | None, now_ms: int) -> None:
        self._ledger.track(partition, offset)
        try:
            alert = AlertEvent.model_validate_json(value or b"")
        except ValidationError as exc:
            self._counters["undecodable"] += 1
            log.warning(
                "notify: skipping undecodable record %s[%d]@%d: %s",
                self._topic,
                partition,
                offset,
                describe_validation_error(exc),
            )
            self._ledger.settle(partition, offset)
            self._counters["consumed"] += 1
            return
        outcome = self._grouper.add(alert, now_ms)
        key = alert_key(alert)
        if outcome == "queued" or key in self._positions:
            # A replay of a still-pending alert is handled when the original is.
            self._positions.setdefault(key, []).append((partition, offset))
        else:
            self._ledger.settle(partition, offset)
        # Counted last, so a reader seeing the count also sees the alert queued.
        self._counters["consumed"] += 1

    # --- notifications out --------------------------------------------------------------

    def _deliver(self, delivery: Delivery) -> None:
        notification = delivery.notification
        if not delivery.gave_up:
            result = self._webhook.post(self._body(notification))
            verdict = classify_status(result.status)
            if verdict == "delivered":
                self._finish(delivery, "delivered")
                log.info(
                    "notify: delivered %d alert(s) for %s to %s",
                    len(notification.alerts),
                    notification.group_key,
                    self._safe_url,
                )
                return
            now_ms = self._clock_ms()
            self._queue.failed(delivery, result.error, now_ms, retryable=verdict == "retry")
            if not delivery.gave_up:
                self._counters["retried"] += 1
                log.warning(
                    "notify: POST to %s failed (%s), attempt %d of %d; retrying in %d ms",
                    self._safe_url,
                    result.error,
                    delivery.attempts,
                    self._backoff.max_attempts,
                    delivery.next_attempt_ms - now_ms,
                )
                return
        self._dead_letter(delivery)

    def _dead_letter(self, delivery: Delivery) -> None:
        notification = delivery.notification
        body = self._body(notification)
        partition, offset = self._positions[alert_key(notification.alerts[0])][0]
        exhausted = delivery.attempts >= self._backoff.max_attempts
        record = DeadLetterEvent(
            reason="webhook_failed",
            detail=(
                f"POST of {len(notification.alerts)} alert(s) for {notification.group_key} to"
                f" {self._safe_url} failed after {delivery.attempts} attempt(s)"
                f"{'' if exhausted else ' (not retryable)'}: {delivery.last_error};"
                " original_b64 is the webhook body"
            ),
            source=DeadLetterSource(topic=self._topic, partition=partition, offset=offset),
            original_b64=base64.b64encode(body[:MAX_DEADLETTER_ORIGINAL_BYTES]).decode("ascii"),
            original_truncated=len(body) > MAX_DEADLETTER_ORIGINAL_BYTES,
            received_at_ms=self._clock_ms(),
        )
        if self._publish(notification.group_key, record):
            self._finish(delivery, "dead_lettered")
            log.error("notify: dead-lettered on %s: %s", self._deadletter_topic, record.detail)
        else:
            # Offsets stay uncommitted; try again later rather than lose the notification.
            self._queue.postpone(delivery, self._clock_ms() + self._backoff.max_ms)
            log.error(
                "notify: could not publish a dead-letter to %s; retrying in %d ms",
                self._deadletter_topic,
                self._backoff.max_ms,
            )

    def _publish(self, key: str, record: DeadLetterEvent) -> bool:
        errors: list[Any] = []

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(error)

        self._producer.produce(
            self._deadletter_topic,
            key=key.encode(),
            value=orjson.dumps(record.model_dump(mode="json")),
            on_delivery=on_delivery,
        )
        unsent = self._producer.flush(DEADLETTER_TIMEOUT_MS / 1000)
        return unsent == 0 and not errors

    def _finish(self, delivery: Delivery, counter: str) -> None:
        self._queue.finish(delivery)
        self._counters[counter] += 1
        for alert in delivery.notification.alerts:
            for partition, offset in self._positions.pop(alert_key(alert), []):
                self._ledger.settle(partition, offset)

    def _body(self, notification: Notification) -> bytes:
        if self._format == "slack":
            return orjson.dumps(notification.slack_body())
        return orjson.dumps(notification.json_body())

    # --- offsets ------------------------------------------------------------------------

    def _poll_wait_ms(self) -> int:
        due = [t for t in (self._grouper.next_due_ms(), self._queue.next_due_ms()) if t is not None]
        if not due:
            return MAX_POLL_WAIT_MS
        return max(0, min(MAX_POLL_WAIT_MS, min(due) - self._clock_ms()))

    def _commit(self, partitions: set[int] | None = None) -> None:
        changed = {
            p: o
            for p, o in self._ledger.committable().items()
            if self._committed.get(p) != o and (partitions is None or p in partitions)
        }
        if not changed:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(self._topic, p, o) for p, o in changed.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            log.warning("notify: offset commit failed, will retry: %s", exc)
            return
        self._committed.update(changed)

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        log.info("notify: assigned %s", sorted(p.partition for p in partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        revoked = {p.partition for p in partitions}
        self._commit(revoked)
        self._lost(_consumer, partitions)

    def _lost(self, _consumer: Any, partitions: list[Any]) -> None:
        revoked = {p.partition for p in partitions}
        # Alerts of these partitions still in flight are still sent; the new owner re-reads
        # from the committed offset, so they may be sent twice (at least once, never lost).
        self._ledger.forget(revoked)
        for partition in revoked:
            self._committed.pop(partition, None)
