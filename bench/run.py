"""Throughput benchmark: the pure core against a raw-decode baseline, and the whole pipeline.

Run with ``make bench`` (``.venv/bin/python bench/run.py``); ``--quick`` is a short smoke run,
``--out FILE`` writes the results as JSON, ``--no-e2e`` skips the end-to-end rows. See
``bench/README.md`` for what every row measures and how to read it.

Every number is the median of ``--runs`` (>= 3) runs; ratios compare medians measured in the
same invocation, on the same pre-generated data.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Producer

from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.client import StreamwatchClient
from streamwatch.core.decode import EventDecoder
from streamwatch.core.processor import PartitionProcessor, ProcessorConfig, RawMessage
from streamwatch.core_config import processor_config
from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from streamwatch.events import InferenceEvent
from streamwatch.generator import TrafficGenerator, encode_batches
from streamwatch.settings import Settings, load_settings
from streamwatch.supervise import WorkerProcess

Event = dict[str, Any]
Message = tuple[bytes, bytes]

SEED = 20_240_611
#: Fixed simulated start (2025-06-15T15:06:40Z): the data is the same on every run and machine.
START_MS = 1_750_000_000_000
#: Generator rate (its default) and the slice length ``streamwatch produce`` uses when not
#: pacing in real time. Each slice is encoded on its own, exactly as ``produce()`` does.
RATE_EPS = 1_000.0
SLICE_MS = 1_000
BATCH_SIZE = 100
HOUR_MS = 3_600_000
PARTITIONS = 4
POLL_INTERVAL_S = 0.05
READY_TIMEOUT_S = 90.0
#: Give up on an end-to-end wave after this long plus ``events / DRAIN_FLOOR_EPS`` seconds.
DRAIN_FLOOR_EPS = 500.0
DRAIN_GRACE_S = 60.0


def log(message: str) -> None:
    """Progress goes to stderr; the table goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dataset:
    """Pre-generated inference events, kept in generator slices so they can be re-encoded."""

    slices: list[list[Event]]
    span_ms: int

    @property
    def events(self) -> int:
        return sum(len(s) for s in self.slices)

    def encode(self, batch_size: int, shift_ms: int = 0) -> list[Message]:
        """Encode slice by slice (as ``produce()`` does), optionally shifted in event time."""
        messages: list[Message] = []
        for events in self.slices:
            if shift_ms:
                events = [_shifted(e, shift_ms) for e in events]
            messages.extend(encode_batches(events, batch_size))
        return messages


def _shifted(event: Event, shift_ms: int) -> Event:
    return {**event, "timestamp": (round(event["timestamp"] * 1000) + shift_ms) / 1000}


def generate(n_events: int) -> Dataset:
    """Draw ``n_events`` inference events from the default fleet (8 features per event)."""
    gen = TrafficGenerator(seed=SEED, start_ms=START_MS, rate_eps=RATE_EPS)
    slices: list[list[Event]] = []
    remaining = n_events
    while remaining > 0:
        events = gen.generate(SLICE_MS).inference[:remaining]
        slices.append(events)
        remaining -= len(events)
    return Dataset(slices, gen.now_ms - START_MS)


# -- measurement -----------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One line of the result table."""

    key: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    baseline: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan


def repeat(runs: int, once: Callable[[], float]) -> list[float]:
    """Call ``once`` ``runs`` times after a full collection each time; return its results."""
    samples = []
    for _ in range(runs):
        gc.collect()
        samples.append(once())
    return samples


def rate(count: int, body: Callable[[], object]) -> float:
    """Return ``count`` divided by the wall time of ``body()``."""
    started = time.perf_counter()
    body()
    return count / (time.perf_counter() - started)


def bench_orjson(messages: Sequence[Message], events: int) -> float:
    loads = orjson.loads

    def body() -> None:
        for _, value in messages:
            loads(value)

    return rate(events, body)


def bench_decode(messages: Sequence[Message], events: int) -> float:
    decoder = EventDecoder(InferenceEvent)
    decoder.decode(messages[0][1])  # warm the validator outside the timing

    def body() -> None:
        decode = decoder.decode
        for _, value in messages:
            decode(value)

    return rate(events, body)


def raw_messages(messages: Sequence[Message]) -> list[RawMessage]:
    return [
        RawMessage("bench.inference", "inference", 0, offset, value)
        for offset, (_, value) in enumerate(messages)
    ]


def bench_process(
    raw: Sequence[RawMessage], events: int, config: ProcessorConfig, chunk: int, now_ms: int
) -> float:
    processor = PartitionProcessor(0, config)
    chunks = [raw[i : i + chunk] for i in range(0, len(raw), chunk)]

    def body() -> None:
        process = processor.process
        for part in chunks:
            process(part, now_ms)

    result = rate(events, body)
    counters = processor.counters
    if counters.get("inference_events") != events or processor.deadletter_counts:
        raise RuntimeError(f"core step did not apply every event: {counters}")
    return result


# -- end to end ------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (``/proc/<pid>/stat`` utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass(frozen=True, slots=True)
class Wave:
    """One end-to-end measurement: produce everything, wait until Redis counts it."""

    events: int
    messages: int
    seconds: float
    cpu_s: float
    peak_rss_mib: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.events * 1e6


class Pipeline:
    """One worker subscribed to a fresh topic prefix and consumer group."""

    def __init__(self, broker: EmbeddedBroker, redis_url: str, workdir: Path) -> None:
        self.name = f"bench{uuid.uuid4().hex[:8]}"
        self.bootstrap = broker.bootstrap
        self.settings: Settings = load_settings(
            environ={},
            kafka_bootstrap=broker.bootstrap,
            redis_url=redis_url,
            topic_prefix=self.name,
            group_id=self.name,
            partitions=PARTITIONS,
        )
        ensure_topics(self.settings)
        # Connection and isolation only: windows, lateness, timeouts and batching stay default.
        env = {
            "STREAMWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STREAMWATCH_REDIS_URL": redis_url,
            "STREAMWATCH_TOPIC_PREFIX": self.name,
            "STREAMWATCH_GROUP_ID": self.name,
            "STREAMWATCH_PARTITIONS": str(PARTITIONS),
            "STREAMWATCH_WEB_PORT": str(free_port()),
            "STREAMWATCH_DATA_DIR": str(workdir / self.name),
            "STREAMWATCH_LOG_LEVEL": "warning",
        }
        self.worker = WorkerProcess(env, workdir / f"{self.name}.log")
        self.client = StreamwatchClient.from_url(redis_url)

    def counter(self, name: str) -> int:
        checkpoints = self.client.partition_checkpoints(self.settings.group_id)
        return sum(int(c["counters"].get(name, 0)) for c in checkpoints)

    def deadletters(self) -> int:
        checkpoints = self.client.partition_checkpoints(self.settings.group_id)
        return sum(sum(c["deadletters"].values()) for c in checkpoints)

    @property
    def pid(self) -> int:
        pid = self.worker.pid
        if pid is None:
            raise RuntimeError(f"the worker exited; its log ends:\n{self.worker.log_tail()}")
        return pid

    def wait_for(self, name: str, target: int, timeout_s: float, what: str) -> float:
        """Poll a checkpoint counter until it reaches ``target``; return the time it did."""
        deadline = time.perf_counter() + timeout_s
        while True:
            now = time.perf_counter()
            if self.counter(name) >= target:
                return now
            if now > deadline:
                raise RuntimeError(
                    f"timed out after {timeout_s:.0f} s waiting for {what}"
                    f" ({name}={self.counter(name)}, want {target});"
                    f" worker log ends:\n{self.worker.log_tail()}"
                )
            self.pid  # noqa: B018 - raises if the worker died
            time.sleep(POLL_INTERVAL_S)

    def start(self) -> float:
        """Start the worker; return seconds until it applied a probe on every partition."""
        started = time.perf_counter()
        self.worker.start()
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for partition in range(PARTITIONS):
            producer.produce(self.settings.topic("business"), value=b"[]", partition=partition)
        if producer.flush(30) != 0:
            raise RuntimeError("could not produce the readiness probes")
        ready = self.wait_for("business_messages", PARTITIONS, READY_TIMEOUT_S, "the group")
        return ready - started

    def wave(self, messages: Sequence[Message], events: int) -> Wave:
        """Produce ``messages`` as fast as possible; time until all ``events`` are counted."""
        pid = self.pid
        topic = self.settings.topic("inference")
        target = self.counter("inference_events") + events
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20})
        cpu_before = proc_cpu_s(pid)
        started = time.perf_counter()
        for key, value in messages:
            while True:
                try:
                    producer.produce(topic, value=value, key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
        if producer.flush(60) != 0:
            raise RuntimeError("produce did not complete within 60 s")
        timeout_s = DRAIN_GRACE_S + events / DRAIN_FLOOR_EPS
        done = self.wait_for("inference_events", target, timeout_s, f"{events} events")
        cpu_s = proc_cpu_s(pid) - cpu_before
        seconds = done - started
        counted = self.counter("inference_events")
        if counted != target:
            log(f"warning: inference_events is {counted}, expected exactly {target}")
        return Wave(events, len(messages), seconds, cpu_s, proc_peak_rss_mib(pid))

    def stop(self) -> None:
        self.worker.stop(grace_s=10)
        self.client.close()


@dataclass(slots=True)
class E2EResult:
    """The samples of one message shape (batched or single-event)."""

    ready_s: list[float] = field(default_factory=list)
    waves: list[Wave] = field(default_factory=list)
    deadletters: int = 0


@contextmanager
def servers() -> Iterator[tuple[EmbeddedBroker, EmbeddedRedis, Path]]:
    """Start a broker and a Redis; remove their logs afterwards unless something failed."""
    workdir = Path(tempfile.mkdtemp(prefix="streamwatch-bench-"))
    broker = EmbeddedBroker(log_dir=workdir)
    redis_server = EmbeddedRedis(log_dir=workdir)
    try:
        broker.start()
        redis_server.start()
        yield broker, redis_server, workdir
    except BaseException:
        log(f"failed; server and worker logs are in {workdir}")
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        redis_server.stop()
        broker.stop()


def run_e2e(
    label: str,
    wave_data: Sequence[list[Message]],
    events: int,
    fresh: bool,
    broker: EmbeddedBroker,
    redis_server: EmbeddedRedis,
    workdir: Path,
) -> E2EResult:
    """Measure ``len(wave_data)`` waves: each with a fresh stack, or all through one worker."""
    result = E2EResult()
    flush = redis.Redis.from_url(redis_server.url)
    pipeline: Pipeline | None = None
    try:
        for index, messages in enumerate(wave_data):
            if pipeline is None:
                broker.restart()  # an empty broker (memory storage) for every fresh worker
                flush.flushdb()
                pipeline = Pipeline(broker, redis_server.url, workdir)
                result.ready_s.append(pipeline.start())
                log(f"{label}: worker consuming after {result.ready_s[-1]:.1f} s")
            wave = pipeline.wave(messages, events)
            result.waves.append(wave)
            log(
                f"{label} {'run' if fresh else 'wave'} {index + 1}/{len(wave_data)}:"
                f" {wave.events_per_s:,.0f} events/s,"
                f" {wave.messages_per_s:,.0f} msgs/s, {wave.cpu_s_per_million:.1f} CPU-s/M events,"
                f" peak RSS {wave.peak_rss_mib:.0f} MiB"
            )
            if fresh or index == len(wave_data) - 1:
                result.deadletters += pipeline.deadletters()
                pipeline.stop()
                pipeline = None
    finally:
        if pipeline is not None:
            pipeline.stop()
        flush.close()
    return result


# -- report ----------------------------------------------------------------------------------


def fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(rows: Sequence[Row]) -> str:
    """Return the result table; ratios name their baseline by row number."""
    number = {row.key: index for index, row in enumerate(rows, 1)}
    by_key = {row.key: row for row in rows}
    header = ("#", "row", "median", "unit", "ratio", "n", "min … max")
    lines = []
    for row in rows:
        ratio = ""
        if row.baseline is not None:
            base = by_key[row.baseline]
            ratio = f"{row.median / base.median:.3f} × #{number[base.key]}"
        spread = f"{fmt(min(row.samples))} … {fmt(max(row.samples))}" if row.samples else ""
        lines.append(
            (
                str(number[row.key]),
                row.label,
                fmt(row.median),
                row.unit,
                ratio,
                str(len(row.samples)),
                spread,
            )
        )
    widths = [max(len(c[i]) for c in (header, *lines)) for i in range(len(header))]
    right = {0, 2, 5}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(c) for c in lines)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 1 min)")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per row (>= 3; default 3)")
    parser.add_argument("--events", type=int, help="inference events (200k; quick 20k)")
    parser.add_argument(
        "--single-e2e", type=int, help="single-event messages per e2e run (20k; quick 3k)"
    )
    parser.add_argument("--chunk", type=int, default=50, help="messages per core step")
    parser.add_argument(
        "--e2e-mode",
        choices=("fresh", "waves"),
        help="fresh: new broker, topics, group and worker per run (default);"
        " waves: one worker per message shape, one wave per run (default with --quick)",
    )
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be >= 3: every number is a median of at least 3 runs")
    n_events: int = args.events or (20_000 if args.quick else 200_000)
    n_single_e2e: int = min(args.single_e2e or (3_000 if args.quick else 20_000), n_events)
    runs: int = args.runs
    e2e_mode: str = args.e2e_mode or ("waves" if args.quick else "fresh")
    started = time.perf_counter()

    log(f"generating {n_events:,} inference events (seed {SEED})")
    t0 = time.perf_counter()
    data = generate(n_events)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = data.encode(BATCH_SIZE)
    single = data.encode(1)
    encode_s = time.perf_counter() - t0
    log(
        f"generated in {gen_s:.1f} s, encoded in {encode_s:.1f} s: {len(batched):,} batched"
        f" messages ({sum(len(v) for _, v in batched) / 1e6:.1f} MB),"
        f" {len(single):,} single-event messages"
    )

    settings = load_settings(environ={})
    config = processor_config(settings)
    now_ms = int(time.time() * 1000)
    raw_batched = raw_messages(batched)
    raw_single = raw_messages(single)
    warm = n_events // 50
    bench_process(raw_single[:warm], warm, config, args.chunk, now_ms)  # import/JIT warm-up

    rows = [
        Row("orjson", "raw orjson decode", "events/s"),
        Row("decode", "core: decode+validate", "events/s", baseline="orjson"),
        Row("step", "core: full step, batched", "events/s", baseline="orjson"),
        Row("step1", "core: full step, single-event messages", "events/s", baseline="orjson"),
    ]
    benches: list[Callable[[], float]] = [
        lambda: bench_orjson(batched, n_events),
        lambda: bench_decode(batched, n_events),
        lambda: bench_process(raw_batched, n_events, config, args.chunk, now_ms),
        lambda: bench_process(raw_single, n_events, config, args.chunk, now_ms),
    ]
    for row, bench in zip(rows, benches, strict=True):
        row.samples = repeat(runs, bench)
        log(f"{row.label}: {' '.join(fmt(s) for s in row.samples)} {row.unit}")

    e2e: dict[str, E2EResult] = {}
    if not args.no_e2e:
        single_data = Dataset(_first_events(data.slices, n_single_e2e), data.span_ms)
        if e2e_mode == "fresh":
            batched_waves = [batched] * runs
            single_waves = [single_data.encode(1)] * runs
        else:
            # Each wave is the same data moved later in event time by whole hours, so it is on
            # time and falls on the same window boundaries.
            span = (data.span_ms // HOUR_MS + 1) * HOUR_MS
            batched_waves = [data.encode(BATCH_SIZE, k * span) for k in range(runs)]
            single_waves = [single_data.encode(1, k * span) for k in range(runs)]
        with servers() as (broker, redis_server, workdir):
            log(f"end-to-end ({e2e_mode}): broker {broker.bootstrap}, redis {redis_server.url}")
            e2e["batched"] = run_e2e(
                "e2e batched",
                batched_waves,
                n_events,
                e2e_mode == "fresh",
                broker,
                redis_server,
                workdir,
            )
            e2e["single"] = run_e2e(
                "e2e single-event",
                single_waves,
                n_single_e2e,
                e2e_mode == "fresh",
                broker,
                redis_server,
                workdir,
            )
        batched_r, single_r = e2e["batched"], e2e["single"]
        rows += [
            Row(
                "join",
                "e2e: worker start → consuming (group join)",
                "s",
                batched_r.ready_s + single_r.ready_s,
            ),
            Row(
                "e2e",
                f"e2e batched ({n_events:,} events in {len(batched):,} msgs)",
                "events/s",
                [w.events_per_s for w in batched_r.waves],
                baseline="step",
            ),
            Row(
                "e2e_cpu",
                "e2e batched: worker CPU",
                "CPU-s/M events",
                [w.cpu_s_per_million for w in batched_r.waves],
            ),
            Row(
                "e2e_rss",
                "e2e batched: worker peak RSS",
                "MiB",
                [w.peak_rss_mib for w in batched_r.waves],
            ),
            Row(
                "e2e1",
                f"e2e single-event ({n_single_e2e:,} msgs)",
                "msgs/s",
                [w.messages_per_s for w in single_r.waves],
                baseline="step1",
            ),
            Row(
                "e2e1_cpu",
                "e2e single-event: worker CPU",
                "CPU-s/M events",
                [w.cpu_s_per_million for w in single_r.waves],
            ),
            Row(
                "e2e1_rss",
                "e2e single-event: worker peak RSS",
                "MiB",
                [w.peak_rss_mib for w in single_r.waves],
            ),
        ]

    total_s = time.perf_counter() - started
    table = render(rows)
    print()
    print(table)
    print(
        f"\n{n_events:,} events, {runs} runs per row, e2e mode {e2e_mode if e2e else 'skipped'},"
        f" {os.cpu_count()} CPUs, total {total_s:.0f} s"
        + (f", dead letters e2e {sum(r.deadletters for r in e2e.values())}" if e2e else ""),
        flush=True,
    )
    if args.out is not None:
        by_key = {row.key: row for row in rows}
        report = {
            "meta": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "seed": SEED,
                "start_ms": START_MS,
                "rate_eps": RATE_EPS,
                "slice_ms": SLICE_MS,
                "events": n_events,
                "batched_messages": len(batched),
                "single_e2e_messages": n_single_e2e if e2e else 0,
                "batch_size": BATCH_SIZE,
                "chunk_messages": args.chunk,
                "runs": runs,
                "e2e_mode": e2e_mode if e2e else None,
                "e2e_deadletters": {k: r.deadletters for k, r in e2e.items()},
                "quick": args.quick,
                "total_s": round(total_s, 1),
            },
            "rows": [
                {
                    "key": row.key,
                    "label": row.label,
                    "unit": row.unit,
                    "median": row.median,
                    "samples": row.samples,
                    "baseline": row.baseline,
                    "ratio": (
                        row.median / by_key[row.baseline].median
                        if row.baseline is not None
                        else None
                    ),
                }
                for row in rows
            ],
        }
        args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        log(f"wrote {args.out}")
    return 0


def _first_events(slices: Sequence[list[Event]], n: int) -> list[list[Event]]:
    out: list[list[Event]] = []
    for events in slices:
        if n <= 0:
            break
        out.append(events[:n])
        n -= len(out[-1])
    return out


if __name__ == "__main__":
    sys.exit(main())
