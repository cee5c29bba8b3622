"""Baseline profiles in Redis: numbered versions per model version, one of them current.

One hash per (model, version), :func:`~streamwatch.state_keys.baseline_key`: field ``v{n}`` holds
profile ``n`` (JSON), ``current`` the number in use, ``latest`` the highest number handed out.
Versions are never deleted, so rolling back is pointing ``current`` at an older one.

:class:`BaselineStore` (synchronous, for the CLI and the client) and :class:`AsyncBaselineStore`
(for the worker) share the semantics; :func:`adopt_commands` puts a worker's auto-adopted profile
into the transaction that also writes its partition checkpoint. The profiles themselves are
:mod:`streamwatch.core.baseline`'s; this module only stores them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from streamwatch.core.baseline import BaselineProfile
from streamwatch.exceptions import ConfigError, StateFormatError
from streamwatch.state_keys import BASELINE_PATTERN, baseline_key

log = logging.getLogger(__name__)

CURRENT_FIELD = "current"
LATEST_FIELD = "latest"
_VERSION_FIELD = re.compile(rb"v(\d+)")
_KEY_PREFIX = BASELINE_PATTERN.removesuffix("*")

Series = tuple[str, str]
#: What a client with ``decode_responses=False`` returns (typed as either by redis-py).
Raw = bytes | str


def version_field(n: int) -> str:
    """Return the hash field holding profile version ``n``."""
    return f"v{n}"


def encode_profile(profile: BaselineProfile, n: int) -> bytes:
    """Serialise ``profile`` as stored version ``n`` (the profile object is not changed)."""
    data = profile.to_dict()
    data["version"] = n
    return orjson.dumps(data)


def decode_profile(raw: Raw, where: str) -> BaselineProfile:
    """Inverse of :func:`encode_profile`.

    Raises:
        StateFormatError: If ``raw`` is not a profile this version reads; ``where`` names it.
    """
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        return BaselineProfile.from_dict(data)
    except StateFormatError as exc:
        raise StateFormatError(f"baseline {where}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFormatError(
            f"baseline {where} is unreadable ({type(exc).__name__}: {exc}); activate another"
            " version, or build and store a new one with 'streamwatch baseline build'"
        ) from None


def adopt_commands(pipe: Pipeline | AsyncPipeline, profile: BaselineProfile) -> None:
    """Queue on a MULTI pipeline the storing of an auto-adopted profile as version 1.

    Only a model version with no baseline yet gets it (HSETNX on ``v1``, ``current`` and
    ``latest``): two partitions adopting at once leave one ``v1`` (the first to commit), and a
    baseline stored by hand is never overwritten. The three queued commands answer 1 where they
    wrote and 0 where they did not.
    """
    key = baseline_key(profile.model_id, profile.model_version)
    pipe.hsetnx(key, version_field(1), encode_profile(profile, 1))
    pipe.hsetnx(key, CURRENT_FIELD, 1)
    pipe.hsetnx(key, LATEST_FIELD, 1)


class BaselineStore:
    """Profiles in Redis through a synchronous ``redis.Redis`` (``decode_responses=False``)."""

    def __init__(self, client: redis.Redis) -> None:
        """Wrap a client; closing it stays the caller's job."""
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> BaselineStore:
        """Connect to the Redis at ``url``."""
        return cls(redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    def save(self, profile: BaselineProfile) -> int:
        """Store ``profile`` as the next version of its model version, make it current.

        Returns:
            The version number ``n`` it was stored as (1 for the first).
        """
        key = baseline_key(profile.model_id, profile.model_version)
        # HINCRBY hands out each number once, however many savers run at the same time.
        n = self._redis.hincrby(key, LATEST_FIELD, 1)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={version_field(n): encode_profile(profile, n), CURRENT_FIELD: n})
        pipe.execute()
        return n

    def current(self, model_id: str, model_version: str) -> BaselineProfile | None:
        """Return the current profile of a model version, or None if it has none.

        Raises:
            StateFormatError: If the stored profile cannot be read by this version.
        """
        n = self.current_version(model_id, model_version)
        if n is None:
            return None
        raw = self._redis.hget(baseline_key(model_id, model_version), version_field(n))
        return _current_profile(raw, model_id, model_version, n)

    def current_version(self, model_id: str, model_version: str) -> int | None:
        """Return the number of the current profile, or None if the model version has none."""
        raw = self._redis.hget(baseline_key(model_id, model_version), CURRENT_FIELD)
        return _number(raw, f"{model_id}@{model_version}")

    def get(self, model_id: str, model_version: str, n: int) -> BaselineProfile | None:
        """Return profile version ``n`` of a model version, or None if it is not stored.

        Raises:
            StateFormatError: If the stored profile cannot be read by this version.
        """
        raw = self._redis.hget(baseline_key(model_id, model_version), version_field(n))
        return None if raw is None else decode_profile(raw, _where(model_id, model_version, n))

    def versions(self, model_id: str, model_version: str) -> list[int]:
        """Return the stored version numbers of a model version, ascending."""
        fields = self._redis.hkeys(baseline_key(model_id, model_version))
        return _version_numbers(fields)

    def list(self) -> list[dict[str, Any]]:
        """Return the summary of every stored profile, with ``current`` true for those in use.

        Sorted by model, version and profile number. Profiles this version cannot read are
        left out, with a warning in the log.
        """
        summaries: list[dict[str, Any]] = []
        for key in self._redis.scan_iter(match=BASELINE_PATTERN, count=1000):
            fields = self._redis.hgetall(key)
            summaries.extend(_summaries(_series(key), fields))
        return sorted(summaries, key=_summary_order)

    def activate(self, model_id: str, model_version: str, n: int) -> BaselineProfile:
        """Make stored version ``n`` the current profile (e.g. roll back); return it.

        Raises:
            ConfigError: If version ``n`` is not stored (the message lists those that are).
            StateFormatError: If it is stored but cannot be read by this version.
        """
        profile = self.get(model_id, model_version, n)
        if profile is None:
            raise _no_such_version(
                model_id, model_version, n, self.versions(model_id, model_version)
            )
        self._redis.hset(baseline_key(model_id, model_version), CURRENT_FIELD, n)
        return profile

    def load_all_current(self) -> dict[Series, BaselineProfile]:
        """Return the current profile of every model version that has one.

        Profiles this version cannot read are left out, with a warning in the log.
        """
        keys: list[Raw] = list(self._redis.scan_iter(match=BASELINE_PATTERN, count=1000))
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, CURRENT_FIELD)
        wanted = _wanted(keys, pipe.execute())
        for key, n in wanted:
            pipe.hget(key, version_field(n))
        return _loaded(wanted, pipe.execute() if wanted else [])


class AsyncBaselineStore:
    """:class:`BaselineStore` over ``redis.asyncio``, for the worker."""

    def __init__(self, client: aioredis.Redis) -> None:
        """Wrap a client; closing it stays the caller's job."""
        self._redis = client

    async def save(self, profile: BaselineProfile) -> int:
        """As :meth:`BaselineStore.save`."""
        key = baseline_key(profile.model_id, profile.model_version)
        n = int(await self._redis.hincrby(key, LATEST_FIELD, 1))
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={version_field(n): encode_profile(profile, n), CURRENT_FIELD: n})
        await pipe.execute()
        return n

    async def current(self, model_id: str, model_version: str) -> BaselineProfile | None:
        """As :meth:`BaselineStore.current`."""
        n = await self.current_version(model_id, model_version)
        if n is None:
            return None
        raw = await self._redis.hget(baseline_key(model_id, model_version), version_field(n))
        return _current_profile(raw, model_id, model_version, n)

    async def current_version(self, model_id: str, model_version: str) -> int | None:
        """As :meth:`BaselineStore.current_version`."""
        raw = await self._redis.hget(baseline_key(model_id, model_version), CURRENT_FIELD)
        return _number(raw, f"{model_id}@{model_version}")

    async def get(self, model_id: str, model_version: str, n: int) -> BaselineProfile | None:
        """As :meth:`BaselineStore.get`."""
        raw = await self._redis.hget(baseline_key(model_id, model_version), version_field(n))
        return None if raw is None else decode_profile(raw, _where(model_id, model_version, n))

    async def versions(self, model_id: str, model_version: str) -> list[int]:
        """As :meth:`BaselineStore.versions`."""
        return _version_numbers(await self._redis.hkeys(baseline_key(model_id, model_version)))

    async def list(self) -> list[dict[str, Any]]:
        """As :meth:`BaselineStore.list`."""
        summaries: list[dict[str, Any]] = []
        async for key in self._redis.scan_iter(match=BASELINE_PATTERN, count=1000):
            summaries.extend(_summaries(_series(key), await self._redis.hgetall(key)))
        return sorted(summaries, key=_summary_order)

    async def activate(self, model_id: str, model_version: str, n: int) -> BaselineProfile:
        """As :meth:`BaselineStore.activate`."""
        profile = await self.get(model_id, model_version, n)
        if profile is None:
            stored = await self.versions(model_id, model_version)
            raise _no_such_version(model_id, model_version, n, stored)
        await self._redis.hset(baseline_key(model_id, model_version), CURRENT_FIELD, n)
        return profile

    async def load_all_current(self) -> dict[Series, BaselineProfile]:
        """As :meth:`BaselineStore.load_all_current`; the worker refreshes its baselines so."""
        keys = [key async for key in self._redis.scan_iter(match=BASELINE_PATTERN, count=1000)]
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, CURRENT_FIELD)
        wanted = _wanted(keys, await pipe.execute())
        for key, n in wanted:
            pipe.hget(key, version_field(n))
        return _loaded(wanted, await pipe.execute() if wanted else [])


def _number(raw: Raw | None, where: str) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise StateFormatError(
            f"baseline {where}: 'current' is {raw!r}, not a version number; run"
            " 'streamwatch baseline activate' with a stored version"
        ) from None


def _where(model_id: str, model_version: str, n: int) -> str:
    return f"{model_id}@{model_version} v{n}"


def _series(key: Raw) -> Series:
    text = key.decode() if isinstance(key, bytes) else key
    model_id, _, model_version = text.removeprefix(_KEY_PREFIX).partition(":")
    return model_id, model_version


def _version_number(field: Raw) -> int | None:
    match = _VERSION_FIELD.fullmatch(field.encode() if isinstance(field, str) else field)
    return None if match is None else int(match[1])


def _version_numbers(fields: Sequence[Raw]) -> list[int]:
    return sorted(n for n in map(_version_number, fields) if n is not None)


def _current_profile(raw: Raw | None, model_id: str, model_version: str, n: int) -> BaselineProfile:
    if raw is None:
        raise StateFormatError(
            f"baseline {model_id}@{model_version}: 'current' is {n} but no v{n} is stored;"
            " run 'streamwatch baseline activate' with a stored version"
        )
    return decode_profile(raw, _where(model_id, model_version, n))


def _summaries(series: Series, fields: Mapping[Raw, Raw]) -> list[dict[str, Any]]:
    where = "{}@{}".format(*series)
    try:
        current = _number(fields.get(CURRENT_FIELD.encode(), fields.get(CURRENT_FIELD)), where)
    except StateFormatError as exc:
        log.warning("%s", exc)
        current = None
    summaries = []
    for name, raw in fields.items():
        n = _version_number(name)
        if n is None:
            continue
        try:
            profile = decode_profile(raw, _where(*series, n))
        except StateFormatError as exc:
            log.warning("skipping %s", exc)
            continue
        summaries.append({**profile.summary(), "version": n, "current": n == current})
    return summaries


def _summary_order(summary: dict[str, Any]) -> tuple[str, str, int]:
    return summary["model_id"], summary["model_version"], summary["version"]


def _wanted(keys: Sequence[Raw], currents: Sequence[Raw | None]) -> list[tuple[Raw, int]]:
    """Pair each key with its current version number, leaving out those with none."""
    wanted = []
    for key, raw in zip(keys, currents, strict=True):
        try:
            n = _number(raw, "{}@{}".format(*_series(key)))
        except StateFormatError as exc:
            log.warning("not using %s", exc)
            continue
        if n is not None:
            wanted.append((key, n))
    return wanted


def _loaded(wanted: list[tuple[Raw, int]], raws: list[Raw | None]) -> dict[Series, BaselineProfile]:
    profiles: dict[Series, BaselineProfile] = {}
    for (key, n), raw in zip(wanted, raws, strict=True):
        series = _series(key)
        try:
            profiles[series] = _current_profile(raw, *series, n)
        except StateFormatError as exc:
            # The worker keeps going without a baseline for this model rather than stopping.
            log.warning("not using %s", exc)
    return profiles


def _no_such_version(model_id: str, model_version: str, n: int, stored: list[int]) -> ConfigError:
    return ConfigError(
        f"{model_id}@{model_version} has no baseline version {n}; stored versions:"
        f" {stored or 'none'} (see 'streamwatch baseline list')"
    )
