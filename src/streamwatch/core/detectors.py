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
centred on the running mean of the series and divided by its running standard deviation, so
``threshold`` and ``delta`` are in units of that deviation and the same defaults fit latencies in
ms or in s and error rates from 0.3 % to 20 %. river's own defaults are in raw units, which is
why they fired 630 times per million stationary Gaussian values and on every 30th value of a
latency series.

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
from collections.abc import Callable, Mapping
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
DETECTOR_STATE_FORMAT: Final = 2
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


def _need(value: float | None) -> float:
    if value is None:  # unreachable after validation; keeps the types honest
        raise ValueError("detector parameter missing")
    return value


class DetectorParams(BaseModel):
    """Validated parameters of one detector. Fields that do not apply to ``kind`` are ``None``.

    Fields left out take river's default for the kind, except ``direction`` (``both`` for
    ADWIN, ``up`` otherwise); :func:`default_params` gives the measured per-signal defaults.
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
    #: ADWIN: significance in (0, 1). Page-Hinkley: allowed drift per value, in standard
    #: deviations (changes smaller than this are never detected).
    delta: float | None = None
    #: ADWIN checks for a cut every ``clock`` values (delays are rounded up to it).
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
                valid = ", ".join((*own, "direction", "transform", "min_shift_sigma"))
                raise ValueError(
                    f"{name!r} does not apply to kind {kind!r}; its parameters are: {valid}"
                )
        filled = dict(data)
        for name, value in _RIVER_DEFAULTS[kind].items():
            if filled.get(name) is None:
                filled[name] = value
        if "direction" not in filled:
            filled["direction"] = _DIRECTIONS_OF[kind][0]
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

#: ADWIN significance for features, scores and correctness. river's 0.002 raised one false
#: alarm in 3 M stationary Gaussian values; 1e-5 raised none, for one ``clock`` (32 values) of
#: extra delay.
ADWIN_DELTA: Final = 1e-5
#: Page-Hinkley allowance per value, in standard deviations: smaller rises are never reported
#: (on log latency with log-sd 1, 0.15 sigma is +16 %). Smaller values catch ramps earlier but
#: need a higher threshold for the same false-alarm rate.
PH_DELTA: Final = 0.15
#: Page-Hinkley threshold on log latency. The largest excursion of the test on 40 stationary
#: runs of 10^6 values was 46 sigma; a +50 % rise (0.4 sigma at log-sd 1) is found in ~200.
LATENCY_PH_THRESHOLD: Final = 60.0
#: Page-Hinkley threshold on the 0/1 error indicator. Each error is a jump of ``1 / sd`` (10
#: sigma at a 1 % rate), so excursions are larger: 81 sigma at most on 40 stationary runs of
#: 10^6 at 1 %. Rarer errors jump further: none in 8 M events at 0.3 %, one at 0.1 %.
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

    #: 0-based position of the triggering value among all values given to the monitor
    #: (skipped NaN values included), counted since the monitor was created.
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


def _new_detector(params: DetectorParams) -> Any:
    if params.kind == "adwin":
        return ADWIN(  # type: ignore[no-untyped-call]
            delta=params.delta,
            clock=params.clock,
            min_window_length=params.min_window_length,
            grace_period=params.grace_period,
        )
    if params.kind == "page_hinkley":
        # Always "up": a "down" monitor feeds negated values. The warm-up is ours.
        return PageHinkley(
            min_instances=1,
            delta=_need(params.delta),
            threshold=_need(params.threshold),
            alpha=_need(params.alpha),
            mode="up",
        )
    c = params.drift_confidence
    return HDDMA(  # type: ignore[no-untyped-call]
        drift_confidence=c, warning_confidence=c, two_sided_test=False
    )


# Running moments as (count, mean, sum of squared deviations), updated per value (Welford), so
# results do not depend on how values are split into arrays.
_Moments = tuple[int, float, float]
_EMPTY: Final[_Moments] = (0, 0.0, 0.0)
# The reference where a CUSUM restarted: its moments, and mean and M2 of the detector's input
# (the log values with the ``log`` transform, else the same as the moments).
_Split = tuple[int, float, float, float, float]
_NO_SPLIT: Final[_Split] = (0, 0.0, 0.0, 0.0, 0.0)
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


def _located(split: _Split, n: int, mean: float, mean_u: float) -> _Located | None:
    """Split the reference (``n`` values so far) where ``split`` was taken; None if at its end."""
    ns, before, m2, before_u, m2_u = split
    if not 0 < ns < n:
        return None
    after = (n * mean - ns * before) / (n - ns)
    shift_u = (n * mean_u - ns * before_u) / (n - ns) - before_u
    shift_sd = shift_u / math.sqrt(m2_u / ns) if m2_u > 0.0 else math.copysign(math.inf, shift_u)
    return before, after, math.sqrt(m2 / ns), shift_sd, n - ns


def _estimate(rising: bool, coarse: _Located | None, fine: _Located | None) -> _Located | None:
    """The fine location, unless both show a change big enough for the coarse one."""
    if fine is None or coarse is None:
        return fine
    sign = 1.0 if rising else -1.0
    # On 0/1 or heavy-tailed values one run of extreme values looks like a big change to the
    # coarse CUSUM alone; the fine one must agree.
    big = sign * fine[3] >= COARSE_ALLOWANCE_SIGMA
    return coarse if big and sign * coarse[3] >= 2 * COARSE_ALLOWANCE_SIGMA else fine


def _adwin_partition(detector: Any, n: int, mean: float, m2: float) -> _Located:
    """Before and after ADWIN's cut: it keeps the newest ``width`` values of the reference.

    ADWIN's ``variance`` is the sum of squared deviations of its window, not their mean.
    """
    w = float(detector.width)
    after = float(detector.total) / w
    nb = n - w
    if nb <= 0.0:  # the window is the whole reference: nothing is known from before
        return mean, mean, math.sqrt(m2 / n), 0.0, w
    before = (n * mean - w * after) / nb
    sd = math.sqrt(
        max(m2 - float(detector.variance) - (after - before) ** 2 * nb * w / n, 0.0) / nb
    )
    return before, after, sd, (after - before) / sd if sd > 0.0 else 0.0, w


class DriftMonitor:
    """One detector on one series.

    river only says *that* the series changed. To say *from what to what*, the monitor keeps the
    running moments of the series since the last *reported* detection (the reference) and
    CUSUMs whose last restart estimates where the change began (Page's estimator, see
    :data:`FINE_ALLOWANCE_SIGMA`): ``before_mean`` and the standard deviation that
    ``min_shift_sigma`` compares with are those of the reference up to that point,
    ``after_mean`` that of the rest. ADWIN's own window after a cut still holds many values from
    before the change (a 0.5 sigma shift showed as 0.07), so it is only the fallback.

    A detection that ``direction`` or ``min_shift_sigma`` suppresses still restarts river's
    detector, but freezes the "before" of the next detections until one is reported: a slow
    drift is reported once it has moved far enough from where the series was, instead of being
    compared with a reference that drifts along.

    Example:
        >>> rng = np.random.default_rng(7)
        >>> values = np.concatenate([rng.normal(0, 1, 5000), rng.normal(1, 1, 1000)])
        >>> ts = np.arange(values.size, dtype=np.int64) * 10
        >>> [(d.index, round(d.before_mean, 2), round(d.after_mean, 2))
        ...  for d in DriftMonitor(default_params("feature")).update_array(values, ts)]
        [(5055, -0.02, 1.18)]
    """

    __slots__ = (
        "_baseline",
        "_cusums",
        "_detector",
        "_log",
        "_params",
        "_reference",
        "_seen",
        "_splits",
    )

    def __init__(self, params: DetectorParams) -> None:
        """Create a monitor with a fresh detector."""
        self._params = params
        self._detector: Any = _new_detector(params)
        self._seen = 0
        self._reference: _Moments = _EMPTY
        self._log: _Moments = _EMPTY  # of the log values, with the ``log`` transform only
        # Fine rise, fine fall, coarse rise, coarse fall; each with the reference at its restart.
        self._cusums = (0.0, 0.0, 0.0, 0.0)
        self._splits = (_NO_SPLIT, _NO_SPLIT, _NO_SPLIT, _NO_SPLIT)
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
        finite = np.flatnonzero(np.isfinite(values))
        start = self._seen
        self._seen += int(values.size)
        if finite.size == 0:
            return []
        xs: FloatArray = values[finite].astype(np.float64, copy=False)
        logs = None
        if self._params.transform == "log":
            logs = np.log(np.maximum(xs, MIN_POSITIVE)).tolist()
        return self._run(xs.tolist(), logs, (finite + start).tolist(), event_ts_ms[finite].tolist())

    def _run(
        self, xs: list[float], logs: list[float] | None, positions: list[int], ts: list[int]
    ) -> list[Detection]:
        params = self._params
        detector = self._detector
        update = detector.update
        kind = params.kind
        page_hinkley = kind == "page_hinkley"
        flip = kind == "hddm_a" and params.direction == "down"
        sign = -1.0 if params.direction == "down" else 1.0
        warm_up = params.min_instances or 0
        fine, coarse = FINE_ALLOWANCE_SIGMA, COARSE_ALLOWANCE_SIGMA
        n, mean, m2 = self._reference
        nl, mean_u, m2_u = self._log
        rise_f, fall_f, rise_c, fall_c = self._cusums
        at_rise_f, at_fall_f, at_rise_c, at_fall_c = self._splits
        baseline = self._baseline
        found: list[Detection] = []
        for j, x in enumerate(xs):
            n += 1
            d = x - mean
            mean += d / n
            m2 += d * (x - mean)
            if logs is None:
                u, mean_u, m2_u = x, mean, m2
            else:
                u = logs[j]
                nl += 1
                d = u - mean_u
                mean_u += d / nl
                m2_u += d * (u - mean_u)
            sd_u = math.sqrt(m2_u / n)
            d = u - mean_u
            rise_f += d - fine * sd_u
            if rise_f <= 0.0:
                rise_f, at_rise_f = 0.0, (n, mean, m2, mean_u, m2_u)
            fall_f += d + fine * sd_u
            if fall_f >= 0.0:
                fall_f, at_fall_f = 0.0, (n, mean, m2, mean_u, m2_u)
            rise_c += d - coarse * sd_u
            if rise_c <= 0.0:
                rise_c, at_rise_c = 0.0, (n, mean, m2, mean_u, m2_u)
            fall_c += d + coarse * sd_u
            if fall_c >= 0.0:
                fall_c, at_fall_c = 0.0, (n, mean, m2, mean_u, m2_u)
            if page_hinkley:
                # Standardised, so that threshold and delta are in standard deviations. Centred
                # first: scaling raw values by a settling deviation would look like a shift.
                if n < warm_up or sd_u == 0.0:
                    continue
                update(sign * d / sd_u)
            else:
                update(1.0 - x if flip else x)
            if not detector.drift_detected:
                continue
            # Which way the series moved: ADWIN says by its cut, the one-sided tests by design.
            cut = _adwin_partition(detector, n, mean, m2) if kind == "adwin" else None
            rising = cut[1] > cut[0] if cut is not None else params.direction == "up"
            change = _estimate(
                rising,
                _located(at_rise_c if rising else at_fall_c, n, mean, mean_u),
                _located(at_rise_f if rising else at_fall_f, n, mean, mean_u),
            )
            before, after, sd, _, _ = change or cut or (mean, mean, math.sqrt(m2 / n), 0.0, 0)
            if cut is not None and change is not None and cut[4] < change[4]:
                after = cut[1]  # a drift: ADWIN's window is the more recent, shorter suffix
            if baseline is not None:
                before, sd = baseline
            if self._report(rising, after - before, sd):
                found.append(Detection(positions[j], ts[j], before, after, kind))
                n, mean, m2 = nl, mean_u, m2_u = _EMPTY
                at_rise_f = at_fall_f = at_rise_c = at_fall_c = _NO_SPLIT
                rise_f = fall_f = rise_c = fall_c = 0.0
                baseline = None
            elif baseline is None:
                baseline = (before, sd)
        self._reference = (n, mean, m2)
        self._log = (nl, mean_u, m2_u) if logs is not None else _EMPTY
        self._cusums = (rise_f, fall_f, rise_c, fall_c)
        self._splits = (at_rise_f, at_fall_f, at_rise_c, at_fall_c)
        self._baseline = baseline
        return found

    def _report(self, rising: bool, shift: float, reference_std: float) -> bool:
        direction = self._params.direction
        if (direction == "up" and not rising) or (direction == "down" and rising):
            return False
        minimum = self._params.min_shift_sigma
        return minimum == 0.0 or (shift if rising else -shift) >= minimum * reference_std

    def to_state(self) -> str:
        """Serialise the monitor as a compact JSON string.

        The state holds the format number, the river version, a fingerprint of the parameters
        and the pickled river detector with the monitor's own counters (base64; zlib would save a
        third of ~2 KB at 4x the cost, and this runs for every fed series on every step). Pickle
        runs code when loaded: only restore state this program wrote to a store that untrusted
        parties cannot write.
        """
        payload = (
            self._detector,
            self._seen,
            self._reference,
            self._log,
            self._cusums,
            self._splits,
            self._baseline,
        )
        blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        return json.dumps(
            {
                "fmt": DETECTOR_STATE_FORMAT,
                "river": RIVER_VERSION,
                "params": self._params.fingerprint(),
                "blob": base64.b64encode(blob).decode("ascii"),
            },
            separators=(",", ":"),
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
        try:
            payload = pickle.loads(base64.b64decode(data["blob"], validate=True))
            detector, seen, reference, log_moments, cusums, splits, baseline = payload
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
        monitor = cls(params)
        monitor._detector = detector
        monitor._seen = int(seen)
        monitor._reference, monitor._log = reference, log_moments
        monitor._cusums, monitor._splits, monitor._baseline = cusums, splits, baseline
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
