"""Shared fixtures: a real Kafka-protocol broker and a real Redis, started lazily.

Each server starts the first time a test asks for it and lives for the rest of the session, so
unit tests that request neither never start a process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(log_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    # A test may have stopped the session server to simulate an outage and failed before
    # starting it again; start() is a no-op when it is running.
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()
