"""The core's cost on event shapes the bench's generator does not send (``make bench-shapes``).

The bench measures the SDK's own events. Other producers write the same contract differently:
text times, probability vectors, tags on every event, nulls, many more features, id-like
categories. Each variant here reshapes the same generated events one way and runs them
through ``PartitionProcessor.process`` in worker-sized steps, as the bench's core rows do
(columnar envelopes of up to 1,000 events, every monitor on, a baseline per model version).
A shape that costs far more than the bench's own is a slow path the bench cannot show.

Two traffic mixes follow: the same number of inference events with the business and feedback
events the generator makes for them, as the default mix and with every classification labelled.

Prints a Markdown table: CPU-seconds per million events (median and min of ``--runs``) and the
ratio to the unchanged events measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench
from streamwatch.worker import tune_garbage_collector

Event = dict[str, Any]
Reshape = Callable[[Event, np.random.Generator], Event]


def _text_time(event: Event, rng: np.random.Generator) -> Event:
    moment = dt.datetime.fromtimestamp(event["timestamp"], dt.UTC)
    text = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**event, "timestamp": text}


def _offset_time(event: Event, rng: np.random.Generator) -> Event:
    zone = dt.timezone(dt.timedelta(hours=2))
    moment = dt.datetime.fromtimestamp(event["timestamp"], zone)
    return {**event, "timestamp": moment.isoformat()}


def _probabilities(event: Event, rng: np.random.Generator) -> Event:
    if not isinstance(event.get("prediction"), str):
        return event
    p = float(rng.random())
    return {**event, "prediction": [p, 1.0 - p]}


def _tags(event: Event, rng: np.random.Generator) -> Event:
    host = f"host-{int(rng.integers(0, 40))}"
    segment = ("eu", "us", "apac")[int(rng.integers(0, 3))]
    return {**event, "tags": {"region": "eu-west-1", "host": host}, "segment": segment}


def _nulls(event: Event, rng: np.random.Generator) -> Event:
    features = {k: None if rng.random() < 0.05 else v for k, v in event["features"].items()}
    return {**event, "features": features}


def _wide(event: Event, rng: np.random.Generator) -> Event:
    features = dict(event["features"])
    for i in range(12):
        features[f"x{i}"] = float(rng.normal(i, 1.0))
    features["city"] = f"city-{int(rng.integers(0, 300))}"
    features["user_bucket"] = f"user-{int(rng.integers(0, 5000))}"
    return {**event, "features": features}


def _minimal(event: Event, rng: np.random.Generator) -> Event:
    dropped = ("stages_ms", "resources", "score", "traffic")
    return {k: v for k, v in event.items() if k not in dropped}


#: Traffic mixes: the generator's three topics, as ``streamwatch produce`` sends them (business
#: and feedback events as row arrays), by the share of classifier predictions labelled.
MIXES: dict[str, tuple[str, float | None]] = {
    "default mix": ("+ business and feedback events, 30 % of classifications labelled", None),
    "all labelled": ("+ business and feedback events, every classification labelled", 1.0),
}

VARIANTS: dict[str, tuple[str, Reshape | None]] = {
    "as generated": ("the bench's events (8 features, epoch-second times)", None),
    "text times": ("timestamp as RFC 3339 text, `...T10:15:02.125Z`", _text_time),
    "offset times": ("timestamp as `isoformat()` with a +02:00 offset", _offset_time),
    "probabilities": ("classifier predictions as `[p, 1 - p]`", _probabilities),
    "tags, segment": ("two tags and a segment on every event", _tags),
    "5 % null features": ("each feature null in 5 % of events", _nulls),
    "wide, id-like": ("12 more numeric features, 300- and 5,000-valued categories", _wide),
    "minimal": ("no stages, resources, score or arm", _minimal),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    slices = bench.generate(args.events)
    baselines = bench.build_baselines(10_000)
    config = bench.processor_config(bench.load_settings(environ={}))
    tune_garbage_collector()
    rows: list[tuple[str, str, float, float, float]] = []
    for name, (what, reshape) in VARIANTS.items():
        rng = np.random.default_rng(5)
        data = slices if reshape is None else [[reshape(e, rng) for e in s] for s in slices]
        encoded = bench.encode(data, "columnar", 1_000)
        steps = bench.worker_steps(encoded.messages, 1_000, 4 * 1024 * 1024)
        size = sum(len(value) for _, value in encoded.messages) / encoded.events
        if not rows:
            # Untimed: the first run pays one-off costs (caches per baseline, lazy imports)
            # that would inflate the reference every other shape is compared with.
            bench.bench_core(steps, encoded.events, config, baselines)
        samples = [
            bench.bench_core(steps, encoded.events, config, baselines).cpu_s_per_million
            for _ in range(args.runs)
        ]
        median = statistics.median(samples)
        rows.append((name, what, size, median, min(samples)))
        print(f"{name}: {median:.2f} CPU-s/M", file=sys.stderr, flush=True)
    for name, (what, labelled) in MIXES.items():
        mix = bench.generate_mix(args.events, 1_000, feedback_fraction=labelled)
        steps = bench.worker_steps(mix.messages, 1_000, 4 * 1024 * 1024, mix.kinds)
        size = sum(len(value) for _, value in mix.messages) / mix.events
        samples = [
            bench.bench_core(steps, mix.events, config, baselines).cpu_s_per_million
            for _ in range(args.runs)
        ]
        median = statistics.median(samples)
        what = f"{what}: {mix.events / args.events:.2f} events per inference event"
        rows.append((name, what, size, median, min(samples)))
        print(f"{name}: {median:.2f} CPU-s/M", file=sys.stderr, flush=True)
    print(
        f"core only, {args.events:,} inference events per variant, median and min of"
        f" {args.runs} runs; a mix's CPU-s are per million events of all kinds\n"
    )
    print("| shape | what changes | bytes/event | CPU-s/M (median) | min | × as generated |")
    print("|---|---|---:|---:|---:|---:|")
    reference = rows[0][3]  # the events as generated
    for name, what, size, median, low in rows:
        ratio = median / reference
        print(f"| {name} | {what} | {size:.0f} | {median:.2f} | {low:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
