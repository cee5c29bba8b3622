"""The embedded broker and Redis are real servers: data goes in through the ordinary clients
and comes back out, and the outage controls (stop/start/restart on the same port) work.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


def _create_topic(bootstrap: str, partitions: int) -> str:
    name = f"embedded-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=DEADLINE_S)
    return name


def test_broker_round_trips_1000_messages_over_3_partitions(kafka_broker: EmbeddedBroker) -> None:
    topic = _create_topic(kafka_broker.bootstrap, partitions=3)
    sent = {f"message-{i}".encode() for i in range(1000)}

    delivery_errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            delivery_errors.append(err)

    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i, value in enumerate(sorted(sent)):
        producer.produce(topic, key=f"key-{i}".encode(), value=value, on_delivery=on_delivery)
    assert producer.flush(DEADLINE_S) == 0
    assert delivery_errors == []

    # Manual assignment: a group join on Tansu takes seconds (INFRA.md).
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_broker.bootstrap,
            "group.id": "unused-manual-assignment",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    received: list[bytes] = []
    partitions_seen: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                assert msg.error() is None, msg.error()
                received.append(msg.value())
                partitions_seen.add(msg.partition())
    finally:
        consumer.close()

    assert len(received) == len(sent)
    assert set(received) == sent
    assert partitions_seen == {0, 1, 2}


def test_broker_restart_keeps_port_and_loses_topics(tmp_path: Path) -> None:
    with EmbeddedBroker(log_dir=tmp_path) as broker:
        port, first_pid = broker.port, broker.pid
        topic = _create_topic(broker.bootstrap, partitions=1)

        broker.restart()

        assert broker.port == port
        assert broker.pid != first_pid
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        assert topic not in admin.list_topics(timeout=DEADLINE_S).topics  # memory engine
    assert not broker.running
    assert broker.pid is None
    broker.stop()  # idempotent


def test_redis_set_get_round_trip(redis_client: redis.Redis) -> None:
    assert redis_client.set("sw:test:key", b"value")
    assert redis_client.get("sw:test:key") == b"value"


def test_redis_outage_then_recovery_on_same_port(tmp_path: Path) -> None:
    with EmbeddedRedis(log_dir=tmp_path) as server:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=5)
        assert client.ping()
        port = server.port

        server.stop()
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            client.ping()

        server.start()
        assert server.port == port
        assert client.ping()
        client.close()
