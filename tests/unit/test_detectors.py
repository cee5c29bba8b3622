import doctest
import json
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from streamwatch.core import detector_feed, detectors
from streamwatch.core.aggregate import FeatureStats, WindowAggregate
from streamwatch.core.baseline import BaselineProfile, Percentiles
from streamwatch.core.detector_feed import BaselineRanks, DetectorFeed
from streamwatch.core.detectors import (
    CHUNK_SIZE,
    DEFAULT_PARAMS,
    SIGNALS,
    DetectorBank,
    DetectorParams,
    DriftMonitor,
    SeriesKey,
    default_params,
    default_params_for,
)
from streamwatch.core.distribution import ValueSketch
from streamwatch.core.rules import DetectorRule
from streamwatch.exceptions import StateFormatError

BASE_MS = 1_700_000_000_000
Gen = Callable[[np.random.Generator, int], np.ndarray]


def ts(n: int) -> np.ndarray:
    return BASE_MS + np.arange(n, dtype=np.int64) * 10


def indices(params: DetectorParams, values: np.ndarray) -> list[int]:
    return [d.index for d in DriftMonitor(params).update_array(values, ts(values.size))]


def feature_stream() -> np.ndarray:
    r = np.random.default_rng(42)
    return np.concatenate([r.normal(0, 1, 3000), r.normal(1, 1, 3000), r.normal(-0.5, 1, 3000)])


def latency_stream() -> np.ndarray:
    r = np.random.default_rng(43)
    return np.concatenate([r.lognormal(3.9, 1, 5000), r.lognormal(3.9, 1, 5000) * 1.5])


def error_stream() -> np.ndarray:
    r = np.random.default_rng(44)
    return np.concatenate([r.random(20_000) < 0.01, r.random(10_000) < 0.05]).astype(float)


def correctness_stream() -> np.ndarray:
    r = np.random.default_rng(45)
    return np.concatenate([r.random(10_000) < 0.92, r.random(10_000) < 0.80]).astype(float)


HDDM = DetectorParams(kind="hddm_a", drift_confidence=1e-5, direction="down")
PER_VALUE = {"chunk_size": 1}


# -- detections on seeded streams with known change points --------------------------------------


def test_adwin_finds_both_feature_shifts_with_before_and_after_means() -> None:
    found = DriftMonitor(default_params("feature")).update_array(feature_stream(), ts(9000))
    assert [d.index for d in found] == [3071, 6079]  # changes at 3000 and 6000
    assert [d.event_ts_ms for d in found] == [BASE_MS + 30_710, BASE_MS + 60_790]
    assert [d.detector for d in found] == ["adwin", "adwin"]
    assert found[0].before_mean == pytest.approx(0.0, abs=0.05)
    assert found[0].after_mean == pytest.approx(1.0, abs=0.1)
    assert found[1].before_mean == pytest.approx(1.0, abs=0.05)
    assert found[1].after_mean < 0


def test_page_hinkley_finds_latency_rise_of_half() -> None:
    (found,) = DriftMonitor(default_params("latency")).update_array(latency_stream(), ts(10_000))
    assert found.index == 5311  # change at 5000
    assert found.detector == "page_hinkley"
    # Means are of the raw latency, not of its log (120 after the change).
    assert found.before_mean == pytest.approx(80.16, abs=0.01)
    assert found.after_mean == pytest.approx(129.17, abs=0.01)


def test_page_hinkley_finds_error_rate_rising_from_1_to_5_percent() -> None:
    assert indices(default_params("error"), error_stream()) == [20_671]  # change at 20 000


def test_correctness_drop_found_by_adwin_and_hddm_a() -> None:
    assert indices(default_params("correctness"), correctness_stream()) == [10_559]
    assert indices(HDDM, correctness_stream()) == [10_751]  # change at 10 000


def test_detections_come_at_the_last_value_of_a_chunk() -> None:
    for params, values in CASES.values():
        found = indices(params, values)
        assert found
        assert all((i + 1) % params.chunk_size == 0 for i in found)


@pytest.mark.parametrize(
    ("params", "stream", "per_value"),
    [
        (default_params("feature"), feature_stream, [3071, 6047]),
        (default_params("latency"), latency_stream, [5254]),
        (default_params("error"), error_stream, [20_632]),
        (default_params("correctness"), correctness_stream, [10_463]),
        (HDDM, correctness_stream, [10_639]),
    ],
)
def test_chunks_of_one_are_the_per_value_detectors(
    params: DetectorParams, stream: Callable[[], np.ndarray], per_value: list[int]
) -> None:
    # The detections of the per-value monitors (river fed every value) before chunks came.
    assert indices(params.model_copy(update=PER_VALUE), stream()) == per_value


STATIONARY: dict[str, Gen] = {
    "feature": lambda r, n: r.normal(0, 1, n),
    "score": lambda r, n: r.beta(2, 5, n),
    "latency": lambda r, n: r.lognormal(3.9, 1, n),
    "error": lambda r, n: (r.random(n) < 0.01).astype(float),
    "correctness": lambda r, n: (r.random(n) < 0.92).astype(float),
}


@pytest.mark.parametrize("signal", SIGNALS)
def test_defaults_stay_silent_on_a_stationary_stream(signal: str) -> None:
    values = STATIONARY[signal](np.random.default_rng(7), 200_000)
    assert indices(default_params(signal), values) == []


def test_hddm_a_stays_silent_on_stationary_correctness() -> None:
    values = STATIONARY["correctness"](np.random.default_rng(8), 100_000)
    assert indices(HDDM, values) == []


def test_nan_and_inf_are_skipped_but_keep_their_index() -> None:
    values = feature_stream()
    holed = np.insert(values, [10, 10, 5000, 7000], [np.nan, np.inf, np.nan, -np.inf])
    assert indices(default_params("feature"), holed) == [3073, 6082]
    latency = np.insert(latency_stream(), [3, 3, 3], [np.inf, -np.inf, np.nan])
    assert indices(default_params("latency"), latency) == [5314]  # without them: 5311


# -- what is reported -------------------------------------------------------------------------


def small_shift_stream() -> np.ndarray:
    r = np.random.default_rng(46)
    return np.concatenate([r.normal(0, 1, 20_000), r.normal(0.3, 1, 20_000)])


def test_min_shift_sigma_suppresses_small_changes() -> None:
    values = small_shift_stream()
    loose = DetectorParams(kind="adwin", delta=1e-5)
    (found,) = DriftMonitor(loose).update_array(values, ts(values.size))
    assert found.index == 20_479
    assert found.after_mean - found.before_mean == pytest.approx(0.3, abs=0.05)
    strict = DetectorParams(kind="adwin", delta=1e-5, min_shift_sigma=1.0)
    assert indices(strict, values) == []


def test_suppressed_detections_keep_the_reference_so_a_slow_drift_is_reported() -> None:
    r = np.random.default_rng(47)
    ramp = np.concatenate([np.zeros(5000), np.linspace(0, 2, 40_000), np.full(10_000, 2.0)])
    values = r.normal(0, 1, ramp.size) + ramp
    params = DetectorParams(kind="adwin", delta=1e-5, min_shift_sigma=1.0)
    found = DriftMonitor(params).update_array(values, ts(values.size))
    # Seven detections along the ramp are suppressed; the eighth has moved 1 sigma from where the
    # series was at the first of them (not from where it was at the last).
    assert [d.index for d in found] == [32_639]
    assert found[0].before_mean == pytest.approx(0.0, abs=0.05)
    assert found[0].after_mean == pytest.approx(1.27, abs=0.05)


def test_adwin_fed_at_c_speed_detects_exactly_as_through_rivers_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The direct feed into river's core equals feeding river's ``ADWIN.update`` one by one.

    Suppressed detections (river must reset on its next update) and reported ones, in arrays
    that split chunks, so every way in and out of the direct feed is taken.
    """
    r = np.random.default_rng(48)
    ramp = np.concatenate([np.zeros(5000), np.linspace(0, 2, 20_000), np.full(5000, -1.0)])
    values = r.normal(0, 1, ramp.size) + ramp
    params = DetectorParams(kind="adwin", delta=1e-5, min_shift_sigma=0.5)

    def run() -> list[tuple[int, float, float]]:
        monitor, found = DriftMonitor(params), []
        for part in np.array_split(np.arange(values.size), 37):
            found += monitor.update_array(values[part], ts(values.size)[part])
        return [(d.index, d.before_mean, d.after_mean) for d in found]

    assert detectors._DIRECT_ADWIN  # the river installed here has the internals it feeds
    direct = run()
    monkeypatch.setattr(detectors, "_feed_adwin", lambda _detector, _inputs: -1)
    assert direct == run()
    assert len(direct) >= 3


def test_direction_filters_the_reported_changes() -> None:
    rising = 1.0 - correctness_stream()  # correctness that improves from 0.08 to 0.20
    assert indices(default_params("correctness"), rising) == []
    both = DetectorParams(kind="adwin", delta=1e-5, direction="both")
    assert indices(both, rising) == [10_559]
    assert indices(DetectorParams(kind="adwin", delta=1e-5, direction="up"), rising) == [10_559]


def test_page_hinkley_down_finds_a_latency_drop() -> None:
    params = default_params("latency").model_copy(update={"direction": "down"})
    assert indices(params, latency_stream()[::-1].copy()) == [5311]  # change at 5000
    assert indices(params, latency_stream()) == []


# -- determinism and state --------------------------------------------------------------------


def slow_drift_stream() -> np.ndarray:
    r = np.random.default_rng(48)
    ramp = np.concatenate([np.zeros(5000), np.linspace(0, 2, 20_000), np.full(5000, 2.0)])
    return r.normal(0, 1, ramp.size) + ramp


def latency_soon_stream() -> np.ndarray:
    # Latency +50 % 1,000 values into a series: found only thanks to the warm-up.
    r = np.random.default_rng(60)
    return np.concatenate([r.lognormal(3.9, 1, 1000), r.lognormal(3.9, 1, 5000) * 1.5])


def error_soon_stream() -> np.ndarray:
    r = np.random.default_rng(52)
    return np.concatenate([r.random(4000) < 0.01, r.random(6000) < 0.05]).astype(float)


def step_after_step_stream(seed: int) -> np.ndarray:
    # +0.3 sigma, suppressed with min_shift_sigma=0.5, then +1 sigma 1,000 values later.
    r = np.random.default_rng(seed)
    return np.concatenate([r.normal(0, 1, 20_000), r.normal(0.3, 1, 1000), r.normal(1.3, 1, 5000)])


def latency_steps_stream() -> np.ndarray:
    # With min_shift_sigma=0.3: the warm-up's detection of the first step is suppressed, and so
    # is that of the second (located at the first), the third is reported.
    r = np.random.default_rng(55)
    return np.concatenate(
        [
            r.lognormal(3.9, 1, 2000),
            r.lognormal(3.9, 1, 2000) * 1.3,
            r.lognormal(3.9, 1, 4000) * 3,
            r.lognormal(3.9, 1, 4000) * 10,
        ]
    )


STEPS = DetectorParams(kind="adwin", delta=1e-5, min_shift_sigma=0.5)

CASES = {
    "adwin": (default_params("feature"), feature_stream()),
    "adwin_suppressing": (  # suppressed detections, a frozen "before" and a reported one
        DetectorParams(kind="adwin", delta=1e-5, min_shift_sigma=1.0),
        slow_drift_stream(),
    ),
    "page_hinkley": (default_params("latency"), latency_stream()),
    "page_hinkley_down": (
        default_params("latency").model_copy(update={"direction": "down"}),
        latency_stream()[::-1].copy(),
    ),
    "page_hinkley_error": (default_params("error"), error_stream()),
    "page_hinkley_warm_up": (default_params("latency"), latency_soon_stream()),
    "page_hinkley_error_warm_up": (default_params("error"), error_soon_stream()),
    "page_hinkley_suppressing": (  # the warm-up restarted after suppressed detections
        default_params("latency").model_copy(update={"min_shift_sigma": 0.3}),
        latency_steps_stream(),
    ),
    "adwin_warm_up_after_suppressed": (STEPS, step_after_step_stream(53)),
    "hddm_a": (HDDM, correctness_stream()),
    "odd_chunks": (default_params("score").model_copy(update={"chunk_size": 7}), feature_stream()),
}


@pytest.mark.parametrize("case", CASES)
def test_restored_monitor_continues_exactly_like_an_uninterrupted_one(case: str) -> None:
    params, values = CASES[case]
    times = ts(values.size)
    whole = DriftMonitor(params).update_array(values, times)
    assert whole
    cuts = sorted({int(c) for c in np.random.default_rng(1).integers(1, values.size, 12)})
    monitor = DriftMonitor(params)
    split: list = []
    for lo, hi in zip([0, *cuts], [*cuts, values.size], strict=True):
        split += monitor.update_array(values[lo:hi], times[lo:hi])
        monitor = DriftMonitor.from_state(params, monitor.to_state())
    assert split == whole  # indices, times and both means, bit for bit
    assert monitor.seen == values.size


@pytest.mark.parametrize("case", CASES)
def test_small_arrays_with_gaps_restored_every_time_give_the_same_detections(case: str) -> None:
    # Arrays shorter than a chunk, NaN and infinite values, a fold in the middle of a call:
    # however the values come, the chunks and so the detections are the same.
    params, clean = CASES[case]
    r = np.random.default_rng(2)
    values = clean.copy()
    values[r.integers(0, values.size, 40)] = np.nan
    values[r.integers(0, values.size, 10)] = np.inf
    times = ts(values.size)
    whole = DriftMonitor(params).update_array(values, times)
    assert whole
    sizes = r.integers(0, 3 * CHUNK_SIZE, values.size // CHUNK_SIZE)
    cuts = [int(c) for c in np.cumsum(sizes) if c < values.size]
    monitor = DriftMonitor(params)
    split: list = []
    for lo, hi in zip([0, *cuts], [*cuts, values.size], strict=True):
        split += monitor.update_array(values[lo:hi], times[lo:hi])
        monitor = DriftMonitor.from_state(params, monitor.to_state())
    assert split == whole


def test_state_is_compact_json_with_format_and_river_version() -> None:
    monitor = DriftMonitor(default_params("feature"))
    monitor.update_array(feature_stream(), ts(9000))
    state = monitor.to_state()
    # River's ADWIN (~2 KB), the one fed every value while warming up, and up to 1.3 KB of
    # chunks not folded yet.
    assert len(state) < 5000
    data = json.loads(state)
    assert data["fmt"] == 4
    assert data["river"] == "0.26.1"


def _rewrite(state: str, **changes: object) -> str:
    return json.dumps({**json.loads(state), **changes})


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: _rewrite(s, fmt=3), "detector state format 3 is not 4"),
        (lambda s: _rewrite(s, river="0.21.0"), "written with river 0.21.0, this is river 0.26.1"),
        (lambda s: _rewrite(s, blob="AAAA"), "corrupt"),
        (lambda s: _rewrite(s, blob="not base64!"), "corrupt"),
        (lambda s: s[:-5], "not readable"),
        (lambda s: "[]", "not readable"),
    ],
)
def test_state_from_another_version_or_corrupt_raises(
    mangle: Callable[[str], str], message: str
) -> None:
    state = DriftMonitor(default_params("score")).to_state()
    with pytest.raises(StateFormatError, match=message) as info:
        DriftMonitor.from_state(default_params("score"), mangle(state))
    assert "delete the stored detector state and restart the worker" in str(info.value)


def test_state_with_other_parameters_raises() -> None:
    state = DriftMonitor(default_params("feature")).to_state()
    other = default_params("feature").model_copy(update={"min_shift_sigma": 0.5})
    with pytest.raises(StateFormatError, match="other parameters"):
        DriftMonitor.from_state(other, state)


def test_state_holding_another_detector_raises() -> None:
    state = DriftMonitor(default_params("latency")).to_state()
    forged = _rewrite(state, params=default_params("feature").fingerprint())
    with pytest.raises(StateFormatError, match="holds a PageHinkley"):
        DriftMonitor.from_state(default_params("feature"), forged)
    monitor = DriftMonitor(default_params("latency"))
    monitor._warm_up = detectors.ADWIN()  # type: ignore[no-untyped-call]
    with pytest.raises(StateFormatError, match="holds a ADWIN"):
        DriftMonitor.from_state(default_params("latency"), monitor.to_state())


def test_page_hinkley_state_holds_its_warm_up_and_stays_small() -> None:
    monitor = DriftMonitor(default_params("latency"))
    values = latency_stream()[:3000]
    monitor.update_array(values, ts(values.size))
    state = monitor.to_state()
    restored = DriftMonitor.from_state(default_params("latency"), state)
    assert type(restored._warm_up).__name__ == "_PageHinkleyByValue"
    assert restored.to_state() == state
    restored._warm_up = None
    assert len(state) - len(restored.to_state()) < 200  # seven floats, not a river object


# -- parameters -------------------------------------------------------------------------------


def test_missing_fields_take_river_defaults() -> None:
    adwin = DetectorParams(kind="adwin")
    assert (adwin.delta, adwin.clock, adwin.min_window_length, adwin.grace_period) == (
        0.002,
        32,
        5,
        10,
    )
    assert adwin.direction == "both"
    assert adwin.threshold is None
    ph = DetectorParams(kind="page_hinkley")
    assert (ph.threshold, ph.delta, ph.alpha, ph.min_instances, ph.direction) == (
        50.0,
        0.005,
        0.9999,
        30,
        "up",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "ddm"}, "Input should be 'adwin', 'page_hinkley' or 'hddm_a'"),
        (
            {"kind": "adwin", "threshold": 5.0},
            "'threshold' does not apply to kind 'adwin'; its parameters are: delta, clock,"
            " min_window_length, grace_period, direction, transform, min_shift_sigma, chunk_size",
        ),
        ({"kind": "hddm_a", "delta": 0.1}, "'delta' does not apply to kind 'hddm_a'"),
        (
            {"kind": "page_hinkley", "direction": "both"},
            "direction 'both' is not supported by kind 'page_hinkley'; valid values are: up, down",
        ),
        ({"kind": "adwin", "direction": "sideways"}, "Input should be 'up', 'down' or 'both'"),
        ({"kind": "adwin", "transform": "log"}, "only supported by kind 'page_hinkley'"),
        ({"kind": "adwin", "transform": "sqrt"}, "Input should be 'none' or 'log'"),
        ({"kind": "adwin", "delta": 1.5}, "ADWIN delta must be strictly between 0 and 1"),
        ({"kind": "page_hinkley", "delta": -0.1}, "Page-Hinkley delta must be >= 0"),
        ({"kind": "page_hinkley", "alpha": 1.5}, "less than or equal to 1"),
        ({"kind": "page_hinkley", "min_instances": 1}, "greater than or equal to 2"),
        ({"kind": "adwin", "clock": 0}, "greater than or equal to 1"),
        ({"kind": "hddm_a", "drift_confidence": 1.0}, "less than 1"),
        ({"kind": "adwin", "min_shift_sigma": -1.0}, "greater than or equal to 0"),
        ({"kind": "adwin", "chunk_size": 0}, "greater than or equal to 1"),
        ({"kind": "page_hinkley", "chunk_size": 5000}, "less than or equal to 4096"),
        ({"kind": "adwin", "min_shift_sigma": float("inf")}, "finite number"),
        ({"kind": "adwin", "dleta": 0.1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_parameters_name_the_valid_values(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        DetectorParams(**fields)


def test_params_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        default_params("feature").delta = 0.1  # type: ignore[misc]


def test_default_params_cover_every_signal_and_reject_others() -> None:
    assert set(DEFAULT_PARAMS) == set(SIGNALS)
    assert default_params("latency").transform == "log"
    with pytest.raises(ValueError, match="valid signals are: feature, score, latency, error"):
        default_params("latency_ms")


def test_mismatched_arrays_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        DriftMonitor(default_params("feature")).update_array(np.zeros(3), ts(2))


# -- the bank ---------------------------------------------------------------------------------


def key(signal: str, name: str = "x", model: str = "m") -> SeriesKey:
    return (model, "1", signal, name)


def test_bank_counts_series_beyond_max_series_and_ignores_unwatched_ones() -> None:
    bank = DetectorBank(default_params_for, max_series=2)
    v, t = np.array([1.0, 2.0]), ts(2)
    bank.feed(key("feature", "a"), v, t)
    bank.feed(key("feature", "b"), v, t)
    assert bank.feed(key("feature", "c"), v, t) == []
    assert bank.feed(key("feature", "c"), v, t) == []
    assert bank.feed(key("unknown"), v, t) == []  # params_for says no: not an overflow
    bank.feed(key("feature", "a"), v, t)  # known series keep working
    assert (len(bank), bank.overflow) == (2, 2)
    assert key("feature", "c") not in bank
    assert bank.feed(key("feature", "bad\x1fname"), v, t) == []
    assert bank.bad_keys == 1


def test_bank_restore_continues_every_series() -> None:
    streams = {key("feature"): feature_stream(), key("latency"): latency_stream()}
    whole = DetectorBank(default_params_for)
    expected = {k: whole.feed(k, v, ts(v.size)) for k, v in streams.items()}

    bank = DetectorBank(default_params_for)
    got: dict[SeriesKey, list] = {k: [] for k in streams}
    for k, v in streams.items():
        got[k] += bank.feed(k, v[:4000], ts(v.size)[:4000])
    state = bank.to_state()
    assert set(state) == {"m\x1f1\x1ffeature\x1fx", "m\x1f1\x1flatency\x1fx"}
    restored = DetectorBank(default_params_for)
    restored.restore(state)
    for k, v in streams.items():
        got[k] += restored.feed(k, v[4000:], ts(v.size)[4000:])
    assert got == expected


def test_bank_restore_drops_unwatched_series_and_keeps_max_series() -> None:
    bank = DetectorBank(default_params_for)
    for name in ("a", "b", "c"):
        bank.feed(key("score", name), np.array([0.5]), ts(1))
    state = bank.to_state()
    state["m\x1f1\x1fgone\x1fx"] = state["m\x1f1\x1fscore\x1fa"]
    small = DetectorBank(default_params_for, max_series=2)
    small.restore(state)
    assert len(small) == 2
    assert key("score", "a") in small and key("score", "c") not in small


def test_bank_restore_rejects_a_malformed_key_and_changes_nothing() -> None:
    bank = DetectorBank(default_params_for)
    bank.feed(key("score"), np.array([0.5]), ts(1))
    good = bank.to_state()
    with pytest.raises(StateFormatError, match="does not have 4 parts"):
        bank.restore({**good, "m\x1fscore": next(iter(good.values()))})
    assert len(bank) == 1


def test_bank_restore_starts_afresh_a_series_it_cannot_continue() -> None:
    # A changed rules file (other parameters) or river upgrade must not stop the partition.
    bank = DetectorBank(default_params_for)
    bank.feed(key("score"), np.array([0.5]), ts(1))
    good = bank.to_state()
    bank.restore({**good, "m\x1f1\x1fscore\x1fy": "garbage"})
    assert len(bank) == 1 and bank.discarded == 1
    assert key("score") in bank


def test_bank_rejects_a_useless_cap() -> None:
    with pytest.raises(ValueError, match="max_series must be at least 1"):
        DetectorBank(default_params_for, max_series=0)


@pytest.mark.parametrize("module", [detectors, detector_feed])
def test_docstring_examples_hold(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


def test_bank_state_reserialises_only_fed_series() -> None:
    bank = DetectorBank(default_params_for)
    stamps = np.zeros(3, dtype=np.int64)
    bank.feed(("m", "1", "score", "score"), np.array([0.1, 0.2, 0.3]), stamps)
    bank.feed(("m", "1", "error", "error"), np.array([0.0, 0.0, 1.0]), stamps)
    first = bank.to_state()
    bank.feed(("m", "1", "score", "score"), np.array([0.9, 0.9, 0.9]), stamps)
    second = bank.to_state()
    score, error = (
        "\x1f".join(("m", "1", "score", "score")),
        "\x1f".join(("m", "1", "error", "error")),
    )
    assert second[error] is first[error]  # untouched: the cached string
    assert second[score] != first[score]
    fresh = DetectorBank(default_params_for)
    fresh.restore(second)
    assert fresh.to_state() == second


# -- baseline percentiles of the feature series -------------------------------------------------


def test_baseline_ranks_are_exactly_the_percentiles_of_the_baseline() -> None:
    r = np.random.default_rng(9)
    edge = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324, -5e-324]
    for _ in range(200):
        size = int(r.integers(1, 400))
        values = np.unique(r.normal(0, 1, size) * 10 ** r.uniform(-6, 6, size))
        if r.random() < 0.3:
            values = np.unique(np.append(values, 0.0))
        cdf = np.cumsum(r.random(values.size))
        table = Percentiles(values, cdf / cdf[-1])
        x = np.concatenate(
            [
                r.choice(values, 200),
                np.nextafter(r.choice(values, 50), np.inf),
                np.nextafter(r.choice(values, 50), -np.inf),
                r.normal(0, 1, 200) * 10 ** r.uniform(-8, 8, 200),
                edge,
            ]
        )
        expected = table.percentiles(x)
        assert np.array_equal(BaselineRanks(table).percentiles(x), expected, equal_nan=True)


def test_baseline_ranks_fall_back_where_a_guide_would_not_do() -> None:
    one = Percentiles(np.array([3.0]), np.array([1.0]))
    repeated = Percentiles(np.array([1.0, 1.0, 2.0]), np.array([0.2, 0.5, 1.0]))
    extreme = Percentiles(np.array([-1e300, 1e-300, 1e300]), np.array([0.2, 0.5, 1.0]))
    x = np.array([0.5, 1.0, 3.0, np.nan, 1e-300])
    for table in (one, repeated, extreme):
        assert np.array_equal(
            BaselineRanks(table).percentiles(x), table.percentiles(x), equal_nan=True
        )


def test_feed_inference_watches_features_on_baseline_percentiles_and_reports_their_units() -> None:
    r = np.random.default_rng(10)
    sketch = ValueSketch()
    sketch.add_array(r.lognormal(0, 1, 50_000))
    baseline = BaselineProfile(
        "m", "1", WindowAggregate(features={"amount": FeatureStats(sketch=sketch)})
    )
    rules = (DetectorRule(name="feature_shift", signal="feature"),)
    feed = DetectorFeed(rules, alert_window_ms=60_000, max_series=100)
    amounts = np.concatenate([r.lognormal(0, 1, 20_000), r.lognormal(0, 1, 5_000) * 2.3])
    stamps = ts(amounts.size)
    alerts = []
    for lo in range(0, amounts.size, 1000):
        rows = slice(lo, lo + 1000)
        columns = SimpleNamespace(
            event_ts_ms=stamps[rows],
            score=np.full(1000, np.nan),
            latency_ms=np.full(1000, 50.0),
            is_error=np.zeros(1000, dtype=bool),
            features={"amount": SimpleNamespace(numeric=amounts[rows])},
        )
        alerts += feed.feed_inference(
            "m",
            "1",
            columns,
            np.arange(1000, dtype=np.int64),
            baseline,
            0,  # type: ignore[arg-type]
        )
    (alert,) = alerts
    assert alert.detection is not None
    assert alert.detection.series == "amount"
    assert 20_000 <= (alert.detection.changed_at_ms - BASE_MS) // 10 < 20_300
    # The mean percentiles, mapped back through the baseline: the median before the change.
    assert alert.detection.before_mean == pytest.approx(1.0, rel=0.05)
    assert alert.detection.after_mean > 1.2
    assert feed.drain_detections() == 1
    assert set(feed.drain_monitor_changes()) == {"m\x1f1\x1ffeature\x1famount"}


def test_a_change_soon_after_the_start_is_found_about_as_fast_as_fed_every_value() -> None:
    # A short window fed chunk sums is slow to cut (the change dominates its variance): the
    # warm-up ADWIN, fed every value, finds it.
    r = np.random.default_rng(49)
    values = np.concatenate([r.normal(0, 1, 300), r.normal(2, 1, 3000)])
    params = default_params("feature")
    (per_value,) = indices(params.model_copy(update=PER_VALUE), values)
    (chunked,) = indices(params, values)
    assert 300 < per_value <= chunked < per_value + CHUNK_SIZE
    # Once the warm-up is over, a change is found by the chunks alone.
    late = np.concatenate([r.normal(0, 1, 20_000), r.normal(1, 1, 3000)])
    (found,) = indices(params, late)
    assert 20_000 < found < 20_300


def chunk_end(index: int) -> int:
    """The last value of the chunk of 64 holding ``index``."""
    return (index // CHUNK_SIZE + 1) * CHUNK_SIZE - 1


@pytest.mark.parametrize(
    ("signal", "stream"), [("latency", latency_soon_stream), ("error", error_soon_stream)]
)
def test_page_hinkley_warm_up_finds_what_every_value_finds_at_the_end_of_its_chunk(
    signal: str, stream: Callable[[], np.ndarray]
) -> None:
    # Soon after the start, standardised chunks lose changes that every value finds: the warm-up
    # Page-Hinkley test, fed every value, reports them at the end of their chunk.
    params = default_params(signal)
    (per_value,) = indices(params.model_copy(update=PER_VALUE), stream())
    assert indices(params, stream()) == [chunk_end(per_value)]


def test_page_hinkley_warm_up_adds_no_false_alarm_early_on() -> None:
    r = np.random.default_rng(11)
    for signal in ("latency", "error"):
        for _ in range(10):
            assert indices(default_params(signal), STATIONARY[signal](r, 10_000)) == []


def test_a_change_soon_after_a_suppressed_detection_is_found_about_as_fast_as_every_value() -> None:
    # The suppressed detection of the small step restarts ADWIN on a short window: the warm-up,
    # restarted with it, finds the big step (without it: at 22,847).
    values = step_after_step_stream(63)
    (per_value,) = indices(STEPS.model_copy(update=PER_VALUE), values)
    (chunked,) = indices(STEPS, values)
    assert 21_000 < per_value <= chunked < per_value + CHUNK_SIZE
