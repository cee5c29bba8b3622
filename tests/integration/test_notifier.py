"""The webhook sink against the real broker and a real local HTTP server."""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.embedded import EmbeddedBroker
from streamwatch.events import AlertEvent, DeadLetterEvent, WindowRef
from streamwatch.notifier import Notifier
from streamwatch.settings import Settings, load_settings
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

TIMEOUT_S = 60  # includes the embedded broker forming the consumer group


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    raw: bytes
    at_s: float
    status: int


@dataclass
class Hook:
    """A webhook that records every request and answers from a script, then ``default``."""

    port: int = 0
    script: deque[int] = field(default_factory=deque)
    default: int = 200
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, raw: bytes) -> int:
        with self.lock:
            status = self.script.popleft() if self.script else self.default
            self.requests.append(Request(path, orjson.loads(raw), raw, time.monotonic(), status))
            return status

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.requests if 200 <= r.status < 300]


class _Handler(BaseHTTPRequestHandler):
    server: _HookServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.server.hook.answer(self.path, raw))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


class _HookServer(HTTPServer):
    hook: Hook


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = _HookServer(("127.0.0.1", 0), _Handler)
    server.hook = Hook(port=server.server_address[1])
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="hook", daemon=True
    )
    thread.start()
    yield server.hook
    server.shutdown()
    server.server_close()
    thread.join(10)


def notify_settings(broker: EmbeddedBroker, hook_url: str, **overrides: Any) -> Settings:
    name = f"n{uuid.uuid4().hex[:10]}"
    fields = {
        "kafka_bootstrap": broker.bootstrap,
        "topic_prefix": name,
        "group_id": name,
        "partitions": 2,
        "webhook_url": hook_url,
        "webhook_group_wait_ms": 1_000,
        "webhook_group_interval_ms": 60_000,
        "webhook_timeout_ms": 5_000,
        "webhook_backoff_initial_ms": 100,
        "webhook_backoff_max_ms": 400,
        **overrides,
    }
    settings = load_settings(environ={}, **fields)
    ensure_topics(settings)
    return settings


@contextmanager
def running(settings: Settings) -> Iterator[tuple[Notifier, threading.Thread]]:
    notifier = Notifier(settings)
    stop = threading.Event()
    # An exception in the thread fails the test (pytest's unhandled-thread-exception warning
    # is an error under filterwarnings=error).
    thread = threading.Thread(target=notifier.run, args=(stop,), name="notifier")
    thread.start()
    try:
        yield notifier, thread
    finally:
        stop.set()
        thread.join(30)
        notifier.close()
    assert not thread.is_alive()


def alert(model: str, rule: str, **extra: Any) -> AlertEvent:
    return AlertEvent(
        alert_id=f"{model}:{rule}:1",
        fingerprint=f"{model}:{rule}",
        rule=rule,
        severity="warning",
        state="firing",
        model_id=model,
        model_version="2.1.0",
        metric="error_rate",
        value=0.2,
        threshold=0.05,
        window=WindowRef(size_ms=10_000, start_ms=0, end_ms=10_000),
        message=f"{rule} on {model}",
        emitted_at_ms=0,
        **extra,
    )


def publish(settings: Settings, alerts: list[AlertEvent]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    for item in alerts:
        producer.produce(
            settings.topic("alerts"),
            key=item.model_id.encode(),  # as the worker keys them
            value=orjson.dumps(item.model_dump(mode="json")),
        )
    assert producer.flush(30) == 0


def read_topic(settings: Settings, kind: str, expected: int) -> list[bytes]:
    topic = settings.topic(kind)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "test-reader"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.topics[topic].partitions]
        )
        records: list[bytes] = []

        def poll() -> bool:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                records.append(message.value())
            return len(records) >= expected

        wait_for(poll, TIMEOUT_S, f"{expected} records on {topic}", interval_s=0)
        return records
    finally:
        consumer.close()


def settled(notifier: Notifier, consumed: int, **counters: int) -> bool:
    """Every record consumed and handled, offsets committed, and the counters reached."""
    now = notifier.counters
    return (
        now["consumed"] == consumed
        and notifier.pending_alerts() == 0
        and sum(notifier.committed().values()) == consumed  # fresh topics start at offset 0
        and all(now[name] == value for name, value in counters.items())
    )


def test_a_burst_per_model_becomes_one_post_per_model_and_silenced_alerts_are_skipped(
    kafka_broker: EmbeddedBroker, hook: Hook
) -> None:
    settings = notify_settings(kafka_broker, hook.url())
    burst = [alert("fraud-detector", rule) for rule in ("error_rate", "latency", "drift")]
    publish(
        settings,
        [*burst, alert("churn", "error_rate"), alert("fraud-detector", "muted", silenced_by="s1")],
    )
    with running(settings) as (notifier, _):
        wait_for(
            lambda: settled(notifier, 5, delivered=2, dropped_silenced=1),
            TIMEOUT_S,
            "5 records handled",
            on_timeout=lambda: str(notifier.counters),
        )
    bodies = {b["group_key"]: b for b in hook.delivered()}
    assert len(hook.requests) == 2
    assert [a["rule"] for a in bodies["fraud-detector"]["alerts"]] == [
        "error_rate",
        "latency",
        "drift",
    ]
    assert bodies["fraud-detector"]["counts"]["state"] == {"firing": 3, "resolved": 0}
    assert [a["rule"] for a in bodies["churn"]["alerts"]] == ["error_rate"]
    assert hook.requests[0].path == "/hook"


def test_failed_posts_are_retried_with_backoff_then_delivered_once(
    kafka_broker: EmbeddedBroker, hook: Hook
) -> None:
    hook.script.extend([503, 503])
    settings = notify_settings(kafka_broker, hook.url(), webhook_format="slack")
    publish(settings, [alert("fraud-detector", "error_rate")])
    with running(settings) as (notifier, _):
        wait_for(
            lambda: settled(notifier, 1, delivered=1, retried=2),
            TIMEOUT_S,
            "the alert delivered",
            on_timeout=lambda: str(notifier.counters),
        )
    assert [r.status for r in hook.requests] == [503, 503, 200]
    assert len({r.raw for r in hook.requests}) == 1  # the same notification each time
    assert hook.requests[0].body["text"].startswith(":warning: 1 firing — *fraud-detector*")
    first, second, third = (r.at_s for r in hook.requests)
    assert second - first >= 0.1  # backoff_initial
    assert third - second >= 0.2  # doubled
    assert notifier.counters["dead_lettered"] == 0


def test_a_webhook_that_always_fails_dead_letters_and_the_notifier_keeps_going(
    kafka_broker: EmbeddedBroker, hook: Hook
) -> None:
    hook.default = 500
    settings = notify_settings(kafka_broker, hook.url(), webhook_max_attempts=3)
    publish(settings, [alert("fraud-detector", "error_rate")])
    with running(settings) as (notifier, thread):
        (raw,) = read_topic(settings, "deadletter", expected=1)
        wait_for(lambda: settled(notifier, 1, dead_lettered=1), TIMEOUT_S, "a dead-letter")
        assert thread.is_alive()

        hook.default = 200
        publish(settings, [alert("churn", "latency")])
        wait_for(lambda: settled(notifier, 2, delivered=1), TIMEOUT_S, "the next alert")

    record = DeadLetterEvent.model_validate_json(raw)
    assert record.reason == "webhook_failed"
    assert "after 3 attempt(s): HTTP 500" in record.detail
    assert record.source.topic == settings.topic("alerts")
    assert base64.b64decode(record.original_b64) == hook.requests[0].raw
    assert [r.status for r in hook.requests] == [500, 500, 500, 200]


def test_the_webhook_token_never_appears_in_logs_or_dead_letters(
    kafka_broker: EmbeddedBroker, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = hook.url("/hook?token=s3cret")
    hook.script.extend([503, 400])  # a retry, then a permanent failure: dead-lettered
    settings = notify_settings(kafka_broker, url)
    publish(settings, [alert("fraud-detector", "error_rate")])
    with running(settings) as (notifier, _):
        (raw,) = read_topic(settings, "deadletter", expected=1)
        publish(settings, [alert("churn", "latency")])
        wait_for(lambda: settled(notifier, 2, delivered=1, dead_lettered=1), TIMEOUT_S, "both")

    assert [(r.path, r.status) for r in hook.requests] == [
        ("/hook?token=s3cret", 503),
        ("/hook?token=s3cret", 400),
        ("/hook?token=s3cret", 200),
    ]
    assert "(not retryable): HTTP 400" in DeadLetterEvent.model_validate_json(raw).detail
    assert f"http://127.0.0.1:{hook.port}" in caplog.text  # the logs do name the webhook...
    assert "s3cret" not in caplog.text  # ...but never its token
    assert "token" not in caplog.text
    assert b"s3cret" not in raw


def test_undelivered_alerts_are_not_committed_and_a_restart_delivers_them(
    kafka_broker: EmbeddedBroker, hook: Hook
) -> None:
    hook.default = 503
    settings = notify_settings(kafka_broker, hook.url(), webhook_max_attempts=1_000)
    publish(settings, [alert("fraud-detector", "error_rate"), alert("fraud-detector", "x")])
    with running(settings) as (notifier, _):
        wait_for(lambda: len(hook.requests) >= 2, TIMEOUT_S, "a retried POST")
        assert notifier.counters["consumed"] == 2
        assert sum(notifier.committed().values()) == 0

    hook.default = 200
    with running(settings) as (notifier, _):
        wait_for(lambda: settled(notifier, 2, delivered=1), TIMEOUT_S, "the re-read alerts")
    (body,) = hook.delivered()
    assert [a["rule"] for a in body["alerts"]] == ["error_rate", "x"]
