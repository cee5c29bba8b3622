"""A real worker process against the session broker and Redis, isolated per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.client import StreamwatchClient
from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from streamwatch.settings import Settings, load_settings
from streamwatch.supervise import WorkerProcess
from tests.waiting import wait_for

GROUP_READY_TIMEOUT_S = 60


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    tmp_path: Path
    client: StreamwatchClient
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, **env: str) -> WorkerProcess:
        worker_env = {
            **self.env,
            "STREAMWATCH_WEB_PORT": str(free_port()),
            "STREAMWATCH_DATA_DIR": str(self.tmp_path / f"worker{len(self.workers)}"),
            **env,
        }
        worker = WorkerProcess(worker_env, self.tmp_path / f"worker{len(self.workers)}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n\n".join(f"--- {w.log_path}\n{w.log_tail()}" for w in self.workers)

    def producer(self) -> Producer:
        return Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "linger.ms": 5})

    def produce(self, kind: str, values: list[bytes], key: bytes = b"m") -> None:
        producer = self.producer()
        for value in values:
            producer.produce(self.settings.topic(kind), key=key, value=value)
        assert producer.flush(30) == 0

    def checkpoints(self) -> list[dict[str, Any]]:
        return self.client.partition_checkpoints(self.settings.group_id)

    def counter(self, name: str) -> int:
        return sum(c["counters"].get(name, 0) for c in self.checkpoints())

    def read_topic(self, kind: str, expected: int, timeout_s: float = 30) -> list[dict[str, Any]]:
        """Read exactly ``expected`` records from an output topic (fails on timeout)."""
        topic = self.settings.topic(kind)
        consumer = Consumer(
            {"bootstrap.servers": self.settings.kafka_bootstrap, "group.id": "test-reader"}
        )
        try:
            meta = consumer.list_topics(topic, timeout=10)
            consumer.assign(
                [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.topics[topic].partitions]
            )
            records: list[dict[str, Any]] = []

            def poll() -> bool:
                message = consumer.poll(0.2)
                if message is not None and not message.error():
                    records.append(orjson.loads(message.value()))
                return len(records) >= expected

            wait_for(poll, timeout_s, f"{expected} records on {topic}", interval_s=0)
            return records
        finally:
            consumer.close()

    def wait_until_consuming(self) -> None:
        """Wait until the group has formed: a probe message on every partition is applied."""
        sentinel = orjson.dumps([])
        producer = self.producer()
        for partition in range(self.settings.partitions):
            producer.produce(self.settings.topic("business"), value=sentinel, partition=partition)
        producer.flush(30)
        wait_for(
            lambda: self.counter("business_messages") >= self.settings.partitions,
            GROUP_READY_TIMEOUT_S,
            "the worker group to consume every partition",
            on_timeout=self.logs,
        )


@pytest.fixture
def pipeline(
    kafka_broker: EmbeddedBroker,
    redis_server: EmbeddedRedis,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    name = f"t{uuid.uuid4().hex[:10]}"
    env = {
        "STREAMWATCH_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "STREAMWATCH_REDIS_URL": redis_server.url,
        "STREAMWATCH_TOPIC_PREFIX": name,
        "STREAMWATCH_GROUP_ID": name,
        "STREAMWATCH_PARTITIONS": "2",
        "STREAMWATCH_WINDOWS": "1s,5s",
        "STREAMWATCH_ALLOWED_LATENESS": "200ms",
        "STREAMWATCH_IDLE_TIMEOUT": "1s",
        "STREAMWATCH_BATCH_MAX_WAIT": "50ms",
        "STREAMWATCH_LOG_LEVEL": "info",
    }
    settings = load_settings(environ={}, **_as_fields(env))
    ensure_topics(settings)
    client = StreamwatchClient.from_url(redis_server.url)
    result = Pipeline(settings, env, tmp_path, client)
    yield result
    for worker in result.workers:
        worker.stop()
    client.close()


def _as_fields(env: dict[str, str]) -> dict[str, str]:
    aliases = {
        "STREAMWATCH_WINDOWS": "windows_ms",
        "STREAMWATCH_ALLOWED_LATENESS": "allowed_lateness_ms",
        "STREAMWATCH_IDLE_TIMEOUT": "idle_timeout_ms",
        "STREAMWATCH_BATCH_MAX_WAIT": "batch_max_wait_ms",
    }
    return {aliases.get(k, k.removeprefix("STREAMWATCH_").lower()): v for k, v in env.items()}
