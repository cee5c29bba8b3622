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
from redis.exceptions import WatchError

from streamwatch.adapters.baseline_store import adopt_commands
from streamwatch.core.baseline import BaselineBuilder, BaselineProfile
from streamwatch.core.labels import LabelWindow, encode_chunk
from streamwatch.core.processor import (
    ModelKey,
    PartitionProcessor,
    ProcessorConfig,
    StepResult,
    WindowKey,
)
from streamwatch.exceptions import StaleOwnerError, StateFormatError
from streamwatch.state_keys import (
    MODELS_KEY,
    autobase_key,
    checkpoint_key,
    decode_partial,
    detectors_key,
    encode_partial,
    index_key,
    label_field,
    ledger_key,
    model_field,
    partition_field,
    pending_key,
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
        baselines: dict[ModelKey, BaselineProfile] | None = None,
    ) -> None:
        """Wrap a ``redis.asyncio`` client (created with ``decode_responses=False``).

        ``baselines`` is the worker's shared profile registry, handed to every processor.
        """
        self._redis = client
        self.baselines: dict[ModelKey, BaselineProfile] = {} if baselines is None else baselines
        self._group_id = group_id
        self._retention_ms = retention_ms
        self._max_backoff_s = max_backoff_s
        self.outage_retries = 0

    async def retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` until it succeeds, backing off while Redis is unreachable."""
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
                return PartitionProcessor(partition, config, self.baselines)
            meta = orjson.loads(raw)
            keys = _window_keys(meta["open"])
            label_keys = _window_keys(meta["labels_open"])
            adopting: list[ModelKey] = [(str(k[0]), str(k[1])) for k in meta["adopting"]]
            field, labels_at = partition_field(partition), label_field(partition)
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hget(window_key(key), field)
            for key in label_keys:
                pipe.hget(window_key(key), labels_at)
            for model_id, version in adopting:
                pipe.hget(autobase_key(self._group_id, model_id, version), field)
            values = await pipe.execute()
            window_values = values[: len(keys)]
            label_values = values[len(keys) : len(keys) + len(label_keys)]
            builder_values = values[len(keys) + len(label_keys) :]
            windows = {
                key: decode_partial(value)[0]
                for key, value in zip(keys, window_values, strict=True)
                if value is not None
            }
            labels = {
                key: LabelWindow.from_dict(orjson.loads(value))
                for key, value in zip(label_keys, label_values, strict=True)
                if value is not None
            }
            builders = {
                key: BaselineBuilder.from_dict(orjson.loads(value))
                for key, value in zip(adopting, builder_values, strict=True)
                if value is not None
            }
            raw_detectors: dict[bytes, bytes] = await self._redis.hgetall(  # type: ignore[assignment]
                detectors_key(self._group_id, partition)
            )
            detectors = {k.decode(): v.decode() for k, v in raw_detectors.items()}
            raw_days: dict[bytes, bytes] = await self._redis.hgetall(  # type: ignore[assignment]
                ledger_key(self._group_id, partition)
            )
            ledger_days = {k.decode(): orjson.loads(v) for k, v in raw_days.items()}
            raw_pending: dict[bytes, bytes] = await self._redis.hgetall(  # type: ignore[assignment]
                pending_key(self._group_id, partition)
            )
            try:
                pending = {int(k): orjson.loads(v) for k, v in raw_pending.items()}
            except ValueError as exc:
                raise StateFormatError(
                    f"partition {partition}: the pending-prediction hash"
                    f" {pending_key(self._group_id, partition)} has another layout ({exc});"
                    " delete it and the partition checkpoint and restart the worker"
                ) from exc
            return PartitionProcessor.restore(
                partition,
                config,
                meta,
                windows,
                labels=labels,
                builders=builders,
                pending=pending,
                detectors=detectors,
                ledger_days=ledger_days,
                baselines=self.baselines,
            )

        return await self.retrying(f"loading partition {partition}", read)

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
            (update, encode_partial(update.aggregate, partition, update.closed, update.drift))
            for update in result.windows
        ]
        labels_at = label_field(partition)
        label_values = [
            (window_key(update.key), orjson.dumps(update.window.to_dict(update.final)))
            for update in result.labels
        ]
        pending = pending_key(self._group_id, partition)
        pending_chunk = (
            None
            if result.pending_chunk is None
            else (str(result.pending_chunk[0]), encode_chunk(result.pending_chunk[1]))
        )
        ledger_days = {name: orjson.dumps(day) for name, day in result.ledger_days.items()}
        builders = [
            (
                autobase_key(self._group_id, model_id, version),
                None if builder is None else orjson.dumps(builder.to_dict()),
            )
            for (model_id, version), builder in result.builders.items()
        ]

        ours = {str(k): int(v) for k, v in result.checkpoint["next_offsets"].items()}
        checkpoint_at = checkpoint_key(self._group_id, partition)

        async def write() -> None:
            while True:
                try:
                    return await attempt()
                except WatchError:
                    continue  # another writer touched the checkpoint: check again

        async def attempt() -> None:
            # A pipeline is emptied by execute(), even a failed one: build it afresh per try.
            pipe = self._redis.pipeline(transaction=True)
            # Fencing: the write happens only if the stored checkpoint is not ahead of ours,
            # checked and written atomically (WATCH: a write by another owner in between
            # aborts the transaction, and the check runs again).
            await pipe.watch(checkpoint_at)
            stored = await pipe.get(checkpoint_at)
            if stored is not None:
                theirs = orjson.loads(stored)["next_offsets"]
                ahead = {t: o for t, o in theirs.items() if int(o) > ours.get(t, -1)}
                if ahead:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    raise StaleOwnerError(
                        f"partition {partition}: another worker stored offsets {ahead}, past"
                        f" ours {ours}; dropping the partition instead of overwriting its state"
                    )
            pipe.multi()  # type: ignore[no-untyped-call]
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
            for key, value in label_values:
                pipe.hset(key, labels_at, value)
                pipe.pexpire(key, retention)
            if pending_chunk is not None:
                pipe.hset(pending, *pending_chunk)
            if result.pending_dropped:
                pipe.hdel(pending, *map(str, result.pending_dropped))
            for key, builder in builders:
                if builder is None:
                    pipe.hdel(key, field)
                else:
                    pipe.hset(key, field, builder)
            for profile in result.adopted:
                adopt_commands(pipe, profile)
            if result.detectors:
                pipe.hset(
                    detectors_key(self._group_id, partition),
                    mapping=result.detectors,  # type: ignore[arg-type]
                )
            if result.detectors_removed:
                pipe.hdel(detectors_key(self._group_id, partition), *result.detectors_removed)
            ledger = ledger_key(self._group_id, partition)
            if ledger_days:
                pipe.hset(ledger, mapping=ledger_days)  # type: ignore[arg-type]
            if result.ledger_removed:
                pipe.hdel(ledger, *result.ledger_removed)
            pipe.set(checkpoint_at, checkpoint)
            await pipe.execute()

        await self.retrying(f"persisting partition {partition}", write)


def _window_keys(raw_keys: list[list[object]]) -> list[WindowKey]:
    return [(str(k[0]), str(k[1]), int(str(k[2])), int(str(k[3]))) for k in raw_keys]
