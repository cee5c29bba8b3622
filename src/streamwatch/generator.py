"""Seeded synthetic model traffic with injectable incidents.

Used by ``streamwatch produce``, ``streamwatch demo`` and the tests. Two layers:

* A pure core — :class:`ModelSpec`, :class:`Incident`, :func:`parse_incidents`,
  :class:`TrafficGenerator`, :func:`encode_batches` — that turns a seed into plain, JSON-ready
  event dicts valid against :mod:`streamwatch.events`. It keeps a *simulated* clock and never
  touches the network or the wall clock (unless asked to start "now").
* :func:`produce`, the only Kafka code here: it paces the generator and hands its events to a
  ``confluent_kafka.Producer``, keyed by model id so every topic is co-partitioned by model.

The same seed, start time and call sequence always give the same events. Random draws do not
depend on the incident schedule, so two runs that differ only in incidents give identical
events outside the incident windows.

>>> gen = TrafficGenerator(seed=7, start_ms=1_700_000_000_000, rate_eps=100.0)
>>> traffic = gen.generate(1_000)
>>> len(traffic.inference), gen.now_ms
(100, 1700000001000)
"""

from __future__ import annotations

import heapq
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt
import orjson

from streamwatch.core.durations import parse_duration_ms
from streamwatch.events import (
    COLUMN_OBJECT_FIELDS,
    COLUMN_SCALAR_FIELDS,
    DEFAULT_BATCH_SIZE,
    EVENT_SCHEMA_VERSION,
    MAX_MESSAGE_BYTES,
    NAME_PATTERN,
    InferenceEvent,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_INCIDENTS",
    "DEFAULT_MODELS",
    "INCIDENT_KINDS",
    "INCIDENT_SPEC_FORMAT",
    "MODEL_KINDS",
    "TOPIC_KINDS",
    "CategoricalFeature",
    "GeneratedTraffic",
    "Incident",
    "ModelSpec",
    "NumericFeature",
    "ProduceStats",
    "TrafficGenerator",
    "columnar_envelope",
    "encode_batches",
    "parse_incidents",
    "produce",
    "reference_rows",
]

#: A JSON-ready event: what ``orjson.dumps`` writes and ``Model.model_validate`` accepts.
Event = dict[str, Any]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ModelKind = Literal["classifier", "regressor", "recommender"]
IncidentKind = Literal["error_spike", "latency_rise", "feature_shift", "accuracy_drop", "ctr_drop"]
MODEL_KINDS: Final[tuple[str, ...]] = get_args(ModelKind)
INCIDENT_KINDS: Final[tuple[str, ...]] = get_args(IncidentKind)
#: Topic kinds, in the order :func:`produce` sends them.
TOPIC_KINDS: Final[tuple[str, ...]] = ("inference", "feedback", "business")

_NAME = re.compile(NAME_PATTERN)

# Serving behaviour. Latency is lognormal: median from the model spec, p95 = median * e^(1.645σ),
# i.e. 40 ms -> ~77 ms normally, so a 4x latency_rise puts p95 near 310 ms.
LATENCY_SIGMA: Final = 0.4
#: Dirichlet weights of the reported stages; the rest of the latency is the unreported response.
STAGE_NAMES: Final = ("preprocess", "inference", "postprocess")
STAGE_WEIGHTS: Final = (3.0, 15.0, 2.0)
UNREPORTED_LATENCY_FRACTION: Final = (0.02, 0.08)
ERROR_TYPES: Final = ("timeout", "model_error", "bad_input")
NULL_FEATURE_RATE: Final = 0.005
CPU_PCT: Final = (35.0, 5.0)
MEMORY_MB: Final = (900.0, 30.0)
GPU_PCT: Final = (55.0, 8.0)
# Business funnel of recommender models: impression -> click (ctr) -> conversion -> revenue.
CONVERSION_RATE: Final = 0.2
REVENUE_MEAN: Final = 40.0
REVENUE_STD: Final = 30.0
CLICK_DELAY_MS: Final = (500, 5_000)
CONVERSION_DELAY_MS: Final = (1_000, 10_000)
CATALOGUE_SIZE: Final = 1_000
CATALOGUE_ZIPF_EXPONENT: Final = 1.1


@dataclass(frozen=True, slots=True)
class NumericFeature:
    """A numeric input feature: its distribution's mean and standard deviation.

    Attributes:
        name: Feature name, as sent in ``features``.
        distribution: ``"normal"`` or ``"lognormal"`` (mean/std are of the values themselves).
        mean: Mean of the values.
        std: Standard deviation of the values; a ``feature_shift`` moves the mean in these units.
        decimals: Rounding of the sent values; 0 sends integers.
    """

    name: str
    distribution: Literal["normal", "lognormal"]
    mean: float
    std: float
    decimals: int

    def __post_init__(self) -> None:
        if self.distribution not in ("normal", "lognormal"):
            raise ValueError(
                f"Invalid distribution {self.distribution!r} for feature {self.name!r}."
                " Valid values are: ('normal', 'lognormal')"
            )
        if not self.std > 0 or (self.distribution == "lognormal" and not self.mean > 0):
            raise ValueError(
                f"Feature {self.name!r} needs std > 0 (and mean > 0 when lognormal),"
                f" got mean={self.mean}, std={self.std}"
            )

    def underlying(self) -> tuple[float, float]:
        """Return ``(mu, sigma)`` of the normal that is drawn (and exponentiated if lognormal)."""
        if self.distribution == "normal":
            return self.mean, self.std
        sigma_sq = math.log1p((self.std / self.mean) ** 2)
        return math.log(self.mean) - sigma_sq / 2, math.sqrt(sigma_sq)


@dataclass(frozen=True, slots=True)
class CategoricalFeature:
    """A categorical input feature: its values and their probabilities."""

    name: str
    values: tuple[str, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.weights) or not self.values:
            raise ValueError(f"Feature {self.name!r} needs one weight per value")


#: The inputs every generated model receives (the fleet shares one feature set for simplicity).
NUMERIC_FEATURES: Final = (
    NumericFeature("amount", "lognormal", mean=80.0, std=150.0, decimals=2),
    NumericFeature("age_days", "lognormal", mean=420.0, std=380.0, decimals=0),
    NumericFeature("txn_count_24h", "lognormal", mean=3.0, std=2.5, decimals=0),
    NumericFeature("session_s", "lognormal", mean=190.0, std=160.0, decimals=1),
    NumericFeature("distance_km", "lognormal", mean=15.0, std=30.0, decimals=2),
    NumericFeature("risk_score", "normal", mean=0.3, std=0.1, decimals=4),
)
CATEGORICAL_FEATURES: Final = (
    CategoricalFeature(
        "country",
        ("US", "GB", "DE", "FR", "KR", "IN", "BR"),
        (0.35, 0.12, 0.12, 0.1, 0.11, 0.12, 0.08),
    ),
    CategoricalFeature("device", ("mobile", "desktop", "tablet"), (0.6, 0.3, 0.1)),
)
FEATURE_NAMES: Final = tuple(f.name for f in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES))


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One deployed model version and its share of the traffic.

    Attributes:
        model_id: Model id (no ``:`` or whitespace: it becomes a Redis key segment).
        model_version: Version string, same character rules.
        share: Fraction of all requests served by this version (shares are normalised).
        kind: ``classifier`` (label predictions, delayed feedback), ``regressor`` (float
            predictions) or ``recommender`` (item ids, plus business events).
        traffic: Arm label sent with every event, e.g. ``control`` / ``canary``; ``None`` omits it.
        latency_median_ms: Median serving latency.
        error_rate: Normal fraction of requests that fail.
        accuracy: Normal fraction of correct classifier predictions.
        ctr: Normal click-through rate of a recommender.
        labels: Classifier labels ``(negative, positive)``.
        positive_rate: Fraction of requests whose true label is the positive one.
        gpu: Whether the server reports ``gpu_pct``.
    """

    model_id: str
    model_version: str
    share: float
    kind: ModelKind
    traffic: str | None = None
    latency_median_ms: float = 40.0
    error_rate: float = 0.002
    accuracy: float = 0.95
    ctr: float = 0.05
    labels: tuple[str, str] = ("legit", "fraud")
    positive_rate: float = 0.1
    gpu: bool = False

    def __post_init__(self) -> None:
        for what, name in (("model_id", self.model_id), ("model_version", self.model_version)):
            if not _NAME.match(name):
                raise ValueError(
                    f"Invalid {what} {name!r}: use letters, digits and ._-/+@"
                    " (no ':' or whitespace), at most 128 characters"
                )
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"Invalid model kind {self.kind!r}. Valid values are: {MODEL_KINDS}")
        if not self.share > 0 or not self.latency_median_ms > 0:
            raise ValueError(f"{self.model_id}: share and latency_median_ms must be > 0")
        for what, rate in (
            ("error_rate", self.error_rate),
            ("accuracy", self.accuracy),
            ("ctr", self.ctr),
            ("positive_rate", self.positive_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{self.model_id}: {what} must be in [0, 1], got {rate}")


#: The demo fleet: a fraud model with a 5 % canary, a churn regressor and a recommender.
DEFAULT_MODELS: Final = (
    ModelSpec("fraud-detector", "2.1.0", 0.45, "classifier", traffic="control"),
    ModelSpec("fraud-detector", "2.2.0-canary", 0.05, "classifier", traffic="canary"),
    ModelSpec("churn-predictor", "1.0.3", 0.20, "regressor", latency_median_ms=25.0),
    ModelSpec("recommender", "5.4.1", 0.30, "recommender", latency_median_ms=45.0, gpu=True),
)

INCIDENT_SPEC_FORMAT: Final = (
    "KIND:MODEL[=VERSION]@START+DURATION:MAGNITUDE[:FEATURE], comma-separated, e.g."
    " 'error_spike:fraud-detector@20s+30s:0.2,latency_rise:recommender@60s+40s:4,"
    "feature_shift:fraud-detector@100s+60s:1:amount'; or 'default' or 'none'."
    f" Kinds: {', '.join(INCIDENT_KINDS)}"
)


@dataclass(frozen=True, slots=True)
class Incident:
    """A scheduled misbehaviour of one model, in simulated time since the generator's start.

    ``magnitude`` means, per kind: ``error_spike`` the error rate (e.g. 0.2); ``latency_rise`` a
    latency multiplier (e.g. 4.0); ``feature_shift`` the shift of ``feature``'s mean in units of
    its standard deviation (e.g. 1.0); ``accuracy_drop`` the accuracy (e.g. 0.7);
    ``ctr_drop`` the click-through rate (e.g. 0.03). During the incident the value replaces the
    model's normal one (a feature shift adds); where incidents of one kind overlap, the later
    one in the schedule wins.

    Attributes:
        kind: One of :data:`INCIDENT_KINDS`.
        model_id: The affected model (all its versions unless ``model_version`` is set).
        start_s: Start, seconds after the generator's ``start_ms``.
        duration_s: Length in seconds; the incident covers ``[start_s, start_s + duration_s)``.
        magnitude: See above.
        feature: The shifted numeric feature (``feature_shift`` only).
        model_version: Restrict the incident to this version, e.g. a canary.
    """

    kind: IncidentKind
    model_id: str
    start_s: float
    duration_s: float
    magnitude: float
    feature: str | None = None
    model_version: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(
                f"Invalid incident kind {self.kind!r}. Valid values are: {INCIDENT_KINDS}"
            )
        if not _NAME.match(self.model_id):
            raise ValueError(f"Invalid model id {self.model_id!r} (no ':' or whitespace)")
        if not self.start_s >= 0 or not self.duration_s > 0:
            raise ValueError(
                f"Incident needs start_s >= 0 and duration_s > 0,"
                f" got start_s={self.start_s}, duration_s={self.duration_s}"
            )
        if not math.isfinite(self.magnitude):
            raise ValueError(f"Incident magnitude must be finite, got {self.magnitude}")
        if self.kind in ("error_spike", "accuracy_drop", "ctr_drop"):
            if not 0.0 <= self.magnitude <= 1.0:
                raise ValueError(f"{self.kind} magnitude is a rate in [0, 1], got {self.magnitude}")
        elif self.kind == "latency_rise" and not self.magnitude > 0:
            raise ValueError(f"latency_rise magnitude is a multiplier > 0, got {self.magnitude}")
        if (self.kind == "feature_shift") != (self.feature is not None):
            raise ValueError(
                "feature_shift needs a feature (e.g. ':amount' at the end of the spec);"
                " other kinds take none"
            )

    @property
    def end_s(self) -> float:
        """End of the incident (exclusive), seconds after the generator's start."""
        return self.start_s + self.duration_s

    def spec(self) -> str:
        """Return the incident in :func:`parse_incidents` form."""
        model = self.model_id
        if self.model_version is not None:
            model = f"{model}={self.model_version}"
        text = f"{self.kind}:{model}@{_seconds(self.start_s)}+{_seconds(self.duration_s)}"
        text += f":{self.magnitude:g}"
        return text if self.feature is None else f"{text}:{self.feature}"


def _seconds(value_s: float) -> str:
    value_ms = round(value_s * 1000)
    return f"{value_ms // 1000}s" if value_ms % 1000 == 0 else f"{value_ms}ms"


#: ``parse_incidents("default")``: an alert within ~30 s of start, then one of each kind.
DEFAULT_INCIDENTS: Final = (
    Incident("error_spike", "fraud-detector", start_s=15, duration_s=30, magnitude=0.2),
    Incident("latency_rise", "recommender", start_s=60, duration_s=40, magnitude=4.0),
    Incident(
        "feature_shift",
        "fraud-detector",
        start_s=100,
        duration_s=60,
        magnitude=1.0,
        feature="amount",
    ),
    Incident("accuracy_drop", "fraud-detector", start_s=150, duration_s=60, magnitude=0.7),
    Incident("ctr_drop", "recommender", start_s=200, duration_s=60, magnitude=0.03),
)

_INCIDENT = re.compile(
    r"^(?P<kind>[a-z_]+):(?P<model>[^:=\s]+?)(?:=(?P<version>[^:=@\s]+))?"
    r"@(?P<start>[^+@:\s]+)\+(?P<duration>[^:@\s]+):(?P<magnitude>[^:\s]+)"
    r"(?::(?P<feature>[A-Za-z_][A-Za-z0-9_]*))?$"
)


def parse_incidents(text: str) -> tuple[Incident, ...]:
    """Parse an incident schedule from the command line.

    Args:
        text: ``"default"`` (:data:`DEFAULT_INCIDENTS`), ``"none"`` or ``""`` (no incidents), or
            comma-separated ``KIND:MODEL[=VERSION]@START+DURATION:MAGNITUDE[:FEATURE]`` items,
            where START and DURATION are durations like ``20s``, ``1m`` or ``500ms``.

    Returns:
        The incidents, in the given order.

    Raises:
        ValueError: If an item is malformed; the message shows the expected format.

    >>> parse_incidents("error_spike:fraud-detector@20s+30s:0.2")[0].end_s
    50.0
    >>> parse_incidents("feature_shift:fraud-detector=2.2.0-canary@1m+30s:-1.5:amount")[0].spec()
    'feature_shift:fraud-detector=2.2.0-canary@60s+30s:-1.5:amount'
    """
    stripped = text.strip()
    if stripped.lower() == "default":
        return DEFAULT_INCIDENTS
    if stripped.lower() in ("", "none"):
        return ()
    incidents = []
    for item in (part.strip() for part in stripped.split(",")):
        match = _INCIDENT.match(item)
        if match is None:
            raise ValueError(f"Invalid incident {item!r}. Expected {INCIDENT_SPEC_FORMAT}")
        try:
            magnitude = float(match["magnitude"])
            incidents.append(
                Incident(
                    kind=match["kind"],  # type: ignore[arg-type]  # checked by Incident
                    model_id=match["model"],
                    start_s=parse_duration_ms(match["start"]) / 1000,
                    duration_s=parse_duration_ms(match["duration"]) / 1000,
                    magnitude=magnitude,
                    feature=match["feature"],
                    model_version=match["version"],
                )
            )
        except ValueError as exc:
            raise ValueError(
                f"Invalid incident {item!r}: {exc}. Expected {INCIDENT_SPEC_FORMAT}"
            ) from exc
    return tuple(incidents)


@dataclass(frozen=True, slots=True)
class GeneratedTraffic:
    """The events of one simulated interval ``[start_ms, end_ms)``, per topic, time-ordered."""

    start_ms: int
    end_ms: int
    inference: list[Event]
    feedback: list[Event]
    business: list[Event]

    @property
    def total(self) -> int:
        """Number of events on all topics."""
        return len(self.inference) + len(self.feedback) + len(self.business)

    def by_topic(self) -> Iterator[tuple[str, list[Event]]]:
        """Yield ``(topic_kind, events)`` for ``inference``, ``feedback``, ``business``."""
        yield "inference", self.inference
        yield "feedback", self.feedback
        yield "business", self.business


@dataclass(frozen=True, slots=True)
class _ActiveIncident:
    """An incident resolved against a fleet: absolute times and the affected model rows."""

    kind: str
    models: BoolArray
    start_ms: int
    end_ms: int
    magnitude: float
    feature_index: int


class TrafficGenerator:
    """Seeded traffic from a fleet of models, with incidents, on a simulated clock.

    Each :meth:`generate` call advances the clock by ``duration_ms`` and returns that interval's
    events. Feedback and business events that happen after the interval (labels arrive seconds
    later, clicks follow impressions) are held back and returned by the call whose interval
    contains their timestamp.
    """

    def __init__(
        self,
        models: Sequence[ModelSpec] = DEFAULT_MODELS,
        incidents: Sequence[Incident] = (),
        *,
        seed: int = 0,
        start_ms: int | None = None,
        rate_eps: float = 1000.0,
        feedback_fraction: float = 0.3,
        feedback_delay_s: tuple[float, float] = (2.0, 10.0),
    ) -> None:
        """Set up a generator; nothing is drawn until :meth:`generate`.

        Args:
            models: The fleet; shares are normalised to sum to 1.
            incidents: Incident schedule, relative to ``start_ms``.
            seed: Seed of the ``PCG64`` generator; also part of every request id.
            start_ms: Simulated start time (Unix ms); ``None`` means the wall clock now.
            rate_eps: Inference events per second of simulated time, over all models.
            feedback_fraction: Fraction of classifier predictions that get a ground-truth label.
            feedback_delay_s: ``(min, max)`` delay of a label after its prediction.

        Raises:
            ValueError: If a parameter is out of range, or an incident names a model, feature or
                model kind the fleet does not have (the message lists what it has).
        """
        if not models:
            raise ValueError("TrafficGenerator needs at least one ModelSpec")
        if not rate_eps >= 0:
            raise ValueError(f"rate_eps must be >= 0, got {rate_eps}")
        if not 0.0 <= feedback_fraction <= 1.0:
            raise ValueError(f"feedback_fraction must be in [0, 1], got {feedback_fraction}")
        delay_lo_s, delay_hi_s = feedback_delay_s
        if not 0 <= delay_lo_s <= delay_hi_s:
            raise ValueError("feedback_delay_s must be (min, max) with 0 <= min <= max")
        self.models: tuple[ModelSpec, ...] = tuple(models)
        self.incidents: tuple[Incident, ...] = tuple(incidents)
        self.seed = seed
        self.rate_eps = rate_eps
        self.feedback_fraction = feedback_fraction
        self.start_ms: int = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self._now_ms = self.start_ms
        self._feedback_delay_ms = (round(delay_lo_s * 1000), round(delay_hi_s * 1000))
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._seq = 0
        self._carry = 0.0
        self._tiebreak = 0
        self._held: dict[str, list[tuple[int, int, Event]]] = {"feedback": [], "business": []}

        shares = np.array([m.share for m in self.models], dtype=np.float64)
        self._shares = shares / shares.sum()
        self._kind = np.array([MODEL_KINDS.index(m.kind) for m in self.models])
        self._latency_median = np.array([m.latency_median_ms for m in self.models])
        self._error_rate = np.array([m.error_rate for m in self.models])
        self._accuracy = np.array([m.accuracy for m in self.models])
        self._ctr = np.array([m.ctr for m in self.models])
        self._positive_rate = np.array([m.positive_rate for m in self.models])
        self._negative_label = np.array([m.labels[0] for m in self.models], dtype=object)
        self._positive_label = np.array([m.labels[1] for m in self.models], dtype=object)
        self._heads: list[Event] = []
        for m in self.models:
            head: Event = {"model_id": m.model_id, "model_version": m.model_version}
            if m.traffic is not None:
                head["traffic"] = m.traffic
            self._heads.append(head)
        self._gpu = [m.gpu for m in self.models]

        underlying = [f.underlying() for f in NUMERIC_FEATURES]
        self._feature_mu = np.array([mu for mu, _ in underlying])
        self._feature_sigma = np.array([sigma for _, sigma in underlying])
        self._feature_is_log = np.array([f.distribution == "lognormal" for f in NUMERIC_FEATURES])
        ranks = np.arange(1, CATALOGUE_SIZE + 1, dtype=np.float64) ** -CATALOGUE_ZIPF_EXPONENT
        self._item_p = ranks / ranks.sum()
        self._items = np.array([f"item-{i:04d}" for i in range(CATALOGUE_SIZE)], dtype=object)
        revenue = NumericFeature("revenue", "lognormal", REVENUE_MEAN, REVENUE_STD, 2)
        self._revenue_mu, self._revenue_sigma = revenue.underlying()
        self._active = tuple(self._resolve(incident) for incident in self.incidents)

    def _resolve(self, incident: Incident) -> _ActiveIncident:
        rows = np.array(
            [
                m.model_id == incident.model_id
                and incident.model_version in (None, m.model_version)
                for m in self.models
            ]
        )
        if not rows.any():
            fleet = sorted({f"{m.model_id}={m.model_version}" for m in self.models})
            raise ValueError(f"Incident {incident.spec()!r} matches no model; the fleet is {fleet}")
        needs = {"accuracy_drop": "classifier", "ctr_drop": "recommender"}.get(incident.kind)
        if needs is not None and any(
            m.kind != needs for m, hit in zip(self.models, rows, strict=True) if hit
        ):
            raise ValueError(f"Incident {incident.spec()!r} needs {needs} models only")
        numeric = [f.name for f in NUMERIC_FEATURES]
        if incident.feature is not None and incident.feature not in numeric:
            raise ValueError(
                f"Incident {incident.spec()!r}: unknown numeric feature {incident.feature!r}."
                f" Valid values are: {numeric}"
            )
        return _ActiveIncident(
            kind=incident.kind,
            models=rows,
            start_ms=self.start_ms + round(incident.start_s * 1000),
            end_ms=self.start_ms + round(incident.end_s * 1000),
            magnitude=incident.magnitude,
            feature_index=numeric.index(incident.feature) if incident.feature else -1,
        )

    @property
    def now_ms(self) -> int:
        """The simulated clock: end of the last generated interval (Unix ms)."""
        return self._now_ms

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds generated since ``start_ms``."""
        return (self._now_ms - self.start_ms) / 1000

    @property
    def held_back(self) -> int:
        """Feedback and business events generated but not yet due."""
        return sum(len(heap) for heap in self._held.values())

    def generate(self, duration_ms: int, *, rate_eps: float | None = None) -> GeneratedTraffic:
        """Generate the next ``duration_ms`` of simulated traffic and advance the clock.

        Args:
            duration_ms: Length of the interval; must be >= 0.
            rate_eps: Override the generator's rate for this interval.

        Returns:
            The interval's events, JSON-ready and time-ordered per topic.

        Raises:
            ValueError: If ``duration_ms`` or ``rate_eps`` is negative.
        """
        if duration_ms < 0:
            raise ValueError(f"duration_ms must be >= 0, got {duration_ms}")
        rate = self.rate_eps if rate_eps is None else rate_eps
        if not rate >= 0:
            raise ValueError(f"rate_eps must be >= 0, got {rate}")
        start_ms, end_ms = self._now_ms, self._now_ms + duration_ms
        # A deterministic count with the fraction carried over: the rate holds exactly over time.
        expected = rate * duration_ms / 1000 + self._carry
        count = int(expected)
        self._carry = expected - count
        inference = self._draw(count, start_ms, end_ms)
        self._now_ms = end_ms
        return GeneratedTraffic(
            start_ms=start_ms,
            end_ms=end_ms,
            inference=inference,
            feedback=self._release("feedback", end_ms),
            business=self._release("business", end_ms),
        )

    def _hold(self, topic: str, ts_ms: int, event: Event) -> None:
        self._tiebreak += 1
        heapq.heappush(self._held[topic], (ts_ms, self._tiebreak, event))

    def _release(self, topic: str, end_ms: int) -> list[Event]:
        heap = self._held[topic]
        due = []
        while heap and heap[0][0] < end_ms:
            due.append(heapq.heappop(heap)[2])
        return due

    def _draw(self, n: int, start_ms: int, end_ms: int) -> list[Event]:
        rng = self._rng
        # Every draw below has a fixed size, whatever the incidents: a schedule changes the
        # affected values only, never the random stream.
        ts_ms: IntArray = np.sort(rng.integers(start_ms, max(end_ms, start_ms + 1), size=n))
        model = rng.choice(len(self.models), size=n, p=self._shares)
        error_rate = self._error_rate[model]
        latency_factor = np.ones(n)
        accuracy = self._accuracy[model]
        ctr = self._ctr[model]
        shift = np.zeros((n, len(NUMERIC_FEATURES)))
        for incident in self._active:
            if incident.end_ms <= start_ms or incident.start_ms >= end_ms:
                continue
            hit = incident.models[model] & (ts_ms >= incident.start_ms) & (ts_ms < incident.end_ms)
            if incident.kind == "error_spike":
                error_rate[hit] = incident.magnitude
            elif incident.kind == "latency_rise":
                latency_factor[hit] = incident.magnitude
            elif incident.kind == "feature_shift":
                std = NUMERIC_FEATURES[incident.feature_index].std
                shift[hit, incident.feature_index] += incident.magnitude * std
            elif incident.kind == "accuracy_drop":
                accuracy[hit] = incident.magnitude
            else:
                ctr[hit] = incident.magnitude

        is_error = rng.random(n) < error_rate
        error_type = np.array(ERROR_TYPES, dtype=object)[rng.integers(0, len(ERROR_TYPES), n)]
        latency = (
            self._latency_median[model]
            * np.exp(LATENCY_SIGMA * rng.standard_normal(n))
            * latency_factor
        )
        latency = np.round(latency, 3)
        reported = latency * (1.0 - rng.uniform(*UNREPORTED_LATENCY_FRACTION, size=n))
        # Floor, so the reported stages never add up to more than the end-to-end latency.
        stages = np.floor(rng.dirichlet(STAGE_WEIGHTS, size=n) * reported[:, None] * 1000) / 1000

        lin = self._feature_mu + self._feature_sigma * rng.standard_normal(
            (n, len(NUMERIC_FEATURES))
        )
        numeric = np.where(self._feature_is_log, np.exp(lin), lin) + shift
        columns: list[list[Any]] = []
        for j, feature in enumerate(NUMERIC_FEATURES):
            col = np.round(numeric[:, j], feature.decimals)
            columns.append(col.astype(np.int64).tolist() if feature.decimals == 0 else col.tolist())
        for cat in CATEGORICAL_FEATURES:
            pick = rng.choice(len(cat.values), size=n, p=np.array(cat.weights) / sum(cat.weights))
            columns.append(np.array(cat.values, dtype=object)[pick].tolist())
        null_at = np.flatnonzero(rng.random(n) < NULL_FEATURE_RATE)
        null_feature = rng.integers(0, len(FEATURE_NAMES), n)

        # Predictions of every kind are drawn for every event (fixed draw sizes, see above).
        kind = self._kind[model]
        true_positive = rng.random(n) < self._positive_rate[model]
        correct = rng.random(n) < accuracy
        predicted_positive = true_positive == correct
        u_score = rng.random(n)
        regression = np.round(rng.beta(2.0, 6.0, n), 4)
        item = self._items[rng.choice(CATALOGUE_SIZE, size=n, p=self._item_p)]
        prediction = np.where(
            predicted_positive, self._positive_label[model], self._negative_label[model]
        )
        true_label = np.where(
            true_positive, self._positive_label[model], self._negative_label[model]
        )
        is_regressor = kind == MODEL_KINDS.index("regressor")
        is_recommender = kind == MODEL_KINDS.index("recommender")
        is_classifier = ~(is_regressor | is_recommender)
        prediction[is_regressor] = regression[is_regressor]
        prediction[is_recommender] = item[is_recommender]
        score = np.where(
            is_classifier,
            np.where(correct, 0.7 + 0.29 * u_score, 0.5 + 0.3 * u_score),
            np.where(is_regressor, 0.6 + 0.39 * u_score, 0.3 + 0.6 * u_score),
        )
        score = np.round(score, 4)

        cpu = np.round(np.maximum(CPU_PCT[0] + CPU_PCT[1] * rng.standard_normal(n), 0.0), 1)
        memory = np.round(np.maximum(MEMORY_MB[0] + MEMORY_MB[1] * rng.standard_normal(n), 0.0), 1)
        gpu = np.round(np.clip(GPU_PCT[0] + GPU_PCT[1] * rng.standard_normal(n), 0.0, 100.0), 1)

        ok = ~is_error
        wants_feedback = is_classifier & ok & (rng.random(n) < self.feedback_fraction)
        lo_ms, hi_ms = self._feedback_delay_ms
        feedback_ts = ts_ms + rng.integers(lo_ms, hi_ms + 1, n)
        # Impressions are shown when the response arrives; clicks and conversions follow.
        shown = is_recommender & ok
        impression_ts = ts_ms + np.ceil(latency).astype(np.int64)
        clicked = shown & (rng.random(n) < ctr)
        converted = clicked & (rng.random(n) < CONVERSION_RATE)
        click_ts = impression_ts + rng.integers(*CLICK_DELAY_MS, n)
        conversion_ts = click_ts + rng.integers(*CONVERSION_DELAY_MS, n)
        revenue = np.round(rng.lognormal(self._revenue_mu, self._revenue_sigma, n), 2)

        heads = self._heads
        gpu_models = self._gpu
        prefix = [f"{h['model_id']}-{self.seed}-" for h in heads]
        seq0 = self._seq
        self._seq += n
        stage_pre, stage_inf, stage_post = (stages[:, k].tolist() for k in range(3))
        events: list[Event] = []
        for i, (m, ts, lat, err, pred, sc, pre, inf, post, c, mem, g, feats) in enumerate(
            zip(
                model.tolist(),
                ts_ms.tolist(),
                latency.tolist(),
                is_error.tolist(),
                prediction.tolist(),
                score.tolist(),
                stage_pre,
                stage_inf,
                stage_post,
                cpu.tolist(),
                memory.tolist(),
                gpu.tolist(),
                zip(*columns, strict=True) if n else iter(()),
                strict=True,
            )
        ):
            resources = {"cpu_pct": c, "memory_mb": mem}
            if gpu_models[m]:
                resources["gpu_pct"] = g
            event: Event = {
                "schema_version": EVENT_SCHEMA_VERSION,
                "request_id": f"{prefix[m]}{seq0 + i}",
                **heads[m],
                "timestamp": ts / 1000,
                "latency_ms": lat,
                "status": "error" if err else "ok",
                "features": dict(zip(FEATURE_NAMES, feats, strict=True)),
                "stages_ms": {"preprocess": pre, "inference": inf, "postprocess": post},
                "resources": resources,
            }
            if err:
                event["error_type"] = error_type[i]
            else:
                event["prediction"] = pred
                event["score"] = sc
            events.append(event)
        for i in null_at.tolist():
            events[i]["features"][FEATURE_NAMES[null_feature[i]]] = None

        for i in np.flatnonzero(wants_feedback).tolist():
            source = events[i]
            when = int(feedback_ts[i])
            self._hold(
                "feedback",
                when,
                {
                    "schema_version": EVENT_SCHEMA_VERSION,
                    "request_id": source["request_id"],
                    "model_id": source["model_id"],
                    "model_version": source["model_version"],
                    "label": true_label[i],
                    "timestamp": when / 1000,
                },
            )
        for i in np.flatnonzero(shown).tolist():
            source = events[i]
            self._hold_business(source, "impression", 1.0, int(impression_ts[i]))
            if clicked[i]:
                self._hold_business(source, "click", 1.0, int(click_ts[i]))
            if converted[i]:
                when = int(conversion_ts[i])
                self._hold_business(source, "conversion", 1.0, when)
                self._hold_business(source, "revenue", float(revenue[i]), when)
        return events

    def _hold_business(self, source: Event, kind: str, value: float, ts_ms: int) -> None:
        self._hold(
            "business",
            ts_ms,
            {
                "schema_version": EVENT_SCHEMA_VERSION,
                "model_id": source["model_id"],
                "model_version": source["model_version"],
                "request_id": source["request_id"],
                "kind": kind,
                "value": value,
                "timestamp": ts_ms / 1000,
            },
        )


#: Simulated start of :func:`reference_rows`: fixed, so a seed always gives the same rows.
REFERENCE_START_MS: Final = 1_700_000_000_000
#: One reference event per simulated millisecond.
_REFERENCE_RATE_EPS: Final = 1000.0


def reference_rows(
    spec: ModelSpec, rows: int, seed: int
) -> Iterator[tuple[InferenceEvent, object | None]]:
    """Yield ``rows`` events of one model's normal traffic with their ground-truth labels.

    Reference data for ``streamwatch baseline sample`` and the tests: no incidents, and every
    successful classifier prediction labelled (the label its feedback event would carry), so
    the reference accuracy is the spec's ``accuracy`` up to sampling noise. Failed requests,
    regressors and recommenders have no ground truth here: their label is ``None``.

    Args:
        spec: The model; its ``share`` is irrelevant.
        rows: Number of events.
        seed: Seed of the generator; the same seed gives the same rows.

    Raises:
        ValueError: If ``rows`` is negative.

    >>> rows = list(reference_rows(DEFAULT_MODELS[0], 3, seed=1))
    >>> [(event.model_id, label) for event, label in rows]
    [('fraud-detector', 'legit'), ('fraud-detector', 'legit'), ('fraud-detector', 'legit')]
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    # Every labelled prediction gets feedback at its own timestamp, so the feedback comes out of
    # the same generate() call as its prediction.
    traffic = TrafficGenerator(
        [spec],
        seed=seed,
        start_ms=REFERENCE_START_MS,
        rate_eps=_REFERENCE_RATE_EPS,
        feedback_fraction=1.0,
        feedback_delay_s=(0.0, 0.0),
    )
    remaining = rows
    while remaining > 0:
        interval = traffic.generate(min(remaining, 1_000))  # one event per ms
        labels = {feedback["request_id"]: feedback["label"] for feedback in interval.feedback}
        for event in interval.inference:
            yield InferenceEvent.model_validate(event), labels.get(event["request_id"])
        remaining -= len(interval.inference)


def encode_batches(
    events: Sequence[Event],
    batch_size: int,
    *,
    columnar: bool = False,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[tuple[bytes, bytes]]:
    """Encode events as Kafka ``(key, value)`` messages, keyed and grouped by model id.

    Args:
        events: JSON-ready event dicts, each with a ``model_id``.
        batch_size: Events per message. ``1`` sends each event as a JSON object; more sends
            JSON arrays of up to ``batch_size`` events.
        columnar: Send each batch as a columnar envelope (:func:`columnar_envelope`), even of
            one event: the fastest form to encode and decode. Inference events only.
        max_bytes: A batch whose encoding is longer is sent as two halves (and so on), so that
            large events do not make messages the broker refuses; one event is never split.

    Returns:
        Messages in order of each model's first event; within a model, events keep their order.

    Raises:
        ValueError: If ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event["model_id"], []).append(event)
    messages: list[tuple[bytes, bytes]] = []
    for model_id, group in groups.items():
        key = model_id.encode()
        if batch_size == 1 and not columnar:
            messages.extend((key, orjson.dumps(event)) for event in group)
            continue
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            messages.extend((key, value) for value in _encoded(batch, columnar, max_bytes))
    return messages


def _encoded(batch: Sequence[Event], columnar: bool, max_bytes: int) -> list[bytes]:
    """``batch`` as one message, or as the messages of its halves if that is too long."""
    value = orjson.dumps(columnar_envelope(batch) if columnar else batch)
    if len(value) <= max_bytes or len(batch) == 1:
        return [value]
    half = len(batch) // 2
    return _encoded(batch[:half], columnar, max_bytes) + _encoded(batch[half:], columnar, max_bytes)


def columnar_envelope(events: Sequence[Event]) -> dict[str, Any]:
    """Return inference events as one columnar envelope ``{"columns": {...}}``.

    Each field becomes a column with one entry per event (null where an event lacks it); a
    field some columns allow as a scalar is sent once when every event has the same value.
    An event's own ``schema_version`` is dropped: the envelope's applies.

    >>> columns = columnar_envelope([
    ...     {"request_id": "a", "model_id": "m", "latency_ms": 1.5, "features": {"x": 1}},
    ...     {"request_id": "b", "model_id": "m", "latency_ms": 2.0, "features": {"y": "u"}},
    ... ])["columns"]
    >>> columns["request_id"], columns["model_id"], columns["features"]
    (['a', 'b'], 'm', {'x': [1, None], 'y': [None, 'u']})
    """
    # request_id first, and always: its length is the batch size.
    names = dict.fromkeys(["request_id", *(name for event in events for name in event)])
    names.pop("schema_version", None)
    columns: dict[str, Any] = {}
    for name in names:
        values = [event.get(name) for event in events]
        if name in COLUMN_OBJECT_FIELDS:
            members = [value or {} for value in values]
            keys = dict.fromkeys(key for member in members for key in member)
            columns[name] = {key: [member.get(key) for member in members] for key in keys}
        elif name in COLUMN_SCALAR_FIELDS and _constant(values):
            columns[name] = values[0]
        else:
            columns[name] = values
    return {"schema_version": EVENT_SCHEMA_VERSION, "columns": columns}


def _constant(values: list[Any]) -> bool:
    """Whether all values are the same string (what a scalar column may stand for)."""
    first = values[0]
    return type(first) is str and all(v == first and type(v) is str for v in values)


@dataclass(frozen=True, slots=True)
class ProduceStats:
    """Progress of :func:`produce`.

    Attributes:
        events: Events handed to the producer, per topic kind.
        messages: Kafka messages handed to the producer.
        delivered: Messages the broker acknowledged.
        failed: Messages that failed (delivery error, or still queued when the flush timed out).
        seconds: Wall-clock seconds since the start.
        simulated_s: Simulated seconds generated.
        last_error: The most recent delivery error, if any.
    """

    events: Mapping[str, int]
    messages: int
    delivered: int
    failed: int
    seconds: float
    simulated_s: float
    last_error: str | None = None

    @property
    def events_total(self) -> int:
        """Events on all topics."""
        return sum(self.events.values())

    @property
    def events_per_s(self) -> float:
        """Events on all topics per wall-clock second."""
        return self.events_total / self.seconds if self.seconds > 0 else 0.0


class _Delivery:
    """Delivery-report counters; librdkafka calls back from ``poll``/``flush`` in our thread."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.last_error: str | None = None

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.last_error = str(err)


def produce(
    bootstrap: str,
    topics: Mapping[str, str],
    generator: TrafficGenerator,
    *,
    rate_eps: float | None = None,
    duration_s: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    columnar: bool = True,
    realtime: bool = True,
    extra_conf: Mapping[str, str] | None = None,
    on_progress: Callable[[ProduceStats], None] | None = None,
    stop: threading.Event | None = None,
    flush_timeout_s: float = 30.0,
) -> ProduceStats:
    """Generate traffic and publish it to Kafka until the duration ends or ``stop`` is set.

    Args:
        bootstrap: Kafka ``bootstrap.servers``.
        topics: Topic name per kind: ``{"inference": ..., "feedback": ..., "business": ...}``.
        generator: The traffic source; its clock continues from where it is.
        rate_eps: Inference events per second; ``None`` uses the generator's rate.
        duration_s: Simulated seconds to produce; ``None`` runs until ``stop`` is set.
        batch_size: Events per message (see :func:`encode_batches`).
        columnar: Send inference events as columnar envelopes (the fastest form for the
            workers); False sends JSON arrays (or single objects with ``batch_size`` 1).
            Feedback and business events are always sent as rows.
        realtime: Produce each 100 ms slice once the wall clock reaches its end (start the
            generator with ``start_ms=None`` to follow the wall clock). ``False`` produces as
            fast as possible.
        extra_conf: Producer settings that override the defaults (``linger.ms`` 20, ``lz4``
            compression, idempotence on), e.g. security settings.
        on_progress: Called with a snapshot of the stats after every slice.
        stop: Set it (e.g. from a signal handler) to stop after the current slice.
        flush_timeout_s: How long to wait for outstanding deliveries at the end.

    Returns:
        Final stats, after the flush.

    Raises:
        ValueError: If a topic kind is missing or ``batch_size`` < 1.
        confluent_kafka.KafkaException: If the producer configuration is invalid.
    """
    import confluent_kafka  # the Kafka edge: the generator itself must import without it

    missing = [kind for kind in TOPIC_KINDS if kind not in topics]
    if missing:
        raise ValueError(f"topics is missing {missing}; it needs a name for each of {TOPIC_KINDS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "streamwatch-generator",
        "linger.ms": 20,
        "enable.idempotence": True,
        "compression.type": "lz4",
    }
    conf.update(extra_conf or {})
    try:
        producer = confluent_kafka.Producer(conf)
    except confluent_kafka.KafkaException:
        if extra_conf and "compression.type" in extra_conf:
            raise
        # A librdkafka built without lz4: send uncompressed rather than not at all.
        producer = confluent_kafka.Producer({**conf, "compression.type": "none"})

    stop = stop if stop is not None else threading.Event()
    slice_ms = 100 if realtime else 1_000
    end_ms = None if duration_s is None else generator.now_ms + round(duration_s * 1000)
    delivery = _Delivery()
    events = dict.fromkeys(TOPIC_KINDS, 0)
    messages = 0
    simulated_start_ms = generator.now_ms
    started = time.monotonic()

    def snapshot(unflushed: int = 0) -> ProduceStats:
        return ProduceStats(
            events=dict(events),
            messages=messages,
            delivered=delivery.delivered,
            failed=delivery.failed + unflushed,
            seconds=time.monotonic() - started,
            simulated_s=(generator.now_ms - simulated_start_ms) / 1000,
            last_error=(
                f"{unflushed} messages still queued after a {flush_timeout_s:g} s flush"
                if unflushed
                else delivery.last_error
            ),
        )

    while not stop.is_set():
        step_ms = slice_ms if end_ms is None else min(slice_ms, end_ms - generator.now_ms)
        if step_ms <= 0:
            break
        if realtime:
            wait_s = (generator.now_ms + step_ms) / 1000 - time.time()
            if wait_s > 0 and stop.wait(wait_s):
                break
        traffic = generator.generate(step_ms, rate_eps=rate_eps)
        for kind, batch in traffic.by_topic():
            as_columns = columnar and kind == "inference"
            for key, value in encode_batches(batch, batch_size, columnar=as_columns):
                while True:
                    try:
                        producer.produce(topics[kind], value=value, key=key, on_delivery=delivery)
                        break
                    except BufferError:
                        # Local queue full: serve delivery reports until there is room.
                        producer.poll(0.05)
                messages += 1
            events[kind] += len(batch)
        producer.poll(0)
        if on_progress is not None:
            on_progress(snapshot())
    unflushed = producer.flush(flush_timeout_s)
    return snapshot(unflushed)
