"""Persist partition steps to Redis and load partition checkpoints back (asyncio).

One :meth:`RedisStateStore.persist` call writes a step as a single MULTI/EXEC transaction: the
changed windows, the series indexes and the checkpoint, so Redis never holds windows from a step
whose checkpoint it lacks, or the reverse. While Redis is unreachable the call retries with
capped exponential backoff instead of failing: the agent stops acknowledging messages (Kafka keeps
them) and resumes where it was when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamwatch.core.processor import (
    PartitionProcessor,
    ProcessorConfig,
    StepResult,
    WindowKey,
)
from streamwatch.state_keys import (
    MODELS_KEY,
    checkpoint_key,
    decode_partial,
    encode_partial,
    index_key,
    model_field,
    partition_field,
    window_key,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisStateStore:
    """Window and checkpoint storage for the partitions a worker owns."""

    def __init__(
        self,
        client: aioredis.Redis,
        group_id: str,
        retention_ms: int,
        max_backoff_s: float = 5.0,
    ) -> None:
        """Wrap a ``redis.asyncio`` client (created with ``decode_responses=False``)."""
        self._redis = client
        self._group_id = group_id
        self._retention_ms = retention_ms
        self._max_backoff_s = max_backoff_s
        self.outage_retries = 0

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        delay = 0.05
        while True:
            try:
                return await operation()
            except _RETRYABLE as exc:
                self.outage_retries += 1
                log.warning("redis unavailable while %s (%s); retrying in %.2fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)

    async def load(self, partition: int, config: ProcessorConfig) -> PartitionProcessor:
        """Return the processor for ``partition``: restored from its checkpoint, or new."""

        async def read() -> PartitionProcessor:
            raw = await self._redis.get(checkpoint_key(self._group_id, partition))
            if raw is None:
                return PartitionProcessor(partition, config)
            meta = orjson.loads(raw)
            keys: list[WindowKey] = [
                (str(k[0]), str(k[1]), int(k[2]), int(k[3])) for k in meta["open"]
            ]
            field = partition_field(partition)
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hget(window_key(key), field)
            values = await pipe.execute()
            windows = {
                key: decode_partial(value)[0]
                for key, value in zip(keys, values, strict=True)
                if value is not None
            }
            return PartitionProcessor.restore(partition, config, meta, windows)

        return await self._retrying(f"loading partition {partition}", read)

    async def persist(self, partition: int, result: StepResult) -> None:
        """Write one step's windows and checkpoint atomically (retrying through outages)."""
        field = partition_field(partition)
        retention = self._retention_ms
        checkpoint = orjson.dumps(result.checkpoint)
        models: dict[str, int | None] = {}
        for update in result.windows:
            name = model_field(update.key[0], update.key[1])
            last = update.aggregate.last_event_ms
            previous = models.get(name)
            models[name] = last if previous is None or (last or 0) > previous else previous
        encoded = [
            (update, encode_partial(update.aggregate, partition, update.closed))
            for update in result.windows
        ]

        async def write() -> None:
            # A pipeline is emptied by execute(), even a failed one: build it afresh per try.
            pipe = self._redis.pipeline(transaction=True)
            for update, value in encoded:
                model_id, version, size_ms, start_ms = update.key
                key = window_key(update.key)
                pipe.hset(key, field, value)
                pipe.pexpire(key, retention)
                series = index_key(model_id, version, size_ms)
                pipe.zadd(series, {str(start_ms): start_ms})
                pipe.zremrangebyscore(series, "-inf", start_ms - retention)
                pipe.pexpire(series, retention)
            if models:
                pipe.hset(
                    MODELS_KEY,
                    mapping={
                        name: orjson.dumps(
                            {
                                "model_id": name.split(":", 1)[0],
                                "model_version": name.split(":", 1)[1],
                                "last_event_ms": last,
                            }
                        )
                        for name, last in models.items()
                    },
                )
            pipe.set(checkpoint_key(self._group_id, partition), checkpoint)
            await pipe.execute()

        await self._retrying(f"persisting partition {partition}", write)
