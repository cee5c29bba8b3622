"""The scripted incident: exactly the expected alert sequence, across a worker restart.

Two models share partition 0. ``steady`` serves normally throughout and keeps event time moving;
``fraud`` has an error spike for three windows, then a flapping latency, then goes silent and
comes back. A worker is stopped and a new one started while the latency alert is firing. The
alert topic must then hold exactly one firing and one resolve per incident, in order, with the
resolve carrying its firing's id, and nothing else: no duplicate, no alert for ``steady``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Pipeline
from tests.integration.test_quality import AlertReader
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

PER_SECOND = 100
RULES = """
rules:
  - name: error_rate_high
    metric: error_rate
    op: ">"
    threshold: 0.01
    severity: critical
    min_events: 50
  - name: latency_p95_high
    metric: latency_p95_ms
    op: ">"
    threshold: 200
    severity: warning
    min_events: 50
    keep_firing_for: 3
absence:
  - name: model_silent
    after: 5s
    forget_after: 1h
    severity: critical
inhibit:
  - name: critical_mutes_warnings
"""
ERROR_SECONDS = {10, 11, 12}
SLOW_SECONDS = {15, 17, 19}  # flapping: slow, fine, slow, fine, slow
SILENT_SECONDS = range(30, 40)


def second(model: str, s: int, start_ms: int) -> bytes:
    """One message: the model's 100 events of second ``s``."""
    events = []
    for k in range(PER_SECOND):
        incident = model == "fraud"
        events.append(
            {
                "request_id": f"{model}-{s}-{k}",
                "model_id": model,
                "model_version": "1",
                "timestamp": (start_ms + s * 1_000 + k * 10) / 1000,
                "latency_ms": 400.0 if incident and s in SLOW_SECONDS else 40.0 + k % 7,
                "status": "error" if incident and s in ERROR_SECONDS and k % 5 == 0 else "ok",
            }
        )
    return orjson.dumps(events)


def produce_seconds(pipeline: Pipeline, seconds: range, start_ms: int) -> int:
    """Produce both models' traffic for ``seconds`` to partition 0; return the event count."""
    producer = pipeline.producer()
    topic = pipeline.settings.topic("inference")
    events = 0
    for s in seconds:
        for model in ("steady", "fraud"):
            if model == "fraud" and s in SILENT_SECONDS:
                continue
            producer.produce(
                topic, key=model.encode(), value=second(model, s, start_ms), partition=0
            )
            events += PER_SECOND
    assert producer.flush(30) == 0
    return events


def test_scripted_incident_gives_exactly_the_expected_alerts_across_a_restart(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {
        "STREAMWATCH_RULES": str(rules),
        "STREAMWATCH_BASELINE_AUTO_WINDOWS": "0",
        # Event time moves only with events here (steady's), never with the wall clock, so the
        # sequence does not depend on how long the restart takes.
        "STREAMWATCH_IDLE_TIMEOUT": "10m",
    }
    first = pipeline.start_worker(**env)
    pipeline.wait_until_consuming()
    start_ms = (time.time_ns() // 1_000_000 // 5_000) * 5_000 - 120_000
    reader = AlertReader(pipeline)

    def alerts() -> list[tuple[str, str, str]]:
        return [(a["model_id"], a["rule"], a["state"]) for a in reader.poll()]

    try:
        produced = produce_seconds(pipeline, range(0, 18), start_ms)
        # Window 15 closes once event time passes 16.2 s: the latency alert is firing now.
        wait_for(
            lambda: ("fraud", "latency_p95_high", "firing") in alerts(),
            60,
            "the latency alert to fire before the restart",
            on_timeout=pipeline.logs,
        )
        wait_for(lambda: pipeline.counter("inference_events") == produced, 30, "seconds 0-17")
        first.stop()
        pipeline.start_worker(**env)

        produced += produce_seconds(pipeline, range(18, 40), start_ms)
        wait_for(
            lambda: ("fraud", "model_silent", "firing") in alerts(),
            90,
            "the silent model to be noticed",
            on_timeout=pipeline.logs,
        )
        produced += produce_seconds(pipeline, range(40, 46), start_ms)
        wait_for(
            lambda: pipeline.counter("inference_events") == produced,
            60,
            "every event to be applied",
            on_timeout=pipeline.logs,
        )
        expected = [
            ("fraud", "error_rate_high", "firing"),
            ("fraud", "error_rate_high", "resolved"),
            ("fraud", "latency_p95_high", "firing"),
            ("fraud", "latency_p95_high", "resolved"),
            ("fraud", "model_silent", "firing"),
            ("fraud", "model_silent", "resolved"),
        ]
        # Alerts are on the topic before the step that emits them is stored, so once every
        # event is applied every alert has been published; read on to catch any extra one.
        wait_for(lambda: len(alerts()) >= len(expected), 30, "all six alert events")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            reader.poll()
        records: list[dict[str, Any]] = reader.records
    finally:
        reader.close()

    assert [(a["model_id"], a["rule"], a["state"]) for a in records] == expected
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_rule.setdefault(record["rule"], []).append(record)
    for rule, (fired, resolved) in by_rule.items():
        assert fired["alert_id"] == resolved["alert_id"], rule
    errors, latency = by_rule["error_rate_high"], by_rule["latency_p95_high"]
    # The spike: first window 10 s, resolved by the first clear window (13 s).
    assert errors[0]["window"]["start_ms"] == start_ms + 10_000
    assert errors[1]["window"]["start_ms"] == start_ms + 13_000
    # Flapping (15, 17, 19 slow) is one incident: it resolves after 3 clear windows (20-22).
    assert latency[0]["window"]["start_ms"] == start_ms + 15_000
    assert latency[1]["window"]["start_ms"] == start_ms + 22_000
    # Nothing fired while the critical was firing, so nothing was inhibited.
    assert [(r["state"], r["inhibited_by"]) for r in records if r.get("inhibited_by")] == [], [
        (r["rule"], r["alert_id"]) for r in records
    ]
