"""Read window state from Redis: the API behind ``streamwatch status`` and dashboards.

Also where synchronous Redis clients are made from the settings (:func:`redis_from_settings`),
so every command gets the same credentials and TLS files.

>>> client = StreamwatchClient.from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
>>> client = StreamwatchClient.from_settings(load_settings())  # doctest: +SKIP
>>> [w.metrics["error_rate"] for w in client.windows("fraud-detector", "2.1.0", 60_000)]
... # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from streamwatch.adapters.baseline_store import BaselineStore
from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.baseline import BaselineProfile
from streamwatch.core.drift import DriftPolicy, FeatureDrift
from streamwatch.core.labels import LabelStats, LabelWindow
from streamwatch.core.summary import clean_metric, window_metrics, window_view
from streamwatch.core.window_drift import assess_window, drift_metrics
from streamwatch.settings import Settings
from streamwatch.state_keys import (
    MODELS_KEY,
    checkpoint_pattern,
    decode_partial,
    index_key,
    partial_drift,
    window_key,
)


@dataclass(frozen=True, slots=True)
class ModelSeries:
    """A (model, version) pair that has windows in Redis."""

    model_id: str
    model_version: str
    last_event_ms: int | None


@dataclass(frozen=True, slots=True)
class WindowState:
    """One window, merged over the partitions that wrote it."""

    model_id: str
    model_version: str
    size_ms: int
    start_ms: int
    closed: bool
    partitions: tuple[int, ...]
    aggregate: WindowAggregate
    labels: LabelStats | None = None
    labels_final: bool = False
    baseline: BaselineProfile | None = None
    drift: tuple[FeatureDrift, ...] = ()
    drift_at_close: tuple[dict[str, Any], ...] = ()
    """The drift the worker judged (and alerted on) when the window closed; one partition only."""

    @property
    def end_ms(self) -> int:
        """Exclusive end of the window."""
        return self.start_ms + self.size_ms

    @property
    def metrics(self) -> dict[str, Any]:
        """The flat metrics (``count``, ``error_rate``, ``latency_p95_ms``, ``accuracy``...)."""
        metrics = window_metrics(self.aggregate, self.size_ms, self.start_ms, self.closed)
        if self.baseline is not None and self.drift:
            metrics.update(drift_metrics(list(self.drift), self.baseline, metrics))
        if self.labels is not None:
            metrics.update(self.labels.metrics(self.aggregate.count))
            accuracy = metrics.get("accuracy")
            if (
                self.baseline is not None
                and self.baseline.accuracy is not None
                and accuracy is not None
            ):
                metrics["accuracy_vs_baseline"] = accuracy - self.baseline.accuracy
        return metrics

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON view printed by ``streamwatch status --json``."""
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "size_ms": self.size_ms,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "state": "closed" if self.closed else "open",
            "partitions": list(self.partitions),
            **window_view(self.aggregate, self.size_ms, self.start_ms, self.closed),
            "metrics": {k: clean_metric(v) for k, v in self.metrics.items()},
            "labels": None
            if self.labels is None
            else {"final": self.labels_final, **self.labels.metrics(self.aggregate.count)},
            "baseline": None
            if self.baseline is None
            else {
                "version": self.baseline.version,
                "source": self.baseline.source,
                "adopted": self.baseline.adopted,
            },
            "drift": [finding.to_dict() for finding in self.drift],
            "drift_at_close": list(self.drift_at_close),
        }


class StreamwatchClient:
    """Synchronous reader of streamwatch's Redis state (see :mod:`streamwatch.state_keys`)."""

    def __init__(self, client: redis.Redis, drift_policy: DriftPolicy | None = None) -> None:
        """Wrap a ``redis.Redis`` client created with ``decode_responses=False``.

        Drift is computed on read, against the current baseline, with ``drift_policy``
        (default: the worker's defaults).
        """
        self._redis = client
        self._baselines = BaselineStore(client)
        self._policy = drift_policy or DriftPolicy()

    def baseline(self, model_id: str, model_version: str) -> BaselineProfile | None:
        """Return the current baseline of a model version (or of its ``*`` version)."""
        return self._baselines.current(model_id, model_version) or self._baselines.current(
            model_id, "*"
        )

    @classmethod
    def from_url(cls, url: str) -> StreamwatchClient:
        """Connect to the Redis at ``url``."""
        return cls(redis.Redis.from_url(url, socket_timeout=5.0))

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamwatchClient:
        """Connect to ``STREAMWATCH_REDIS_URL`` with the credentials and TLS files set."""
        return cls(redis_from_settings(settings))

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    def models(self) -> list[ModelSeries]:
        """Return every (model, version) with stored windows, sorted by name."""
        raw: dict[bytes, bytes] = self._redis.hgetall(MODELS_KEY)  # type: ignore[assignment]
        series = []
        for value in raw.values():
            data = orjson.loads(value)
            series.append(
                ModelSeries(data["model_id"], data["model_version"], data["last_event_ms"])
            )
        return sorted(series, key=lambda s: (s.model_id, s.model_version))

    def windows(
        self,
        model_id: str,
        model_version: str,
        size_ms: int,
        limit: int = 20,
        include_open: bool = True,
    ) -> list[WindowState]:
        """Return up to ``limit`` windows of a series, newest first."""
        starts: list[bytes] = self._redis.zrevrange(  # type: ignore[assignment]
            index_key(model_id, model_version, size_ms), 0, max(limit * 2, limit + 4)
        )
        pipe = self._redis.pipeline(transaction=False)
        keys = [(model_id, model_version, size_ms, int(s)) for s in starts]
        for key in keys:
            pipe.hgetall(window_key(key))
        baseline = self.baseline(model_id, model_version)
        result = []
        for key, partials in zip(keys, pipe.execute(), strict=True):
            state = self._merge(key, partials, baseline)
            if state is None or (not include_open and not state.closed):
                continue
            result.append(state)
            if len(result) >= limit:
                break
        return result

    def window(
        self, model_id: str, model_version: str, size_ms: int, start_ms: int
    ) -> WindowState | None:
        """Return one window, or None if it is not stored."""
        key = (model_id, model_version, size_ms, start_ms)
        partials: dict[bytes, bytes] = self._redis.hgetall(window_key(key))  # type: ignore[assignment]
        return self._merge(key, partials, self.baseline(model_id, model_version))

    def partition_checkpoints(self, group_id: str = "streamwatch") -> list[dict[str, Any]]:
        """Return every partition checkpoint of a consumer group (offsets, counters, ...)."""
        checkpoints = []
        for key in self._redis.scan_iter(match=checkpoint_pattern(group_id), count=1000):
            raw = self._redis.get(key)
            if raw is not None:
                checkpoints.append(orjson.loads(raw))
        return sorted(checkpoints, key=lambda c: int(c["partition"]))

    def _merge(
        self,
        key: tuple[str, str, int, int],
        fields: dict[bytes, bytes],
        baseline: BaselineProfile | None,
    ) -> WindowState | None:
        state = _merge(key, fields)
        if state is None or baseline is None or state.aggregate.count == 0:
            return state
        drift = tuple(assess_window(baseline, state.aggregate, self._policy))
        return dataclasses.replace(state, baseline=baseline, drift=drift)


def redis_from_settings(settings: Settings, **options: Any) -> redis.Redis:
    """Return a synchronous client for ``STREAMWATCH_REDIS_URL`` (lazy: connects on first use).

    Applies ``STREAMWATCH_REDIS_USERNAME`` / ``_PASSWORD`` and the ``STREAMWATCH_REDIS_SSL_*``
    files; ``options`` (e.g. ``socket_connect_timeout``) go to ``redis.Redis.from_url``. The
    socket timeout defaults to 5 s.
    """
    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        **{"socket_timeout": 5.0, **options, **settings.redis_options()},
    )


def _merge(key: tuple[str, str, int, int], fields: dict[bytes, bytes]) -> WindowState | None:
    partials = {f: v for f, v in fields.items() if f.startswith(b"p")}
    if not partials:
        return None
    labels: LabelStats | None = None
    labels_final = True
    for name, raw in fields.items():
        if name.startswith(b"l"):
            data = orjson.loads(raw)
            window = LabelWindow.from_dict(data)
            labels_final = labels_final and data["state"] == "final"
            if labels is None:
                labels = window.stats
            else:
                labels.merge(window.stats)
    merged: WindowAggregate | None = None
    partitions = []
    closed = True
    stored: tuple[dict[str, Any], ...] = ()
    if len(partials) == 1:
        stored = tuple(partial_drift(next(iter(partials.values()))))
    for raw in partials.values():
        aggregate, partition, is_closed = decode_partial(raw)
        partitions.append(partition)
        closed = closed and is_closed
        if merged is None:
            merged = aggregate
        else:
            merged.merge(aggregate)
    if merged is None:
        return None
    model_id, version, size_ms, start_ms = key
    return WindowState(
        model_id,
        version,
        size_ms,
        start_ms,
        closed,
        tuple(sorted(partitions)),
        merged,
        labels=labels,
        labels_final=labels is not None and labels_final,
        drift_at_close=stored,
    )
