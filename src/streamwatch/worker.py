"""The Faust worker: thin wiring between Kafka, the pure partition processors and Redis.

One agent consumes the three co-partitioned input topics in batches (``take_events``) and hands
each partition's messages to its :class:`~streamwatch.core.processor.PartitionProcessor`. Each
step's dead-letters and alerts are published (and acknowledged by the broker) *before* the
step's windows and checkpoint are written to Redis in one transaction; only then does Faust ack
the messages. A timer closes the windows of idle partitions.

No Faust tables: their windows expire by wall clock and every update is a changelog write
(INFRA.md). Message bytes are decoded by the core, never by Faust, so bad input cannot crash the
agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis

from streamwatch.adapters.baseline_store import AsyncBaselineStore
from streamwatch.adapters.redis_state import RedisStateStore
from streamwatch.adapters.silence_store import load_silences
from streamwatch.core.drift import DriftPolicy
from streamwatch.core.ledger import ledger_window_ms
from streamwatch.core.processor import (
    PartitionProcessor,
    ProcessorConfig,
    RawMessage,
    StepResult,
    TopicKind,
)
from streamwatch.core.rules import load_rule_set
from streamwatch.core.silences import Silence, apply_silences
from streamwatch.settings import Settings

log = logging.getLogger(__name__)

IDLE_TICK_INTERVAL_S = 1.0
#: How often a worker re-reads the current baselines (a new ``baseline build`` takes effect
#: within this long).
BASELINE_REFRESH_INTERVAL_S = 15.0
#: How often a worker re-reads silences (a new silence mutes alerts within this long).
SILENCE_REFRESH_INTERVAL_S = 5.0


def processor_config(settings: Settings) -> ProcessorConfig:
    """Derive the pure core's configuration (loads and validates the rules file)."""
    rule_set = load_rule_set(settings.rules, settings.windows_ms)
    return ProcessorConfig(
        window_sizes_ms=settings.windows_ms,
        allowed_lateness_ms=settings.allowed_lateness_ms,
        idle_timeout_ms=settings.idle_timeout_ms,
        max_future_skew_ms=settings.max_future_skew_ms,
        rules=rule_set.thresholds,
        detectors=rule_set.detectors,
        absence=rule_set.absence,
        inhibit=rule_set.inhibit,
        ledger_window_ms=ledger_window_ms(settings.windows_ms),
        max_categories=settings.max_categories,
        max_features=settings.max_features,
        label_horizon_ms=settings.label_horizon_ms,
        label_min_coverage=settings.label_min_coverage,
        label_wait_ms=settings.label_wait_ms,
        max_pending_labels=settings.max_pending_labels,
        baseline_auto_windows=settings.baseline_auto_windows,
        drift_policy=DriftPolicy(
            min_samples=settings.drift_min_samples,
            fdr=settings.drift_fdr,
            min_psi=settings.drift_min_psi,
        ),
    )


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class MonitorRuntime:
    """Per-worker state: the processors of the partitions this worker currently owns."""

    def __init__(self, settings: Settings, config: ProcessorConfig, app: faust.App) -> None:
        """Create the runtime; Redis connects lazily on first use."""
        self._settings = settings
        self._config = config
        self._app = app
        self._kinds: dict[str, TopicKind] = {
            settings.topic("inference"): "inference",
            settings.topic("feedback"): "feedback",
            settings.topic("business"): "business",
        }
        self._alerts_topic = settings.topic("alerts")
        self._deadletter_topic = settings.topic("deadletter")
        redis_client = aioredis.Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
            health_check_interval=10,
        )
        self._store = RedisStateStore(redis_client, settings.group_id, settings.window_retention_ms)
        self._baseline_store = AsyncBaselineStore(redis_client)
        self._baselines_loaded = False
        self._redis = redis_client
        self._silences: list[Silence] = []
        self._processors: dict[int, PartitionProcessor] = {}
        self._lock = asyncio.Lock()

    async def refresh_silences(self) -> None:
        """Re-read the silences; on a Redis error keep the ones loaded."""
        try:
            self._silences = await load_silences(self._redis)
        except (OSError, aioredis.RedisError) as exc:
            log.warning("could not refresh silences (%s); keeping the ones loaded", exc)

    async def refresh_baselines(self) -> None:
        """Re-read the current baseline of every model (in place: processors share the dict)."""
        try:
            current = await self._baseline_store.load_all_current()
        except (OSError, aioredis.RedisError) as exc:
            log.warning("could not refresh baselines (%s); keeping the ones loaded", exc)
            return
        async with self._lock:
            known = self._store.baselines
            for key, profile in current.items():
                # Keep the object when the version is unchanged: processors cache per-profile
                # tables on it.
                if key not in known or not known[key].same_as(profile):
                    known[key] = profile
            self._baselines_loaded = True

    async def handle(self, events: Sequence[Any]) -> None:
        """Process one batch of Faust events (any mix of topics and partitions)."""
        by_partition: dict[int, list[RawMessage]] = {}
        for event in events:
            message = event.message
            kind = self._kinds.get(message.topic)
            if kind is None:
                continue
            by_partition.setdefault(message.partition, []).append(
                RawMessage(message.topic, kind, message.partition, message.offset, message.value)
            )
        async with self._lock:
            for partition, messages in by_partition.items():
                processor = await self._processor(partition)
                result = processor.process(messages, _wall_ms())
                await self._commit(partition, result)

    async def tick(self) -> None:
        """Close due windows of idle partitions."""
        async with self._lock:
            for partition, processor in list(self._processors.items()):
                result = processor.tick(_wall_ms())
                # An idle tick also finalises label windows and expires predictions: those
                # must reach Redis too, or a restart would bring expired predictions back.
                if result.changed_state:
                    await self._commit(partition, result)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Forget revoked partitions; their next owner restores them from Redis."""
        async with self._lock:
            for tp in revoked:
                if tp.topic in self._kinds and tp.partition in self._processors:
                    del self._processors[tp.partition]
                    log.info("partition %d revoked", tp.partition)

    async def _processor(self, partition: int) -> PartitionProcessor:
        processor = self._processors.get(partition)
        if processor is None and not self._baselines_loaded:
            # Before the first partition: a model must not start adopting its first windows as
            # a baseline just because the stored one has not been read yet.
            current = await self._store.retrying(
                "loading baselines", self._baseline_store.load_all_current
            )
            self._store.baselines.update(current)
            self._baselines_loaded = True
            await self.refresh_silences()
        if processor is None:
            processor = await self._store.load(partition, self._config)
            self._processors[partition] = processor
            log.info(
                "partition %d loaded: %d open windows, next offsets %s",
                partition,
                len(processor.open_windows),
                processor.checkpoint()["next_offsets"],
            )
        return processor

    async def _commit(self, partition: int, result: StepResult) -> None:
        producer = self._app.producer
        pending = []
        for deadletter in result.deadletters:
            pending.append(
                await producer.send(
                    self._deadletter_topic,
                    deadletter.source.topic.encode(),
                    orjson.dumps(deadletter.model_dump(mode="json")),
                    None,
                    None,
                    None,
                )
            )
        for alert in apply_silences(result.alerts, self._silences, _wall_ms()):
            if alert.silenced_by is None:
                log.warning("alert %s", alert.message)
            else:
                log.info("alert (silenced by %s) %s", alert.silenced_by, alert.message)
            pending.append(
                await producer.send(
                    self._alerts_topic,
                    alert.model_id.encode(),
                    orjson.dumps(alert.model_dump(mode="json")),
                    None,
                    None,
                    None,
                )
            )
        if pending:
            await asyncio.gather(*pending)
        await self._store.persist(partition, result)


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app with the monitor agent, the idle timer and the rebalance hook."""
    config = processor_config(settings)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        web_port=settings.web_port,
        web_host="0.0.0.0",
        datadir=str(settings.data_dir),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        loghandlers=[],
    )
    runtime = MonitorRuntime(settings, config, app)
    topics = app.topic(
        settings.topic("inference"),
        settings.topic("feedback"),
        settings.topic("business"),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )

    @app.agent(topics, name="streamwatch.monitor")
    async def monitor(stream: Any) -> None:
        wait_s = settings.batch_max_wait_ms / 1000
        async for events in stream.take_events(settings.batch_max_messages, within=wait_s):
            await runtime.handle(events)

    @app.timer(interval=IDLE_TICK_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def close_idle_windows() -> None:
        await runtime.tick()

    @app.timer(interval=BASELINE_REFRESH_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh_baselines() -> None:
        await runtime.refresh_baselines()

    @app.timer(interval=SILENCE_REFRESH_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def refresh_silences() -> None:
        await runtime.refresh_silences()

    async def revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        await runtime.on_partitions_revoked(revoked)

    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
    return app


def _credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=ssl_context,
    )


def run_worker(settings: Settings) -> None:
    """Create topics, then run the worker until SIGINT/SIGTERM."""
    from streamwatch.adapters.kafka_admin import ensure_topics

    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper())
    worker.execute_from_commandline()
