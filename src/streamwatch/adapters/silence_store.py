"""Silences in Redis (``sw:v1:silences``: id -> JSON), for the CLI and the worker.

Expired silences are kept for a week (``streamwatch silence list --all`` shows them), then
dropped when silences are next written.
"""

from __future__ import annotations

import secrets
import time

import orjson
import redis
import redis.asyncio as aioredis

from streamwatch.core.silences import Silence
from streamwatch.exceptions import ConfigError
from streamwatch.state_keys import SILENCES_KEY

#: Expired silences are kept this long for the record.
KEEP_EXPIRED_MS = 7 * 86_400_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _decode(values: dict[bytes, bytes]) -> list[Silence]:
    silences = [Silence.model_validate_json(v) for v in values.values()]
    return sorted(silences, key=lambda s: (s.starts_at_ms, s.id))


class SilenceStore:
    """Synchronous access for the CLI."""

    def __init__(self, client: redis.Redis) -> None:
        """Wrap a ``redis.Redis`` client (``decode_responses=False``)."""
        self._redis = client

    def add(
        self,
        *,
        model: str,
        version: str,
        rule: str,
        duration_ms: int,
        created_by: str,
        comment: str,
        now_ms: int | None = None,
    ) -> Silence:
        """Store a silence starting now; return it (with its new id)."""
        if duration_ms <= 0:
            raise ConfigError(f"a silence must last a positive time, got {duration_ms} ms")
        start = _now_ms() if now_ms is None else now_ms
        silence = Silence(
            id=secrets.token_hex(4),
            model=model,
            version=version,
            rule=rule,
            starts_at_ms=start,
            ends_at_ms=start + duration_ms,
            created_by=created_by,
            comment=comment,
        )
        self._drop_old(start)
        self._redis.hset(SILENCES_KEY, silence.id, silence.model_dump_json())
        return silence

    def list(self) -> list[Silence]:
        """Every stored silence, oldest first."""
        return _decode(self._redis.hgetall(SILENCES_KEY))  # type: ignore[arg-type]

    def expire(self, silence_id: str, now_ms: int | None = None) -> Silence:
        """End a silence now.

        Raises:
            ConfigError: If no silence has that id (the message lists the stored ids).
        """
        raw = self._redis.hget(SILENCES_KEY, silence_id)
        if raw is None:
            known = [s.id for s in self.list()]
            raise ConfigError(f"no silence {silence_id!r}; stored silences: {known}")
        silence = Silence.model_validate_json(raw)
        end = _now_ms() if now_ms is None else now_ms
        ended = silence.model_copy(update={"ends_at_ms": min(silence.ends_at_ms, end)})
        self._redis.hset(SILENCES_KEY, silence_id, ended.model_dump_json())
        return ended

    def _drop_old(self, now_ms: int) -> None:
        old = [s.id for s in self.list() if s.ends_at_ms < now_ms - KEEP_EXPIRED_MS]
        if old:
            self._redis.hdel(SILENCES_KEY, *old)


async def load_silences(client: aioredis.Redis) -> list[Silence]:
    """Every stored silence (the worker re-reads them every few seconds)."""
    values: dict[bytes, bytes] = await client.hgetall(SILENCES_KEY)  # type: ignore[assignment]
    return _decode(values)


def encode(silence: Silence) -> bytes:
    """JSON for ``silence list --json``."""
    return orjson.dumps(silence.model_dump())
