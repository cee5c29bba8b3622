"""Online drift detectors: one river detector per series, with state that survives a restart.

A *series* is one stream of numbers of one model version, keyed by
``(model_id, model_version, signal, name)``: a numeric feature, the model score, latency, the
error indicator (0/1) or the correctness of joined labels (0/1). This module owns

- :class:`DetectorParams`, validated parameters of one detector, and :func:`default_params`,
  the per-signal defaults chosen by measurement (``bench/drift.py``, numbers in
  ``bench/README.md``);
- :class:`DriftMonitor`, one river detector on one series, which turns river's
  ``drift_detected`` flag into :class:`Detection` values with the mean before and after the
  change, and serialises itself (:meth:`DriftMonitor.to_state`);
- :class:`DetectorBank`, every monitor of one partition, created lazily and capped.

Kinds: ``adwin`` (river ``ADWIN``: two-sided change of the mean, any distribution),
``page_hinkley`` (river ``PageHinkley``: one-sided CUSUM for gradual degradation) and ``hddm_a``
(river ``binary.HDDMA``: rise of a 0/1 rate). river's ``binary.DDM`` is deliberately not
offered: its statistics are cumulative since its last reset, so the longer a stream has been
stable the slower it reacts (a correctness drop 0.92 -> 0.80 took it a median 5,900 events after
50 k stable ones, ADWIN 300; after 500 k it was not seen within 50 k), and with its defaults it
raised 1.3 false alarms per million stationary events.

Page-Hinkley sees standardised values: each value (after the optional ``log`` transform) is
centred on the running mean of the series before it and divided by its running standard
deviation (per chunk, see below), so
``threshold`` and ``delta`` are in units of that deviation and the same defaults fit latencies in
ms or in s and error rates from 0.3 % to 20 %. river's own defaults are in raw units, which is
why they fired 630 times per million stationary Gaussian values and on every 30th value of a
latency series.

Chunks: river sees one summary of every ``chunk_size`` consecutive finite values of a series
(:data:`CHUNK_SIZE`), not each value, and the CUSUMs that locate a change run on chunk means.
Each summary is scaled so that the detector's bound keeps its per-value meaning: ADWIN gets the
chunk's sum (both terms of its Bernstein bound grow k-fold, like the difference it tests),
Page-Hinkley the sum of the chunk's standardised values (its ``delta`` is scaled by k), HDDM_A
the chunk mean times the square root of k (its Hoeffding bounds then match those of the single
values). A monitor so costs ~0.02-0.03 us per value instead of ~0.7; detections come at the last
value of a chunk, and the numbers it reports stay per value (means of values, the standard
deviation of values). On a short history chunks blunt both ADWIN and Page-Hinkley, so for the
first :data:`WARM_UP_VALUES` (:data:`PH_WARM_UP_VALUES`) of each reference, and again after each
suppressed detection, a second detector of the same kind is fed every value and checked at chunk
ends: the *warm-up*, a bounded one-off cost of ~1.5 ms.

Determinism: the same values in the same order give the same detections however they are split
into arrays, and a monitor restored from :meth:`DriftMonitor.to_state` continues exactly as the
original would have. This module must not import Kafka, Faust or Redis, nor know where the state
is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.metadata
import json
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, Self, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from river.drift import ADWIN, PageHinkley
from river.drift.binary import HDDMA

from streamwatch.core.columns import FloatArray, IntArray
from streamwatch.core.sketch import MIN_POSITIVE
from streamwatch.exceptions import StateFormatError

DetectorKind = Literal["adwin", "page_hinkley", "hddm_a"]
#: Which changes are reported: rises of the mean, drops, or both.
Direction = Literal["up", "down", "both"]
#: ``log`` feeds ``log(max(x, MIN_POSITIVE))`` to the detector: multiplicative changes of a
#: positive, heavy-tailed series (latency) become shifts, and single outliers stop dominating.
Transform = Literal["none", "log"]
Signal = Literal["feature", "score", "latency", "error", "correctness"]
SeriesKey = tuple[str, str, str, str]
"""``(model_id, model_version, signal, name)``; ``name`` is the feature name, or the signal."""

#: Bumped whenever the serialised layout changes; old state then raises, it is never misread.
DETECTOR_STATE_FORMAT: Final = 4
#: Stored with the state: river does not promise that pickled detectors survive an upgrade.
RIVER_VERSION: Final = importlib.metadata.version("river")
#: Joins the parts of a :data:`SeriesKey` in :meth:`DetectorBank.to_state`.
KEY_SEPARATOR: Final = "\x1f"

_FIELDS_OF: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "adwin": ("delta", "clock", "min_window_length", "grace_period"),
        "page_hinkley": ("threshold", "delta", "alpha", "min_instances"),
        "hddm_a": ("drift_confidence",),
    }
)
_DIRECTIONS_OF: Final[Mapping[str, tuple[Direction, ...]]] = MappingProxyType(
    {"adwin": ("both", "up", "down"), "page_hinkley": ("up", "down"), "hddm_a": ("up", "down")}
)
#: river's own defaults, used for the fields a caller leaves out.
_RIVER_DEFAULTS: Final[Mapping[str, Mapping[str, float | int]]] = MappingProxyType(
    {
        "adwin": {"delta": 0.002, "clock": 32, "min_window_length": 5, "grace_period": 10},
        "page_hinkley": {
            "threshold": 50.0,
            "delta": 0.005,
            "alpha": 1 - 0.0001,
            "min_instances": 30,
        },
        "hddm_a": {"drift_confidence": 0.001},
    }
)
_KIND_SPECIFIC: Final = frozenset(f for fields in _FIELDS_OF.values() for f in fields)
#: ``chunk_size`` when left out. Measured with bench/drift.py and a microbenchmark of 11
#: monitors (8 features, score, latency, errors) fed arrays of 2,000 values, per value on
#: average: 1 costs 0.67-0.9 us (river and Python for every value); 32 costs 0.031 us and kept
#: the delays within 32 values of those of 1; 64 costs 0.021-0.025 us, adds 0-64 values of
#: delay (a +1 sigma feature shift: 111 values, was 111; latency +50 %: 239, was 198) and
#: raised no more false alarms (fewer on raw heavy-tailed values: 33 per million on Pareto,
#: was 62); 128 costs 0.015 us.
CHUNK_SIZE: Final = 64
#: Largest ``chunk_size``: delays grow by up to as many values.
MAX_CHUNK_SIZE: Final = 4096


def _need(value: float | None) -> float:
    if value is None:  # unreachable after validation; keeps the types honest
        raise ValueError("detector parameter missing")
    return value


class DetectorParams(BaseModel):
    """Validated parameters of one detector. Fields that do not apply to ``kind`` are ``None``.

    Fields left out take river's default for the kind, except ``direction`` (``both`` for
    ADWIN, ``up`` otherwise) and ``chunk_size`` (:data:`CHUNK_SIZE`); :func:`default_params`
    gives the measured per-signal defaults. Counts of values (``clock``, ``min_window_length``,
    ``grace_period``, ``min_instances``) are rounded up to whole chunks.
    Invalid values raise :class:`pydantic.ValidationError` (a ``ValueError``) naming the valid
    ones, including a parameter of another kind.

    Example:
        >>> DetectorParams(kind="adwin", delta=1e-5).clock
        32
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: DetectorKind
    #: Left out: ``both`` for ADWIN, ``up`` for the others.
    direction: Direction = "both"
    transform: Transform = "none"
    #: A detection is reported only if ``|after_mean - before_mean|`` is at least this many
    #: standard deviations of the series before the change (of the values themselves, also
    #: with the ``log`` transform); 0 reports every detection.
    min_shift_sigma: float = Field(default=0.0, ge=0.0)
    #: Consecutive finite values summarised into one update of the river detector (see the
    #: module docstring); detections come at the last value of a chunk, so delays grow by up
    #: to this many values, and the cost per value falls about as fast. 1 feeds every value.
    chunk_size: int = Field(default=CHUNK_SIZE, ge=1, le=MAX_CHUNK_SIZE)
    #: ADWIN: significance in (0, 1). Page-Hinkley: allowed drift per value, in standard
    #: deviations (changes smaller than this are never detected).
    delta: float | None = None
    #: ADWIN checks for a cut every ``clock`` values, rounded up to whole chunks (delays are
    #: rounded up to it).
    clock: int | None = Field(default=None, ge=1)
    min_window_length: int | None = Field(default=None, ge=1)
    grace_period: int | None = Field(default=None, ge=1)
    #: Page-Hinkley: cumulative deviation, in standard deviations, that triggers a detection.
    threshold: float | None = Field(default=None, gt=0.0)
    #: Page-Hinkley forgetting factor in (0, 1]; 1 is the classic test.
    alpha: float | None = Field(default=None, gt=0.0, le=1.0)
    #: Page-Hinkley: values used to estimate the standard deviation before the test starts.
    min_instances: int | None = Field(default=None, ge=2)
    #: HDDM_A: confidence of the Hoeffding bound, in (0, 1); smaller is stricter.
    drift_confidence: float | None = Field(default=None, gt=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _fill_kind_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("kind") not in _FIELDS_OF:
            return data  # the field validators report a missing or invalid kind
        kind = data["kind"]
        own = _FIELDS_OF[kind]
        for name, value in data.items():
            if name in _KIND_SPECIFIC and name not in own and value is not None:
                valid = ", ".join((*own, "direction", "transform", "min_shift_sigma", "chunk_size"))
                raise ValueError(
                    f"{name!r} does not apply to kind {kind!r}; its parameters are: {valid}"
                )
        filled = dict(data)
        for name, value in _RIVER_DEFAULTS[kind].items():
            if filled.get(name) is None:
                filled[name] = value
        if "direction" not in filled:
            filled["direction"] = _DIRECTIONS_OF[kind][0]
        if filled.get("chunk_size") is None:
            filled["chunk_size"] = CHUNK_SIZE
        return filled

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        valid = _DIRECTIONS_OF[self.kind]
        if self.direction not in valid:
            raise ValueError(
                f"direction {self.direction!r} is not supported by kind {self.kind!r};"
                f" valid values are: {', '.join(valid)}"
            )
        if self.transform != "none" and self.kind != "page_hinkley":
            raise ValueError(
                f"transform {self.transform!r} is only supported by kind 'page_hinkley';"
                " use transform 'none' with kind " + repr(self.kind)
            )
        if self.kind == "adwin" and not 0.0 < _need(self.delta) < 1.0:
            raise ValueError(f"ADWIN delta must be strictly between 0 and 1, got {self.delta!r}")
        if self.kind == "page_hinkley" and _need(self.delta) < 0.0:
            raise ValueError(f"Page-Hinkley delta must be >= 0, got {self.delta!r}")
        return self

    def fingerprint(self) -> str:
        """Short hash of every parameter, stored with the state to detect a changed config."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# Defaults, chosen with bench/drift.py (numbers in bench/README.md): no detection on 3 x 10^6
# stationary values of each signal, while the changes the signal exists for are found quickly.

#: ADWIN significance for features, scores and correctness. Fed every value, river's 0.002
#: raised one false alarm in 3 M stationary Gaussian values; 1e-5 raised none, for one
#: ``clock`` (32 values) of extra delay.
ADWIN_DELTA: Final = 1e-5
#: Page-Hinkley allowance per value, in standard deviations: smaller rises are never reported
#: (on log latency with log-sd 1, 0.15 sigma is +16 %). Smaller values catch ramps earlier but
#: need a higher threshold for the same false-alarm rate.
PH_DELTA: Final = 0.15
#: Page-Hinkley threshold on log latency. The largest excursion of the test on 40 stationary
#: runs of 10^6 values was 46 sigma fed every value, 42 fed chunks of 64; a +50 % rise (0.4
#: sigma at log-sd 1) is found in ~200 values (~240 in chunks of 64).
LATENCY_PH_THRESHOLD: Final = 60.0
#: Page-Hinkley threshold on the 0/1 error indicator. Each error is a jump of ``1 / sd`` (10
#: sigma at a 1 % rate), so excursions are larger: at most 81 sigma on 40 stationary runs of
#: 10^6 at 1 % fed every value, 78 fed chunks of 64. Rarer errors jump further: in 8 M
#: events none at 0.3 %, but three at 0.1 %, fed every value or in chunks alike.
ERROR_PH_THRESHOLD: Final = 110.0

DEFAULT_PARAMS: Final[Mapping[str, DetectorParams]] = MappingProxyType(
    {
        "feature": DetectorParams(kind="adwin", delta=ADWIN_DELTA, min_shift_sigma=0.1),
        "score": DetectorParams(kind="adwin", delta=ADWIN_DELTA, min_shift_sigma=0.1),
        "latency": DetectorParams(
            kind="page_hinkley",
            transform="log",
            delta=PH_DELTA,
            threshold=LATENCY_PH_THRESHOLD,
            alpha=1.0,
            min_instances=100,
            min_shift_sigma=0.1,
        ),
        "error": DetectorParams(
            kind="page_hinkley",
            delta=PH_DELTA,
            threshold=ERROR_PH_THRESHOLD,
            alpha=1.0,
            min_instances=1000,
            min_shift_sigma=0.1,
        ),
        "correctness": DetectorParams(
            kind="adwin", delta=ADWIN_DELTA, direction="down", min_shift_sigma=0.1
        ),
    }
)
SIGNALS: Final[tuple[Signal, ...]] = get_args(Signal)


def default_params(signal: str) -> DetectorParams:
    """Return the measured default detector for a signal.

    Raises:
        ValueError: If ``signal`` is not one of :data:`SIGNALS`.
    """
    params = DEFAULT_PARAMS.get(signal)
    if params is None:
        raise ValueError(f"unknown signal {signal!r}; valid signals are: {', '.join(SIGNALS)}")
    return params


def default_params_for(key: SeriesKey) -> DetectorParams | None:
    """``params_for`` of a :class:`DetectorBank` that watches every known signal with defaults."""
    return DEFAULT_PARAMS.get(key[2])


@dataclass(frozen=True, slots=True)
class Detection:
    """One reported change of one series."""

    #: 0-based position of the triggering value (the last of the chunk that revealed the
    #: change) among all values given to the monitor (skipped NaN values included), counted
    #: since the monitor was created.
    index: int
    #: Event time of the triggering value.
    event_ts_ms: int
    #: Mean of the series before the change: from the previous reported detection (or the
    #: start) to the estimated change point, or to the first detection suppressed since.
    before_mean: float
    #: Mean from the estimated change point to the triggering value (for an ADWIN detection of
    #: a drift, of ADWIN's window after its cut when that is shorter).
    after_mean: float
    detector: DetectorKind


_DETECTOR_CLASSES: Final = MappingProxyType(
    {"adwin": ADWIN, "page_hinkley": PageHinkley, "hddm_a": HDDMA}
)


def _river_adwin_is_as_known() -> bool:
    """Whether river's ADWIN keeps its Rust core and its flag where :func:`_feed_adwin` looks.

    (river 0.21-0.26 do; another version falls back to river's ``update``.)
    """
    probe = ADWIN()  # type: ignore[no-untyped-call]
    core = getattr(probe, "_helper", None)
    if core is None or not callable(getattr(core, "update", None)):
        return False
    probe._drift_detected = True
    return probe.drift_detected is True


_DIRECT_ADWIN: Final = _river_adwin_is_as_known()


def _feed_adwin(detector: Any, inputs: list[float]) -> int:
    """Give a river ADWIN ``inputs`` until it detects a drift; return where it stopped.

    Returns the index of the detecting input (the detector then reports ``drift_detected``,
    as after its own ``update``), ``len(inputs)`` if none did, or -1 if nothing was fed: not
    an ADWIN, or one that must reset first (river resets on the update after a detection).
    Calls river's Rust core directly: the Python ``update`` around it and the property read
    after it cost three times the update itself (0.42 against 0.15 us an input).
    """
    if not _DIRECT_ADWIN or type(detector) is not ADWIN or detector.drift_detected:
        return -1
    update = detector._helper.update
    for j, x in enumerate(inputs):
        if update(x):
            detector._drift_detected = True
            return j
    return len(inputs)


def _in_chunks(values: int | None, chunk_size: int) -> int:
    """A count of values as a count of chunks, rounded up (at least 1)."""
    return max(1, -(-(values or 1) // chunk_size))


def _new_detector(params: DetectorParams) -> Any:
    k = params.chunk_size
    if params.kind == "adwin":
        # ADWIN is fed chunk *sums*: its bound then compares them on the scale of the values
        # (both of its terms grow by the same factor k as the difference of the sums), so delta
        # keeps its meaning. Its counts are in chunks.
        return ADWIN(  # type: ignore[no-untyped-call]
            delta=params.delta,
            clock=_in_chunks(params.clock, k),
            min_window_length=_in_chunks(params.min_window_length, k),
            grace_period=_in_chunks(params.grace_period, k),
        )
    if params.kind == "page_hinkley":
        # Always "up": a "down" monitor feeds negated values. min_instances is ours. Each input is
        # the sum of k standardised values, so the allowance and forgetting are per k values.
        return PageHinkley(
            min_instances=1,
            delta=_need(params.delta) * k,
            threshold=_need(params.threshold),
            alpha=_need(params.alpha) ** k,
            mode="up",
        )
    c = params.drift_confidence
    return HDDMA(  # type: ignore[no-untyped-call]
        drift_confidence=c, warning_confidence=c, two_sided_test=False
    )


#: Finite values at the start of each reference (a new monitor, or after a reported detection),
#: and after each suppressed detection, during which an ADWIN monitor also feeds every value to a
#: second ADWIN, checked at chunk ends only (so detections still come at the last value of a
#: chunk, however the values are split): the warm-up. ADWIN's bound uses the variance of its
#: whole window, change included, and fed chunk sums the change weighs k times more in it than
#: fed values: on a short window it barely ever cuts (a +2 sigma shift after 300 values took
#: 3,300 values to find, 83 fed every value). From 5,000 to 20,000 values of history on, chunks
#: are within about 64 values of it again. A suppressed detection restarts river's ADWIN on a
#: short window too: a +1 sigma step 1,000 values after a +0.3 sigma one (suppressed with
#: ``min_shift_sigma=0.5``) was reported after a median 1,655 values without a warm-up then
#: (28 of 30 runs), 119 with one (30 of 30), 87 fed every value (26 of 30). A warm-up costs
#: ~1.2 ms (8,192 values cost ~0.15 ms without), once per reference and per suppressed
#: detection; those are rare (3-8 in 400,000 values of slowly drifting streams).
WARM_UP_VALUES: Final = 8192
#: The same for Page-Hinkley: a test of its own (:class:`_PageHinkleyByValue`) sees every value,
#: standardised as a monitor with ``chunk_size=1`` would, and so finds what that monitor finds,
#: at the end of the chunk (80 of 80 runs). Chunks miss changes on a short reference that every
#: value finds: a latency rise of 50 % 1,000 values in was found in 23 of 40 runs by chunks, 28
#: fed every value, 28 with the warm-up; an error rate 1 % -> 5 % 4,000 values in (tested from
#: 1,000 on) in 25, 30 and 30, with a warm-up of 4,096 values in 25. From ~8,000 values in on,
#: chunks find every change, within ~60 values of every value as later on: a longer warm-up
#: gains nothing more. No false alarm in 400 stationary runs of 20,000 values of either signal,
#: with or without it. A warm-up costs ~1.5 ms (8,192 values cost ~0.3 ms without).
PH_WARM_UP_VALUES: Final = 8192


class _PageHinkleyByValue:
    """river's ``PageHinkley`` (mode ``up``, ``min_instances=1``) fed every standardised value.

    The warm-up of a Page-Hinkley monitor (see :data:`PH_WARM_UP_VALUES`): the test of a monitor
    with ``chunk_size=1``, but it answers once per chunk, whether the test exceeded its threshold
    at any value of the chunk; the monitor then judges a detection at the chunk's last value and
    replaces it. Its state is seven floats, not a pickled river object.
    """

    __slots__ = ("alpha", "delta", "low", "mean", "n", "threshold", "total")

    def __init__(self, params: DetectorParams) -> None:
        self.alpha = _need(params.alpha)
        self.delta = _need(params.delta)
        self.threshold = _need(params.threshold)
        self.n = 0
        self.mean = 0.0
        self.total = 0.0
        self.low = math.inf

    def __getstate__(self) -> tuple[float, ...]:
        return self.alpha, self.delta, self.threshold, self.n, self.mean, self.total, self.low

    def __setstate__(self, state: tuple[float, ...]) -> None:
        self.alpha, self.delta, self.threshold, n, self.mean, self.total, self.low = state
        self.n = int(n)

    def update_chunk(self, values: list[float]) -> bool:
        """Feed one chunk's standardised values (NaN: not tested); whether the test fired."""
        alpha, delta, threshold = self.alpha, self.delta, self.threshold
        n, mean, total, low = self.n, self.mean, self.total, self.low
        fired = False
        for z in values:
            if z != z:  # NaN: before min_instances, or no spread yet
                continue
            n += 1
            mean += (z - mean) / n
            total = alpha * total + (z - mean) - delta
            if total < low:
                low = total
            elif total - low > threshold:
                fired = True
                break  # replaced at the end of the chunk anyway
        self.n, self.mean, self.total, self.low = n, mean, total, low
        return fired


def _new_warm_up(params: DetectorParams) -> Any:
    """The detector fed every value at the start of a reference (see :data:`WARM_UP_VALUES`)."""
    k = params.chunk_size
    if k == 1:
        return None
    if params.kind == "page_hinkley":
        return _PageHinkleyByValue(params)
    if params.kind != "adwin":
        return None
    return ADWIN(  # type: ignore[no-untyped-call]
        delta=params.delta,
        clock=k * _in_chunks(params.clock, k),  # so that it checks at chunk ends only
        min_window_length=params.min_window_length,
        grace_period=params.grace_period,
    )


_WARM_UP_CLASSES: Final[Mapping[str, type]] = MappingProxyType(
    {"adwin": ADWIN, "page_hinkley": _PageHinkleyByValue}
)


def _warm_up_values(warm_up: Any) -> int:
    """Values the warm-up detector ``warm_up`` (or None) is fed."""
    if warm_up is None:
        return 0
    return PH_WARM_UP_VALUES if isinstance(warm_up, _PageHinkleyByValue) else WARM_UP_VALUES


# The reference since its last restart, as sums relative to the monitor's pivot (its first
# value): count, sum and sum of squares of the values, then of the detector's input (the log
# values with the ``log`` transform, else the values again). Shifted sums keep the variance
# exact when the mean is far from 0, and a sum carried into the next call is added to exactly
# as it would have been in one call, so results do not depend on how values are split.
_Totals = tuple[int, float, float, float, float]
_EMPTY: Final[_Totals] = (0, 0.0, 0.0, 0.0, 0.0)
# A located change: mean before, mean after, standard deviation before (all of the values),
# the shift of the detector's input in its standard deviations before, and the count after.
_Located = tuple[float, float, float, float, float]

#: Allowances of the two CUSUM pairs that locate a change point, in standard deviations. Page's
#: estimator (the last restart of a CUSUM) is accurate for changes of about twice its allowance:
#: a small one dilutes big, quickly detected changes with values from before them (a 2 sigma
#: shift showed as 0.7), a big one mistakes noise for the start of a small change (a 0.15 sigma
#: drop showed as 0.4). The coarse location is used when both show a big change.
FINE_ALLOWANCE_SIGMA: Final = 0.1
COARSE_ALLOWANCE_SIGMA: Final = 0.5
# The four CUSUMs as rows: fine rise, fine fall, coarse rise, coarse fall. A fall CUSUM is kept
# negated, so that every row restarts where its cumulative sum reaches a new minimum.
_SIGNS: Final = np.array([[1.0], [-1.0], [1.0], [-1.0]])
_ALLOWANCES: Final = np.array(
    [
        [FINE_ALLOWANCE_SIGMA],
        [FINE_ALLOWANCE_SIGMA],
        [COARSE_ALLOWANCE_SIGMA],
        [COARSE_ALLOWANCE_SIGMA],
    ]
)
_NO_CUSUMS: Final = (0.0, 0.0, 0.0, 0.0)
_NO_SPLITS: Final = (_EMPTY, _EMPTY, _EMPTY, _EMPTY)


def _located(split: _Totals, now: _Totals, pivot: float) -> _Located | None:
    """Split the reference ``now`` where ``split`` was taken; None if at its start or end."""
    ns, s1, s2, s1u, s2u = split
    n, t1, _, t1u, _ = now
    if not 0 < ns < n:
        return None
    after_n = n - ns
    before = s1 / ns
    before_u = s1u / ns
    m2_u = s2u - s1u * before_u
    shift_u = (t1u - s1u) / after_n - before_u
    shift_sd = shift_u / math.sqrt(m2_u / ns) if m2_u > 0.0 else math.copysign(math.inf, shift_u)
    sd = math.sqrt(max(s2 - s1 * before, 0.0) / ns)
    return pivot + before, pivot + (t1 - s1) / after_n, sd, shift_sd, after_n


def _estimate(rising: bool, coarse: _Located | None, fine: _Located | None) -> _Located | None:
    """The fine location, unless both show a change big enough for the coarse one."""
    if fine is None or coarse is None:
        return fine
    sign = 1.0 if rising else -1.0
    # On 0/1 or heavy-tailed values one run of extreme values looks like a big change to the
    # coarse CUSUM alone; the fine one must agree.
    big = sign * fine[3] >= COARSE_ALLOWANCE_SIGMA
    return coarse if big and sign * coarse[3] >= 2 * COARSE_ALLOWANCE_SIGMA else fine


def _adwin_partition(detector: Any, per_input: int, now: _Totals, pivot: float) -> _Located:
    """Before and after ADWIN's cut: it keeps the newest inputs of the reference.

    Each input is the sum of ``per_input`` values (minus the pivot); ADWIN does not hold the
    values, so the standard deviation is the pooled one within the two parts.
    """
    n, t1, t2, _, _ = now
    w = float(detector.width) * per_input
    window = float(detector.total)
    after = window / w
    nb = n - w
    m2 = max(t2 - t1 * t1 / n, 0.0)
    if nb <= 0.0:  # the window is the whole reference: nothing is known from before
        return pivot + t1 / n, pivot + t1 / n, math.sqrt(m2 / n), 0.0, w
    before = (t1 - window) / nb
    sd = math.sqrt(max(m2 - (after - before) ** 2 * nb * w / n, 0.0) / n)
    shift = (after - before) / sd if sd > 0.0 else 0.0
    return pivot + before, pivot + after, sd, shift, w


#: Chunks a monitor collects before folding them into its reference and CUSUMs in one go (at
#: a detection it folds at once): a fold costs tens of numpy calls, so it runs every few
#: thousand values instead of on every call; the chunks waiting are part of the state.
FOLD_CHUNKS: Final = 64


def _at(count: IntArray, cum: FloatArray, chunk: int) -> _Totals:
    """The reference after ``chunk``, from counts and running sums (see ``_running``)."""
    sums = cum[:, chunk].tolist()
    return (int(count[chunk]), sums[0], sums[1], sums[-2], sums[-1])


@dataclass(frozen=True, slots=True)
class _Folded:
    """Chunks just folded into the reference, kept to judge a detection among them."""

    #: Values in the reference after each chunk.
    count: IntArray
    #: Running sums after each chunk, one row per sum of :data:`_Totals`.
    cum: FloatArray
    #: The four CUSUMs after each chunk.
    cusums: FloatArray
    #: The CUSUMs' lows and the reference at them before these chunks.
    lows: tuple[float, ...]
    splits: tuple[_Totals, ...]

    def totals(self, chunk: int) -> _Totals:
        return _at(self.count, self.cum, chunk)

    def excess(self, row: int, chunk: int) -> float:
        """How far CUSUM ``row`` is above its low, as of ``chunk`` (0 right after a restart)."""
        seen = self.cusums[row, : chunk + 1]
        return float(seen[chunk]) - min(float(seen.min()), self.lows[row])

    def split(self, row: int, chunk: int) -> _Totals:
        """The reference where CUSUM ``row`` last restarted, as of ``chunk``."""
        seen = self.cusums[row, : chunk + 1]
        last = chunk - int(np.argmin(seen[::-1]))
        return self.totals(last) if seen[last] <= self.lows[row] else self.splits[row]


class DriftMonitor:
    """One detector on one series, fed chunk summaries.

    The monitor folds consecutive finite values into chunks of
    :attr:`DetectorParams.chunk_size` and updates river's detector once per chunk with its
    summary; an incomplete chunk waits for the next call (it is part of the state), and a
    detection is reported at the last value of the chunk that revealed it.

    river only says *that* the series changed. To say *from what to what*, the monitor keeps the
    running moments of the values since the last *reported* detection (the reference) and
    CUSUMs of the chunk means whose last restart estimates where the change began (Page's
    estimator, see :data:`FINE_ALLOWANCE_SIGMA`): ``before_mean`` and the standard deviation that
    ``min_shift_sigma`` compares with are those of the values of the reference up to that point,
    ``after_mean`` that of the rest. ADWIN's own window after a cut still holds many values from
    before the change (a 0.5 sigma shift showed as 0.07), so it is only the fallback.

    A detection that ``direction`` or ``min_shift_sigma`` suppresses still restarts river's
    detector (and the warm-up, see :data:`WARM_UP_VALUES`), but freezes the "before" of the next
    detections until one is reported: a slow drift is reported once it has moved far enough from
    where the series was, instead of being compared with a reference that drifts along.

    Example:
        >>> rng = np.random.default_rng(7)
        >>> values = np.concatenate([rng.normal(0, 1, 5000), rng.normal(1, 1, 1000)])
        >>> ts = np.arange(values.size, dtype=np.int64) * 10
        >>> [(d.index, round(d.before_mean, 2), round(d.after_mean, 2))
        ...  for d in DriftMonitor(default_params("feature")).update_array(values, ts)]
        [(5055, -0.02, 1.05)]
    """

    __slots__ = (
        "_baseline",
        "_cusums",
        "_detector",
        "_fingerprint",
        "_live",
        "_lows",
        "_params",
        "_pending",
        "_pivot",
        "_rows",
        "_seen",
        "_splits",
        "_totals",
        "_unfolded",
        "_warm_left",
        "_warm_up",
    )

    def __init__(self, params: DetectorParams) -> None:
        """Create a monitor with a fresh detector."""
        self._params = params
        self._fingerprint = ""  # of the parameters, computed on the first to_state()
        self._detector: Any = _new_detector(params)
        self._warm_up: Any = _new_warm_up(params)
        self._warm_left = _warm_up_values(self._warm_up)
        self._seen = 0
        # Finite values of the incomplete chunk.
        self._pending: FloatArray = np.empty(0)
        # The sums of each chunk: of the values and their squares, then (``log`` transform)
        # of the log values and their squares.
        self._rows = 4 if params.transform == "log" else 2
        # Sums of the chunks given to river but not yet folded into the reference (columns).
        self._unfolded: FloatArray = np.empty((self._rows, 0))
        # The first value and the detector's input for it: every sum is relative to them.
        self._pivot: tuple[float, float] | None = None
        self._totals: _Totals = _EMPTY
        # Page-Hinkley: the reference including the chunks not yet folded.
        self._live: _Totals = _EMPTY
        # The four CUSUMs (see _SIGNS), their lows and the reference at those lows.
        self._cusums: tuple[float, ...] = _NO_CUSUMS
        self._lows: tuple[float, ...] = _NO_CUSUMS
        self._splits: tuple[_Totals, ...] = _NO_SPLITS
        # (mean, sd) before the first suppressed detection since the last reported one.
        self._baseline: tuple[float, float] | None = None

    @property
    def params(self) -> DetectorParams:
        """The parameters this monitor was created with."""
        return self._params

    @property
    def seen(self) -> int:
        """Values given to the monitor so far, skipped ones included."""
        return self._seen

    def update_array(self, values: FloatArray, event_ts_ms: IntArray) -> list[Detection]:
        """Feed values in arrival order and return the detections they trigger.

        NaN and infinite values are skipped (they still count in :attr:`Detection.index`).

        Args:
            values: The series values, in arrival order.
            event_ts_ms: Event time of each value.

        Returns:
            The reported detections, in order.

        Raises:
            ValueError: If the two arrays are not 1-d or differ in length.
        """
        if values.ndim != 1 or values.shape != event_ts_ms.shape:
            raise ValueError(
                "values and event_ts_ms must be 1-d arrays of the same length, got shapes"
                f" {values.shape} and {event_ts_ms.shape}"
            )
        start = self._seen
        self._seen += int(values.size)
        k = self._params.chunk_size
        xs = values.astype(np.float64, copy=False)
        held = self._pending
        joined = np.concatenate((held, xs)) if held.size else xs
        chunks = joined.size // k
        if chunks == 0:
            self._pending = joined if held.size else joined.copy()
            return []
        offset = held.size
        finite: IntArray | None = None
        fresh = self._pivot is None
        sums = self._chunk_sums(joined[: chunks * k], k)
        if not math.isfinite(sums[1].sum()):  # a NaN or infinite value: skip those
            if fresh:
                self._pivot = None
            kept = held[np.isfinite(held)]
            finite = np.flatnonzero(np.isfinite(xs))
            joined = np.concatenate((kept, xs[finite]))
            offset = kept.size
            chunks = joined.size // k
            if chunks == 0:
                self._pending = joined
                return []
            sums = self._chunk_sums(joined[: chunks * k], k)
        self._pending = joined[chunks * k :].copy()

        def last_value_of(chunk: int) -> tuple[int, int]:
            """Position among all values fed, and event time, of a chunk's last value."""
            i = (chunk + 1) * k - 1 - offset
            at = i if finite is None else int(finite[i])
            return start + at, int(event_ts_ms[at])

        return self._feed(sums, joined, last_value_of)

    def _chunk_sums(self, values: FloatArray, k: int) -> FloatArray:
        """Per chunk of ``k`` values, the sums of ``_rows`` (relative to the pivot)."""
        if self._pivot is None:
            first = float(values[0])
            log = self._rows == 4
            self._pivot = (first, math.log(max(first, MIN_POSITIVE)) if log else first)
        starts = np.arange(0, values.size, k)
        sums = np.empty((self._rows, starts.size))
        # NaN and infinite values are looked for in the sums, and skipped: no warning for them.
        with np.errstate(invalid="ignore", over="ignore"):
            shifted = values - self._pivot[0]
            np.add.reduceat(shifted, starts, out=sums[0])
            np.square(shifted, out=shifted)
            np.add.reduceat(shifted, starts, out=sums[1])
            if self._rows == 4:
                u = np.log(np.maximum(values, MIN_POSITIVE))
                u -= self._pivot[1]
                np.add.reduceat(u, starts, out=sums[2])
                np.square(u, out=u)
                np.add.reduceat(u, starts, out=sums[3])
        return sums

    def _feed(
        self,
        sums: FloatArray,
        values: FloatArray,
        last_value_of: Callable[[int], tuple[int, int]],
    ) -> list[Detection]:
        """Give river one input per chunk (column of ``sums``) and judge its detections.

        ``values`` are the finite values the chunks summarise, for the warm-up detector. The
        reference and the CUSUMs are only needed to judge a detection, so chunks are folded
        into them lazily: at a detection, or once :data:`FOLD_CHUNKS` have gathered.
        """
        params = self._params
        k = params.chunk_size
        found: list[Detection] = []
        lo = 0
        while True:
            part = sums[:, lo:]
            chunks = part.shape[1]
            done = 0  # chunks of ``part`` folded already
            if not chunks:  # the last chunk's detection was reported
                break
            detector = self._detector
            update = detector.update
            before = self._live
            positions, inputs = self._inputs(part)
            fed: Sequence[float | None] = inputs
            if len(inputs) < chunks:  # Page-Hinkley, early in a reference: some untested
                every: list[float | None] = [None] * chunks
                for at, value in zip(positions, inputs, strict=True):
                    every[at] = value
                fed = every
            standardised: FloatArray | None = None  # every value, for the warm-up
            reported = -1
            # Past the warm-up, an ADWIN is fed up to its first detection at C speed; the
            # detecting chunk (given to river already) is then judged below as any other.
            fed_to = -1 if self._warm_up is not None else _feed_adwin(detector, inputs)
            for j in range(max(fed_to, 0), chunks):
                x = fed[j]
                by = None
                if x is not None:
                    if j != fed_to:
                        update(x)
                    if detector.drift_detected:
                        by = detector
                warm_up = self._warm_up
                if warm_up is not None:
                    if isinstance(warm_up, _PageHinkleyByValue):
                        if standardised is None:
                            standardised = self._standardised(part, values[lo * k :], before)
                        fired = warm_up.update_chunk(standardised[j].tolist())
                    else:
                        start = (lo + j) * k
                        chunk = (values[start : start + k] - self._pivot_value()).tolist()
                        took = _feed_adwin(warm_up, chunk)
                        # The rest after a detection (none: it checks at chunk ends) as river
                        # takes it, resetting first.
                        for value in chunk[took + 1 if took >= 0 else 0 :]:
                            warm_up.update(value)
                        fired = warm_up.drift_detected
                    if by is None and fired:
                        by = warm_up
                    self._warm_left -= k
                if by is None:
                    if self._warm_left <= 0:
                        self._warm_up = None
                    continue
                gathered = part[:, done : j + 1]
                if self._unfolded.shape[1]:
                    gathered = np.concatenate((self._unfolded, gathered), axis=1)
                    self._unfolded = self._unfolded[:, :0]
                done = j + 1
                folded = self._fold(gathered)
                at = gathered.shape[1] - 1
                if self._judge(folded, at, lo + j, by, last_value_of, found):
                    self._restart(replace=by is not detector)
                    reported = j  # the rest is fed again: inputs may use the reference
                    break
                # Suppressed: river's detector restarted, its history is short again.
                self._warm_up = _new_warm_up(params)
                self._warm_left = _warm_up_values(self._warm_up)
            if reported < 0:
                break
            lo += reported + 1
        rest = part[:, done:]
        if self._unfolded.shape[1]:
            rest = np.concatenate((self._unfolded, rest), axis=1)
        if rest.shape[1] >= FOLD_CHUNKS:
            self._fold(rest)
            rest = rest[:, :0]
        self._unfolded = rest
        return found

    def _standardised(self, sums: FloatArray, values: FloatArray, before: _Totals) -> FloatArray:
        """Each value of chunks ``sums`` standardised as a monitor with ``chunk_size=1`` would.

        ``values`` start with the chunks' values; ``before`` is the reference before them.
        Returns one row per chunk: the detector's input for each value (the log value with the
        ``log`` transform) minus the mean of the reference before it, in its standard deviation
        (negated for ``down``); NaN before ``min_instances`` values and while they do not vary.
        Each row continues the reference at its chunk's start, so any split gives the same rows.
        """
        params = self._params
        k = params.chunk_size
        chunks = sums.shape[1]
        block = values[: chunks * k].reshape(chunks, k)
        pivot = self._pivot or (0.0, 0.0)
        if self._rows == 4:
            u = np.log(np.maximum(block, MIN_POSITIVE))
            u -= pivot[1]
        else:
            u = block - pivot[0]
        count, cum = self._running(sums, before)
        n = (count - k)[:, None] + np.arange(k)  # values before each value
        s1, s2 = np.empty((chunks, k)), np.empty((chunks, k))
        s1[0, 0], s2[0, 0] = before[3:5] if self._rows == 4 else before[1:3]
        s1[1:, 0], s2[1:, 0] = cum[-2, :-1], cum[-1, :-1]
        s1[:, 1:] = np.cumsum(u[:, :-1], axis=1)
        s1[:, 1:] += s1[:, :1]
        s2[:, 1:] = np.cumsum(np.square(u[:, :-1]), axis=1)
        s2[:, 1:] += s2[:, :1]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s1 / n
            var = s2 / n
            var -= mean * mean
            z = u - mean
            z /= np.sqrt(var)
        z[(n < (params.min_instances or 0)) | ~(var > 0.0)] = np.nan
        if params.direction == "down":
            np.negative(z, out=z)
        return z

    def _pivot_value(self) -> float:
        return self._pivot[0] if self._pivot is not None else 0.0

    def _inputs(self, sums: FloatArray) -> tuple[list[int], list[float]]:
        """River's inputs for chunks (columns of ``sums``), and which chunk each is for."""
        params = self._params
        k = params.chunk_size
        if params.kind == "adwin":
            return list(range(sums.shape[1])), sums[0].tolist()
        if params.kind == "hddm_a":
            # Hoeffding bounds shrink with the square root of the count of inputs: scaled so,
            # chunk means make exactly the per-value decisions (a "down" monitor negates them).
            scale = (-1.0 if params.direction == "down" else 1.0) / math.sqrt(k)
            return list(range(sums.shape[1])), (sums[0] * scale).tolist()
        # Page-Hinkley: the chunk mean standardised by the running mean and deviation of the
        # reference before it (of the values so far, folded or not), times k. In standard
        # deviations, so that threshold and delta are; centred first, because scaling raw
        # values by a settling deviation would look like a shift. Before it, not after: on a
        # short reference a chunk would dilute its own shift by k/n (a +50 % latency rise 1,000
        # values in was found in 6 of 20 runs, 9 standardised by the values before it).
        before = self._live
        count, cum = self._running(sums, before)
        self._live = _at(count, cum, -1)
        count -= k  # values before each chunk
        ready = np.flatnonzero(count >= (params.min_instances or 0))
        if not ready.size:
            return [], []
        sums_before = np.empty((2, count.size))
        sums_before[:, 0] = before[3:5] if self._rows == 4 else before[1:3]
        sums_before[:, 1:] = cum[-2:, :-1]
        n = count[ready]
        mean = sums_before[0, ready] / n
        var = sums_before[1, ready] / n
        var -= mean * mean
        spread = var > 0.0
        shift = sums[-2, ready[spread]] / k - mean[spread]
        shift /= np.sqrt(var[spread])
        shift *= -float(k) if params.direction == "down" else float(k)
        return ready[spread].tolist(), shift.tolist()

    def _running(self, sums: FloatArray, totals: _Totals) -> tuple[IntArray, FloatArray]:
        """Continue ``totals`` by chunks (columns of ``sums``): counts and sums after each."""
        k = self._params.chunk_size
        n0, *carried = totals
        count = np.arange(n0 + k, n0 + k * sums.shape[1] + 1, k)
        # Continued from the carried sums exactly as they would have been in one longer call.
        cum = sums.copy()
        cum[:, 0] += carried[0 : self._rows]
        np.cumsum(cum, axis=1, out=cum)
        return count, cum

    def _moments(
        self, sums: FloatArray, totals: _Totals
    ) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
        """Continue ``totals`` by chunks (columns of ``sums``).

        Returns, after each chunk: the count and running sums of the reference, and of the
        detector's input the chunk mean minus the running mean and the standard deviation.
        """
        k = self._params.chunk_size
        count, cum = self._running(sums, totals)
        mean = cum[-2] / count
        var = cum[-1] / count
        var -= mean * mean
        np.maximum(var, 0.0, out=var)
        sd = np.sqrt(var, out=var)
        shift = sums[-2] / k
        shift -= mean
        return count, cum, shift, sd

    def _fold(self, sums: FloatArray) -> _Folded:
        """Add chunks (columns of ``sums``) to the reference and the CUSUMs."""
        count, cum, shift, sd = self._moments(sums, self._totals)
        cusums = _SIGNS * shift
        cusums -= _ALLOWANCES * sd
        cusums[:, 0] += self._cusums
        np.cumsum(cusums, axis=1, out=cusums)
        folded = _Folded(count, cum, cusums, self._lows, self._splits)
        last = count.size - 1
        self._totals = _at(count, cum, last)
        self._cusums = tuple(cusums[:, last].tolist())
        lows = cusums.min(axis=1).tolist()
        at = (last - np.argmin(cusums[:, ::-1], axis=1)).tolist()
        new_lows, splits = list(self._lows), list(self._splits)
        for row in range(4):
            if lows[row] <= new_lows[row]:
                new_lows[row] = lows[row]
                splits[row] = _at(count, cum, at[row])
        self._lows, self._splits = tuple(new_lows), tuple(splits)
        return folded

    def _judge(
        self,
        folded: _Folded,
        at: int,
        chunk: int,
        by: Any,
        last_value_of: Callable[[int], tuple[int, int]],
        found: list[Detection],
    ) -> bool:
        """Judge the detection of river detector ``by`` after chunk ``at`` of ``folded``.

        ``chunk`` is the chunk's number in the call. Appends a reported detection to ``found``
        and returns whether there was one.
        """
        params = self._params
        kind = params.kind
        pivot = self._pivot_value()
        now = folded.totals(at)
        n, t1, t2, _, _ = now
        # Which way the series moved: the one-sided tests say by design; for ADWIN, the fine
        # CUSUM that has risen further above its low. ADWIN's cut is only the tie-break: the
        # window it keeps can hold so many values from before the change that its mean lies
        # on the wrong side of the mean before it.
        cut = None
        rising = params.direction == "up"
        if kind == "adwin":
            per_input = params.chunk_size if by is self._detector else 1
            cut = _adwin_partition(by, per_input, now, pivot)
            up, down = folded.excess(0, at), folded.excess(1, at)
            rising = up > down if up != down else cut[1] > cut[0]
        fine, coarse = (0, 2) if rising else (1, 3)
        change = _estimate(
            rising,
            _located(folded.split(coarse, at), now, pivot),
            _located(folded.split(fine, at), now, pivot),
        )
        mean = pivot + t1 / n
        everything = (mean, mean, math.sqrt(max(t2 - t1 * t1 / n, 0.0) / n), 0.0, 0.0)
        before, after, sd, _, _ = change or cut or everything
        if cut is not None and change is not None and cut[4] < change[4]:
            after = cut[1]  # a drift: ADWIN's window is the more recent, shorter suffix
        if self._baseline is not None:
            before, sd = self._baseline
        if self._report(rising, after - before, sd):
            index, event_ts_ms = last_value_of(chunk)
            found.append(Detection(index, event_ts_ms, before, after, kind))
            return True
        if self._baseline is None:
            self._baseline = (before, sd)
        return False

    def _restart(self, replace: bool) -> None:
        """Start a new reference after a reported detection.

        river restarts the detector that detected; ``replace`` the main one if it did not.
        """
        if replace:
            self._detector = _new_detector(self._params)
        self._warm_up = _new_warm_up(self._params)
        self._warm_left = _warm_up_values(self._warm_up)
        self._totals = self._live = _EMPTY
        self._cusums = self._lows = _NO_CUSUMS
        self._splits = _NO_SPLITS
        self._baseline = None

    def _report(self, rising: bool, shift: float, reference_std: float) -> bool:
        direction = self._params.direction
        if (direction == "up" and not rising) or (direction == "down" and rising):
            return False
        minimum = self._params.min_shift_sigma
        return minimum == 0.0 or (shift if rising else -shift) >= minimum * reference_std

    def to_state(self) -> str:
        """Serialise the monitor as a compact JSON string.

        The state holds the format number, the river version, a fingerprint of the parameters
        and the pickled river detector with the monitor's own counters and the sums of chunks
        not yet folded (base64; zlib would save a third of ~2 KB at 4x the cost, and this runs
        for every fed series on every step). Pickle runs code when loaded: only restore state
        this program wrote to a store that untrusted parties cannot write.
        """
        if not self._fingerprint:
            self._fingerprint = self._params.fingerprint()
        payload = (
            self._detector,
            self._warm_up,
            self._warm_left,
            self._seen,
            self._pending.tobytes(),
            self._unfolded.tobytes(),
            self._pivot,
            self._totals,
            self._live,
            self._cusums,
            self._lows,
            self._splits,
            self._baseline,
        )
        blob = base64.b64encode(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        # Every part is ASCII without quotes or backslashes: no JSON encoder needed.
        return (
            f'{{"fmt":{DETECTOR_STATE_FORMAT},"river":"{RIVER_VERSION}",'
            f'"params":"{self._fingerprint}","blob":"{blob.decode("ascii")}"}}'
        )

    @classmethod
    def from_state(cls, params: DetectorParams, state: str) -> DriftMonitor:
        """Restore a monitor written by :meth:`to_state` with the same ``params``.

        Raises:
            StateFormatError: If the state was written in another format, with another river
                version or other parameters, or cannot be read. The monitor cannot continue:
                delete the stored detector state and restart; the detectors start afresh.
        """
        fix = "delete the stored detector state and restart the worker; detectors start afresh"
        try:
            data = json.loads(state)
            fmt, written_with, fingerprint = data["fmt"], data["river"], data["params"]
        except (ValueError, TypeError, KeyError) as exc:
            raise StateFormatError(f"detector state is not readable ({exc}); {fix}") from exc
        if fmt != DETECTOR_STATE_FORMAT:
            raise StateFormatError(
                f"detector state format {fmt!r} is not {DETECTOR_STATE_FORMAT}; {fix}"
            )
        if written_with != RIVER_VERSION:
            raise StateFormatError(
                f"detector state was written with river {written_with}, this is river"
                f" {RIVER_VERSION}, whose pickled detectors may differ; {fix}"
            )
        if fingerprint != params.fingerprint():
            raise StateFormatError(
                f"detector state was written with other parameters than {params!r}; {fix}"
            )
        monitor = cls(params)
        try:
            payload = pickle.loads(base64.b64decode(data["blob"], validate=True))
            (
                detector,
                warm_up,
                warm_left,
                seen,
                pending,
                unfolded,
                pivot,
                totals,
                live,
                cusums,
                lows,
                splits,
                baseline,
            ) = payload
            held: FloatArray = np.frombuffer(pending, dtype=np.float64).copy()
            sums: FloatArray = np.frombuffer(unfolded, dtype=np.float64).reshape(monitor._rows, -1)
        except (
            KeyError,
            ValueError,
            TypeError,
            EOFError,
            AttributeError,
            ImportError,
            binascii.Error,
            pickle.PickleError,
        ) as exc:
            raise StateFormatError(f"detector state is corrupt ({exc!r}); {fix}") from exc
        if not isinstance(detector, _DETECTOR_CLASSES[params.kind]):
            raise StateFormatError(f"detector state holds a {type(detector).__name__}; {fix}")
        if warm_up is not None and not isinstance(warm_up, _WARM_UP_CLASSES.get(params.kind, ())):
            raise StateFormatError(f"detector state holds a {type(warm_up).__name__}; {fix}")
        monitor._fingerprint = fingerprint
        monitor._detector = detector
        monitor._warm_up, monitor._warm_left = warm_up, int(warm_left)
        monitor._seen = int(seen)
        monitor._pending, monitor._unfolded = held, sums.copy()
        monitor._pivot, monitor._totals, monitor._live = pivot, totals, live
        monitor._cusums, monitor._lows, monitor._splits = cusums, lows, splits
        monitor._baseline = baseline
        return monitor


class DetectorBank:
    """Every drift monitor of one partition, created on first use.

    Example:
        >>> bank = DetectorBank(default_params_for, max_series=1)
        >>> ts = np.zeros(3, dtype=np.int64)
        >>> bank.feed(("m", "1", "score", "score"), np.array([0.1, 0.2, 0.3]), ts)
        []
        >>> bank.feed(("m", "1", "latency", "latency"), np.array([9.0, 8.0, 7.0]), ts)
        []
        >>> len(bank), bank.overflow
        (1, 1)
    """

    def __init__(
        self,
        params_for: Callable[[SeriesKey], DetectorParams | None],
        max_series: int = 10_000,
    ) -> None:
        """Create an empty bank.

        Args:
            params_for: Parameters for a new series, or ``None`` not to watch it (for example
                :func:`default_params_for`). Called once per series, when it first appears.
            max_series: At most this many series are watched; further new series are not.

        Raises:
            ValueError: If ``max_series`` is below 1.
        """
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1, got {max_series!r}")
        self._params_for = params_for
        self._max_series = max_series
        self._monitors: dict[SeriesKey, DriftMonitor] = {}
        # Serialised state of monitors not fed since the last to_state(): most steps feed only
        # the models that had traffic in them.
        self._saved: dict[SeriesKey, str] = {}
        #: ``feed`` calls for new series refused because ``max_series`` were watched already.
        #: Any non-zero value means series go unwatched: raise ``max_series``.
        self.overflow = 0
        #: ``feed`` calls refused because a key part contains :data:`KEY_SEPARATOR`.
        self.bad_keys = 0
        #: Stored monitors :meth:`restore` could not continue (other parameters or river
        #: version, or unreadable); those series start afresh.
        self.discarded = 0

    def __len__(self) -> int:
        return len(self._monitors)

    def __contains__(self, key: object) -> bool:
        return key in self._monitors

    def feed(self, key: SeriesKey, values: FloatArray, event_ts_ms: IntArray) -> list[Detection]:
        """Feed one batch of one series (see :meth:`DriftMonitor.update_array`).

        Returns:
            The reported detections; ``[]`` for a series that is not watched.
        """
        monitor = self._monitors.get(key)
        if monitor is None:
            params = self._params_for(key)
            if params is None:
                return []
            if any(KEY_SEPARATOR in part for part in key):
                self.bad_keys += 1
                return []
            if len(self._monitors) >= self._max_series:
                self.overflow += 1
                return []
            monitor = self._monitors[key] = DriftMonitor(params)
        self._saved.pop(key, None)
        return monitor.update_array(values, event_ts_ms)

    def forget(self, model_id: str, model_version: str) -> list[str]:
        """Free the monitors of a model version that went away; return their stored keys."""
        gone = [k for k in self._monitors if k[0] == model_id and k[1] == model_version]
        for key in gone:
            del self._monitors[key]
            self._saved.pop(key, None)
        return [KEY_SEPARATOR.join(key) for key in gone]

    def drain_changed(self) -> dict[str, str]:
        """Serialise the monitors fed since the last call (the rest are stored unchanged)."""
        changed = {}
        for key, monitor in self._monitors.items():
            if key not in self._saved:
                saved = self._saved[key] = monitor.to_state()
                changed[KEY_SEPARATOR.join(key)] = saved
        return changed

    def to_state(self) -> dict[str, str]:
        """Serialise every monitor, keyed by ``KEY_SEPARATOR.join(key)``."""
        state = {}
        for key, monitor in self._monitors.items():
            saved = self._saved.get(key)
            if saved is None:
                saved = self._saved[key] = monitor.to_state()
            state[KEY_SEPARATOR.join(key)] = saved
        return state

    def restore(self, state: dict[str, str]) -> None:
        """Replace every monitor by those in ``state`` (written by :meth:`to_state`).

        Series that ``params_for`` no longer watches are dropped; beyond ``max_series`` the
        first in key order are kept. Nothing changes if any entry fails.

        Raises:
            StateFormatError: If a key is malformed or a monitor cannot be restored (see
                :meth:`DriftMonitor.from_state`).
        """
        monitors: dict[SeriesKey, DriftMonitor] = {}
        for joined in sorted(state):
            parts = joined.split(KEY_SEPARATOR)
            if len(parts) != 4:
                raise StateFormatError(
                    f"detector state key {joined!r} does not have 4 parts"
                    " (model_id, model_version, signal, name); delete the stored detector"
                    " state and restart the worker"
                )
            key: SeriesKey = (parts[0], parts[1], parts[2], parts[3])
            params = self._params_for(key)
            if params is None or len(monitors) >= self._max_series:
                continue
            try:
                monitors[key] = DriftMonitor.from_state(params, state[joined])
            except StateFormatError:
                # Written with other parameters (the rules file changed) or another river:
                # that series starts afresh rather than the whole partition failing to load.
                self.discarded += 1
        self._monitors = monitors
        self._saved = {k: state[KEY_SEPARATOR.join(k)] for k in monitors}
