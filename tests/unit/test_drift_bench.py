"""The drift benchmark's own machinery: streams, the window test and the percentile path."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import stats

BENCH = Path(__file__).resolve().parents[2] / "bench" / "drift.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_drift_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_heavy_tailed_changes_move_the_mean_by_sigmas_and_widen_at_the_same_mean(
    bench: ModuleType,
) -> None:
    lognormal = stats.lognorm(s=1.0)
    assert bench.LOGNORMAL.mean == pytest.approx(lognormal.mean())
    assert bench.LOGNORMAL.sd == pytest.approx(lognormal.std())
    wide = stats.lognorm(
        s=np.sqrt(bench._LOGN_WIDE_S2), scale=np.exp(0.5 - bench._LOGN_WIDE_S2 / 2)
    )
    assert wide.mean() == pytest.approx(lognormal.mean())
    assert wide.std() == pytest.approx(2 * lognormal.std())

    pareto = stats.pareto(b=2.5)
    assert bench.PARETO.mean == pytest.approx(pareto.mean())
    assert bench.PARETO.sd == pytest.approx(pareto.std())
    wide = stats.pareto(b=bench._PARETO_WIDE_A, scale=bench._PARETO_WIDE_MIN)
    assert wide.mean() == pytest.approx(pareto.mean())
    assert wide.std() == pytest.approx(2 * pareto.std())

    # A scaled draw: the mean moves by k standard deviations (checked on the median, robust).
    r = np.random.default_rng(0)
    for family in (bench.LOGNORMAL, bench.PARETO):
        factor = 1 + family.sd / family.mean
        moved = family.shifted(1.0)(r, 200_000)
        assert np.median(moved) == pytest.approx(np.median(family.draw(r, 200_000)) * factor, 0.02)
    assert bench.GAUSS.shifted(1.0)(r, 200_000).mean() == pytest.approx(1.0, abs=0.01)


def test_window_feeder_flags_windows_at_their_last_index_whatever_the_chunks(
    bench: ModuleType,
) -> None:
    baseline = bench.baseline_sketch(bench.GAUSS.draw, 1)
    r = np.random.default_rng(5)
    values = np.concatenate([r.normal(0, 1, 10_000), r.normal(2, 1, 3_000)])
    ts = np.arange(values.size, dtype=np.int64)
    run = bench.Run(1, change_at=10_000, phase=0.5)

    whole = bench.WindowFeeder([baseline], 1_000, run)
    found = whole.feed(values, ts)
    chunked = bench.WindowFeeder([baseline], 1_000, run)
    pieces = [
        chunked.feed(values[lo : lo + 333], ts[lo : lo + 333]) for lo in range(0, 13_000, 333)
    ]

    assert whole.first == 500  # the change at 10,000 falls half-way into [9,500, 10,500)
    assert [i for piece in pieces for i in piece] == found
    assert found[:1] == [10_499]
    assert all((i - 499) % 1_000 == 0 for i in found)
    assert whole.window_number(10_000) == whole.window_number(10_499) == 10
    assert whole.window_number(499) == 0


def test_window_feeder_names_the_shifted_feature_among_eight(bench: ModuleType) -> None:
    r = np.random.default_rng(6)
    values = np.concatenate(
        [
            bench._multi_values(r, 12_000),
            bench._multi_values(r, 12_000, shifted=bench.MULTI_SHIFTED),
        ]
    )
    feeder = bench._multi_feeder(3, bench.Run(3, change_at=12_000, phase=0.0))
    feeder.feed(values, np.arange(len(values), dtype=np.int64))
    assert feeder.judged == 4
    assert feeder.flags == [(17_999, ["f3"]), (23_999, ["f3"])]


def test_percentile_feeder_is_the_worker_path(bench: ModuleType) -> None:
    baseline = bench.baseline_sketch(bench.LOGNORMAL.draw, 2)
    feeder = bench.PercentileFeeder(baseline)
    r = np.random.default_rng(7)
    stationary = feeder.table.percentiles(bench.LOGNORMAL.draw(r, 100_000))
    assert stationary.min() >= 0.0 and stationary.max() <= 1.0
    assert stationary.mean() == pytest.approx(0.5, abs=0.01)

    values = np.concatenate(
        [bench.LOGNORMAL.draw(r, 5_000), bench.LOGNORMAL.shifted(1.0)(r, 2_000)]
    )
    found, _ = bench.feed_all(feeder, values)
    assert found and 5_000 <= found[0] < 5_500


def test_claims_read_the_rows(bench: ModuleType) -> None:
    name = bench.GAUSS.name
    rows = [
        bench.Row(bench.PERCENTILE_ADWIN, name, "stationary", 0.0, 1e6, alarms=0, run_values=10),
        bench.Row(bench.PERCENTILE_ADWIN, name, "mean +1σ", delays=[100, 200]),
        bench.Row(bench.WINDOW_1M, name, "stationary", 1.0, 1e6, alarms=1, run_values=10),
        bench.Row(bench.WINDOW_1M, name, "mean +1σ", delays=[5_000, 7_000], windows=[1, 2]),
    ]
    multi = bench.MultiResult(rows=[rows[0]], judged_windows=4, right_first=1, seeds=1)
    text = bench.claim_lines(rows, multi, 10, 3)
    assert f"PASS  {bench.PERCENTILE_ADWIN} | {name}: 2/2 seeds within 6,000 events" in text
    assert f"FAIL  {bench.WINDOW_1M} | {name}: 1/2 seeds within 6,000 events" in text
    assert f"FAIL  {bench.WINDOW_1M} | {name}: 1 alarms" in text
    assert text.endswith("— PASS")
