"""The bare Faust agent of ``bench/run.py``: one agent that only counts raw messages.

The floor of any Faust worker: no decoding, no table, no state. It is started as the streamwatch
worker is (its own process, same broker settings: ``broker_session_timeout=6``,
``broker_heartbeat_interval=1``, offsets reset to earliest, raw key and value serializers, web
server on 127.0.0.1) and reads one topic that was filled before it started.

The agent times itself, in the Redis hash :func:`progress_key`: at the first message it
receives it stores ``first_wall`` (``time.time()``) and ``first_cpu`` (``time.process_time()``:
user + system CPU of the whole process, aiokafka's consumer thread included), at the message
that makes the count reach ``FAUST_BARE_EXPECT`` ``last_wall`` and ``last_cpu``, and every
``PUBLISH_EVERY`` messages ``count`` (progress, for the bench's timeout message). Each is one
awaited ``HSET``: about 0.4 µs per message amortised, under 1 % of Faust's own cost.

Configured only through environment variables (``FAUST_BARE_*``, below); run as
``python bench/faust_bare.py worker -l warn``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import faust

PUBLISH_EVERY = 500


def progress_key(group: str) -> str:
    """Return the Redis hash the agent of consumer group ``group`` publishes its count to."""
    return f"faustbare:{group}"


def _env(name: str) -> str:
    value = os.environ.get(f"FAUST_BARE_{name}")
    if not value:
        raise SystemExit(f"faust_bare: set FAUST_BARE_{name}")
    return value


def create_app() -> faust.App:
    """Build the counting app from the ``FAUST_BARE_*`` environment."""
    # Imported here: bench/run.py imports this module for progress_key() alone.
    import faust
    import redis.asyncio as aioredis

    group = _env("GROUP")
    partitions = int(_env("PARTITIONS"))
    expect = int(_env("EXPECT"))
    app = faust.App(
        group,
        broker=f"kafka://{_env('BOOTSTRAP')}",
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=1,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_port=int(_env("WEB_PORT")),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        datadir=_env("DATADIR"),
        key_serializer="raw",
        value_serializer="raw",
        loghandlers=[],
    )
    topic = app.topic(_env("TOPIC"), key_type=bytes, value_type=bytes, partitions=partitions)
    redis_client = aioredis.Redis.from_url(_env("REDIS_URL"), socket_timeout=5.0)
    key = progress_key(group)

    @app.agent(topic)
    async def count(stream: Any) -> None:
        n = 0
        async for _value in stream:
            n += 1
            if n == 1:
                wall, cpu = time.time(), time.process_time()
                await redis_client.hset(key, mapping={"first_wall": wall, "first_cpu": cpu})
            if n == expect:
                wall, cpu = time.time(), time.process_time()
                await redis_client.hset(
                    key, mapping={"last_wall": wall, "last_cpu": cpu, "count": n}
                )
            elif n % PUBLISH_EVERY == 0:
                await redis_client.hset(key, "count", n)

    return app


if __name__ == "__main__":
    create_app().main()
