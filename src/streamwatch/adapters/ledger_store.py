"""Read the day ledger from Redis (``sw:v1:ledger:{group}:{partition}`` hashes), for the CLI.

Each worker partition stores its days there (field :func:`~streamwatch.state_keys.ledger_field`
-> :meth:`DayStats.to_dict <streamwatch.core.ledger.DayStats.to_dict>` JSON). A model served
through several partitions has one partial day per partition; :func:`load_days` merges them.
Writing is the worker's job (with its checkpoint), not this module's.
"""

from __future__ import annotations

import orjson
import redis

from streamwatch.core.ledger import DAY_MS, DayKey, DayStats
from streamwatch.exceptions import StateFormatError
from streamwatch.state_keys import ledger_pattern


def load_days(
    client: redis.Redis,
    group_id: str,
    since_ms: int,
    until_ms: int,
    model: str | None = None,
) -> list[DayStats]:
    """Return the stored days overlapping ``[since_ms, until_ms)``, merged over partitions.

    Args:
        client: A ``redis.Redis`` client (``decode_responses=False``).
        group_id: The workers' consumer group (``STREAMWATCH_GROUP_ID``).
        since_ms: Days ending after this are returned.
        until_ms: Days starting before this are returned.
        model: Only this model id (every version of it); None for all.

    Returns:
        One :class:`DayStats` per (model, version, day), sorted by model, version and day.

    Raises:
        StateFormatError: If a stored day has another format version or a malformed field.
        redis.ConnectionError: If Redis cannot be reached.
    """
    merged: dict[DayKey, DayStats] = {}
    for key in client.scan_iter(match=ledger_pattern(group_id), count=1000):
        fields: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
        for name, raw in fields.items():
            # Filter on the field name (model:version:day) before decoding the value.
            try:
                model_id, _version, day = name.decode().split(":")
                day_ms = int(day)
            except ValueError:
                raise StateFormatError(
                    f"field {name!r} of {key!r} is not 'model:version:day_ms'; delete the field"
                ) from None
            if model is not None and model_id != model:
                continue
            if day_ms + DAY_MS <= since_ms or day_ms >= until_ms:
                continue
            stats = DayStats.from_dict(orjson.loads(raw))
            day_key = (stats.model_id, stats.model_version, stats.day_start_ms)
            if day_key in merged:
                merged[day_key].merge(stats)
            else:
                merged[day_key] = stats
    return [merged[key] for key in sorted(merged)]
