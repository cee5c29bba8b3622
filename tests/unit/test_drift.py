import json
import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from streamwatch.core.distribution import ValueSketch
from streamwatch.core.drift import (
    PSI_EPS,
    DriftPolicy,
    FeatureDrift,
    benjamini_hochberg,
    bin_counts,
    chi_square,
    compare_categorical,
    compare_numeric,
    compare_numerics,
    decide,
    js_distance,
    ks_pvalue,
    ks_statistic,
    numeric_reference,
    psi,
    quantile_edges,
    unseen_share,
    wasserstein,
)

Sampler = Callable[[np.random.Generator, int, float], np.ndarray]

# Our statistics read ValueSketch representatives (each within 2 % of its values), so they differ
# slightly from scipy's on the raw samples. Tolerances, each about 1.5-2x the worst case seen over
# these distributions and seeds:
#   KS: the sketch evaluates the raw CDFs at bucket bounds, so D_sketch <= D_raw (p-values are
#       conservative) and D_raw - D_sketch is at most a bucket's mass difference: 0.01 (seen 0.006).
#   Wasserstein: every value moves by at most 2 % of itself, so |W_sketch - W_raw| <=
#       0.02 * (E|X| + E|Y|) is a guarantee, not an estimate (seen at most 15 % of that bound).
#   PSI / JS on the same bins: values within a bucket of an edge may fall on the other side:
#       PSI within 0.02 absolute (seen 0.016), JS within 0.01 (seen 0.009).
KS_TOLERANCE = 0.01
PSI_TOLERANCE = 0.02
JS_TOLERANCE = 0.01
RELATIVE_ACCURACY = 0.02

# Samplers(rng, size, shift): shift 0 is the baseline distribution.
DISTRIBUTIONS: dict[str, Sampler] = {
    "normal": lambda r, n, s: r.normal(s, 1.0, n),
    "lognormal_amounts_in_thousands": lambda r, n, s: 1000.0 * r.lognormal(s, 1.0, n),
    "mixed_sign_heavy_tails": lambda r, n, s: 3.0 * r.standard_t(4, n) + 0.5 + 3.0 * s,
    "ties_on_a_half_grid": lambda r, n, s: np.round(2.0 * r.normal(s, 1.0, n)) / 2.0,
    "zero_inflated": lambda r, n, s: np.where(r.random(n) < 0.4, 0.0, r.exponential(1.0 + s, n)),
    "probabilities": lambda r, n, s: r.beta(2.0, 5.0, n) ** (1.0 - 0.3 * s),
    "poisson_counts": lambda r, n, s: r.poisson(3.0 + 2.0 * s, n).astype(np.float64),
}


def sketch_of(values: np.ndarray, relative_accuracy: float = RELATIVE_ACCURACY) -> ValueSketch:
    sketch = ValueSketch(relative_accuracy)
    sketch.add_array(np.asarray(values, dtype=np.float64))
    return sketch


def raw_bin_counts(baseline: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Raw values binned like bin_counts, cutting at the baseline value each sketch edge stands for.

    A sketch edge is a bucket representative, not a data value; cutting raw data at the nearest
    baseline value keeps atoms (ties, integers, zeros) on the same side as the sketch puts them.
    """
    support = np.unique(baseline)
    raw_edges = support[np.abs(support[:, None] - edges[None, :]).argmin(axis=0)]
    return np.bincount(np.searchsorted(raw_edges, values, side="left"), minlength=edges.size + 1)


def psi_by_formula(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPS) -> float:
    """PSI = KL(a || e) + KL(e || a) on eps-substituted proportions, via scipy."""
    e = expected / expected.sum()
    a = actual / actual.sum()
    e, a = np.where(e == 0, eps, e), np.where(a == 0, eps, a)
    return float(special.rel_entr(a, e).sum() + special.rel_entr(e, a).sum())


# --- cross-check against scipy on the same raw samples ------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_numeric_statistics_match_scipy_on_the_raw_samples(name: str, shift: float) -> None:
    for seed in range(3):
        rng = np.random.default_rng([seed, int(10 * shift)])
        ref_raw = DISTRIBUTIONS[name](rng, 5000, 0.0)
        cur_raw = DISTRIBUTIONS[name](rng, 2000, shift)
        ref, cur = sketch_of(ref_raw), sketch_of(cur_raw)

        d, d_raw = ks_statistic(ref, cur), stats.ks_2samp(ref_raw, cur_raw).statistic
        assert d <= d_raw + 1e-12
        assert d_raw - d <= KS_TOLERANCE
        p_raw = stats.ks_2samp(ref_raw, cur_raw, method="asymp").pvalue
        assert ks_pvalue(d_raw, ref_raw.size, cur_raw.size) == pytest.approx(p_raw, rel=1e-9)
        assert p_raw <= ks_pvalue(d, ref.count, cur.count) + 1e-12  # conservative

        w, w_raw = wasserstein(ref, cur), stats.wasserstein_distance(ref_raw, cur_raw)
        bound = RELATIVE_ACCURACY * (np.abs(ref_raw).mean() + np.abs(cur_raw).mean())
        assert abs(w - w_raw) <= bound
        (rv, rc), (cv, cc) = ref.support(), cur.support()
        assert w == pytest.approx(stats.wasserstein_distance(rv, cv, rc, cc), rel=1e-9, abs=1e-12)

        edges = quantile_edges(ref)
        expected, actual = bin_counts(ref, edges), bin_counts(cur, edges)
        raw_expected = raw_bin_counts(ref_raw, ref_raw, edges)
        raw_actual = raw_bin_counts(ref_raw, cur_raw, edges)
        assert psi(expected, actual) == pytest.approx(psi_by_formula(expected, actual), rel=1e-12)
        assert abs(psi(expected, actual) - psi(raw_expected, raw_actual)) <= PSI_TOLERANCE
        scipy_js = jensenshannon(expected / expected.sum(), actual / actual.sum(), base=2)
        assert js_distance(expected, actual) == pytest.approx(scipy_js, abs=1e-12)
        assert abs(js_distance(expected, actual) - js_distance(raw_expected, raw_actual)) <= (
            JS_TOLERANCE
        )


def test_psi_equals_symmetric_kl_by_scipy_entropy() -> None:
    expected = np.array([10, 0, 30, 60])
    actual = np.array([20, 5, 0, 75])
    e = np.array([0.1, PSI_EPS, 0.3, 0.6])
    a = np.array([0.2, 0.05, PSI_EPS, 0.75])
    # stats.entropy renormalises; PSI deliberately does not, so compare on rel_entr sums instead
    # where eps was substituted, and on entropy where nothing was.
    assert psi(expected, actual) == pytest.approx(
        float(special.rel_entr(a, e).sum() + special.rel_entr(e, a).sum()), rel=1e-12
    )
    full_e, full_a = np.array([10, 20, 30, 40]), np.array([25, 25, 25, 25])
    assert psi(full_e, full_a) == pytest.approx(
        stats.entropy(full_a, full_e) + stats.entropy(full_e, full_a), rel=1e-12
    )


def test_chi_square_matches_scipy_chisquare_with_the_same_expected_counts() -> None:
    baseline = {"a": 5000, "b": 3000, "c": 1500, "d": 500}
    window = {"a": 480, "b": 330, "c": 140, "d": 50}
    expected = np.array([5000, 3000, 1500, 500]) / 10_000 * 1000
    observed = np.array([480, 330, 140, 50])
    result = stats.chisquare(observed, expected)

    for min_expected in (5.0, 0.0):  # every cell expects >= 50: nothing to group
        statistic, p_value = chi_square(baseline, window, min_expected=min_expected)
        assert statistic == pytest.approx(result.statistic, rel=1e-12)
        assert p_value == pytest.approx(result.pvalue, rel=1e-12)


def test_chi_square_groups_sparse_cells_and_gives_unseen_categories_a_pseudo_count() -> None:
    baseline = {"a": 9000, "b": 900, "c": 60, "d": 40}  # "e" never seen
    window = {"a": 880, "b": 100, "c": 10, "d": 9, "e": 1}
    b = np.array([9000, 900, 60, 40, 0.5])
    expected = b / b.sum() * 1000  # a, b, c, d, e: 899.955, 89.996, 5.9997, 3.9998, 0.049998
    observed = np.array([880, 100, 10, 9, 1])

    plain = stats.chisquare(observed, expected)
    assert chi_square(baseline, window, min_expected=0.0) == pytest.approx(
        (plain.statistic, plain.pvalue), rel=1e-12
    )
    # e (0.05) and d (4.0) expect fewer than 5: grouped smallest first, they still expect only
    # 4.05, and no sparse cell is left, so the remainder joins the smallest other cell, c.
    grouped = stats.chisquare(
        [880, 100, 10 + 9 + 1], [expected[0], expected[1], expected[2:].sum()]
    )
    assert chi_square(baseline, window) == pytest.approx(
        (grouped.statistic, grouped.pvalue), rel=1e-12
    )


def test_a_lone_unseen_value_does_not_collapse_the_chi_square_p_value_but_a_new_category_does() -> (
    None
):
    rng = np.random.default_rng(7)
    categories = ["a", "b", "c", "d"]
    probs = [0.4, 0.3, 0.2, 0.1]
    baseline = Counter(rng.choice(categories, 50_000, p=probs).tolist())
    window = Counter(rng.choice(categories, 999, p=probs).tolist())

    one_unseen = window + Counter({"brand-new": 1})
    _, p_value = chi_square(baseline, one_unseen)
    assert p_value > 0.05
    assert unseen_share(baseline, one_unseen) == pytest.approx(1 / 1000)
    assert chi_square(baseline, one_unseen, min_expected=0.0)[1] < 1e-10  # what grouping avoids

    new_category = window + Counter({"brand-new": 100})
    _, p_value = chi_square(baseline, new_category)
    assert p_value < 1e-20
    assert unseen_share(baseline, new_category) == pytest.approx(100 / 1099)


# --- binning --------------------------------------------------------------------------------------


def test_quantile_edges_are_baseline_deciles_on_continuous_data() -> None:
    values = np.random.default_rng(3).normal(size=20_000)
    sketch = sketch_of(values)

    edges = quantile_edges(sketch)

    assert edges.size == 9
    np.testing.assert_allclose(edges, np.quantile(values, np.arange(1, 10) / 10), atol=0.05)
    counts = bin_counts(sketch, edges)
    np.testing.assert_allclose(counts / counts.sum(), 0.1, atol=0.015)


def test_quantile_edges_deduplicate_atoms_and_leave_no_baseline_bin_empty() -> None:
    # 70 % zeros, then a few values; the top value is an atom that would leave an empty top bin.
    values = np.array([0.0] * 70 + [1.0] * 10 + [2.0] * 10 + [5.0] * 10)
    sketch = sketch_of(values)

    edges = quantile_edges(sketch)

    np.testing.assert_allclose(edges, [0.0, 1.0, 2.0], atol=0.03)  # 5.0 is the maximum: dropped
    assert bin_counts(sketch, edges).tolist() == [70, 10, 10, 10]


def test_a_constant_baseline_has_a_single_bin() -> None:
    sketch = sketch_of(np.full(500, 3.0))
    edges = quantile_edges(sketch)
    assert edges.size == 0
    assert bin_counts(sketch, edges).tolist() == [500]
    shifted = sketch_of(np.full(500, 4.0))
    assert psi(bin_counts(sketch, edges), bin_counts(shifted, edges)) == 0.0  # bins see nothing
    assert ks_statistic(sketch, shifted) == 1.0  # ... but KS does


def test_bins_are_closed_on_the_right() -> None:
    sketch = sketch_of(np.array([-1.0, 0.0, 1.0, 2.0, 3.0]))
    values, _ = sketch.support()
    edges = values[[1, 3]]  # the representatives of 0.0 and 2.0
    assert bin_counts(sketch, edges).tolist() == [2, 2, 1]  # (-inf, 0], (0, 2], (2, inf)


@pytest.mark.parametrize("edges", [[1.0, 1.0], [2.0, 1.0], [0.0, math.nan], [[0.0]]])
def test_bin_counts_rejects_edges_that_are_not_strictly_increasing(edges: list[float]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        bin_counts(sketch_of(np.array([1.0])), np.array(edges))


def test_statistics_reject_empty_or_misaligned_input() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        quantile_edges(sketch_of(np.array([1.0])), n_bins=1)
    with pytest.raises(ValueError, match="empty"):
        quantile_edges(ValueSketch())
    with pytest.raises(ValueError, match="aligned"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="at least one value"):
        js_distance([0, 0], [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        psi([1, -1], [1, 1])
    with pytest.raises(ValueError, match="empty"):
        ks_statistic(ValueSketch(), sketch_of(np.array([1.0])))
    with pytest.raises(ValueError, match="at least one value"):
        chi_square({"a": 1}, {})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, math.nan])


# --- properties -----------------------------------------------------------------------------------

counts_pairs = st.integers(min_value=1, max_value=12).flatmap(
    lambda k: st.tuples(
        st.lists(st.integers(0, 1000), min_size=k, max_size=k).filter(any),
        st.lists(st.integers(0, 1000), min_size=k, max_size=k).filter(any),
    )
)
finite_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(pair=counts_pairs)
def test_psi_is_non_negative_symmetric_and_zero_on_equal_proportions(
    pair: tuple[list[int], list[int]],
) -> None:
    expected, actual = pair
    assert psi(expected, actual) >= 0.0
    assert psi(expected, actual) == pytest.approx(psi(actual, expected), rel=1e-12, abs=1e-15)
    assert psi(expected, expected) == 0.0
    assert psi(expected, [3 * c for c in expected]) == pytest.approx(0.0, abs=1e-12)


@given(pair=counts_pairs)
def test_js_distance_is_a_symmetric_distance_in_the_unit_interval(
    pair: tuple[list[int], list[int]],
) -> None:
    expected, actual = pair
    d = js_distance(expected, actual)
    assert 0.0 <= d <= 1.0
    assert d == pytest.approx(js_distance(actual, expected), abs=1e-12)
    assert js_distance(expected, expected) == 0.0
    e, a = np.array(expected, dtype=float), np.array(actual, dtype=float)
    assert d == pytest.approx(jensenshannon(e / e.sum(), a / a.sum(), base=2), abs=1e-9)


@given(p_values=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=40))
def test_benjamini_hochberg_is_monotone_at_least_the_raw_p_and_at_most_one(
    p_values: list[float],
) -> None:
    adjusted = benjamini_hochberg(p_values)

    assert len(adjusted) == len(p_values)
    for raw, adj in zip(p_values, adjusted, strict=True):
        assert raw <= adj <= 1.0
    by_raw = [adj for _, adj in sorted(zip(p_values, adjusted, strict=True))]
    assert by_raw == sorted(by_raw)


@settings(deadline=None)
@given(values=st.lists(finite_values, min_size=1, max_size=300))
def test_identical_samples_show_no_drift(values: list[float]) -> None:
    baseline, window = sketch_of(np.array(values)), sketch_of(np.array(values))
    edges = quantile_edges(baseline)

    finding = compare_numeric("x", baseline, window, edges, DriftPolicy(min_samples=1))

    assert finding.ks == 0.0
    assert finding.wasserstein == 0.0
    assert finding.psi == 0.0
    assert finding.js == 0.0
    assert finding.p_value == 1.0
    assert not finding.drifted


@given(counts=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 500), min_size=1))
def test_identical_categories_show_no_drift(counts: dict[str, int]) -> None:
    finding = compare_categorical("c", counts, dict(counts), DriftPolicy(min_samples=1))

    assert finding.chi2 == pytest.approx(0.0, abs=1e-9)
    assert finding.p_value == pytest.approx(1.0)
    assert finding.psi == 0.0
    assert finding.js == 0.0
    assert finding.unseen_share == 0.0
    assert not finding.drifted


@settings(deadline=None)
@given(values=st.lists(finite_values, min_size=1, max_size=300), n_bins=st.integers(2, 20))
def test_every_baseline_bin_holds_baseline_values(values: list[float], n_bins: int) -> None:
    sketch = sketch_of(np.array(values))
    counts = bin_counts(sketch, quantile_edges(sketch, n_bins))
    assert 1 <= counts.size <= n_bins
    assert (counts > 0).all()
    assert counts.sum() == len(values)


# --- decisions --------------------------------------------------------------------------------------

POLICY = DriftPolicy()
BASELINE_SIZE = 20_000


def numeric_baselines() -> dict[str, tuple[ValueSketch, np.ndarray, Sampler]]:
    rng = np.random.default_rng(2024)
    result = {}
    for name, sampler in DISTRIBUTIONS.items():
        baseline = sketch_of(sampler(rng, BASELINE_SIZE, 0.0))
        result[name] = (baseline, quantile_edges(baseline, POLICY.n_bins), sampler)
    return result


CATEGORIES = {"card": 0.55, "paypal": 0.25, "wire": 0.12, "crypto": 0.05, "cash": 0.03}


def categorical_baseline(rng: np.random.Generator) -> Counter[str]:
    return Counter(
        rng.choice(list(CATEGORIES), BASELINE_SIZE, p=list(CATEGORIES.values())).tolist()
    )


def test_stationary_windows_are_never_flagged() -> None:
    baselines = numeric_baselines()
    rng = np.random.default_rng(99)
    category_baseline = categorical_baseline(rng)
    flagged = []
    for window_index in range(30):
        # 7 numeric + 1 categorical feature per window, windows of 200 to 6,000 values.
        n = [200, 500, 1000, 6000][window_index % 4]
        findings = [
            compare_numeric(name, base, sketch_of(sampler(rng, n, 0.0)), edges, POLICY)
            for name, (base, edges, sampler) in baselines.items()
        ]
        window = rng.choice(list(CATEGORIES), n, p=list(CATEGORIES.values())).tolist()
        findings.append(compare_categorical("method", category_baseline, Counter(window), POLICY))
        flagged += [(window_index, f.feature) for f in decide(findings, POLICY) if f.drifted]

    assert flagged == []


def test_a_one_sigma_shift_is_flagged_and_ranked_first() -> None:
    baselines = numeric_baselines()
    rng = np.random.default_rng(5)
    findings = [
        compare_numeric(
            name,
            base,
            sketch_of(sampler(rng, 500, 1.0 if name == "normal" else 0.0)),
            edges,
            POLICY,
        )
        for name, (base, edges, sampler) in baselines.items()
    ]

    ranked = decide(findings, POLICY)

    assert [f.feature for f in ranked if f.drifted] == ["normal"]
    top = ranked[0]
    assert top.feature == "normal"
    assert top.psi > 0.8
    assert top.ks is not None and top.ks > 0.35
    assert top.baseline_mean is not None and abs(top.baseline_mean) < 0.05
    assert top.window_mean is not None and abs(top.window_mean - 1.0) < 0.1
    assert [f.psi for f in ranked[1:]] == sorted((f.psi for f in ranked[1:]), reverse=True)


@pytest.mark.parametrize(("shift", "n"), [(1.0, 500), (1.0, 6000), (0.5, 6000), (2.0, 200)])
def test_mean_shifts_of_a_normal_feature_are_flagged(shift: float, n: int) -> None:
    rng = np.random.default_rng(11)
    baseline = sketch_of(rng.normal(size=BASELINE_SIZE))
    edges = quantile_edges(baseline)
    for _ in range(10):
        window = sketch_of(rng.normal(shift, 1.0, n))
        assert decide([compare_numeric("x", baseline, window, edges, POLICY)], POLICY)[0].drifted


def test_a_quarter_sigma_shift_is_significant_but_below_the_effect_floor() -> None:
    rng = np.random.default_rng(12)
    baseline = sketch_of(rng.normal(size=BASELINE_SIZE))
    window = sketch_of(rng.normal(0.25, 1.0, 6000))

    finding = compare_numeric("x", baseline, window, quantile_edges(baseline), POLICY)

    assert finding.p_value < 1e-30
    assert finding.psi < 0.1
    assert not finding.drifted


def test_too_few_samples_are_never_flagged_nor_counted_in_the_correction() -> None:
    rng = np.random.default_rng(13)
    baseline = sketch_of(rng.normal(size=BASELINE_SIZE))
    edges = quantile_edges(baseline)
    tiny = compare_numeric("tiny", baseline, sketch_of(rng.normal(3.0, 1.0, 199)), edges, POLICY)
    other = compare_numeric("other", baseline, sketch_of(rng.normal(1.0, 1.0, 500)), edges, POLICY)

    assert math.isnan(tiny.p_value) and tiny.psi > 2.0  # not tested: no p-value computed
    assert tiny.to_dict()["p_value"] is None
    assert not tiny.drifted
    ranked = decide([tiny, other], POLICY)
    assert [(f.feature, f.drifted) for f in ranked] == [("other", True), ("tiny", False)]
    assert ranked[0].p_adjusted == other.p_value  # a family of one: tiny was left out
    assert ranked[1].p_adjusted == 1.0


def test_a_category_window_below_min_samples_is_not_tested_either() -> None:
    baseline = categorical_baseline(np.random.default_rng(14))
    window = Counter({"crypto": 150, "card": 49})

    finding = compare_categorical("method", baseline, window, POLICY)

    assert math.isnan(finding.p_value) and finding.chi2 is not None and finding.chi2 > 100
    assert not finding.drifted and finding.p_adjusted == 1.0


def test_benjamini_hochberg_cuts_false_flags_across_twenty_features() -> None:
    # Effect floor at the noise level, so the p-values decide; 20 stationary features per window.
    policy = DriftPolicy(min_psi=0.0, fdr=0.05)
    rng = np.random.default_rng(17)
    baseline = sketch_of(rng.normal(size=BASELINE_SIZE))
    edges = quantile_edges(baseline)
    uncorrected = corrected = 0
    for _ in range(40):
        findings = [
            compare_numeric(f"f{i}", baseline, sketch_of(rng.normal(size=300)), edges, policy)
            for i in range(20)
        ]
        uncorrected += sum(f.drifted for f in findings)  # provisional: each alone at 5 %
        corrected += sum(f.drifted for f in decide(findings, policy))

    assert uncorrected == 34  # of 800 stationary features: 4.3 %, about the 5 % each is tested at
    assert corrected == 1  # under the global null BH flags anything in at most ~ 5 % of windows


def test_decide_ranks_drifted_first_then_by_psi_then_by_name() -> None:
    def finding(name: str, psi_value: float, p_value: float) -> FeatureDrift:
        return FeatureDrift(
            feature=name,
            kind="categorical",
            n=1000,
            psi=psi_value,
            js=0.0,
            ks=None,
            wasserstein=None,
            chi2=1.0,
            unseen_share=0.0,
            p_value=p_value,
            p_adjusted=p_value,
            drifted=False,
            baseline_mean=None,
            window_mean=None,
        )

    findings = [
        finding("b", 0.5, 0.9),
        finding("nan", math.nan, 0.9),
        finding("a", 0.5, 0.9),
        finding("drifted-small", 0.3, 1e-9),
        finding("drifted-big", 0.9, 1e-9),
        finding("big-but-insignificant", 5.0, 0.5),
    ]

    ranked = decide(findings, POLICY)

    assert [f.feature for f in ranked] == [
        "drifted-big",
        "drifted-small",
        "big-but-insignificant",
        "a",
        "b",
        "nan",
    ]


def test_categorical_drift_is_flagged_by_psi_or_js() -> None:
    rng = np.random.default_rng(21)
    baseline = categorical_baseline(rng)
    probs = {"card": 0.35, "paypal": 0.25, "wire": 0.12, "crypto": 0.25, "cash": 0.03}
    window = Counter(rng.choice(list(probs), 1000, p=list(probs.values())).tolist())

    finding = compare_categorical("method", baseline, window, POLICY)

    assert finding.drifted
    assert finding.psi > 0.2 and finding.js > 0.1
    assert finding.unseen_share == 0.0


def test_a_new_category_is_flagged() -> None:
    rng = np.random.default_rng(22)
    baseline = categorical_baseline(rng)
    window = Counter(rng.choice(list(CATEGORIES), 900, p=list(CATEGORIES.values())).tolist())
    window["apple-pay"] = 100

    finding = compare_categorical("method", baseline, window, POLICY)

    assert finding.drifted
    assert finding.unseen_share == pytest.approx(0.1)


# --- findings and policy --------------------------------------------------------------------------


def test_an_empty_window_is_reported_unjudged_with_json_nulls() -> None:
    baseline = sketch_of(np.arange(1000, dtype=np.float64))
    finding = compare_numeric("x", baseline, ValueSketch(), quantile_edges(baseline), POLICY)

    assert finding.n == 0
    assert not finding.drifted
    data = finding.to_dict()
    assert data["psi"] is None and data["ks"] is None and data["window_mean"] is None
    assert data["p_adjusted"] == 1.0
    assert data["baseline_mean"] == pytest.approx(499.5, rel=0.02)
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_to_dict_has_every_field_and_is_json_able() -> None:
    rng = np.random.default_rng(23)
    baseline = sketch_of(rng.normal(size=5000))
    window = sketch_of(rng.normal(1.0, 1.0, 500))
    finding = compare_numeric("x", baseline, window, quantile_edges(baseline), POLICY)

    data = finding.to_dict()

    assert list(data) == [
        "feature",
        "kind",
        "n",
        "psi",
        "js",
        "ks",
        "wasserstein",
        "chi2",
        "unseen_share",
        "p_value",
        "p_adjusted",
        "drifted",
        "baseline_mean",
        "window_mean",
        "effect",
    ]
    assert data["kind"] == "numeric" and data["chi2"] is None and data["drifted"] is True
    # A 1σ shift: PSI about 1, far beyond the noise of 500 values over 10 bins (about 0.02).
    assert data["psi"] - 0.05 < data["effect"] < data["psi"]
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_sketches_of_different_accuracy_are_refused() -> None:
    baseline = sketch_of(np.arange(10, dtype=np.float64), relative_accuracy=0.01)
    window = sketch_of(np.arange(10, dtype=np.float64))
    with pytest.raises(ValueError, match="relative accuracy"):
        compare_numeric("x", baseline, window, quantile_edges(baseline), POLICY)


def test_comparing_a_windows_features_together_equals_comparing_each_alone() -> None:
    # One p-value call serves all of a window's features: each finding must still be its own,
    # in its place, an empty window among them included.
    rng = np.random.default_rng(31)
    shifts = [0.0, 0.1, 0.5, 1.0, 0.0, 2.0, 0.3]
    sizes = [300, 5000, 50, 2000, 10, 800, 20000]
    together_input = []
    alone = []
    for (name, sampler), shift, n in zip(DISTRIBUTIONS.items(), shifts, sizes, strict=True):
        baseline = sketch_of(sampler(rng, 5000, 0.0))
        window = sketch_of(sampler(rng, n, shift))
        edges = quantile_edges(baseline)
        together_input.append((name, numeric_reference(baseline, edges), window))
        alone.append(compare_numeric(name, baseline, window, edges, POLICY))
        if name == "ties_on_a_half_grid":
            empty = sketch_of(np.array([]))
            together_input.append(("empty", numeric_reference(baseline, edges), empty))
            alone.append(compare_numeric("empty", baseline, empty, edges, POLICY))

    together = compare_numerics(together_input, POLICY)

    assert [f.to_dict() for f in together] == [f.to_dict() for f in alone]
    tested = [f.p_value for f in together if f.n >= POLICY.min_samples]
    assert len(tested) == 5 and len(set(tested)) == 5  # no p-value reused


def test_comparing_together_refuses_a_window_of_another_accuracy() -> None:
    baseline = sketch_of(np.arange(10, dtype=np.float64), relative_accuracy=0.01)
    reference = numeric_reference(baseline, quantile_edges(baseline))
    window = sketch_of(np.arange(10, dtype=np.float64))
    with pytest.raises(ValueError, match="relative accuracy"):
        compare_numerics([("x", reference, window)], POLICY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_samples": 0}, "min_samples"),
        ({"fdr": 0.0}, "fdr"),
        ({"fdr": 1.0}, "fdr"),
        ({"min_psi": -0.1}, "min_psi"),
        ({"n_bins": 1}, "n_bins"),
    ],
)
def test_policy_rejects_invalid_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftPolicy(**kwargs)  # type: ignore[arg-type]


def test_many_categories_in_a_small_window_are_noise_not_drift() -> None:
    # 64 equally likely categories, 200 values: PSI is about 0.5 from sampling alone.
    rng = np.random.default_rng(29)
    categories = [f"item-{i}" for i in range(64)]
    baseline = dict(zip(categories, rng.multinomial(50_000, [1 / 64] * 64).tolist(), strict=True))
    flagged = 0
    for _ in range(200):
        counts = rng.multinomial(200, [1 / 64] * 64)
        window = {c: int(n) for c, n in zip(categories, counts, strict=True) if n}
        finding = compare_categorical("item", baseline, window, POLICY)
        assert finding.psi > 0.2 and finding.effect is not None and finding.effect < 0.2
        flagged += finding.drifted
    assert flagged == 0
