"""The synthetic traffic generator: determinism, the event contract, rates and incidents."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import orjson
import pytest

from streamwatch.core.fast_decode import InferenceDecoder
from streamwatch.events import BusinessEvent, FeedbackEvent, InferenceEvent
from streamwatch.generator import (
    DEFAULT_INCIDENTS,
    DEFAULT_MODELS,
    FEATURE_NAMES,
    INCIDENT_KINDS,
    NUMERIC_FEATURES,
    Event,
    GeneratedTraffic,
    Incident,
    ModelSpec,
    TrafficGenerator,
    encode_batches,
    parse_incidents,
)

START_MS = 1_700_000_000_000
AMOUNT_STD = next(f.std for f in NUMERIC_FEATURES if f.name == "amount")


def run(generator: TrafficGenerator, duration_ms: int, slice_ms: int = 1_000) -> GeneratedTraffic:
    """Generate ``duration_ms`` in slices and concatenate the slices."""
    start_ms = generator.now_ms
    inference: list[Event] = []
    feedback: list[Event] = []
    business: list[Event] = []
    for _ in range(duration_ms // slice_ms):
        traffic = generator.generate(slice_ms)
        inference += traffic.inference
        feedback += traffic.feedback
        business += traffic.business
    return GeneratedTraffic(start_ms, generator.now_ms, inference, feedback, business)


def ts_ms(event: Event) -> int:
    return round(float(event["timestamp"]) * 1000)


# One run with every incident kind, in separate windows, and the same run without incidents.
SCHEDULE = (
    "error_spike:fraud-detector@10s+10s:0.2,"
    "latency_rise:recommender@10s+10s:4,"
    "feature_shift:fraud-detector@20s+10s:1:amount,"
    "accuracy_drop:fraud-detector@30s+15s:0.7,"
    "ctr_drop:recommender@30s+15s:0.03"
)
RUN_MS = 60_000
RATE_EPS = 2_000.0


@dataclass
class Runs:
    incident: GeneratedTraffic
    baseline: GeneratedTraffic


@pytest.fixture(scope="module")
def runs() -> Runs:
    def make(schedule: str) -> GeneratedTraffic:
        generator = TrafficGenerator(
            incidents=parse_incidents(schedule), seed=42, start_ms=START_MS, rate_eps=RATE_EPS
        )
        return run(generator, RUN_MS)

    return Runs(incident=make(SCHEDULE), baseline=make("none"))


def in_window(
    events: list[Event], model_id: str, start_s: float, end_s: float, *, inside: bool = True
) -> list[Event]:
    lo, hi = START_MS + start_s * 1000, START_MS + end_s * 1000
    return [e for e in events if e["model_id"] == model_id and (lo <= ts_ms(e) < hi) == inside]


def error_rate(events: list[Event]) -> float:
    return sum(bool(e["status"] == "error") for e in events) / len(events)


def p95_latency_ms(events: list[Event]) -> float:
    return float(np.percentile([e["latency_ms"] for e in events], 95))


# --- determinism and the contract ---------------------------------------------------------------


def test_same_seed_same_events_and_other_seed_different() -> None:
    def dump(seed: int) -> bytes:
        generator = TrafficGenerator(
            incidents=DEFAULT_INCIDENTS, seed=seed, start_ms=START_MS, rate_eps=500
        )
        traffic = run(generator, 30_000, slice_ms=100)
        return orjson.dumps([traffic.inference, traffic.feedback, traffic.business])

    assert dump(7) == dump(7)
    assert dump(7) != dump(8)


def test_incidents_change_only_events_inside_their_windows(runs: Runs) -> None:
    changed = [
        ts_ms(a) - START_MS
        for a, b in zip(runs.incident.inference, runs.baseline.inference, strict=True)
        if a != b
    ]
    assert changed
    assert min(changed) >= 10_000
    assert max(changed) < 45_000


def test_every_event_is_valid_against_the_contract(runs: Runs) -> None:
    traffic = runs.incident
    for event in traffic.inference:
        InferenceEvent.model_validate(event)
    for event in traffic.feedback:
        FeedbackEvent.model_validate(event)
    for event in traffic.business:
        BusinessEvent.model_validate(event)
    # The contract also reads them back from JSON, as the worker does.
    sample = orjson.dumps(traffic.inference[:100])
    assert len([InferenceEvent.model_validate(e) for e in orjson.loads(sample)]) == 100
    assert {e["kind"] for e in traffic.business} == {"impression", "click", "conversion", "revenue"}


def test_inference_events_look_like_a_model_server(runs: Runs) -> None:
    events = runs.baseline.inference
    assert len({e["request_id"] for e in events}) == len(events)
    assert {(e["model_id"], e["model_version"]) for e in events} == {
        (m.model_id, m.model_version) for m in DEFAULT_MODELS
    }
    assert {e.get("traffic") for e in events if e["model_id"] == "fraud-detector"} == {
        "control",
        "canary",
    }
    for event in events:
        assert tuple(event["features"]) == FEATURE_NAMES
        assert sum(event["stages_ms"].values()) < event["latency_ms"]
        assert (event["status"] == "error") == ("error_type" in event)
        assert (event["status"] == "ok") == ("prediction" in event)
        assert ("gpu_pct" in event["resources"]) == (event["model_id"] == "recommender")
    nulls = sum(None in e["features"].values() for e in events)
    assert 0.003 < nulls / len(events) < 0.007
    assert 0.0005 < error_rate(events) < 0.004
    assert 30 < np.median([e["latency_ms"] for e in events]) < 50
    assert p95_latency_ms(events) < 120
    cpu = [e["resources"]["cpu_pct"] for e in events]
    assert 34 < np.mean(cpu) < 36
    assert 4 < np.std(cpu) < 6
    by_model: dict[str, int] = defaultdict(int)
    for event in events:
        by_model[event["model_version"]] += 1
    for spec in DEFAULT_MODELS:
        assert by_model[spec.model_version] / len(events) == pytest.approx(spec.share, abs=0.01)
    predictions = {
        m.kind: {
            type(e["prediction"])
            for e in events
            if e["model_version"] == m.model_version and e["status"] == "ok"
        }
        for m in DEFAULT_MODELS
    }
    assert predictions == {"classifier": {str}, "regressor": {float}, "recommender": {str}}


def test_held_back_events_are_released_in_the_interval_they_are_due() -> None:
    generator = TrafficGenerator(seed=1, start_ms=START_MS, rate_eps=1_000)
    released = 0
    for _ in range(300):
        traffic = generator.generate(100)
        for events in (traffic.inference, traffic.feedback, traffic.business):
            times = [ts_ms(e) for e in events]
            assert times == sorted(times)
            assert all(traffic.start_ms <= t < traffic.end_ms for t in times)
        released += len(traffic.feedback)
    assert released > 0
    assert generator.held_back > 0


def test_feedback_arrives_two_to_ten_seconds_after_its_prediction(runs: Runs) -> None:
    predicted_at = {e["request_id"]: ts_ms(e) for e in runs.baseline.inference}
    delays_ms = [ts_ms(f) - predicted_at[f["request_id"]] for f in runs.baseline.feedback]
    assert min(delays_ms) >= 2_000
    assert max(delays_ms) <= 10_000
    classified_ok = [
        e
        for e in runs.baseline.inference
        if e["model_id"] == "fraud-detector" and e["status"] == "ok"
    ]
    # Labels within the run: those of the last ten seconds are still held back.
    assert len(delays_ms) / len(classified_ok) == pytest.approx(0.3 * 50 / 60, abs=0.03)


# --- rate -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate_eps", "slice_ms"), [(1_000.0, 100), (333.3, 100), (5_000.0, 1_000)])
def test_rate_is_respected_over_ten_seconds(rate_eps: float, slice_ms: int) -> None:
    generator = TrafficGenerator(seed=3, start_ms=START_MS, rate_eps=rate_eps)
    traffic = run(generator, 10_000, slice_ms=slice_ms)
    assert len(traffic.inference) == pytest.approx(rate_eps * 10, rel=0.05)
    assert generator.now_ms == START_MS + 10_000
    assert generator.elapsed_s == 10.0


def test_rate_can_be_overridden_per_call() -> None:
    generator = TrafficGenerator(seed=3, start_ms=START_MS, rate_eps=1_000)
    assert len(generator.generate(1_000, rate_eps=200).inference) == 200
    assert generator.generate(0).total == 0


# --- incidents ------------------------------------------------------------------------------------


def test_error_spike_raises_the_error_rate_inside_its_window_only(runs: Runs) -> None:
    inference = runs.incident.inference
    assert error_rate(in_window(inference, "fraud-detector", 10, 20)) == pytest.approx(
        0.2, abs=0.02
    )
    assert error_rate(in_window(inference, "fraud-detector", 10, 20, inside=False)) < 0.005
    assert error_rate(in_window(inference, "churn-predictor", 10, 20)) < 0.01


def test_latency_rise_moves_p95_above_200_ms(runs: Runs) -> None:
    inference = runs.incident.inference
    assert p95_latency_ms(in_window(inference, "recommender", 10, 20)) > 200
    assert p95_latency_ms(in_window(inference, "recommender", 10, 20, inside=False)) < 120
    assert p95_latency_ms(in_window(inference, "fraud-detector", 10, 20)) < 120


def test_feature_shift_moves_the_mean_by_magnitude_sigma(runs: Runs) -> None:
    def amounts(traffic: GeneratedTraffic) -> np.typing.NDArray[np.float64]:
        window = in_window(traffic.inference, "fraud-detector", 20, 30)
        values = [e["features"]["amount"] for e in window]
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    shifted, baseline = amounts(runs.incident), amounts(runs.baseline)
    # Null draws do not depend on incidents either: the same events lack the value in both runs.
    assert np.array_equal(np.isnan(shifted), np.isnan(baseline))
    shifted, baseline = shifted[~np.isnan(shifted)], baseline[~np.isnan(baseline)]
    # Same seed, same draws: every value moved by exactly one standard deviation (to 2 decimals).
    np.testing.assert_allclose(shifted - baseline, AMOUNT_STD, atol=0.011)
    # And against the feature's nominal distribution (mean 80, std 150; lognormal, so loose).
    assert (np.nanmean(shifted) - 80.0) / AMOUNT_STD == pytest.approx(1.0, abs=0.1)
    assert (np.nanmean(baseline) - 80.0) / AMOUNT_STD == pytest.approx(0.0, abs=0.1)


def test_accuracy_drop_lowers_agreement_of_labels_and_predictions(runs: Runs) -> None:
    prediction = {e["request_id"]: e for e in runs.incident.inference}

    def accuracy(*, inside: bool) -> float:
        joined = [(f["label"], prediction[f["request_id"]]) for f in runs.incident.feedback]
        hits = [
            label == event["prediction"]
            for label, event in joined
            if (START_MS + 30_000 <= ts_ms(event) < START_MS + 45_000) == inside
        ]
        return sum(map(bool, hits)) / len(hits)

    assert accuracy(inside=True) == pytest.approx(0.7, abs=0.03)
    assert accuracy(inside=False) == pytest.approx(0.95, abs=0.02)


def test_ctr_drop_lowers_clicks_per_impression(runs: Runs) -> None:
    served_at = {e["request_id"]: ts_ms(e) for e in runs.incident.inference}

    def ctr(lo_s: float, hi_s: float) -> float:
        counts: dict[str, int] = defaultdict(int)
        for event in runs.incident.business:
            if START_MS + lo_s * 1000 <= served_at[event["request_id"]] < START_MS + hi_s * 1000:
                counts[event["kind"]] += 1
        return counts["click"] / counts["impression"]

    assert ctr(30, 45) == pytest.approx(0.03, abs=0.006)
    assert ctr(0, 30) == pytest.approx(0.05, abs=0.006)
    assert ctr(30, 45) < ctr(0, 30) * 0.75


def test_business_funnel_converts_a_fifth_of_clicks_with_revenue(runs: Runs) -> None:
    kinds: dict[str, list[float]] = defaultdict(list)
    for event in runs.baseline.business:
        kinds[event["kind"]].append(event["value"])
    assert len(kinds["conversion"]) / len(kinds["click"]) == pytest.approx(0.2, abs=0.03)
    assert len(kinds["revenue"]) == len(kinds["conversion"])
    assert min(kinds["revenue"]) > 0


def test_incident_on_one_version_leaves_the_other_alone() -> None:
    generator = TrafficGenerator(
        incidents=parse_incidents("error_spike:fraud-detector=2.2.0-canary@0s+10s:0.5"),
        seed=5,
        start_ms=START_MS,
        rate_eps=4_000,
    )
    inference = run(generator, 10_000).inference
    canary = [e for e in inference if e["model_version"] == "2.2.0-canary"]
    control = [e for e in inference if e["model_version"] == "2.1.0"]
    assert error_rate(canary) == pytest.approx(0.5, abs=0.05)
    assert error_rate(control) < 0.01


# --- parse_incidents ------------------------------------------------------------------------------


def test_parse_incidents_reads_the_documented_forms() -> None:
    assert parse_incidents(
        "error_spike:fraud-detector@20s+30s:0.2,latency_rise:recommender@60s+40s:4"
    ) == (
        Incident("error_spike", "fraud-detector", start_s=20, duration_s=30, magnitude=0.2),
        Incident("latency_rise", "recommender", start_s=60, duration_s=40, magnitude=4.0),
    )
    assert parse_incidents(" feature_shift:fraud-detector@1m+500ms:-1.5:amount ") == (
        Incident("feature_shift", "fraud-detector", 60, 0.5, magnitude=-1.5, feature="amount"),
    )
    assert parse_incidents("ctr_drop:model@v2=1.0@5s+5s:0.03")[0] == Incident(
        "ctr_drop", "model@v2", 5, 5, 0.03, model_version="1.0"
    )
    assert parse_incidents("none") == parse_incidents("") == ()
    assert parse_incidents("default") == DEFAULT_INCIDENTS


def test_default_schedule_starts_within_thirty_seconds_and_covers_every_kind() -> None:
    assert {i.kind for i in DEFAULT_INCIDENTS} == set(INCIDENT_KINDS)
    assert min(i.start_s for i in DEFAULT_INCIDENTS) < 30
    TrafficGenerator(DEFAULT_MODELS, DEFAULT_INCIDENTS, seed=0, start_ms=START_MS)


def test_incident_spec_round_trips() -> None:
    for incident in DEFAULT_INCIDENTS:
        assert parse_incidents(incident.spec()) == (incident,)


@pytest.mark.parametrize(
    "spec",
    [
        "bogus:fraud-detector@1s+1s:0.1",
        "error_spike:fraud-detector@1s+1s",
        "error_spike:fraud-detector+1s:0.2",
        "error_spike:fraud-detector@1+1s:0.2",
        "error_spike:fraud-detector@1s+0s:0.2",
        "error_spike:fraud-detector@1s+1s:1.5",
        "error_spike:fraud-detector@1s+1s:lots",
        "latency_rise:recommender@1s+1s:nan",
        "latency_rise:recommender@1s+1s:-2",
        "feature_shift:fraud-detector@1s+1s:1",
        "error_spike:fraud-detector@1s+1s:0.2:amount",
        "error_spike:fraud detector@1s+1s:0.2",
        "error_spike:fraud-detector@1s+1s:0.2,",
        "defaults",
    ],
)
def test_parse_incidents_rejects_bad_specs_showing_the_format(spec: str) -> None:
    with pytest.raises(ValueError, match=r"Expected KIND:MODEL\[=VERSION\]@START\+DURATION"):
        parse_incidents(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("error_spike:nobody@1s+1s:0.2", "matches no model"),
        ("ctr_drop:fraud-detector@1s+1s:0.01", "needs recommender models"),
        ("accuracy_drop:churn-predictor@1s+1s:0.5", "needs classifier models"),
        ("feature_shift:fraud-detector@1s+1s:1:country", "unknown numeric feature"),
    ],
)
def test_generator_rejects_incidents_the_fleet_cannot_have(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrafficGenerator(incidents=parse_incidents(spec), start_ms=START_MS)


def test_model_spec_rejects_ids_the_contract_forbids() -> None:
    with pytest.raises(ValueError, match="no ':'"):
        ModelSpec("fraud:detector", "1.0", 1.0, "classifier")
    with pytest.raises(ValueError, match="Valid values are"):
        ModelSpec("fraud-detector", "1.0", 1.0, "ranker")  # type: ignore[arg-type]


# --- encode_batches -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_events() -> list[Event]:
    traffic = TrafficGenerator(seed=9, start_ms=START_MS, rate_eps=1_000).generate(1_000)
    return traffic.inference


@pytest.mark.parametrize("batch_size", [2, 7, 100, 10_000])
def test_encode_batches_round_trips_by_model(sample_events: list[Event], batch_size: int) -> None:
    messages = encode_batches(sample_events, batch_size)
    decoded: dict[str, list[Event]] = defaultdict(list)
    for key, value in messages:
        batch = orjson.loads(value)
        assert isinstance(batch, list)
        assert 1 <= len(batch) <= batch_size
        assert {e["model_id"] for e in batch} == {key.decode()}
        decoded[key.decode()] += batch
    for model_id, events in decoded.items():
        assert events == [e for e in sample_events if e["model_id"] == model_id]
    assert sum(map(len, decoded.values())) == len(sample_events)


@pytest.mark.parametrize("columnar", [False, True])
def test_encode_batches_splits_messages_longer_than_max_bytes(
    sample_events: list[Event], columnar: bool
) -> None:
    whole = encode_batches(sample_events, 1_000, columnar=columnar)
    longest = max(len(value) for _, value in whole)
    max_bytes = longest // 5
    messages = encode_batches(sample_events, 1_000, columnar=columnar, max_bytes=max_bytes)
    assert len(messages) > len(whole)
    assert all(len(value) <= max_bytes for _, value in messages)
    decoder = InferenceDecoder()
    split = decoder.decode_step([value for _, value in messages])
    kept = decoder.decode_step([value for _, value in whole])
    assert split.batch.request_id == kept.batch.request_id
    assert split.batch.request_id == [
        e["request_id"]
        for m in dict.fromkeys(e["model_id"] for e in sample_events)
        for e in sample_events
        if e["model_id"] == m
    ]


def test_encode_batches_never_splits_one_event(sample_events: list[Event]) -> None:
    messages = encode_batches(sample_events[:3], 10, max_bytes=1)
    assert [len(orjson.loads(value)) for _, value in messages] == [1, 1, 1]


def test_encode_batches_of_one_sends_single_objects(sample_events: list[Event]) -> None:
    messages = encode_batches(sample_events, 1)
    assert len(messages) == len(sample_events)
    for key, value in messages:
        event = orjson.loads(value)
        assert isinstance(event, dict)
        assert event["model_id"].encode() == key
        InferenceEvent.model_validate_json(value)


def test_encode_batches_rejects_empty_batches() -> None:
    assert encode_batches([], 10) == []
    with pytest.raises(ValueError, match="batch_size"):
        encode_batches([], 0)


@pytest.mark.parametrize("batch_size", [1, 7, 100])
def test_columnar_batches_decode_to_the_same_events_as_arrays(
    sample_events: list[Event], batch_size: int
) -> None:
    decoder = InferenceDecoder()
    columns = decoder.decode_step(
        [v for _, v in encode_batches(sample_events, batch_size, columnar=True)]
    )
    rows = decoder.decode_step([v for _, v in encode_batches(sample_events, batch_size)])
    assert columns.rejects == rows.rejects and not any(columns.rejects)
    assert columns.batch.request_id == rows.batch.request_id
    assert np.array_equal(columns.batch.columns.latency_ms, rows.batch.columns.latency_ms)
    assert set(columns.batch.columns.features) == set(rows.batch.columns.features)
    for name, feature in rows.batch.columns.features.items():
        got = columns.batch.columns.features[name]
        assert np.array_equal(got.numeric, feature.numeric, equal_nan=True), name
        assert got.categorical == feature.categorical, name


def test_columnar_batches_send_a_constant_once_and_null_where_an_event_has_no_value(
    sample_events: list[Event],
) -> None:
    for key, value in encode_batches(sample_events, 50, columnar=True):
        envelope = orjson.loads(value)
        assert envelope["schema_version"] == 1 and set(envelope) == {"schema_version", "columns"}
        columns = envelope["columns"]
        assert columns["model_id"] == key.decode()  # one model per message: a scalar
        n = len(columns["request_id"])
        for name, column in columns.items():
            if name in ("features", "stages_ms", "resources"):
                assert all(len(values) == n for values in column.values())
            elif isinstance(column, list):
                assert len(column) == n
        if "error_type" in columns and isinstance(columns["error_type"], list):
            assert None in columns["error_type"]  # only failed requests have one
