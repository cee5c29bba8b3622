"""The plain Faust baseline of ``bench/crash.py``: a table counting inference events per model.

What a Faust user would write to count events exactly: one agent over the inference topic, a
``Table`` (``store="memory://"``, so its state lives in the changelog topic and is recovered from
it on every assignment; one standby replica, Faust's default) and the default commit interval.
A single-event message adds 1 to its model's count, a batched message (a JSON array) adds its
length. Decoding is done on raw bytes inside the agent, so a bad message cannot crash it.

The bench has to *read* the table from outside, so after each update the agent also remembers
the value it just read from the table (``counts[key]``, inside the event's context: the value the
user sees), and a timer publishes it to Redis every ``PUBLISH_INTERVAL_S``, per partition, with
the highest source offset applied: ``HSET faustbench:{group}:{partition} offset .. counts ..
pid ..`` through a script that refuses an older offset, so a worker that lost the partition can
never overwrite its current owner. Each process also adds the events it applied to
``faustbench:{group}:applied`` (field: its pid). The bench knows a partition is done when
``offset`` is the last offset it produced there; ``counts`` is then the table's value after
applying it.

One Tansu defect is worked around: its ListOffsets(latest) answers the base offset of a
partition's last record batch + 1, not the end offset (see ``/work/shared/INFRA.md``), and Faust
reads changelog highwaters that way when it recovers a table. Unpatched, a worker whose standby
copy is ahead of that wrong highwater stops with ``ConsistencyError`` ("persisted offset ... is
higher than the last offset in that topic"), and with the check disabled a recovery would stop
at that offset and miss the newest table updates. :func:`_patch_highwaters` makes Faust read the end
offset from a Fetch response instead (correct on Tansu; on Apache Kafka both agree), so the
baseline behaves as plain Faust on Kafka would.

Configured only through environment variables (``FAUST_COUNTER_*``, below); run as
``python bench/faust_counter.py worker -l info`` (``bench/crash.py`` reads the consumer's
assignment from the INFO log).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis
from confluent_kafka import Consumer, KafkaError, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

PUBLISH_INTERVAL_S = 0.2

#: Set the hash only if the offset is not older than the stored one (one owner at a time wins).
_PUBLISH_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'offset')
if current and tonumber(ARGV[1]) < tonumber(current) then
  return 0
end
redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'counts', ARGV[2], 'pid', ARGV[3])
return 1
"""


def state_key(group: str, partition: int) -> str:
    """Return the Redis hash the owner of ``partition`` publishes its table values to."""
    return f"faustbench:{group}:{partition}"


def applied_key(group: str) -> str:
    """Return the Redis hash of events applied by each worker process (pid -> events)."""
    return f"faustbench:{group}:applied"


def _env(name: str) -> str:
    value = os.environ.get(f"FAUST_COUNTER_{name}")
    if not value:
        raise SystemExit(f"faust_counter: set FAUST_COUNTER_{name}")
    return value


def fetch_highwaters(bootstrap: str, tps: Iterable[TP], timeout_s: float = 30.0) -> dict[TP, int]:
    """Return each partition's end offset as a Fetch response reports it (at partition EOF).

    Fetching starts one before the (possibly too low) ListOffsets answer and reads to the end.
    """
    wanted = list(tps)
    if not wanted:
        return {}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "faust-counter-highwaters",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        starts = []
        for tp in wanted:
            low, listed = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10
            )
            starts.append(TopicPartition(tp.topic, tp.partition, max(low, listed - 1, 0)))
        consumer.assign(starts)
        result: dict[TP, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(result) < len(wanted):
            if time.monotonic() > deadline:
                missing = [tp for tp in wanted if tp not in result]
                raise RuntimeError(f"no end of partition seen for {missing} in {timeout_s} s")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                result[TP(message.topic(), message.partition())] = message.offset()
            elif error is not None:
                raise RuntimeError(f"fetching highwaters: {error}")
        return result
    finally:
        consumer.close()


def _patch_highwaters(bootstrap: str) -> None:
    """Make Faust's recovery read changelog end offsets from Fetch (see the module docstring)."""

    async def _highwaters(self: Any, partitions: list[TP]) -> Mapping[TP, int]:
        return await asyncio.to_thread(fetch_highwaters, bootstrap, partitions)

    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters


def create_app() -> faust.App:
    """Build the counting app from the ``FAUST_COUNTER_*`` environment."""
    group = _env("GROUP")
    partitions = int(_env("PARTITIONS"))
    bootstrap = _env("BOOTSTRAP")
    _patch_highwaters(bootstrap)
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=1,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_port=int(_env("WEB_PORT")),
        datadir=_env("DATADIR"),
        key_serializer="raw",
        value_serializer="raw",
        loghandlers=[],
    )
    topic_name = _env("TOPIC")
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, partitions=partitions)
    counts = app.Table("counts", default=int, partitions=partitions)
    redis_client = aioredis.Redis.from_url(_env("REDIS_URL"), socket_timeout=5.0)
    publish = redis_client.register_script(_PUBLISH_SCRIPT)
    pid = str(os.getpid())
    # partition -> (highest offset applied, {model: table value after that offset})
    latest: dict[int, tuple[int, dict[str, int]]] = {}
    dirty: set[int] = set()
    # Events this process applied and has not yet added to the Redis total (a diagnostic: the
    # total minus the events produced is what Faust replayed; lost on SIGKILL for one interval).
    applied = [0]

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                value = orjson.loads(message.value)
            except orjson.JSONDecodeError:
                continue
            n = len(value) if isinstance(value, list) else 1
            model = message.key.decode()
            counts[model] += n
            offset, values = latest.get(message.partition, (-1, {}))
            values[model] = counts[model]
            latest[message.partition] = (max(offset, message.offset), values)
            dirty.add(message.partition)
            applied[0] += n

    @app.timer(interval=PUBLISH_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def publish_counts() -> None:
        if applied[0]:
            delta, applied[0] = applied[0], 0
            await redis_client.hincrby(applied_key(group), pid, delta)
        active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic_name}
        for partition in sorted(dirty):
            dirty.discard(partition)
            if partition not in active or partition not in latest:
                continue
            offset, values = latest[partition]
            await publish(
                keys=[state_key(group, partition)],
                args=[offset, orjson.dumps(values), pid],
            )

    async def revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == topic_name:
                latest.pop(tp.partition, None)
                dirty.discard(tp.partition)

    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
    return app


if __name__ == "__main__":
    create_app().main()
