"""Outages ridden out: Redis gone for 30 s mid-stream, and the broker going away and back.

Both end with the windows in Redis equal to the exact statistics of what was produced, and
with the same worker process still running (it retried; it did not crash).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.client import StreamwatchClient
from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from streamwatch.settings import load_settings
from tests.integration.conftest import Pipeline, _as_fields
from tests.integration.exact import NO_IDLE_CLOCK, assert_windows_exact, known_stream, produce
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

REDIS_OUTAGE_S = 30
BROKER_OUTAGE_S = 15


def _pipeline_on(base: Pipeline, **overrides: str) -> Pipeline:
    """The same isolated topics and group, on other servers."""
    env = {**base.env, **overrides}
    settings = load_settings(environ={}, **_as_fields(env))
    client = StreamwatchClient.from_url(env["STREAMWATCH_REDIS_URL"])
    return dataclasses.replace(base, settings=settings, env=env, client=client, workers=[])


@pytest.fixture
def own_redis(pipeline: Pipeline, tmp_path: Path) -> Iterator[tuple[Pipeline, EmbeddedRedis]]:
    """A pipeline on a Redis of its own (the outage must not touch the session's)."""
    with EmbeddedRedis(log_dir=tmp_path / "redis") as server:
        own = _pipeline_on(pipeline, STREAMWATCH_REDIS_URL=server.url)
        try:
            yield own, server
        finally:
            if server.pid is not None:  # a failed test must not leave it stopped
                os.kill(server.pid, signal.SIGCONT)
            for worker in own.workers:
                worker.stop()
            own.client.close()


def test_a_30s_redis_outage_mid_stream_changes_nothing(
    own_redis: tuple[Pipeline, EmbeddedRedis],
) -> None:
    pipeline, server = own_redis
    worker = pipeline.start_worker(**NO_IDLE_CLOCK)
    pipeline.wait_until_consuming()
    pid = worker.pid
    stream = known_stream((time.time_ns() // 1_000_000 // 5_000) * 5_000 - 120_000)
    first, rest = stream.parts(2)
    topic = pipeline.settings.topic("inference")
    produce(pipeline.settings.kafka_bootstrap, topic, first)
    half = len(stream.events) // 2
    wait_for(lambda: pipeline.counter("inference_events") > half // 2, 60, "the stream under way")

    # Redis stops answering (a hung server or a network partition: connections time out).
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    outage_ends = time.monotonic() + REDIS_OUTAGE_S
    try:
        produce(pipeline.settings.kafka_bootstrap, topic, rest)
        wait_for(
            lambda: "redis unavailable" in worker.log_tail(200),
            REDIS_OUTAGE_S,
            "the worker to notice the outage and retry",
            on_timeout=pipeline.logs,
        )
        # The outage lasts its 30 s whatever the worker does: this is the scenario, not a wait.
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        assert worker.pid == pid, "the worker died during the outage"
    finally:
        os.kill(server.pid, signal.SIGCONT)

    wait_for(
        lambda: pipeline.counter("inference_events") == stream.total_events,
        90,
        "every event to be applied after the outage",
        on_timeout=pipeline.logs,
    )
    assert_windows_exact(pipeline.client, stream, pipeline.logs)
    assert worker.pid == pid
    assert "redis unavailable while persisting partition" in worker.log_tail(2_000)


def test_the_broker_going_away_and_back_changes_nothing(pipeline: Pipeline, tmp_path: Path) -> None:
    proxy_port = free_port()
    broker = EmbeddedBroker(log_dir=tmp_path / "tansu", advertised_port=proxy_port)
    proxy = TcpProxy(proxy_port, broker.port)
    proxy.start()
    with broker:
        bootstrap = f"127.0.0.1:{proxy.port}"
        own = _pipeline_on(
            pipeline,
            STREAMWATCH_KAFKA_BOOTSTRAP=bootstrap,
            STREAMWATCH_GROUP_ID=f"g{uuid.uuid4().hex[:8]}",
        )
        try:
            ensure_topics(own.settings)
            worker = own.start_worker(**NO_IDLE_CLOCK)
            own.wait_until_consuming()
            pid = worker.pid
            stream = known_stream((time.time_ns() // 1_000_000 // 5_000) * 5_000 - 120_000)
            first, rest = stream.parts(2)
            topic = own.settings.topic("inference")
            produce(bootstrap, topic, first)
            wait_for(
                lambda: own.counter("inference_events") >= len(stream.events) // 3,
                60,
                "the first half under way",
            )
            # Every connection reset, then refused: what a broker restart looks like.
            proxy.cut()
            wait_for(
                lambda: (
                    worker.log_tail(300).count("Connect") > 0 or "Unable" in worker.log_tail(300)
                ),
                BROKER_OUTAGE_S,
                "the worker to lose the broker",
                on_timeout=own.logs,
            )
            time.sleep(BROKER_OUTAGE_S)  # the outage itself: the scenario, not a wait
            assert worker.pid == pid, "the worker died while the broker was away"
            proxy.start()
            produce(bootstrap, topic, rest)
            wait_for(
                lambda: own.counter("inference_events") == stream.total_events,
                120,
                "every event to be applied after the broker came back",
                on_timeout=own.logs,
            )
            assert_windows_exact(own.client, stream, own.logs)
            assert worker.pid == pid
        finally:
            proxy.cut()
            for w in own.workers:
                w.stop()
            own.client.close()
