"""End to end: a real worker, broker and Redis; windows compared with exact statistics."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import orjson
import pytest
import redis
from click.testing import CliRunner

from streamwatch.adapters.silence_store import SilenceStore
from streamwatch.cli import main
from tests.integration.conftest import Pipeline
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SIZES_MS = (1_000, 5_000)


def make_events(start_ms: int, seconds: int, per_second: int, spike: range) -> list[dict]:
    rng = np.random.default_rng(11)
    events = []
    for second in range(seconds):
        for i in range(per_second):
            ts = start_ms + second * 1_000 + int(rng.integers(0, 1_000))
            error = second in spike and i < per_second // 5
            events.append(
                {
                    "request_id": f"r{second}-{i}",
                    "model_id": "fraud",
                    "model_version": "2.1.0",
                    "timestamp": ts / 1000,
                    "latency_ms": float(rng.lognormal(3.5, 0.5)),
                    "status": "error" if error else "ok",
                    "score": float(rng.random()),
                    "features": {"amount": float(rng.normal(100, 15)), "country": "de"},
                }
            )
    return events


def expected_windows(events: list[dict]) -> dict[tuple[int, int], dict]:
    groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for e in events:
        ts = round(e["timestamp"] * 1000)
        for size in SIZES_MS:
            groups[(size, ts - ts % size)].append(e)
    result = {}
    for key, members in groups.items():
        latencies = np.array([e["latency_ms"] for e in members])
        result[key] = {
            "count": len(members),
            "errors": sum(e["status"] == "error" for e in members),
            "latencies": latencies,
            "amount_mean": float(np.mean([e["features"]["amount"] for e in members])),
        }
    return result


def test_windows_in_redis_match_exact_statistics(
    pipeline: Pipeline, redis_client: redis.Redis
) -> None:
    # A silence on the error rule: its alerts are still published, marked (checked below).
    silence = SilenceStore(redis_client).add(
        model="fraud",
        version="*",
        rule="error_rate_*",
        duration_ms=3_600_000,
        created_by="test",
        comment="",
    )
    pipeline.start_worker()
    pipeline.wait_until_consuming()
    start_ms = (time.time_ns() // 1_000_000 // 5_000) * 5_000 - 60_000
    events = make_events(start_ms, seconds=10, per_second=120, spike=range(3, 6))
    # Mixed message shapes: batched arrays, an envelope, and single-event messages.
    values = [orjson.dumps(events[i : i + 100]) for i in range(0, 1_000, 100)]
    values.append(orjson.dumps({"events": events[1_000:1_100]}))
    values.extend(orjson.dumps(e) for e in events[1_100:])
    # The good member of the mixed batch belongs to a still-open window (not late).
    extra = dict(events[499], request_id="extra")
    malformed = [
        b"{not json",
        orjson.dumps(dict(events[0], latency_ms=-1)),
        orjson.dumps([extra, {"request_id": "x"}]),
        b"\xff\xfe",
    ]
    pipeline.produce("inference", values[:5] + malformed + values[5:], key=b"fraud")
    good = [*events, extra]

    want = expected_windows(good)
    client = pipeline.client

    def all_closed() -> bool:
        for size in SIZES_MS:
            stored = client.windows("fraud", "2.1.0", size, limit=100, include_open=True)
            if {w.start_ms for w in stored if w.closed} != {s for z, s in want if z == size}:
                return False
        return True

    wait_for(all_closed, 60, "every window to close in Redis", on_timeout=pipeline.logs)
    for size in SIZES_MS:
        for window in client.windows("fraud", "2.1.0", size, limit=100):
            expected = want[(size, window.start_ms)]
            metrics = window.metrics
            assert metrics["count"] == expected["count"]
            assert metrics["error_count"] == expected["errors"]
            assert metrics["late_events"] == 0
            assert metrics["throughput_eps"] == expected["count"] * 1000 / size
            for name, q in (
                ("latency_p50_ms", 0.5),
                ("latency_p95_ms", 0.95),
                ("latency_p99_ms", 0.99),
            ):
                exact = np.quantile(expected["latencies"], q, method="lower")
                assert abs(metrics[name] - exact) <= 0.01 * exact, (name, size, window.start_ms)
            assert metrics["latency_mean_ms"] == pytest.approx(expected["latencies"].mean())
            assert metrics["latency_max_ms"] == expected["latencies"].max()
            amount = window.to_dict()["features"]["amount"]
            assert amount["mean"] == pytest.approx(expected["amount_mean"])

    # The CLI's JSON view agrees with the client (what a user scripts against).
    status = CliRunner().invoke(
        main,
        ["status", "--model", "fraud", "--window", "1s", "--limit", "50", "--json"],
        env=pipeline.env,
    )
    assert status.exit_code == 0, status.output
    rows = orjson.loads(status.output)
    assert {(r["start_ms"], r["metrics"]["count"]) for r in rows} == {
        (start, w["count"]) for (size, start), w in want.items() if size == 1_000
    }
    assert all(r["state"] == "closed" for r in rows)

    # Every malformed message (or bad batch member) is dead-lettered with its reason and source.
    dead = pipeline.read_topic("deadletter", expected=4)
    assert sorted(d["reason"] for d in dead) == sorted(
        ["invalid_json", "invalid_event", "invalid_event", "not_utf8"]
    )
    assert {d["source"]["topic"] for d in dead} == {pipeline.settings.topic("inference")}
    batch_member = next(d for d in dead if d["source"]["batch_index"] is not None)
    assert batch_member["source"]["batch_index"] == 1
    assert "model_id: Field required" in batch_member["detail"]
    counts: dict[str, int] = defaultdict(int)
    for checkpoint in pipeline.checkpoints():
        for reason, n in checkpoint["deadletters"].items():
            counts[reason] += n
    assert dict(counts) == {"invalid_json": 1, "invalid_event": 2, "not_utf8": 1}

    # The error spike (seconds 3-5, 20 % errors) gives exactly one critical alert, then a resolve.
    emitted = pipeline.counter("alerts_emitted")
    alerts = pipeline.read_topic("alerts", expected=emitted)
    # Other rules (detectors, absence once the stream has been silent a minute) are tested
    # elsewhere; this test is about the error-rate rule's lifecycle.
    alerts = [a for a in alerts if a["rule"] == "error_rate_high"]
    assert [(a["state"], a["severity"], a["rule"]) for a in alerts] == [
        ("firing", "critical", "error_rate_high"),
        ("resolved", "critical", "error_rate_high"),
    ]
    assert alerts[0]["alert_id"] == alerts[1]["alert_id"]
    assert [a["silenced_by"] for a in alerts] == [silence.id, silence.id]
    assert alerts[0]["window"]["start_ms"] == start_ms + 3_000
    assert alerts[1]["window"]["start_ms"] == start_ms + 6_000
