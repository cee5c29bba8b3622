"""Over-count after worker crashes: a plain Faust counter against streamwatch.

Run with ``.venv/bin/python bench/crash.py`` (``--quick`` for a smaller stream). See the
"Crash over-count" section of ``bench/README.md`` for what is measured and how to read it.

Every scenario runs on fresh topics and a fresh consumer group, on one embedded broker (Tansu)
and one embedded Redis: two worker processes form a group on a 4-partition inference topic, the
whole stream is produced, one worker is stopped with SIGKILL or SIGTERM once a third of the
messages have been applied, the survivor takes its partitions over, the stopped worker is started
again and gets its share back, and the bench waits until the last offset of every partition has
been applied. Then it compares what the system counted with what was produced:

- **faust**: ``bench/faust_counter.py``, a ``Table`` counting events per model (the value a
  Faust user reads: the table, recovered from its changelog when a partition moves);
- **streamwatch**: two ``streamwatch worker`` processes; every closed window (count, error count,
  latency histogram, late events) is compared with the exact values computed from the produced
  events.

Nothing waits on consumer lag (Tansu's ListOffsets(latest) is wrong) or on a fixed sleep: every
wait polls an observable fact (the workers' own logs of their partition assignment, the offsets
they report in Redis, the windows in Redis) and fails at a deadline with the workers' log tails.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson
import redis
from confluent_kafka import Producer

from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.client import StreamwatchClient
from streamwatch.core.aggregate import LATENCY_RELATIVE_ACCURACY
from streamwatch.core.sketch import LogHistogram
from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from streamwatch.events import InferenceEvent
from streamwatch.generator import DEFAULT_MODELS, ModelSpec, TrafficGenerator, encode_batches
from streamwatch.settings import Settings, load_settings
from streamwatch.supervise import WorkerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faust_counter  # bench/ is not a package: found through sys.path
from embedded_servers import servers

T = TypeVar("T")
Event = dict[str, Any]

BENCH_DIR = Path(__file__).resolve().parent
SEED = 20_240_611
#: Fixed simulated start (2025-06-15T15:06:40Z), as in bench/run.py.
START_MS = 1_750_000_000_000
RATE_EPS = 1_000.0
SLICE_MS = 1_000
BATCH_SIZE = 100
PARTITIONS = 4
#: The default fleet plus four more model ids, so that all four partitions carry traffic.
FLEET = (
    *DEFAULT_MODELS,
    ModelSpec("search-ranker", "3.0.1", 0.30, "regressor", latency_median_ms=30.0),
    ModelSpec("spam-filter", "1.4.0", 0.25, "classifier", labels=("ham", "spam")),
    ModelSpec("ad-ranker", "7.2.0", 0.25, "recommender", latency_median_ms=50.0),
    ModelSpec("eta-predictor", "0.9.5", 0.20, "regressor", latency_median_ms=20.0),
)
MODEL_IDS = sorted({m.model_id for m in FLEET})
#: Producers key by model id; partitions are chosen explicitly so each carries two models.
PARTITION_OF = {model_id: i % PARTITIONS for i, model_id in enumerate(MODEL_IDS)}
#: One event per partition, two largest windows after the stream, closes every window
#: (streamwatch only; its own windows are not compared).
FLUSH_MODEL = "crash-bench-flush"

POLL_S = 0.1
PRODUCE_TICK_S = 0.02
GROUP_TIMEOUT_S = 90.0
EXIT_TIMEOUT_S = {signal.SIGKILL: 10.0, signal.SIGTERM: 45.0}
#: Consumption deadlines: this long plus one second per ``DRAIN_FLOOR_EPS`` events.
DRAIN_GRACE_S = 120.0
DRAIN_FLOOR_EPS = 400.0
#: The Faust counts must stay unchanged this long after the last offset was applied.
FAUST_STABLE_S = 2.0
WINDOWS_TIMEOUT_S = 60.0


def log(message: str) -> None:
    """Progress goes to stderr; the table goes to stdout."""
    print(f"[crash {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A scenario could not be run to the end (the message says what and shows the logs)."""


def wait_for(
    probe: Callable[[], T | None],
    timeout_s: float,
    what: str,
    on_timeout: Callable[[], str],
    interval_s: float = POLL_S,
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(
                f"timed out after {timeout_s:.0f} s waiting for {what}\n{on_timeout()}"
            )
        time.sleep(interval_s)  # polling interval; the probe decides


# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    partition: int
    key: bytes
    value: bytes
    events: int


@dataclass(slots=True)
class Stream:
    """The messages of one scenario and the events they carry (flush event excluded)."""

    events: list[Event]
    messages: list[Message]

    @property
    def produced(self) -> int:
        return len(self.events)

    def message_counts(self) -> dict[int, int]:
        """Messages per partition: on a fresh topic, the offset after the last one."""
        return dict(Counter(m.partition for m in self.messages))


def generate(n_events: int) -> list[list[Event]]:
    """Draw ``n_events`` inference events in 1 s slices (seeded: the same on every run)."""
    gen = TrafficGenerator(FLEET, seed=SEED, start_ms=START_MS, rate_eps=RATE_EPS)
    slices: list[list[Event]] = []
    remaining = n_events
    while remaining > 0:
        events = gen.generate(SLICE_MS).inference[:remaining]
        slices.append(events)
        remaining -= len(events)
    return slices


def build_stream(slices: Sequence[list[Event]], batch_size: int, flush_after_ms: int) -> Stream:
    """Encode slice by slice, as ``streamwatch produce`` does; optionally add flush events."""
    messages: list[Message] = []
    events: list[Event] = []
    for piece in slices:
        events.extend(piece)
        for key, value in encode_batches(piece, batch_size):
            n = len(orjson.loads(value)) if batch_size > 1 else 1
            messages.append(Message(PARTITION_OF[key.decode()], key, value, n))
    if flush_after_ms:
        last_ms = max(round(e["timestamp"] * 1000) for e in events)
        for partition in range(PARTITIONS):
            event = {
                "request_id": f"flush-{partition}",
                "model_id": FLUSH_MODEL,
                "model_version": str(partition),
                "timestamp": (last_ms + flush_after_ms) / 1000,
                "latency_ms": 1.0,
            }
            messages.append(Message(partition, FLUSH_MODEL.encode(), orjson.dumps(event), 1))
    return Stream(events, messages)


class PacedProducer(threading.Thread):
    """Produces a stream at an even pace over ``duration_s`` in a background thread.

    Live traffic, so a worker is stopped while data is still arriving, whatever the message
    shape (a batched stream produced at once would be consumed in a second or two). Records the
    offset of every delivered message; :meth:`finish` checks that each partition got offsets
    ``0 .. n-1`` in order (idempotent producer: no duplicates, no reordering).
    """

    def __init__(self, bootstrap: str, topic: str, stream: Stream, duration_s: float) -> None:
        super().__init__(name="crash-producer", daemon=True)
        self._brokers = bootstrap
        self._topic = topic
        self._stream = stream
        self._duration_s = duration_s
        self._offsets: dict[int, list[int]] = defaultdict(list)
        self._errors: list[str] = []
        self._failure: BaseException | None = None
        self.abort = threading.Event()

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))
        else:
            self._offsets[msg.partition()].append(msg.offset())

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # reported by finish()
            self._failure = exc

    def _produce(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self._brokers, "linger.ms": 5, "enable.idempotence": True}
        )
        messages = self._stream.messages
        started = time.monotonic()
        sent = 0
        while sent < len(messages):
            if self.abort.is_set():
                return
            elapsed = time.monotonic() - started
            due = min(len(messages), int(len(messages) * elapsed / self._duration_s) + 1)
            while sent < due:
                message = messages[sent]
                try:
                    producer.produce(
                        self._topic,
                        value=message.value,
                        key=message.key,
                        partition=message.partition,
                        on_delivery=self._delivered,
                    )
                    sent += 1
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            # Pacing, not synchronisation: the next messages are due at this rate.
            time.sleep(PRODUCE_TICK_S)
        if producer.flush(120) != 0:
            raise BenchError("the producer could not deliver every message within 120 s")

    def check(self) -> None:
        """Raise if producing has failed (called from the polling loops)."""
        if self._failure is not None:
            raise BenchError(f"producing failed: {self._failure!r}")

    def finish(self, timeout_s: float) -> None:
        """Wait for the last delivery; check the offsets."""
        self.join(timeout_s)
        if self.is_alive():
            raise BenchError(f"producing did not finish within {timeout_s:.0f} s")
        if self._failure is not None:
            raise BenchError(f"producing failed: {self._failure!r}")
        if self._errors:
            raise BenchError(f"{len(self._errors)} messages not delivered: {self._errors[:3]}")
        for partition, expected in self._stream.message_counts().items():
            got = self._offsets[partition]
            if got != list(range(expected)):
                raise BenchError(
                    f"partition {partition}: {expected} messages produced, but the delivered"
                    f" offsets are not 0..{expected - 1} in order ({len(got)} delivered,"
                    f" first {got[:3]})"
                )


# -- worker processes ------------------------------------------------------------------------


class Worker(Protocol):
    log_path: Path

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def signal(self, signum: signal.Signals) -> None: ...

    def wait(self, timeout_s: float) -> int | None: ...

    def stop(self, grace_s: float = 15.0) -> None: ...

    def log_tail(self, lines: int = 40) -> str: ...


_JOINED = re.compile(r"Joined group '[^']*' \(generation (-?\d+)\)")
_ASSIGNED = "Setting newly assigned partitions"
_REVOKED = "Revoking previously assigned partitions"


def parse_partitions(text: str) -> set[int]:
    """Parse Faust's partition set notation: ``{0, 2}``, ``{0-3}``, ``{0-1, 3}``."""
    result: set[int] = set()
    for part in text.strip().strip("{}").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        result.update(range(int(lo), int(hi or lo) + 1))
    return result


def read_assignment(log_path: Path, topic: str) -> tuple[int, frozenset[int]] | None:
    """Return ``(generation, partitions of topic)`` from a Faust worker's log, or None.

    The consumer logs every join (with the generation), revocation and assignment (as a table
    of topics and partition sets) at INFO. None: not assigned (yet), or revoked since.
    """
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    generation = -1
    current: tuple[int, frozenset[int]] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        joined = _JOINED.search(line)
        if joined:
            generation = int(joined.group(1))
        elif _REVOKED in line:
            current = None
        elif _ASSIGNED in line:
            partitions: set[int] = set()
            j = i
            while "for group" not in lines[j]:
                j += 1
                if j >= len(lines):
                    return current  # the table is still being written
                cells = [c.strip() for c in lines[j].strip().strip("|+").split("|")]
                if len(cells) == 2 and cells[0] == topic:
                    partitions = parse_partitions(cells[1])
            current = (generation, frozenset(partitions))
            i = j
        i += 1
    return current


# -- the two systems -------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    counted: int
    exact: bool
    replayed: int
    detail: list[str] = field(default_factory=list)


class System(ABC):
    """One system under test on fresh topics and a fresh group."""

    label: str
    #: How far after the stream the flush events go; 0: none.
    flush_after_ms = 0

    def __init__(self, broker: EmbeddedBroker, redis_url: str, workdir: Path) -> None:
        self.name = f"crash{uuid.uuid4().hex[:8]}"
        self.bootstrap = broker.bootstrap
        self.redis_url = redis_url
        self.workdir = workdir
        self.settings: Settings = load_settings(
            environ={},
            kafka_bootstrap=broker.bootstrap,
            redis_url=redis_url,
            topic_prefix=self.name,
            group_id=self.name,
            partitions=PARTITIONS,
        )
        ensure_topics(self.settings)
        self.topic = self.settings.topic("inference")
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5.0)
        self.ports = [free_port(), free_port()]

    @abstractmethod
    def worker(self, index: int, incarnation: int) -> Worker:
        """A (not yet started) worker process; ``incarnation`` > 0 for a restart."""

    @abstractmethod
    def progress(self) -> dict[int, int]:
        """Partition -> offset of the next message to apply, as the system reports it."""

    @abstractmethod
    def settle(self, stream: Stream, timeout_s: float, logs: Callable[[], str]) -> None:
        """After the last offsets were applied: wait until the result can be read."""

    @abstractmethod
    def outcome(self, stream: Stream) -> Outcome:
        """Compare what the system counted with the stream."""

    def close(self) -> None:
        self.redis.close()


class FaustSystem(System):
    label = "faust"

    def worker(self, index: int, incarnation: int) -> Worker:
        env = {
            "FAUST_COUNTER_GROUP": self.name,
            "FAUST_COUNTER_PARTITIONS": str(PARTITIONS),
            "FAUST_COUNTER_BOOTSTRAP": self.bootstrap,
            "FAUST_COUNTER_TOPIC": self.topic,
            "FAUST_COUNTER_REDIS_URL": self.redis_url,
            "FAUST_COUNTER_WEB_PORT": str(self.ports[index]),
            "FAUST_COUNTER_DATADIR": str(self.workdir / f"{self.name}-w{index}"),
        }
        return WorkerProcess(
            env,
            self.workdir / f"{self.name}-w{index}.{incarnation}.log",
            argv=[sys.executable, str(BENCH_DIR / "faust_counter.py"), "worker", "-l", "info"],
        )

    def _states(self) -> dict[int, dict[bytes, bytes]]:
        pipe = self.redis.pipeline(transaction=False)
        for partition in range(PARTITIONS):
            pipe.hgetall(faust_counter.state_key(self.name, partition))
        return dict(enumerate(pipe.execute()))

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self._states().values():
            if b"counts" in state:
                counts.update(orjson.loads(state[b"counts"]))
        return counts

    def progress(self) -> dict[int, int]:
        return {p: int(s[b"offset"]) + 1 for p, s in self._states().items() if b"offset" in s}

    def settle(self, stream: Stream, timeout_s: float, logs: Callable[[], str]) -> None:
        # The owner publishes its table values every 0.2 s; they must stop changing.
        seen = {"counts": self._counts(), "since": time.monotonic()}

        def stable() -> bool:
            now = self._counts()
            if now != seen["counts"]:
                seen.update(counts=now, since=time.monotonic())
            return time.monotonic() - seen["since"] >= FAUST_STABLE_S

        wait_for(stable, timeout_s, "the Faust table counts to stop changing", logs)

    def outcome(self, stream: Stream) -> Outcome:
        counts = self._counts()
        expected = Counter(e["model_id"] for e in stream.events)
        applied = sum(
            int(v) for v in self.redis.hgetall(faust_counter.applied_key(self.name)).values()
        )
        detail = []
        for model, n in sorted(expected.items()):
            got = counts.get(model, 0)
            detail.append(f"{model}: {got} counted, {n} produced ({_pct(got, n)})")
        detail.append(f"events applied by the agents (at least): {applied}")
        if applied > sum(counts.values()):
            detail.append(
                f"applied but not in the final table: {applied - sum(counts.values())} events"
                " (table updates that never reached the changelog, e.g. a killed worker's"
                " unsent writes, whose messages were then replayed)"
            )
        exact = dict(expected) == counts
        return Outcome(sum(counts.values()), exact, applied - stream.produced, detail)


class StreamwatchSystem(System):
    label = "streamwatch"

    def __init__(self, broker: EmbeddedBroker, redis_url: str, workdir: Path) -> None:
        super().__init__(broker, redis_url, workdir)
        # Windows, lateness and everything else that affects processing: the shipped defaults.
        self.windows_ms = self.settings.windows_ms
        self.flush_after_ms = 2 * max(self.windows_ms) + self.settings.allowed_lateness_ms
        # Window keys are not namespaced by group: every scenario starts from an empty Redis.
        self.redis.flushdb()
        self.client = StreamwatchClient.from_url(redis_url)
        self._expected_cache: dict[tuple[str, str, int, int], dict[str, Any]] | None = None

    def worker(self, index: int, incarnation: int) -> Worker:
        env = {
            "STREAMWATCH_KAFKA_BOOTSTRAP": self.bootstrap,
            "STREAMWATCH_REDIS_URL": self.redis_url,
            "STREAMWATCH_TOPIC_PREFIX": self.name,
            "STREAMWATCH_GROUP_ID": self.name,
            "STREAMWATCH_PARTITIONS": str(PARTITIONS),
            "STREAMWATCH_WEB_PORT": str(self.ports[index]),
            "STREAMWATCH_DATA_DIR": str(self.workdir / f"{self.name}-w{index}"),
            # INFO: the bench reads the consumer's assignment log lines.
            "STREAMWATCH_LOG_LEVEL": "info",
        }
        return WorkerProcess(env, self.workdir / f"{self.name}-w{index}.{incarnation}.log")

    def _checkpoints(self) -> list[dict[str, Any]]:
        return self.client.partition_checkpoints(self.name)

    def progress(self) -> dict[int, int]:
        return {
            int(c["partition"]): int(c["next_offsets"][self.topic])
            for c in self._checkpoints()
            if self.topic in c["next_offsets"]
        }

    def _expected(self, stream: Stream) -> dict[tuple[str, str, int, int], dict[str, Any]]:
        """Exact count, error count and latency histogram of every window of the stream."""
        if self._expected_cache is None:
            self._expected_cache = self._compute_expected(stream)
        return self._expected_cache

    def _compute_expected(self, stream: Stream) -> dict[tuple[str, str, int, int], dict[str, Any]]:
        groups: dict[tuple[str, str, int, int], list[InferenceEvent]] = defaultdict(list)
        for raw in stream.events:
            event = InferenceEvent.model_validate(raw)
            ts = event.timestamp_ms
            for size in self.windows_ms:
                groups[(event.model_id, event.model_version, size, ts - ts % size)].append(event)
        expected = {}
        for key, members in groups.items():
            latency = LogHistogram(relative_accuracy=LATENCY_RELATIVE_ACCURACY)
            latency.add_array(np.array([e.latency_ms for e in members], dtype=np.float64))
            expected[key] = {
                "count": len(members),
                "errors": sum(e.status == "error" for e in members),
                "latency": latency,
            }
        return expected

    def _series(self, stream: Stream) -> set[tuple[str, str]]:
        return {(e["model_id"], e["model_version"]) for e in stream.events}

    def settle(self, stream: Stream, timeout_s: float, logs: Callable[[], str]) -> None:
        want: dict[tuple[str, str, int], set[int]] = defaultdict(set)
        for model_id, version, size, start in self._expected(stream):
            want[(model_id, version, size)].add(start)

        def all_closed() -> bool:
            for (model_id, version, size), starts in want.items():
                stored = self.client.windows(model_id, version, size, limit=len(starts) + 10)
                if not starts <= {w.start_ms for w in stored if w.closed}:
                    return False
            return True

        wait_for(all_closed, timeout_s, "every window of the stream to close in Redis", logs)

    def outcome(self, stream: Stream) -> Outcome:
        expected = self._expected(stream)
        stored = {}
        for model_id, version in self._series(stream):
            for size in self.windows_ms:
                n = sum(1 for k in expected if k[:3] == (model_id, version, size))
                for window in self.client.windows(model_id, version, size, limit=n + 10):
                    stored[(model_id, version, size, window.start_ms)] = window
        detail: list[str] = []
        for key in sorted(expected.keys() | stored.keys()):
            want, got = expected.get(key), stored.get(key)
            if want is None or got is None:
                detail.append(f"window {key}: {'not stored' if got is None else 'unexpected'}")
                continue
            agg = got.aggregate
            problems = [
                what
                for what, ok in (
                    ("open", got.closed),
                    (f"count {agg.count} != {want['count']}", agg.count == want["count"]),
                    (
                        f"errors {agg.error_count} != {want['errors']}",
                        agg.error_count == want["errors"],
                    ),
                    ("latency histogram differs", agg.latency == want["latency"]),
                    (f"late_events {agg.late_events}", agg.late_events == 0),
                )
                if not ok
            ]
            if problems:
                detail.append(f"window {key}: {', '.join(problems)}")
        smallest = min(self.windows_ms)
        counted = sum(w.aggregate.count for k, w in stored.items() if k[2] == smallest)
        checkpoints = self._checkpoints()
        counters: Counter[str] = Counter()
        for checkpoint in checkpoints:
            counters.update(checkpoint["counters"])
            counters.update({f"deadletter:{k}": v for k, v in checkpoint["deadletters"].items()})
        if counters["inference_events"] != stream.produced + PARTITIONS:
            detail.append(
                f"inference_events counter {counters['inference_events']} !="
                f" {stream.produced} + {PARTITIONS} flush events"
            )
        exact = not detail
        detail.insert(
            0,
            f"{len(expected)} windows expected, {len(stored)} stored;"
            f" counters {dict(sorted(counters.items()))}",
        )
        return Outcome(counted, exact, counters["replayed_messages_skipped"], detail)

    def close(self) -> None:
        self.client.close()
        super().close()


def _pct(counted: int, produced: int) -> str:
    return f"{100.0 * (counted - produced) / produced:+.2f} %" if produced else "-"


# -- one scenario ----------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    system: str
    signal: str
    shape: str
    produced: int
    messages: int
    counted: int
    exact: bool
    replayed: int
    run_s: float
    pause_s: float
    detail: list[str]

    @property
    def over_pct(self) -> float:
        return 100.0 * (self.counted - self.produced) / self.produced


class Group:
    """The two worker slots of a scenario and the waits on their shared state."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.slots: list[Worker | None] = [None, None]
        self.incarnations = [0, 0]
        self.all_started: list[Worker] = []

    def start(self, index: int) -> None:
        worker = self.system.worker(index, self.incarnations[index])
        self.incarnations[index] += 1
        worker.start()
        self.slots[index] = worker
        self.all_started.append(worker)

    def live(self) -> list[Worker]:
        return [w for w in self.slots if w is not None]

    def logs(self) -> str:
        return "\n\n".join(f"--- {w.log_path}\n{w.log_tail(25)}" for w in self.all_started)

    def check_alive(self) -> None:
        for worker in self.live():
            if worker.pid is None:
                raise BenchError(
                    f"a worker exited unexpectedly\n--- {worker.log_path}\n{worker.log_tail(60)}"
                )

    def assignments(self) -> list[tuple[int, frozenset[int]] | None]:
        return [read_assignment(w.log_path, self.system.topic) for w in self.live()]

    def balanced(self) -> bool:
        """Every live worker has a non-empty share of one generation, together all partitions."""
        self.check_alive()
        found = self.assignments()
        if any(a is None or not a[1] for a in found):
            return False
        generations = {a[0] for a in found if a is not None}
        shares = [a[1] for a in found if a is not None]
        union = frozenset().union(*shares)
        return (
            len(generations) == 1
            and sum(len(s) for s in shares) == PARTITIONS
            and union == frozenset(range(PARTITIONS))
        )

    def wait_balanced(self, what: str) -> None:
        wait_for(self.balanced, GROUP_TIMEOUT_S, what, self.logs)

    def stop_all(self) -> None:
        for worker in self.all_started:
            with contextlib.suppress(Exception):
                worker.stop(grace_s=10.0)


def run_scenario(
    system_cls: type[System],
    signum: signal.Signals,
    shape: str,
    slices: Sequence[list[Event]],
    produce_s: float,
    broker: EmbeddedBroker,
    redis_server: EmbeddedRedis,
    workdir: Path,
) -> Result:
    """Run one scenario end to end; see the module docstring."""
    system = system_cls(broker, redis_server.url, workdir)
    label = f"{system.label} {signum.name} {shape}"
    stream = build_stream(slices, BATCH_SIZE if shape == "batched" else 1, system.flush_after_ms)
    total_messages = len(stream.messages)
    group = Group(system)
    producer: PacedProducer | None = None
    try:
        started = time.monotonic()
        group.start(0)
        group.start(1)
        group.wait_balanced("two workers to share the 4 partitions")
        log(
            f"{label}: group formed after {time.monotonic() - started:.1f} s; producing"
            f" {stream.produced:,} events in {total_messages:,} messages over {produce_s:.0f} s"
        )
        producer = PacedProducer(broker.bootstrap, system.topic, stream, produce_s)
        producer.start()
        ends = stream.message_counts()
        drain_s = DRAIN_GRACE_S + stream.produced / DRAIN_FLOOR_EPS

        def applied() -> int:
            group.check_alive()
            producer.check()
            return sum(system.progress().values())

        wait_for(
            lambda: applied() >= total_messages / 3,
            drain_s,
            f"a third of the {total_messages} messages to be applied",
            group.logs,
        )
        victim = group.slots[0]
        assert victim is not None
        share = read_assignment(victim.log_path, system.topic)
        at_kill = system.progress()
        victim_left = sum(ends[p] - at_kill.get(p, 0) for p in (share[1] if share else ()))
        log(
            f"{label}: {applied():,}/{total_messages:,} messages applied; sending {signum.name}"
            f" to worker 0 (partitions {sorted(share[1]) if share else '?'},"
            f" {victim_left:,} of their messages not yet applied)"
        )
        killed_at = time.monotonic()
        victim.signal(signum)
        if victim.wait(EXIT_TIMEOUT_S[signum]) is None:
            raise BenchError(
                f"worker 0 did not exit within {EXIT_TIMEOUT_S[signum]:.0f} s of"
                f" {signum.name}\n{group.logs()}"
            )
        group.slots[0] = None
        group.wait_balanced("the surviving worker to be assigned every partition")
        # ... and to have resumed the victim's partitions (its table recovery or checkpoint
        # load is over): a rebalance in the middle of a Faust recovery is a different test.
        unfinished = [p for p in (share[1] if share else ()) if at_kill.get(p, 0) < ends[p]]
        wait_for(
            lambda: (
                group.balanced()
                and all(system.progress().get(p, 0) > at_kill.get(p, 0) for p in unfinished)
            ),
            drain_s,
            f"the surviving worker to resume partitions {unfinished}",
            group.logs,
        )
        pause_s = time.monotonic() - killed_at
        log(
            f"{label}: survivor resumed the victim's partitions {pause_s:.1f} s after the"
            " signal; restarting worker 0"
        )
        group.start(0)
        group.wait_balanced("the restarted worker to get its share back")
        producer.finish(produce_s + 120.0)
        log(f"{label}: group rebalanced, stream produced; waiting for the last offsets")
        wait_for(
            lambda: (
                all(system.progress().get(p, 0) >= end for p, end in ends.items())
                and group.balanced()
            ),
            drain_s,
            "the last offset of every partition to be applied",
            group.logs,
        )
        system.settle(stream, WINDOWS_TIMEOUT_S, group.logs)
        run_s = time.monotonic() - started
        outcome = system.outcome(stream)
    finally:
        if producer is not None:
            producer.abort.set()
        group.stop_all()
        system.close()
    result = Result(
        system.label,
        signum.name,
        shape,
        stream.produced,
        total_messages - (PARTITIONS if system.flush_after_ms else 0),
        outcome.counted,
        outcome.exact,
        outcome.replayed,
        run_s,
        pause_s,
        outcome.detail,
    )
    log(
        f"{label}: counted {result.counted:,} of {result.produced:,}"
        f" ({result.over_pct:+.2f} %), exact: {'yes' if result.exact else 'NO'},"
        f" replayed: {result.replayed:,}, {run_s:.0f} s"
    )
    for line in outcome.detail[:12]:
        log(f"    {line}")
    if len(outcome.detail) > 12:
        log(f"    ... {len(outcome.detail) - 12} more")
    return result


# -- report ----------------------------------------------------------------------------------


def render(results: Sequence[Result]) -> str:
    header = [
        "system",
        "signal",
        "messages",
        "produced events",
        "counted",
        "over-count",
        "exact",
        "replayed",
        "takeover",
        "run time",
    ]
    rows = [header, ["---"] * len(header)]
    for r in results:
        unit = "events" if r.system == "faust" else "messages"
        rows.append(
            [
                r.system,
                r.signal,
                f"{r.shape} ({r.messages:,})",
                f"{r.produced:,}",
                f"{r.counted:,}",
                f"{r.over_pct:+.2f} %",
                "yes" if r.exact else "**no**",
                f"{r.replayed:,} {unit}",
                f"{r.pause_s:.1f} s",
                f"{r.run_s:.0f} s",
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30k events instead of 200k")
    parser.add_argument("--events", type=int, help="inference events per scenario")
    parser.add_argument(
        "--system", choices=["faust", "streamwatch"], action="append", help="repeatable"
    )
    parser.add_argument("--signal", choices=["kill", "term"], action="append", help="repeatable")
    parser.add_argument(
        "--shape", choices=["single", "batched"], action="append", help="repeatable"
    )
    parser.add_argument(
        "--produce-s", type=float, help="seconds over which each stream is produced (45; quick 15)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep worker and server logs")
    args = parser.parse_args(argv)
    n_events = args.events or (30_000 if args.quick else 200_000)
    produce_s = args.produce_s or (15.0 if args.quick else 45.0)
    systems = {"faust": FaustSystem, "streamwatch": StreamwatchSystem}
    signals = {"kill": signal.SIGKILL, "term": signal.SIGTERM}
    chosen = [
        (systems[s], signals[g], shape)
        for s in args.system or ["faust", "streamwatch"]
        for shape in args.shape or ["single", "batched"]
        for g in args.signal or ["kill", "term"]
    ]
    started = time.monotonic()
    log(f"generating {n_events:,} events ({len(FLEET)} model versions, {len(MODEL_IDS)} ids)")
    slices = generate(n_events)
    results: list[Result] = []
    with servers("streamwatch-crash-", log, keep=args.keep_logs) as (
        broker,
        redis_server,
        workdir,
    ):
        for system_cls, signum, shape in chosen:
            results.append(
                run_scenario(
                    system_cls, signum, shape, slices, produce_s, broker, redis_server, workdir
                )
            )
    print(render(results))
    print(f"\n{n_events:,} events per scenario, total {time.monotonic() - started:.0f} s")
    return 0 if all(r.exact for r in results if r.system == "streamwatch") else 1


if __name__ == "__main__":
    sys.exit(main())
