import doctest
import json
from collections.abc import Callable

import numpy as np
import pytest
from pydantic import ValidationError

from streamwatch.core import detectors
from streamwatch.core.detectors import (
    DEFAULT_PARAMS,
    SIGNALS,
    DetectorBank,
    DetectorParams,
    DriftMonitor,
    SeriesKey,
    default_params,
    default_params_for,
)
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


# -- detections on seeded streams with known change points --------------------------------------


def test_adwin_finds_both_feature_shifts_with_before_and_after_means() -> None:
    found = DriftMonitor(default_params("feature")).update_array(feature_stream(), ts(9000))
    assert [d.index for d in found] == [3071, 6047]  # changes at 3000 and 6000
    assert [d.event_ts_ms for d in found] == [BASE_MS + 30_710, BASE_MS + 60_470]
    assert [d.detector for d in found] == ["adwin", "adwin"]
    assert found[0].before_mean == pytest.approx(0.0, abs=0.05)
    assert found[0].after_mean == pytest.approx(1.0, abs=0.1)
    assert found[1].before_mean == pytest.approx(1.0, abs=0.05)
    assert found[1].after_mean < 0


def test_page_hinkley_finds_latency_rise_of_half() -> None:
    (found,) = DriftMonitor(default_params("latency")).update_array(latency_stream(), ts(10_000))
    assert found.index == 5254  # change at 5000
    assert found.detector == "page_hinkley"
    # Means are of the raw latency, not of its log.
    assert found.before_mean == pytest.approx(80.13, abs=0.01)
    assert found.after_mean == pytest.approx(131.30, abs=0.01)


def test_page_hinkley_finds_error_rate_rising_from_1_to_5_percent() -> None:
    assert indices(default_params("error"), error_stream()) == [20_632]  # change at 20 000


def test_correctness_drop_found_by_adwin_and_hddm_a() -> None:
    assert indices(default_params("correctness"), correctness_stream()) == [10_463]
    assert indices(HDDM, correctness_stream()) == [10_639]  # change at 10 000


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
    holed = np.insert(values, [10, 10, 5000], [np.nan, np.inf, np.nan])
    assert indices(default_params("feature"), holed) == [3073, 6050]


# -- what is reported -------------------------------------------------------------------------


def small_shift_stream() -> np.ndarray:
    r = np.random.default_rng(46)
    return np.concatenate([r.normal(0, 1, 20_000), r.normal(0.3, 1, 20_000)])


def test_min_shift_sigma_suppresses_small_changes() -> None:
    values = small_shift_stream()
    loose = DetectorParams(kind="adwin", delta=1e-5)
    (found,) = DriftMonitor(loose).update_array(values, ts(values.size))
    assert found.index == 20_383
    assert found.after_mean - found.before_mean == pytest.approx(0.3, abs=0.05)
    strict = DetectorParams(kind="adwin", delta=1e-5, min_shift_sigma=1.0)
    assert indices(strict, values) == []


def test_suppressed_detections_keep_the_reference_so_a_slow_drift_is_reported() -> None:
    r = np.random.default_rng(47)
    ramp = np.concatenate([np.zeros(5000), np.linspace(0, 2, 40_000), np.full(10_000, 2.0)])
    values = r.normal(0, 1, ramp.size) + ramp
    params = DetectorParams(kind="adwin", delta=1e-5, min_shift_sigma=1.0)
    found = DriftMonitor(params).update_array(values, ts(values.size))
    # Four detections along the ramp are suppressed; the fifth has moved 1 sigma from where the
    # series was at the first of them (not from where it was at the last).
    assert [d.index for d in found] == [31_519]
    assert found[0].before_mean == pytest.approx(0.0, abs=0.05)
    assert found[0].after_mean == pytest.approx(1.2, abs=0.05)


def test_direction_filters_the_reported_changes() -> None:
    rising = 1.0 - correctness_stream()  # correctness that improves from 0.08 to 0.20
    assert indices(default_params("correctness"), rising) == []
    both = DetectorParams(kind="adwin", delta=1e-5, direction="both")
    assert indices(both, rising) == [10_463]
    assert indices(DetectorParams(kind="adwin", delta=1e-5, direction="up"), rising) == [10_463]


def test_page_hinkley_down_finds_a_latency_drop() -> None:
    params = default_params("latency").model_copy(update={"direction": "down"})
    assert indices(params, latency_stream()[::-1].copy()) == [5268]  # change at 5000
    assert indices(params, latency_stream()) == []


# -- determinism and state --------------------------------------------------------------------

CASES = {
    "adwin": (default_params("feature"), feature_stream()),
    "page_hinkley": (default_params("latency"), latency_stream()),
    "page_hinkley_error": (default_params("error"), error_stream()),
    "hddm_a": (HDDM, correctness_stream()),
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


def test_state_is_compact_json_with_format_and_river_version() -> None:
    monitor = DriftMonitor(default_params("feature"))
    monitor.update_array(feature_stream(), ts(9000))
    state = monitor.to_state()
    assert len(state) < 3000
    data = json.loads(state)
    assert data["fmt"] == 2
    assert data["river"] == "0.26.1"


def _rewrite(state: str, **changes: object) -> str:
    return json.dumps({**json.loads(state), **changes})


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: _rewrite(s, fmt=1), "detector state format 1 is not 2"),
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
            " min_window_length, grace_period, direction, transform, min_shift_sigma",
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


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(detectors)
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
