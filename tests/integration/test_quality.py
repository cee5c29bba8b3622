"""End to end: baseline in Redis, drift and delayed labels through a real worker."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest
import redis
from click.testing import CliRunner
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streamwatch.adapters.baseline_store import BaselineStore
from streamwatch.cli import main
from streamwatch.core.baseline import profile_from_events
from streamwatch.events import InferenceEvent
from tests.integration.conftest import Pipeline
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

PER_SECOND = 300


def inference(i: int, ts_ms: int, rng: np.random.Generator, shift: float) -> dict[str, Any]:
    return {
        "request_id": f"r{i}",
        "model_id": "fraud",
        "model_version": "2.1.0",
        "timestamp": ts_ms / 1000,
        "latency_ms": float(rng.lognormal(3.5, 0.3)),
        "prediction": int(rng.random() < 0.2),
        "score": float(rng.beta(2, 5)),
        "features": {
            "amount": float(rng.normal(100 + 15 * shift, 15)),
            "age": float(rng.normal(40, 10)),
            "country": str(rng.choice(["de", "fr", "it"])),
        },
    }


def reference(rows: int) -> list[tuple[InferenceEvent, object]]:
    rng = np.random.default_rng(3)
    pairs = []
    for i in range(rows):
        body = inference(i, 1_700_000_000_000 + i, rng, 0.0)
        label = body["prediction"] if rng.random() < 0.95 else 1 - body["prediction"]
        pairs.append((InferenceEvent.model_validate(body), label))
    return pairs


class AlertReader:
    """Reads the alert topic from the beginning, accumulating records."""

    def __init__(self, pipeline: Pipeline) -> None:
        topic = pipeline.settings.topic("alerts")
        self.consumer = Consumer(
            {"bootstrap.servers": pipeline.settings.kafka_bootstrap, "group.id": "test-alerts"}
        )
        meta = self.consumer.list_topics(topic, timeout=10)
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.topics[topic].partitions]
        )
        self.records: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        message = self.consumer.poll(0.2)
        while message is not None:
            if not message.error():
                self.records.append(orjson.loads(message.value()))
            message = self.consumer.poll(0)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def test_drift_and_delayed_labels_raise_alerts_that_name_the_drifting_feature(
    pipeline: Pipeline, redis_client: redis.Redis
) -> None:
    profile = profile_from_events(
        "fraud", "2.1.0", reference(20_000), source="test reference", created_at_ms=0
    )
    version = BaselineStore(redis_client).save(profile)
    assert version == 1
    pipeline.start_worker(
        STREAMWATCH_LABEL_WAIT="1s",
        STREAMWATCH_BASELINE_AUTO_WINDOWS="0",
    )
    pipeline.wait_until_consuming()

    rng = np.random.default_rng(5)
    start_ms = (time.time_ns() // 1_000_000 // 5_000) * 5_000 - 60_000
    events, labels = [], []
    for second in range(10):
        drifting = second >= 5
        for k in range(PER_SECOND):
            i = second * PER_SECOND + k
            ts = start_ms + second * 1_000 + k * (1_000 // PER_SECOND)
            body = inference(i, ts, rng, 1.0 if drifting else 0.0)
            events.append(body)
            correct = rng.random() < (0.6 if drifting else 0.95)
            truth = body["prediction"] if correct else 1 - body["prediction"]
            # Labels arrive 1.5 s after their prediction: its window has closed by then.
            labels.append(
                {
                    "request_id": body["request_id"],
                    "model_id": "fraud",
                    "label": truth,
                    "timestamp": (ts + 1_500) / 1000,
                }
            )
    batches = [orjson.dumps(events[i : i + 150]) for i in range(0, len(events), 150)]
    pipeline.produce("inference", batches, key=b"fraud")
    pipeline.produce(
        "feedback",
        [orjson.dumps(labels[i : i + 150]) for i in range(0, len(labels), 150)],
        key=b"fraud",
    )

    reader = AlertReader(pipeline)
    try:

        def accuracy_alert() -> dict[str, Any] | None:
            return next(
                (
                    a
                    for a in reader.poll()
                    if a["rule"] == "accuracy_low" and a["state"] == "firing"
                ),
                None,
            )

        wait_for(
            lambda: accuracy_alert() is not None,
            60,
            "an accuracy alert from the delayed labels",
            on_timeout=pipeline.logs,
        )
        alert = accuracy_alert()
        assert alert is not None
        # The accuracy alert is on a window of the drifting period, and names `amount` first.
        assert alert["window"]["start_ms"] >= start_ms + 5_000
        assert alert["value"] < 0.9
        assert alert["root_cause"][0]["feature"] == "amount"
        assert alert["root_cause"][0]["drifted"] is True
        assert not any(c["drifted"] for c in alert["root_cause"][1:])

        def fired(rule: str) -> list[dict[str, Any]]:
            return [a for a in reader.poll() if a["rule"] == rule and a["state"] == "firing"]

        wait_for(lambda: fired("feature_drift"), 30, "a window drift alert")
        drift_alert = fired("feature_drift")[0]
        assert drift_alert["window"]["start_ms"] == start_ms + 5_000
        wait_for(lambda: fired("feature_mean_shift"), 30, "an online detector alert")
        detections = fired("feature_mean_shift")
        assert {a["detection"]["series"] for a in detections} == {"amount"}
        detection = detections[0]["detection"]
        assert detection["detector"] == "adwin"
        assert detection["before_mean"] == pytest.approx(100, abs=3)
        assert detection["after_mean"] > 105
        assert start_ms + 5_000 <= detection["changed_at_ms"] < start_ms + 6_000
    finally:
        reader.close()

    # status --json shows the drift and the labels of a drifting window.
    status = CliRunner().invoke(
        main,
        ["status", "--model", "fraud", "--window", "1s", "--limit", "50", "--json"],
        env=pipeline.env,
    )
    assert status.exit_code == 0, status.output
    rows = {r["start_ms"]: r for r in orjson.loads(status.output)}
    drifting = rows[start_ms + 6_000]
    assert drifting["baseline"]["version"] == 1
    assert drifting["drift"][0]["feature"] == "amount"
    assert drifting["drift"][0]["drifted"] is True
    # What the worker judged at close is stored with the window and agrees.
    assert drifting["drift_at_close"][0]["feature"] == "amount"
    assert drifting["drift_at_close"][0]["drifted"] is True
    assert drifting["drift_at_close"][0]["psi"] == pytest.approx(drifting["drift"][0]["psi"])
    assert drifting["labels"]["labelled_count"] == PER_SECOND
    assert drifting["metrics"]["accuracy"] < 0.75
    steady = rows[start_ms + 2_000]
    assert not any(f["drifted"] for f in steady["drift"])
    assert steady["metrics"]["accuracy"] > 0.9


def test_detector_state_survives_a_worker_restart(
    pipeline: Pipeline, redis_client: redis.Redis
) -> None:
    """A detector that forgot the stable data before a restart could not see the change after."""
    profile = profile_from_events(
        "fraud", "2.1.0", reference(20_000), source="test reference", created_at_ms=0
    )
    BaselineStore(redis_client).save(profile)
    first = pipeline.start_worker(STREAMWATCH_BASELINE_AUTO_WINDOWS="0")
    pipeline.wait_until_consuming()
    rng = np.random.default_rng(8)
    start_ms = (time.time_ns() // 1_000_000 // 5_000) * 5_000 - 60_000

    def seconds(first_second: int, count: int, shift: float) -> list[bytes]:
        events = [
            inference(s * PER_SECOND + k, start_ms + s * 1_000 + k * 3, rng, shift)
            for s in range(first_second, first_second + count)
            for k in range(PER_SECOND)
        ]
        return [orjson.dumps(events[i : i + 150]) for i in range(0, len(events), 150)]

    pipeline.produce("inference", seconds(0, 5, 0.0), key=b"fraud")
    wait_for(
        lambda: pipeline.counter("inference_events") == 5 * PER_SECOND,
        30,
        "the stable period to be applied",
        on_timeout=pipeline.logs,
    )
    first.stop()
    pipeline.start_worker(STREAMWATCH_BASELINE_AUTO_WINDOWS="0")
    pipeline.produce("inference", seconds(5, 5, 1.0), key=b"fraud")
    reader = AlertReader(pipeline)
    try:

        def shifts() -> list[dict[str, Any]]:
            return [a for a in reader.poll() if a["rule"] == "feature_mean_shift"]

        wait_for(
            lambda: shifts(), 60, "a detector alert after the restart", on_timeout=pipeline.logs
        )
        (alert,) = shifts()
        assert alert["detection"]["series"] == "amount"
        assert alert["detection"]["changed_at_ms"] >= start_ms + 5_000
    finally:
        reader.close()
    assert pipeline.counter("inference_events") == 10 * PER_SECOND
