"""Soak test: does one partition's memory stay flat over millions of events?

Runs ``--events`` (default 10^7; ``--quick``: 10^6) events through one ``PartitionProcessor``
in-process (no broker, no Redis) with the shipped default rules and settings, as the worker would
receive them: orjson-encoded ``RawMessage`` batches of 100-1000 events. Event time rolls at
``--rate`` events per second (default 250; 25 with ``--quick``), so both runs cover the same
11.1 hours of event time: every window size closes, label windows finalise, the run crosses
midnight UTC, and the state is in its steady shape (1 h windows + 1 h label horizon) from about
the 2nd sample on. The traffic: 3 models x 2 versions, 8 features (5 numeric, 3 categorical, one
with ever-new values), 30 % of predictions labelled 1-120 s later, a few business events, an
occasional bad message, and a new request id per event.

Prints RSS (psutil if installed, else ``VmRSS`` from ``/proc/self/status``) every
``--sample-every`` events and a verdict: RSS growth from the 2nd sample to the last, "flat" if
under 10 %. ``--series N`` instead measures the memory of one tracked (model, version, feature)
series: RSS with N series minus RSS with the same models and no features, over N.

    .venv/bin/python bench/soak.py --quick
    nohup .venv/bin/python bench/soak.py > soak.log 2>&1 &
    .venv/bin/python bench/soak.py --series 4000
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import heapq
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from streamwatch.core.processor import PartitionProcessor, ProcessorConfig, RawMessage
from streamwatch.core_config import processor_config
from streamwatch.settings import Settings, load_settings

SEED = 20_240_611
#: 2025-06-15T15:06:40Z: the run crosses midnight UTC, so a daily summary is built.
START_MS = 1_750_000_000_000
MODELS = [(m, v) for m in ("fraud", "churn", "ranker") for v in ("1.0", "1.1")]
COUNTRIES = ["de", "fr", "us", "br", "in", "jp", "ng", "au", "mx", "pl"]
DEVICES = ["ios", "android", "web"]
SEGMENTS = ["eu", "na", "latam", "apac"]
LABELLED_SHARE = 0.3
LABEL_DELAY_MS = (1_000, 120_000)
BAD_MESSAGE_EVERY = 500
FLAT_PERCENT = 10.0
MIB = 1024 * 1024


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        import psutil  # optional

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read RSS: install psutil or run on Linux")


def soak_config(settings: Settings) -> ProcessorConfig:
    """The worker's configuration, built the way the worker builds it."""
    return processor_config(settings)


# -- traffic -----------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Generates the soak's messages step by step, in event-time order."""

    rate_eps: float
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(SEED))
    now_ms: float = START_MS
    next_id: int = 0
    next_merchant: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    # (due event time, sequence, feedback event): labels waiting to be sent
    labels: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    messages_sent: int = 0

    def step(self) -> tuple[list[RawMessage], int, int]:
        """One worker step: (messages, inference events in them, wall clock in ms)."""
        n = int(self.rng.integers(100, 1_001))
        events = self._inference(n)
        messages = [self._message("inference", orjson.dumps(events))]
        feedback = self._due_labels()
        if feedback:
            messages.append(self._message("feedback", orjson.dumps(feedback)))
        if self.rng.random() < 0.5:
            messages.append(self._message("business", orjson.dumps(self._business())))
        self.messages_sent += 1
        if self.messages_sent % BAD_MESSAGE_EVERY == 0:
            messages.append(self._message("inference", self._bad()))
        return messages, n, int(self.now_ms) + 200

    def _message(self, kind: str, value: bytes) -> RawMessage:
        offset = self.offsets.get(kind, 0)
        self.offsets[kind] = offset + 1
        return RawMessage(f"soak.{kind}", kind, 0, offset, value)  # type: ignore[arg-type]

    def _inference(self, n: int) -> list[dict[str, Any]]:
        rng = self.rng
        times = self.now_ms + np.cumsum(rng.exponential(1_000 / self.rate_eps, n))
        self.now_ms = float(times[-1])
        model_at = rng.integers(0, len(MODELS), n)
        numeric = rng.normal(0, 1, (n, 5))
        scores = rng.random(n)
        latency = rng.lognormal(3.0, 0.4, n)
        errors = rng.random(n) < 0.01
        countries = rng.integers(0, len(COUNTRIES), n)
        devices = rng.integers(0, len(DEVICES), n)
        labelled = rng.random(n) < LABELLED_SHARE
        delays = rng.integers(*LABEL_DELAY_MS, n)
        events = []
        for i in range(n):
            model_id, version = MODELS[model_at[i]]
            request_id = f"req-{self.next_id}"
            self.next_id += 1
            ts_ms = int(times[i])
            prediction = int(scores[i] > 0.5)
            if rng.random() < 0.001:  # a trickle of never-seen categories
                self.next_merchant += 1
            events.append(
                {
                    "request_id": request_id,
                    "model_id": model_id,
                    "model_version": version,
                    "timestamp": ts_ms / 1000,
                    "latency_ms": float(latency[i]),
                    "status": "error" if errors[i] else "ok",
                    "score": float(scores[i]),
                    "prediction": prediction,
                    "segment": SEGMENTS[i % len(SEGMENTS)],
                    "features": {
                        "amount": float(numeric[i, 0]) * 50 + 100,
                        "age": float(numeric[i, 1]) * 10 + 40,
                        "tenure_days": float(numeric[i, 2]) * 100 + 400,
                        "sessions": float(numeric[i, 3]) * 3 + 10,
                        "ratio": float(numeric[i, 4]),
                        "country": COUNTRIES[countries[i]],
                        "device": DEVICES[devices[i]],
                        "merchant": f"m{self.next_merchant - int(rng.integers(0, 50))}",
                    },
                }
            )
            if labelled[i]:
                label = prediction if rng.random() < 0.9 else 1 - prediction
                feedback = {
                    "request_id": request_id,
                    "model_id": model_id,
                    "label": label,
                    "timestamp": (ts_ms + int(delays[i])) / 1000,
                }
                heapq.heappush(self.labels, (ts_ms + int(delays[i]), self.next_id, feedback))
        return events

    def _due_labels(self) -> list[dict[str, Any]]:
        due = []
        while self.labels and self.labels[0][0] <= self.now_ms:
            due.append(heapq.heappop(self.labels)[2])
        return due

    def _business(self) -> list[dict[str, Any]]:
        model_id, version = MODELS[int(self.rng.integers(0, len(MODELS)))]
        kind = "click" if self.rng.random() < 0.8 else "conversion"
        return [
            {
                "model_id": model_id,
                "model_version": version,
                "kind": kind,
                "value": 1.0,
                "timestamp": self.now_ms / 1000,
            }
        ]

    def _bad(self) -> bytes:
        kinds = [b"{not json", b"[1, 2, 3]", b'[{"request_id": "x", "score": NaN}]', b"\xff\xfe"]
        return kinds[(self.messages_sent // BAD_MESSAGE_EVERY) % len(kinds)]


# -- the soak ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    events: int
    rss_bytes: int
    events_per_s: float
    open_windows: int
    label_windows: int
    pending: int
    event_time_h: float


def soak(config: ProcessorConfig, events: int, sample_every: int, rate_eps: float) -> list[Sample]:
    processor = PartitionProcessor(0, config)
    traffic = Traffic(rate_eps)
    done = 0
    next_sample = sample_every
    samples: list[Sample] = []
    busy_s = 0.0
    busy_events = 0
    while done < events:
        messages, n, wall_ms = traffic.step()
        started = time.perf_counter()
        processor.process(messages, wall_ms)
        busy_s += time.perf_counter() - started
        busy_events += n
        done += n
        if done >= next_sample:
            gc.collect()
            samples.append(
                Sample(
                    events=done,
                    rss_bytes=rss_bytes(),
                    events_per_s=busy_events / busy_s,
                    open_windows=len(processor.open_windows),
                    label_windows=len(processor.label_windows),
                    pending=len(processor.pending_predictions),
                    event_time_h=(traffic.now_ms - START_MS) / 3_600_000,
                )
            )
            log(f"{done:,} events, RSS {samples[-1].rss_bytes / MIB:.1f} MiB")
            busy_s, busy_events = 0.0, 0
            next_sample += sample_every
    counters = processor.counters
    log(f"counters: {dict(sorted(counters.items()))}")
    log(f"dead letters: {processor.deadletter_counts}")
    return samples


def print_table(samples: list[Sample]) -> None:
    print(
        "| events | event time (h) | RSS (MiB) | events/s | open windows | label windows"
        " | pending labels |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for s in samples:
        print(
            f"| {s.events:,} | {s.event_time_h:.2f} | {s.rss_bytes / MIB:.1f}"
            f" | {s.events_per_s:,.0f} | {s.open_windows} | {s.label_windows} | {s.pending:,} |"
        )
    if len(samples) < 2:
        print("\nverdict: too few samples (need at least 2)")
        return
    first, last = samples[1], samples[-1]
    growth = last.rss_bytes - first.rss_bytes
    percent = 100 * growth / first.rss_bytes
    verdict = "flat" if percent < FLAT_PERCENT else "GROWING"
    print(
        f"\nverdict: {verdict}: RSS {growth / MIB:+.1f} MiB ({percent:+.1f} %) from"
        f" {first.events:,} to {last.events:,} events (flat: under {FLAT_PERCENT:g} %)"
    )


# -- memory per series ---------------------------------------------------------------------------

SERIES_SPAN_MS = 2 * 3_600_000 + 600_000
"""Long enough for the steady shape: baselines adopted, 1 h windows closed, labels final."""
SERIES_EVENTS_PER_MODEL = 1_500


def series_events(models: int, features: int) -> Iterator[list[dict[str, Any]]]:
    """Batches giving each model its events spread evenly over :data:`SERIES_SPAN_MS`."""
    rng = np.random.default_rng(SEED)
    total = models * SERIES_EVENTS_PER_MODEL
    batch = 500
    for first in range(0, total, batch):
        rows = range(first, min(first + batch, total))
        yield [
            {
                "request_id": f"s{i}",
                "model_id": f"model-{i % models}",
                "model_version": "1",
                "timestamp": (START_MS + i * SERIES_SPAN_MS // total) / 1000,
                "latency_ms": float(rng.lognormal(3, 0.4)),
                "score": float(rng.random()),
                "prediction": int(rng.integers(0, 2)),
                "features": {
                    f"f{j}": (float(rng.normal()) if j % 2 == 0 else f"c{rng.integers(0, 20)}")
                    for j in range(features)
                },
            }
            for i in rows
        ]


def series_run(config: ProcessorConfig, models: int, features: int) -> None:
    """Feed the series and print this process's RSS with the processor alive (one line)."""
    processor = PartitionProcessor(0, config)
    if models:
        for offset, batch in enumerate(series_events(models, features)):
            message = RawMessage("s.inference", "inference", 0, offset, orjson.dumps(batch))
            processor.process([message], START_MS + SERIES_SPAN_MS)
        assert len(processor.tracked_series) == models, processor.deadletter_counts
    gc.collect()
    print(rss_bytes(), len(processor.open_windows), len(processor.label_windows))


def measure_series(models: int, features: int) -> None:
    """RSS per series, each configuration measured in a fresh process (no allocator reuse)."""

    def run(m: int, f: int) -> int:
        out = subprocess.run(
            [sys.executable, __file__, "--series-run", str(m), str(f)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        log(
            f"{m} models x {f} features: RSS {int(out[0]) / MIB:.1f} MiB, {out[1]} open and"
            f" {out[2]} label windows"
        )
        return int(out[0])

    empty, without = run(0, 0), run(models, 0)
    with_features = run(models, features)
    with_double = run(models, 2 * features)
    n = models * features
    print(
        "| models | features each | RSS (MiB) | per model, no features (KiB) |"
        " per (model, version, feature) series (KiB) |\n|---:|---:|---:|---:|---:|\n"
        f"| 0 | 0 | {empty / MIB:.1f} | | |\n"
        f"| {models} | 0 | {without / MIB:.1f} | {(without - empty) / models / 1024:.1f} | |\n"
        f"| {models} | {features} | {with_features / MIB:.1f} | |"
        f" {(with_features - without) / n / 1024:.1f} (first {features}) |\n"
        f"| {models} | {2 * features} | {with_double / MIB:.1f} | |"
        f" {(with_double - with_features) / n / 1024:.1f} (next {features}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--quick", action="store_true", help="10^6 events at 25/s, sampled every 10^5"
    )
    parser.add_argument("--sample-every", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None, help="events per s of event time")
    parser.add_argument("--series", type=int, default=0, help="measure memory per series")
    parser.add_argument("--features", type=int, default=8, help="features per model (--series)")
    parser.add_argument("--series-run", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = load_settings(environ={})
    if args.series_run:
        models, features = args.series_run
        series_run(
            dataclasses.replace(soak_config(settings), max_models=max(1, models)), models, features
        )
        return
    if args.series:
        measure_series(max(1, args.series // args.features), args.features)
        return
    events = 1_000_000 if args.quick else args.events
    sample_every = args.sample_every or (100_000 if args.quick else 1_000_000)
    rate = args.rate or (25.0 if args.quick else 250.0)
    log(f"{events:,} events, RSS sampled every {sample_every:,}, {rate:g} events/s")
    samples = soak(soak_config(settings), events, sample_every, rate)
    print_table(samples)


if __name__ == "__main__":
    main()
