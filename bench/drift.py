"""Drift-detector benchmark: detection delay, false alarms and throughput on seeded streams.

Run with ``make bench-drift`` (``.venv/bin/python bench/drift.py``); ``--quick`` is a smoke run
under a minute. Prints one markdown table, then lines checking two claims (PASS/FAIL), and
writes both to ``--out`` (default ``bench/results/drift.md``). See ``bench/README.md`` for what
every column measures.

A contender is anything that can be built for a series and fed arrays of values; add one by
appending a :class:`Contender` to :func:`contenders` (see :class:`Feeder`). Besides the bare
detectors, two contenders reproduce what the worker does with a numeric feature: ADWIN on each
value's percentile in the model's baseline (``DetectorFeed.feed_inference``), and the
per-window PSI + KS test with Benjamini–Hochberg (``window_drift.assess_window``). The
streamwatch monitors summarise chunks of values (``DetectorParams.chunk_size``); their
``every value`` variants (``chunk_size=1``) show what the chunks cost in detection quality.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from river.drift import ADWIN, PageHinkley
from river.drift.binary import DDM

from streamwatch.core.aggregate import FeatureStats, WindowAggregate
from streamwatch.core.baseline import BaselineProfile
from streamwatch.core.detector_feed import BaselineRanks
from streamwatch.core.detectors import (
    RIVER_VERSION,
    DetectorParams,
    DriftMonitor,
    default_params,
)
from streamwatch.core.distribution import ValueSketch
from streamwatch.core.drift import DriftPolicy, compare_numeric, decide, quantile_edges

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Rng = np.random.Generator

SEED = 20_240_611
START_MS = 1_750_000_000_000
#: Values per ``feed`` call: one series' share of a worker batch.
CHUNK = 1_000
RAMP = 20_000
#: Stable values before the change in the "soon after the start" rows: a new model version, or
#: a series right after a reported change, has a short history.
SHORT_PRE = 1_000
DEFAULT_OUT = Path(__file__).parent / "results" / "drift.md"

#: Event rate assumed by the window tests and the claims: 100 events/s.
RATE_EPS = 100
#: Values in a 1-minute and a 10-second window at :data:`RATE_EPS`.
MINUTE = 60 * RATE_EPS
TEN_S = 10 * RATE_EPS
#: Stationary values in each baseline (drawn independently of the stream it is compared with).
BASELINE_N = 50_000
#: Second seed word of baseline draws: ``[SEED, BASELINE_TAG, run tag, feature column]``.
BASELINE_TAG = 7_000_000
POLICY = DriftPolicy()


def log(message: str) -> None:
    """Progress goes to stderr; the table goes to stdout."""
    print(f"[bench-drift {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- streams ---------------------------------------------------------------------------------

Gen = Callable[[Rng, int], FloatArray]

LAT_SIGMA = 1.0  # log-sd of latency: p99 / p50 = 10, a heavy tail
LAT_MU = float(np.log(80.0) - LAT_SIGMA**2 / 2)  # mean 80 ms


def _latency(r: Rng, n: int, factor: FloatArray | float = 1.0) -> FloatArray:
    return r.lognormal(LAT_MU, LAT_SIGMA, n) * factor


def _bernoulli(r: Rng, n: int, p: FloatArray | float) -> FloatArray:
    return (r.random(n) < p).astype(np.float64)


def _ramp(n: int, start: float, end: float) -> FloatArray:
    """``start`` for nothing, then a linear ramp to ``end`` over :data:`RAMP` values, then flat."""
    t = np.minimum(np.arange(n, dtype=np.float64) / RAMP, 1.0)
    return start + (end - start) * t


@dataclass(frozen=True, slots=True)
class Family:
    """A numeric feature's distribution and the changes applied to it.

    A mean shift of ``k`` standard deviations adds ``k * sd`` to a Gaussian; a positive
    heavy-tailed feature (an amount) is scaled by ``1 + k * sd / mean`` instead, which moves its
    mean by the same ``k * sd`` and keeps it positive. ``wider`` doubles the standard deviation
    and keeps the mean.
    """

    name: str
    draw: Gen
    mean: float
    sd: float
    wider: Gen
    additive: bool

    def shifted(self, k: float) -> Gen:
        """Values whose mean moved by ``k`` standard deviations."""
        return lambda r, n: self._moved(self.draw(r, n), k)

    def ramped(self) -> Gen:
        """Values whose mean ramps from 0 to 1 standard deviation over :data:`RAMP` values."""
        return lambda r, n: self._moved(self.draw(r, n), _ramp(n, 0.0, 1.0))

    def _moved(self, x: FloatArray, k: FloatArray | float) -> FloatArray:
        if self.additive:
            return x + k * self.sd
        return x * (1.0 + k * self.sd / self.mean)

    def changes(self) -> tuple[tuple[str, Gen], ...]:
        def mean_label(k: float) -> str:
            if self.additive:
                return f"mean +{k:g}σ"
            return f"mean +{k:g}σ (×{1 + k * self.sd / self.mean:.2f})"

        return (
            *((mean_label(k), self.shifted(k)) for k in (0.5, 1.0, 2.0)),
            ("σ×2, same mean", self.wider),
            ("ramp 0→1σ over 20k", self.ramped()),
        )


_E = math.e
#: lognormal(0, 1), an amount: mean 1.65, sd 2.16, p99 / p50 = 10.
_LOGN_MEAN, _LOGN_SD = math.exp(0.5), math.sqrt((_E - 1.0) * _E)
_LOGN_WIDE_S2 = math.log(1.0 + 4.0 * (_E - 1.0))  # log-variance with sd ×2 at the same mean
#: Pareto type I, alpha 2.5, minimum 1: mean 5/3, sd 1.49 (finite variance, infinite kurtosis).
_PARETO_A = 2.5
_PARETO_MEAN = _PARETO_A / (_PARETO_A - 1.0)
_PARETO_SD = math.sqrt(_PARETO_A / ((_PARETO_A - 1.0) ** 2 * (_PARETO_A - 2.0)))
_PARETO_WIDE_A = 1.0 + math.sqrt(1.0 + _PARETO_A * (_PARETO_A - 2.0) / 4.0)  # CV ×2
_PARETO_WIDE_MIN = _PARETO_MEAN * (_PARETO_WIDE_A - 1.0) / _PARETO_WIDE_A

GAUSS = Family(
    "feature N(0,1)",
    lambda r, n: r.normal(0.0, 1.0, n),
    0.0,
    1.0,
    lambda r, n: r.normal(0.0, 2.0, n),
    additive=True,
)
LOGNORMAL = Family(
    "feature lognormal(0,1)",
    lambda r, n: r.lognormal(0.0, 1.0, n),
    _LOGN_MEAN,
    _LOGN_SD,
    lambda r, n: r.lognormal(0.5 - _LOGN_WIDE_S2 / 2.0, math.sqrt(_LOGN_WIDE_S2), n),
    additive=False,
)
PARETO = Family(
    "feature Pareto(α=2.5)",
    lambda r, n: r.pareto(_PARETO_A, n) + 1.0,
    _PARETO_MEAN,
    _PARETO_SD,
    lambda r, n: (r.pareto(_PARETO_WIDE_A, n) + 1.0) * _PARETO_WIDE_MIN,
    additive=False,
)
FAMILIES = (GAUSS, LOGNORMAL, PARETO)


@dataclass(frozen=True, slots=True)
class Series:
    """A stream kind: ``signal`` picks the detector defaults, ``name`` is the table's column."""

    name: str
    signal: str
    stationary: Gen
    changes: tuple[tuple[str, Gen], ...]


SERIES: tuple[Series, ...] = (
    *(Series(f.name, "feature", f.draw, f.changes()) for f in FAMILIES),
    Series(
        "score",
        "score",
        lambda r, n: r.beta(2, 5, n),
        (
            ("Beta(2,5)→Beta(2.5,4.5) (+0.45σ)", lambda r, n: r.beta(2.5, 4.5, n)),
            ("Beta(2,5)→Beta(3,4) (+0.9σ)", lambda r, n: r.beta(3, 4, n)),
        ),
    ),
    Series(
        "latency",
        "latency",
        lambda r, n: _latency(r, n),
        (
            ("latency +50 %", lambda r, n: _latency(r, n, 1.5)),
            ("ramp to +50 % over 20k", lambda r, n: _latency(r, n, _ramp(n, 1.0, 1.5))),
        ),
    ),
    Series(
        "error",
        "error",
        lambda r, n: _bernoulli(r, n, 0.01),
        (
            ("error 1 %→5 %", lambda r, n: _bernoulli(r, n, 0.05)),
            ("ramp 1 %→5 % over 20k", lambda r, n: _bernoulli(r, n, _ramp(n, 0.01, 0.05))),
        ),
    ),
    Series(
        "correctness",
        "correctness",
        lambda r, n: _bernoulli(r, n, 0.92),
        (
            ("rate 0.92→0.80", lambda r, n: _bernoulli(r, n, 0.80)),
            ("rate 0.92→0.88", lambda r, n: _bernoulli(r, n, 0.88)),
            ("ramp 0.92→0.80 over 20k", lambda r, n: _bernoulli(r, n, _ramp(n, 0.92, 0.80))),
        ),
    ),
)
FEATURES = frozenset(f.name for f in FAMILIES)


# -- contenders ------------------------------------------------------------------------------


class Feeder(Protocol):
    """One detector on one series: values in arrival order in, detection indices out.

    Indices are 0-based positions among all values fed so far (across calls).
    """

    def feed(self, values: FloatArray, event_ts_ms: IntArray) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Run:
    """What a feeder may know about its run.

    ``tag`` seeds the stream (``[SEED, tag]``) and the baseline (see :func:`baseline_sketch`).
    In a change stream the change is at index ``change_at``, ``phase`` of the way into a window.
    """

    tag: int
    change_at: int | None = None
    phase: float = 0.0


@dataclass(frozen=True, slots=True)
class Contender:
    """A detector under test: ``make(series, run)`` builds a fresh feeder for one run."""

    name: str
    make: Callable[[Series, Run], Feeder]
    series: frozenset[str]


class MonitorFeeder:
    """A :class:`DriftMonitor` with the given parameters."""

    def __init__(self, params: DetectorParams) -> None:
        self.monitor = DriftMonitor(params)

    def feed(self, values: FloatArray, event_ts_ms: IntArray) -> list[int]:
        return [d.index for d in self.monitor.update_array(values, event_ts_ms)]


class RiverFeeder:
    """A bare river detector with its own defaults: what streamwatch improves on."""

    def __init__(self, detector: Any, flip: bool = False) -> None:
        self.detector = detector
        self.flip = flip
        self.seen = 0

    def feed(self, values: FloatArray, event_ts_ms: IntArray) -> list[int]:
        detector, update, found = self.detector, self.detector.update, []
        xs = (1.0 - values) if self.flip else values
        for i, x in enumerate(xs.tolist(), start=self.seen):
            update(x)
            if detector.drift_detected:
                found.append(i)
        self.seen += int(values.size)
        return found


def baseline_sketch(draw: Gen, tag: int, column: int = 0) -> ValueSketch:
    """A baseline of :data:`BASELINE_N` stationary values, independent of the stream."""
    sketch = ValueSketch()
    sketch.add_array(draw(np.random.default_rng([SEED, BASELINE_TAG, tag, column]), BASELINE_N))
    return sketch


class PercentileFeeder:
    """The worker's feature path: baseline percentile of each value, then the feature monitor."""

    def __init__(self, baseline: ValueSketch, chunk_size: int | None = None) -> None:
        profile = BaselineProfile(
            "bench", "1", WindowAggregate(features={"x": FeatureStats(sketch=baseline)})
        )
        table = profile.percentiles_of("x")
        if table is None:
            raise ValueError("empty baseline")
        self.table = BaselineRanks(table)
        self.monitor = MonitorFeeder(_chunked(default_params("feature"), chunk_size))

    def feed(self, values: FloatArray, event_ts_ms: IntArray) -> list[int]:
        return self.monitor.feed(self.table.percentiles(values), event_ts_ms)


class WindowFeeder:
    """Tumbling windows of ``size`` values (of one or more features) judged against baselines.

    Each window's values go into a :class:`ValueSketch` per feature; when it closes, every
    feature is compared with its baseline (``compare_numeric`` on the baseline's quantile edges)
    and ``decide`` corrects across the features (Benjamini–Hochberg). A window with a drifted
    feature is a detection at its last index. The window grid is placed so that a change at
    ``run.change_at`` falls ``run.phase`` of the way into a window (the first window is shorter).
    """

    def __init__(self, baselines: Sequence[ValueSketch], size: int, run: Run) -> None:
        self.baselines = list(baselines)
        self.edges = [quantile_edges(b, POLICY.n_bins) for b in self.baselines]
        self.names = [f"f{j}" for j in range(len(self.baselines))]
        self.size = size
        first = size
        if run.change_at is not None:
            first = (run.change_at - round(run.phase * size)) % size or size
        self.first = first
        self.left = first
        self.windows = [ValueSketch() for _ in self.baselines]
        self.seen = 0
        #: ``(last index, drifted feature names)`` of every flagged window.
        self.flags: list[tuple[int, list[str]]] = []
        self.judged = 0

    def window_number(self, index: int) -> int:
        """0 for the first (short) window, then 1, 2, ..."""
        return 0 if index < self.first else 1 + (index - self.first) // self.size

    def feed(self, values: FloatArray, event_ts_ms: IntArray) -> list[int]:
        rows = values.reshape(len(values), -1)
        found: list[int] = []
        lo = 0
        while lo < len(rows):
            take = min(self.left, len(rows) - lo)
            for j, sketch in enumerate(self.windows):
                sketch.add_array(rows[lo : lo + take, j])
            lo += take
            self.left -= take
            if self.left == 0:
                drifted = self._judge()
                if drifted:
                    found.append(self.seen + lo - 1)
                    self.flags.append((self.seen + lo - 1, drifted))
                self.windows = [ValueSketch() for _ in self.baselines]
                self.left = self.size
        self.seen += len(rows)
        return found

    def _judge(self) -> list[str]:
        findings = [
            compare_numeric(name, baseline, window, edges, POLICY)
            for name, baseline, window, edges in zip(
                self.names, self.baselines, self.windows, self.edges, strict=True
            )
        ]
        self.judged += 1
        return [f.feature for f in decide(findings, POLICY) if f.drifted]


def _chunked(params: DetectorParams, chunk_size: int | None) -> DetectorParams:
    return params if chunk_size is None else params.model_copy(update={"chunk_size": chunk_size})


PERCENTILE_ADWIN = "adwin on baseline percentiles (feature)"
PERCENTILE_ADWIN_1 = "adwin on baseline percentiles, every value"
WINDOW_1M = "window test (PSI+KS, BH), 1 min"
WINDOW_10S = "window test (PSI+KS, BH), 10 s"


def _window(size: int) -> Callable[[Series, Run], Feeder]:
    return lambda s, run: WindowFeeder([baseline_sketch(s.stationary, run.tag)], size, run)


def contenders() -> list[Contender]:
    binary = frozenset({"correctness"})
    every_value = 1
    return [
        Contender(
            "adwin",
            lambda s, _: MonitorFeeder(default_params(s.signal)),
            FEATURES | {"score", "correctness"},
        ),
        Contender(
            "page_hinkley",
            lambda s, _: MonitorFeeder(default_params(s.signal)),
            frozenset({"latency", "error"}),
        ),
        Contender(
            "hddm_a",
            lambda s, _: MonitorFeeder(
                DetectorParams(
                    kind="hddm_a", drift_confidence=1e-5, direction="down", min_shift_sigma=0.1
                )
            ),
            binary,
        ),
        Contender(
            "page_hinkley, every value",
            lambda s, _: MonitorFeeder(_chunked(default_params(s.signal), every_value)),
            frozenset({"latency", "error"}),
        ),
        Contender(
            PERCENTILE_ADWIN,
            lambda s, run: PercentileFeeder(baseline_sketch(s.stationary, run.tag)),
            FEATURES,
        ),
        Contender(
            PERCENTILE_ADWIN_1,
            lambda s, run: PercentileFeeder(baseline_sketch(s.stationary, run.tag), every_value),
            FEATURES,
        ),
        Contender(WINDOW_1M, _window(MINUTE), FEATURES),
        Contender(WINDOW_10S, _window(TEN_S), FEATURES),
        Contender(
            "river ADWIN()",
            lambda s, _: RiverFeeder(ADWIN()),  # type: ignore[no-untyped-call]
            frozenset({GAUSS.name, "score"}),
        ),
        Contender(
            "river PageHinkley()",
            lambda s, _: RiverFeeder(PageHinkley()),
            frozenset({GAUSS.name, "latency", "error"}),
        ),
        # DDM watches the error rate: feed it 1 - correctness.
        Contender("river DDM()", lambda s, _: RiverFeeder(DDM(), flip=True), binary),
    ]


def feed_all(
    feeder: Feeder, values: FloatArray, stop_after: int | None = None
) -> tuple[list[int], float]:
    """Feed in :data:`CHUNK` pieces (rows); stop after the chunk with a detection >= ``stop_after``.

    Returns the detections and the seconds spent in ``feed``.
    """
    n = len(values)
    ts = START_MS + np.arange(n, dtype=np.int64)
    found: list[int] = []
    spent = 0.0
    for lo in range(0, n, CHUNK):
        started = time.perf_counter()
        found.extend(feeder.feed(values[lo : lo + CHUNK], ts[lo : lo + CHUNK]))
        spent += time.perf_counter() - started
        if stop_after is not None and found and found[-1] >= stop_after:
            break
    return found, spent


#: Contenders also run on a change :data:`SHORT_PRE` values after the start.
SOON_AFTER_START = frozenset(
    {"adwin", "page_hinkley", "page_hinkley, every value", PERCENTILE_ADWIN, PERCENTILE_ADWIN_1}
)


# -- measurement -----------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    contender: str
    signal: str
    stream: str
    false_alarms_per_m: float | None = None
    events_per_s: float | None = None
    delays: list[int] = field(default_factory=list)
    #: Window tests: windows from the one holding the change to the flagged one (1 = the same).
    windows: list[int] = field(default_factory=list)
    missed: int = 0
    early: int = 0
    #: Stationary rows: detections, and values per run.
    alarms: int = 0
    run_values: int = 0

    def cells(self) -> list[str]:
        if self.false_alarms_per_m is not None:
            fa = f"{self.false_alarms_per_m:.1f}"
            rate = f"{self.events_per_s / 1e6:.2f} M" if self.events_per_s else "—"
            return [self.contender, self.signal, self.stream, fa, *["—"] * 5, rate]
        runs = len(self.delays) + self.missed
        median = f"{statistics.median(self.delays):,.0f}" if self.delays else "—"
        spread = f"{min(self.delays):,}–{max(self.delays):,}" if self.delays else "—"
        windows = "—"
        if self.windows:
            lo, hi = min(self.windows), max(self.windows)
            windows = str(lo) if lo == hi else f"{lo}–{hi}"
        early = str(self.early) if self.early else "0"
        detected = f"{len(self.delays)}/{runs}"
        return [
            self.contender,
            self.signal,
            self.stream,
            "—",
            median,
            spread,
            windows,
            detected,
            early,
            "—",
        ]


HEADER = [
    "detector",
    "signal",
    "stream",
    "false alarms / M",
    "delay (median)",
    "delay (min–max)",
    "windows",
    "detected",
    "early",
    "events/s",
]


def phase_of(seed: int, seeds: int) -> float:
    """Where the change falls in its window: spread evenly over the seeds (0.1, 0.3, ... of 5)."""
    return (seed + 0.5) / seeds


def stationary_row(contender: Contender, series: Series, n: int, runs: int) -> Row:
    """False alarms per million over ``runs`` seeds of ``n`` values; events/s is the median."""
    alarms, rates = 0, []
    for run in range(runs):
        values = series.stationary(np.random.default_rng([SEED, run]), n)
        feeder = contender.make(series, Run(run))
        gc.collect()
        found, spent = feed_all(feeder, values)
        alarms += len(found)
        rates.append(n / spent)
    return Row(
        contender.name,
        series.name,
        f"stationary {n // 1000:,}k ×{runs}",
        false_alarms_per_m=alarms / (n * runs) * 1e6,
        events_per_s=statistics.median(rates),
        alarms=alarms,
        run_values=n,
    )


def change_row(
    contender: Contender,
    series: Series,
    stream: str,
    post: Gen,
    pre_n: int,
    post_n: int,
    seeds: int,
) -> Row:
    """Delay from the change point to the first detection at or after it, per seed."""
    row = Row(contender.name, series.name, stream)
    for seed in range(seeds):
        r = np.random.default_rng([SEED, 1000 + seed])
        values = np.concatenate([series.stationary(r, pre_n), post(r, post_n)])
        feeder = contender.make(series, Run(1000 + seed, pre_n, phase_of(seed, seeds)))
        found, _ = feed_all(feeder, values, stop_after=pre_n)
        row.early += sum(1 for i in found if i < pre_n)
        after = [i for i in found if i >= pre_n]
        if after:
            row.delays.append(after[0] - pre_n)
            if isinstance(feeder, WindowFeeder):
                row.windows.append(feeder.window_number(after[0]) - feeder.window_number(pre_n) + 1)
        else:
            row.missed += 1
    return row


# -- one window, 8 features: Benjamini–Hochberg ------------------------------------------------

MULTI_FAMILIES = (GAUSS, LOGNORMAL, PARETO, GAUSS, LOGNORMAL, PARETO, GAUSS, LOGNORMAL)
#: The feature that shifts (by 1σ) in the 8-feature change streams.
MULTI_SHIFTED = 3
MULTI_SIGNAL = "8 features, f3 shifts"


def _multi_values(r: Rng, n: int, shifted: int | None = None) -> FloatArray:
    columns = [
        (family.shifted(1.0) if j == shifted else family.draw)(r, n)
        for j, family in enumerate(MULTI_FAMILIES)
    ]
    return np.column_stack(columns)


def _multi_feeder(tag: int, run: Run) -> WindowFeeder:
    baselines = [baseline_sketch(f.draw, tag, j) for j, f in enumerate(MULTI_FAMILIES)]
    return WindowFeeder(baselines, MINUTE, run)


@dataclass(slots=True)
class MultiResult:
    rows: list[Row]
    #: Flagged windows naming a feature that did not shift (stationary runs and change streams).
    wrong_windows: int = 0
    judged_windows: int = 0
    #: Change streams whose first flagged window after the change names the shifted feature.
    right_first: int = 0
    seeds: int = 0


def multi_feature(stationary_n: int, runs: int, pre_n: int, post_n: int, seeds: int) -> MultiResult:
    """1-minute windows of 8 features (3 Gaussian, 3 lognormal, 2 Pareto); f3 shifts by 1σ."""
    shifted = f"f{MULTI_SHIFTED}"
    result = MultiResult(rows=[], seeds=seeds)
    alarms, rates = 0, []
    for run in range(runs):
        values = _multi_values(np.random.default_rng([SEED, run]), stationary_n)
        feeder = _multi_feeder(run, Run(run))
        gc.collect()
        found, spent = feed_all(feeder, values)
        alarms += len(found)
        rates.append(stationary_n / spent)
        result.wrong_windows += len(feeder.flags)
        result.judged_windows += feeder.judged
    result.rows.append(
        Row(
            WINDOW_1M,
            MULTI_SIGNAL,
            f"stationary {stationary_n // 1000:,}k rows ×{runs}",
            false_alarms_per_m=alarms / (stationary_n * runs) * 1e6,
            events_per_s=statistics.median(rates),
            alarms=alarms,
            run_values=stationary_n,
        )
    )
    row = Row(WINDOW_1M, MULTI_SIGNAL, "f3 N(0,1) mean +1σ, 7 stationary")
    for seed in range(seeds):
        r = np.random.default_rng([SEED, 1000 + seed])
        values = np.concatenate(
            [_multi_values(r, pre_n), _multi_values(r, post_n, shifted=MULTI_SHIFTED)]
        )
        feeder = _multi_feeder(1000 + seed, Run(1000 + seed, pre_n, phase_of(seed, seeds)))
        found, _ = feed_all(feeder, values, stop_after=pre_n)
        row.early += sum(1 for i in found if i < pre_n)
        result.judged_windows += feeder.judged
        result.wrong_windows += sum(1 for _, names in feeder.flags if set(names) - {shifted})
        after = [(i, names) for i, names in feeder.flags if i >= pre_n]
        if after:
            row.delays.append(after[0][0] - pre_n)
            row.windows.append(feeder.window_number(after[0][0]) - feeder.window_number(pre_n) + 1)
            result.right_first += after[0][1] == [shifted]
        else:
            row.missed += 1
    result.rows.append(row)
    return result


# -- claims ----------------------------------------------------------------------------------

CLAIM_CONTENDERS = (PERCENTILE_ADWIN, WINDOW_1M, WINDOW_10S)


def _find(rows: Sequence[Row], contender: str, signal: str, stationary: bool) -> Row | None:
    for row in rows:
        if row.contender != contender or row.signal != signal:
            continue
        is_stationary = row.false_alarms_per_m is not None
        if stationary == is_stationary and (stationary or row.stream.startswith("mean +1σ")):
            return row
    return None


def _seconds(events: int) -> str:
    return f"{events / RATE_EPS:,.1f} s"


def claim_lines(rows: Sequence[Row], multi: MultiResult, stationary_n: int, runs: int) -> str:
    """The two claims, checked for the contenders that reproduce the worker."""
    lines = [
        f"Claim 1: a 1σ mean shift in one feature is detected within one 1-minute window at"
        f" {RATE_EPS} events/s, i.e. at most {MINUTE:,} events after the change, on every seed.",
    ]
    for contender in CLAIM_CONTENDERS:
        for family in FAMILIES:
            row = _find(rows, contender, family.name, stationary=False)
            if row is None:
                continue
            runs_n = len(row.delays) + row.missed
            within = sum(1 for d in row.delays if d <= MINUTE)
            ok = within == runs_n and row.early == 0
            text = f"{within}/{runs_n} seeds within {MINUTE:,} events"
            if row.delays:
                text += (
                    f"; delay {min(row.delays):,}–{max(row.delays):,} events"
                    f" (max {_seconds(max(row.delays))})"
                )
            if row.windows:
                full = sum(1 for w in row.windows if w <= 2)
                text += (
                    f" = window {min(row.windows)}–{max(row.windows)} counting the one holding"
                    f" the change; flagged by the first window wholly after the change:"
                    f" {full}/{runs_n}"
                )
            if row.early:
                text += f"; {row.early} detections before the change"
            lines.append(f"  {'PASS' if ok else 'FAIL'}  {contender} | {family.name}: {text}")
    quick = "" if stationary_n >= 1_000_000 else " (quick run: fewer values than the claim's)"
    lines.append(
        f"Claim 2: no drift alarm on 10^6 stationary events: 0 detections on each of {runs}"
        f" stationary runs of {stationary_n:,} values{quick}."
    )
    stationary = [
        (contender, family.name, _find(rows, contender, family.name, stationary=True))
        for contender in CLAIM_CONTENDERS
        for family in FAMILIES
    ]
    multi_row = multi.rows[0]
    stationary.append((WINDOW_1M, f"{MULTI_SIGNAL} (any feature)", multi_row))
    for contender, signal, found in stationary:
        if found is None:
            continue
        ok = found.alarms == 0
        lines.append(
            f"  {'PASS' if ok else 'FAIL'}  {contender} | {signal}: {found.alarms} alarms in"
            f" {runs} × {found.run_values:,} values ({found.false_alarms_per_m:.1f} per M)"
        )
    ok = multi.wrong_windows == 0 and multi.right_first == multi.seeds
    lines.append(
        f"BH, 8 features in 1-minute windows, f3 shifts by 1σ: the first flagged window after the"
        f" change names only f3 in {multi.right_first}/{multi.seeds} seeds; windows naming an"
        f" unshifted feature: {multi.wrong_windows} of {multi.judged_windows:,} judged"
        f" — {'PASS' if ok else 'FAIL'}"
    )
    return "\n".join(lines)


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 1 min)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write")
    parser.add_argument("--runs", type=int, default=3, help="stationary runs (events/s median)")
    parser.add_argument("--seeds", type=int, help="seeds per change stream (5; quick 3)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    stationary_n = 100_000 if args.quick else 1_000_000
    pre_n, post_n = (10_000, 30_000) if args.quick else (50_000, 50_000)
    seeds = args.seeds or (3 if args.quick else 5)

    started = time.perf_counter()
    rows: list[Row] = []
    for contender in contenders():
        for series in SERIES:
            if series.name not in contender.series:
                continue
            log(f"{contender.name} / {series.name}")
            rows.append(stationary_row(contender, series, stationary_n, args.runs))
            for stream, post in series.changes:
                rows.append(change_row(contender, series, stream, post, pre_n, post_n, seeds))
            if contender.name in SOON_AFTER_START:
                stream, post = series.changes[0]
                label = f"{stream}, {SHORT_PRE:,} values in"
                rows.append(change_row(contender, series, label, post, SHORT_PRE, post_n, seeds))
    log(f"{WINDOW_1M} / {MULTI_SIGNAL}")
    multi = multi_feature(stationary_n, args.runs, pre_n, post_n, seeds)
    rows.extend(multi.rows)
    table = markdown(rows)
    claims = claim_lines(rows, multi, stationary_n, args.runs)
    meta = (
        f"river {RIVER_VERSION}, Python {platform.python_version()}, numpy {np.__version__};"
        f" stationary {stationary_n:,} values × {args.runs} seeds; change streams {pre_n:,}"
        f" stable values then {post_n:,} changed, {seeds} seeds; {CHUNK:,} values per feed;"
        f" baselines {BASELINE_N:,} values; windows at {RATE_EPS} events/s;"
        f" {time.perf_counter() - started:.0f} s"
    )
    print(table)
    print(f"\n{meta}\n\n{claims}")
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.parent == DEFAULT_OUT.parent and not (out.parent / ".gitignore").exists():
        # Results are machine-specific: the directory ignores itself, like .pytest_cache.
        (out.parent / ".gitignore").write_text("*\n")
    out.write_text(f"{table}\n\n{meta}\n\n{claims}\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
