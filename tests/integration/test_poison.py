"""Poison messages of every kind against a real worker, interleaved with good events.

test_pipeline.py covers invalid JSON, non-UTF-8 bytes and invalid events (a negative latency,
missing fields in a batch). This covers the rest: each lands on the dead-letter topic with its
reason, the good events next to them are all counted in the Redis windows, and the per-reason
counters in the partition checkpoints match.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from tests.integration.conftest import Pipeline
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

MODEL, VERSION = "poison", "1"
SIZES_MS = (1_000, 5_000)
BIG = "9" * 400


def good_event(i: int, ts_ms: int) -> dict[str, Any]:
    return {
        "request_id": f"g{i}",
        "model_id": MODEL,
        "model_version": VERSION,
        "timestamp": ts_ms / 1000,
        "latency_ms": 10.0 + i % 7,
        "score": 0.5,
        "prediction": i % 2,
        "features": {"amount": float(i), "country": "de"},
    }


def text(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def test_every_kind_of_poison_is_dead_lettered_and_good_events_are_kept(
    pipeline: Pipeline,
) -> None:
    pipeline.start_worker()
    pipeline.wait_until_consuming()
    start_ms = (time.time_ns() // 1_000_000 // 5_000) * 5_000 - 60_000
    good = [good_event(i, start_ms + i * 40) for i in range(200)]  # 8 s of event time
    g = [text(e) for e in good]
    # Poisoned variants are built from other events: every one of `good` must be kept.
    other = text(good_event(905, start_ms))
    bad = [text(good_event(910 + i, start_ms + 2_000)) for i in range(5)]

    # Per topic, (message, [(reason, batch_index), ...]) in production order. Good events
    # travel in clean batches and inside the mixed ones.
    inference: list[tuple[bytes, list[tuple[str, int | None]]]] = [
        (orjson.dumps(good[0:41]), []),
        (b"", [("empty_message", None)]),
        (b"null", [("invalid_envelope", None)]),
        (b"42", [("invalid_envelope", None)]),
        (b"[" * 5_000 + b"]" * 5_000, [("too_deeply_nested", None)]),
        # A whole message is lost when its structure is: no good event travels in these.
        (f'[{other}, {{"a": {"[" * 100}{"]" * 100}}}]'.encode(), [("too_deeply_nested", None)]),
        (
            f'[{g[41]}, {bad[0][:-1]}, "segment": NaN}}, {g[42]}, {g[43]}]'.encode(),
            [("non_finite_number", 1)],
        ),
        (
            f'[{g[44]}, {bad[1][:-1]}, "stages_ms": {{"x": Infinity}}}}, {g[45]}]'.encode(),
            [("non_finite_number", 1)],
        ),
        (f'[{bad[2][:-1]},"latency_ms":-1}}, {g[46]}, {g[47]}]'.encode(), [("duplicate_key", 0)]),
        (
            f'[{g[48]}, {bad[3][:-1]}, "resources": {{"cpu_pct": {BIG}}}}}, {g[49]}]'.encode(),
            [("number_out_of_range", 1)],
        ),
        (
            orjson.dumps([good[50], dict(good_event(900, start_ms), timestamp=-1)]),
            [("timestamp_before_1970", 1)],
        ),
        (
            orjson.dumps(
                [dict(good_event(901, start_ms), timestamp=time.time() + 3_600), good[51]]
            ),
            [("timestamp_in_future", 0)],
        ),
        (
            orjson.dumps(dict(good_event(902, start_ms), timestamp="not a time")),
            [("invalid_event", None)],
        ),
        (
            orjson.dumps(dict(good_event(903, start_ms), latency_ms="fast")),
            [("invalid_event", None)],
        ),
        (
            orjson.dumps(dict(good_event(904, start_ms), request_id="r" * 100_000)),
            [("invalid_event", None)],
        ),
        (
            orjson.dumps({"schema_version": 2, "events": [good[52]]}),
            [("unsupported_schema_version", None)],
        ),
        (
            orjson.dumps(
                {"events": [good[52], orjson.loads(bad[4]) | {"schema_version": 7}, good[53]]}
            ),
            [("unsupported_schema_version", 1)],
        ),
        (b"[" + b"1," * 10_000 + b"1]", [("too_many_events", None)]),
        (b"[" + b" " * (8 << 20) + b"]", [("payload_too_large", None)]),
        (orjson.dumps(good[54:200]), []),
    ]
    feedback_event = text(
        {"request_id": "g0", "model_id": MODEL, "label": 0, "timestamp": start_ms / 1000}
    )
    feedback: list[tuple[bytes, list[tuple[str, int | None]]]] = [
        (f"[{feedback_event}]".encode(), []),
        (f'[{feedback_event[:-1]}, "model_id": "other"}}]'.encode(), [("duplicate_key", 0)]),
        (
            f'{{"request_id": "g3", "model_id": "{MODEL}", "label": NaN, "timestamp": 1.7e9}}'.encode(),
            [("non_finite_number", None)],
        ),
        (
            text({"request_id": "g1", "model_id": MODEL, "label": 1, "timestamp": -5}).encode(),
            [("timestamp_before_1970", None)],
        ),
        (b"\xff\xfe", [("not_utf8", None)]),
        (
            f'{{"request_id": "g2", "model_id": "{MODEL}", "label": {BIG}, "timestamp": {start_ms / 1000}}}'.encode(),
            [("number_out_of_range", None)],
        ),
    ]
    click = text({"model_id": MODEL, "kind": "click", "timestamp": (start_ms + 100) / 1000})
    business: list[tuple[bytes, list[tuple[str, int | None]]]] = [
        (f'[{click}, {click[:-1]}, "value": Infinity}}]'.encode(), [("non_finite_number", 1)]),
        (f'[{click[:-1]}, "kind": "buy"}}, {click}]'.encode(), [("duplicate_key", 0)]),
        (b"{oops", [("invalid_json", None)]),
        (b"   ", [("empty_message", None)]),
    ]
    # Above librdkafka's default 1 MB: the worker, not the producer, must refuse the 8 MB one.
    producer = Producer(
        {"bootstrap.servers": pipeline.settings.kafka_bootstrap, "message.max.bytes": 16 << 20}
    )
    expected: list[tuple[str, str, int | None]] = []
    for kind, messages in (
        ("inference", inference),
        ("feedback", feedback),
        ("business", business),
    ):
        for value, rejects in messages:
            producer.produce(pipeline.settings.topic(kind), key=MODEL.encode(), value=value)
            expected.extend((kind, reason, index) for reason, index in rejects)
        assert producer.flush(30) == 0

    # Every bad one is on the dead-letter topic, with its reason and where it came from.
    dead = pipeline.read_topic("deadletter", expected=len(expected), timeout_s=60)
    topics = {pipeline.settings.topic(k): k for k in ("inference", "feedback", "business")}
    got = [(topics[d["source"]["topic"]], d["reason"], d["source"]["batch_index"]) for d in dead]
    assert Counter(got) == Counter(expected)
    too_large = next(d for d in dead if d["reason"] == "payload_too_large")
    assert too_large["original_truncated"] is True
    assert len(base64.b64decode(too_large["original_b64"])) == 256 * 1024

    # The good events, including those of the mixed batches, are all in the windows.
    client = pipeline.client

    def counted(size_ms: int) -> int:
        windows = client.windows(MODEL, VERSION, size_ms, limit=100, include_open=False)
        return sum(w.metrics["count"] for w in windows)

    wait_for(
        lambda: all(counted(size) == len(good) for size in SIZES_MS),
        60,
        f"{len(good)} good events in closed windows of both sizes",
        on_timeout=pipeline.logs,
    )

    # The per-reason counters the checkpoints persist agree with the topic.
    by_reason: Counter[str] = Counter()
    for checkpoint in pipeline.checkpoints():
        by_reason.update(checkpoint["deadletters"])
    assert by_reason == Counter(reason for _, reason, _ in expected)
    assert pipeline.counter("inference_events") == len(good)
    assert pipeline.counter("feedback_events") == 1
    assert pipeline.counter("business_events") == 2
