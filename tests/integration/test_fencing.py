"""A worker that lost its partition without noticing cannot overwrite the new owner's state."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from streamwatch.adapters.redis_state import RedisStateStore
from streamwatch.core.processor import PartitionProcessor, ProcessorConfig
from streamwatch.embedded import EmbeddedRedis
from streamwatch.exceptions import StaleOwnerError
from tests.unit.helpers import BASE_MS, event, messages

pytestmark = pytest.mark.integration

CONFIG = ProcessorConfig(
    window_sizes_ms=(1_000,),
    allowed_lateness_ms=0,
    idle_timeout_ms=60_000,
    max_future_skew_ms=10**12,
    rules=(),
)


async def test_a_stale_owner_is_fenced_off(redis_server: EmbeddedRedis, redis_client) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    store = RedisStateStore(client, "fenced", retention_ms=3_600_000)
    stream = messages([[event(i, BASE_MS + i * 10)] for i in range(30)])
    try:
        stale = PartitionProcessor(0, CONFIG)
        await store.persist(0, stale.process(stream[:10], BASE_MS))
        # The partition moves: its new owner restores it and goes on to offset 20.
        owner = await store.load(0, CONFIG)
        await store.persist(0, owner.process(stream[10:20], BASE_MS))
        # The old owner, unaware, applies offsets 10-14 and tries to store them.
        result = stale.process(stream[10:15], BASE_MS)
        with pytest.raises(StaleOwnerError, match="another worker stored offsets"):
            await store.persist(0, result)
        restored = await store.load(0, CONFIG)
        assert restored.checkpoint()["next_offsets"] == {"streamwatch.inference": 20}
        assert restored.counters["inference_events"] == 20
        # The owner itself keeps writing.
        await store.persist(0, restored.process(stream[20:], BASE_MS))
    finally:
        await client.aclose()
