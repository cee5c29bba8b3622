"""Per-window distribution drift of each feature against its baseline.

This module owns the drift statistics (PSI, Jensen–Shannon distance, two-sample KS, Wasserstein-1,
chi-square, share of unseen categories, Benjamini–Hochberg) and the decision that turns them into
one ranked :class:`FeatureDrift` per feature. Numeric features are read from
:class:`~streamwatch.core.distribution.ValueSketch` (baseline and window bucketed identically, so
every statistic is computed on the buckets' representative values); categorical features from
``{category: count}`` mappings.

The decision needs both *evidence* and *effect*: a feature drifts when its window has at least
``min_samples`` values, its p-value (KS or chi-square) survives Benjamini–Hochberg across the
window's features at ``fdr``, **and** its effect size (PSI, or for categories PSI or JS) reaches
the policy's floor. p-values alone flag trivial shifts once windows are large; effect sizes alone
flag noise when windows are small.

Pure numpy/scipy; it must not know about Kafka, Redis or Faust, nor where baselines are stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from streamwatch.core.distribution import FloatArray, IntArray, ValueSketch

#: Proportion substituted for an empty bin or category in :func:`psi` (Evidently's value).
PSI_EPS = 1e-4
#: Baseline pseudo-count given to each category the baseline never saw (chi-square only).
UNSEEN_PSEUDO_COUNT = 0.5
#: Chi-square cells expecting fewer window values than this are grouped (Cochran's rule).
MIN_EXPECTED_COUNT = 5.0


# --- binning --------------------------------------------------------------------------------------


def quantile_edges(sketch: ValueSketch, n_bins: int = 10) -> FloatArray:
    """Inner bin edges at the baseline's quantiles ``1/n_bins, ..., (n_bins-1)/n_bins``.

    Each edge is a quantile as :meth:`ValueSketch.quantiles` defines it, so it is one of the
    sketch's representative values. Edges are deduplicated (an atom spanning several quantiles
    gives one edge) and an edge equal to the baseline's largest value is dropped, so every bin of
    :func:`bin_counts` holds baseline mass; with atoms there may be fewer than ``n_bins`` bins.

    Raises:
        ValueError: If ``n_bins < 2`` or the sketch is empty.

    Example:
        >>> s = ValueSketch()
        >>> s.add_array(np.array([0.0] * 6 + [1.0, 2.0, 3.0, 4.0]))
        >>> edges = quantile_edges(s, n_bins=5)
        >>> [round(float(e), 2) for e in edges], bin_counts(s, edges).tolist()
        ([0.0, 2.01], [6, 2, 2])
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    if sketch.count == 0:
        raise ValueError("cannot take quantile edges of an empty baseline sketch")
    levels = [i / n_bins for i in range(1, n_bins)]
    edges = np.unique(np.array(sketch.quantiles(levels), dtype=np.float64))
    values, _ = sketch.support()
    inner: FloatArray = edges[edges < values[-1]]
    return inner


def bin_counts(sketch: ValueSketch, edges: FloatArray) -> IntArray:
    """Count the sketch's values in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)``.

    Bins are closed on the right: a value equal to an edge counts in the bin below it. Values are
    the sketch's representatives, so baseline and window land on the same side of every edge.

    Returns:
        ``len(edges) + 1`` counts.

    Raises:
        ValueError: If ``edges`` are not finite and strictly increasing.
    """
    return _bin(sketch.support(), _checked_edges(edges))


def _checked_edges(edges: FloatArray) -> FloatArray:
    checked = np.asarray(edges, dtype=np.float64)
    if checked.ndim != 1 or not np.isfinite(checked).all() or np.any(np.diff(checked) <= 0):
        raise ValueError("edges must be a 1-d array of finite, strictly increasing values")
    return checked


def _bin(support: tuple[FloatArray, IntArray], edges: FloatArray) -> IntArray:
    values, counts = support
    result = np.zeros(edges.size + 1, dtype=np.int64)
    # side="left" gives the number of edges strictly below each value: its right-closed bin.
    np.add.at(result, np.searchsorted(edges, values, side="left"), counts)
    return result


# --- distances between binned distributions -------------------------------------------------------


def psi(
    expected_counts: npt.ArrayLike, actual_counts: npt.ArrayLike, eps: float = PSI_EPS
) -> float:
    """Population stability index of two aligned count vectors.

    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` on the proportions ``e = expected / sum(expected)``
    and ``a = actual / sum(actual)``, after replacing every zero proportion with ``eps`` (not
    renormalised). That is ``KL(a || e) + KL(e || a)``: non-negative and symmetric. Evidently uses
    the same ``eps = 1e-4``, but shrinks it to a millionth of the smallest non-zero proportion when
    that proportion is itself ``<= 1e-4`` (bins holding fewer than 1 value in 10,000).

    Raises:
        ValueError: On shapes that differ, negative counts, an empty side or ``eps`` not in (0, 1).
    """
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be strictly between 0 and 1, got {eps!r}")
    return _psi(*_proportions(expected_counts, actual_counts), eps)


def _psi(e: FloatArray, a: FloatArray, eps: float = PSI_EPS) -> float:
    """:func:`psi` of two proportion vectors."""
    e = np.where(e == 0.0, eps, e)
    a = np.where(a == 0.0, eps, a)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected_counts: npt.ArrayLike, actual_counts: npt.ArrayLike) -> float:
    """Jensen–Shannon distance in bits, in ``[0, 1]``, of two aligned count vectors.

    ``sqrt(KL(e || m) / 2 + KL(a || m) / 2)`` with ``m = (e + a) / 2`` and logarithms base 2, on
    the proportions; empty bins need no substitute. Equals
    ``scipy.spatial.distance.jensenshannon(e, a, base=2)``; Evidently's ``jensenshannon`` uses the
    natural log, i.e. this value times ``sqrt(ln 2)``.

    Raises:
        ValueError: On shapes that differ, negative counts or an empty side.
    """
    return _js_distance(*_proportions(expected_counts, actual_counts))


def _js_distance(e: FloatArray, a: FloatArray) -> float:
    """:func:`js_distance` of two proportion vectors."""
    m = (e + a) / 2.0
    divergence = (special.rel_entr(e, m).sum() + special.rel_entr(a, m).sum()) / (2.0 * math.log(2))
    return float(math.sqrt(min(max(divergence, 0.0), 1.0)))


def _proportions(
    expected_counts: npt.ArrayLike, actual_counts: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    e = np.asarray(expected_counts, dtype=np.float64)
    a = np.asarray(actual_counts, dtype=np.float64)
    if e.ndim != 1 or e.shape != a.shape:
        raise ValueError(
            f"count vectors must be 1-d and aligned, got shapes {e.shape} and {a.shape}"
        )
    if not (np.isfinite(e).all() and np.isfinite(a).all()) or (e < 0).any() or (a < 0).any():
        raise ValueError("counts must be finite and non-negative")
    e_total, a_total = e.sum(), a.sum()
    if e_total <= 0 or a_total <= 0:
        raise ValueError("both count vectors need at least one value")
    return e / e_total, a / a_total


# --- numeric: read from sketches ------------------------------------------------------------------


def ks_statistic(ref: ValueSketch, cur: ValueSketch) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``D = max_x |F_ref(x) - F_cur(x)|``.

    The empirical CDFs are evaluated on the union of both supports. Bucketing is monotone, so this
    is the raw samples' ``|F - G|`` at bucket bounds: never above the raw ``D``, hence p-values
    from it are conservative.

    Raises:
        ValueError: If either sketch is empty.
    """
    _, gaps = _cdf_gaps(_nonempty_support(ref, "ref"), _nonempty_support(cur, "cur"))
    return float(gaps.max())


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Two-sided asymptotic p-value of a two-sample KS statistic ``d`` for sample sizes n and m.

    ``scipy.stats.kstwo.sf(d, round(n * m / (n + m)))``: the one-sample KS distribution at the
    effective size, exactly what ``scipy.stats.ks_2samp(..., method="asymp")`` returns. (Its
    default ``method="auto"`` computes the exact distribution when both sizes are below 10,000.)
    Conservative for distributions with atoms.

    Raises:
        ValueError: If ``d`` is not in [0, 1] or a size is not positive.
    """
    if not 0.0 <= d <= 1.0:
        raise ValueError(f"a KS statistic lies in [0, 1], got {d!r}")
    if n < 1 or m < 1:
        raise ValueError(f"sample sizes must be positive, got n={n!r}, m={m!r}")
    return _ks_pvalues([d], [n], [m])[0]


def wasserstein(ref: ValueSketch, cur: ValueSketch) -> float:
    """Wasserstein-1 (earth mover's) distance ``∫ |F_ref - F_cur| dx``, in the feature's units.

    Computed between the two weighted supports; equals ``scipy.stats.wasserstein_distance`` on
    the representative values weighted by their counts. As each representative is within the
    sketch's relative accuracy ``a`` of its values, it is within ``a * (E|X| + E|Y|)`` of the raw
    samples' distance. Evidently reports it divided by the baseline's standard deviation.

    Raises:
        ValueError: If either sketch is empty.
    """
    grid, gaps = _cdf_gaps(_nonempty_support(ref, "ref"), _nonempty_support(cur, "cur"))
    return _w1(grid, gaps)


def _nonempty_support(sketch: ValueSketch, name: str) -> tuple[FloatArray, IntArray]:
    if sketch.count == 0:
        raise ValueError(f"{name} sketch is empty: a distance needs values on both sides")
    return sketch.support()


def _cdf_gaps(
    ref: tuple[FloatArray, IntArray], cur: tuple[FloatArray, IntArray]
) -> tuple[FloatArray, FloatArray]:
    """The union of both supports and ``|F_ref - F_cur|`` at each of its points."""
    grid = np.union1d(ref[0], cur[0])
    return grid, np.abs(_cdf_at(*ref, grid) - _cdf_at(*cur, grid))


def _cdf_at(values: FloatArray, counts: IntArray, grid: FloatArray) -> FloatArray:
    """Right-continuous empirical CDF of ``(values, counts)`` at each grid point."""
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    cdf: FloatArray = cumulative[np.searchsorted(values, grid, side="right")] / cumulative[-1]
    return cdf


def _w1(grid: FloatArray, gaps: FloatArray) -> float:
    """``∫ |F_ref - F_cur| dx``: the CDFs are constant between consecutive grid points."""
    return float(np.dot(gaps[:-1], np.diff(grid)))


def _mean(support: tuple[FloatArray, IntArray]) -> float:
    values, counts = support
    return float(np.dot(values, counts) / counts.sum())


# --- categorical ----------------------------------------------------------------------------------


def aligned_counts(
    expected_freqs: Mapping[str, int], actual_counts: Mapping[str, int]
) -> tuple[list[str], IntArray, IntArray]:
    """Align two category counts on the sorted union of their categories (missing -> 0).

    Raises:
        ValueError: If a count is negative.
    """
    categories = sorted(set(expected_freqs) | set(actual_counts))
    expected = np.array([expected_freqs.get(c, 0) for c in categories], dtype=np.int64)
    actual = np.array([actual_counts.get(c, 0) for c in categories], dtype=np.int64)
    if (expected < 0).any() or (actual < 0).any():
        raise ValueError("category counts must be non-negative")
    return categories, expected, actual


def chi_square(
    expected_freqs: Mapping[str, int],
    actual_counts: Mapping[str, int],
    min_expected: float = MIN_EXPECTED_COUNT,
) -> tuple[float, float]:
    """Pearson chi-square goodness of fit of a window's categories to the baseline's.

    On the union of categories, ``chi2 = sum_c (o_c - E_c)^2 / E_c`` with ``E_c = M * b_c / B``:
    ``o`` the window counts (total ``M``), ``b`` the baseline counts (total ``B``). A category the
    baseline never saw gets ``b_c = UNSEEN_PSEUDO_COUNT`` (0.5) and ``B`` grows to match, so
    ``E_c > 0`` and the statistic stays finite.

    The chi-square distribution is a poor approximation when cells expect few values: with many
    rare categories, p-values of stationary windows come out far too small (a baseline of 300
    Zipf-distributed categories gives ``p < 0.01`` in 17 % of stationary windows of 500). So
    cells expecting fewer than ``min_expected`` values (5, Cochran's rule) are first combined,
    smallest first, into groups expecting at least ``min_expected`` each (a remainder joins the
    last group, or else the smallest other cell). Unseen categories therefore land in such a
    group: a lone unseen value does not make the p-value collapse, a new category with real mass
    still does. With ``min_expected=0`` nothing is grouped and the result is exactly
    ``scipy.stats.chisquare(o, E)`` (and Evidently's ``chisquare`` when every window category is
    in the baseline).

    The p-value is ``scipy.stats.chi2.sf(chi2, k - 1)`` for the ``k`` cells tested; with a single
    cell the result is ``(0.0, 1.0)``. The baseline counts are taken as the truth: when the window
    is not much smaller than the baseline, p-values are too small by roughly the factor
    ``1 + M / B`` on the statistic.

    Raises:
        ValueError: If either side has no values, a count is negative or ``min_expected < 0``.
    """
    if not min_expected >= 0.0:
        raise ValueError(f"min_expected must be >= 0, got {min_expected!r}")
    _, expected, actual = aligned_counts(expected_freqs, actual_counts)
    if expected.sum() == 0 or actual.sum() == 0:
        raise ValueError("chi-square needs at least one value in the baseline and in the window")
    return _chi_square(expected, actual, min_expected)


def _chi_square(expected: IntArray, actual: IntArray, min_expected: float) -> tuple[float, float]:
    """:func:`chi_square` of aligned counts, both with values."""
    smoothed = np.where(expected == 0, UNSEEN_PSEUDO_COUNT, expected.astype(np.float64))
    expected_in_window = smoothed / smoothed.sum() * actual.sum()
    cells_expected, cells_observed = _group_sparse_cells(
        expected_in_window, actual.astype(np.float64), min_expected
    )
    if cells_expected.size < 2:
        return 0.0, 1.0
    statistic = float(np.sum((cells_observed - cells_expected) ** 2 / cells_expected))
    # ``stats.chi2.sf`` computes exactly this, after argument checks that cost more than it.
    return statistic, float(special.chdtrc(cells_expected.size - 1, statistic))


def _group_sparse_cells(
    expected: FloatArray, observed: FloatArray, min_expected: float
) -> tuple[FloatArray, FloatArray]:
    """Combine cells expecting fewer than ``min_expected`` values, smallest first (see above)."""
    sparse = expected < min_expected
    if not sparse.any():
        return expected, observed
    kept_e, kept_o = list(expected[~sparse]), list(observed[~sparse])
    order = np.argsort(expected[sparse], kind="stable")
    groups_e: list[float] = []
    groups_o: list[float] = []
    acc_e = acc_o = 0.0
    for e, o in zip(expected[sparse][order], observed[sparse][order], strict=True):
        acc_e, acc_o = acc_e + e, acc_o + o
        if acc_e >= min_expected:
            groups_e.append(acc_e)
            groups_o.append(acc_o)
            acc_e = acc_o = 0.0
    if acc_e > 0.0:
        if groups_e:
            groups_e[-1] += acc_e
            groups_o[-1] += acc_o
        elif kept_e:
            smallest = int(np.argmin(kept_e))
            kept_e[smallest] += acc_e
            kept_o[smallest] += acc_o
        else:
            groups_e.append(acc_e)
            groups_o.append(acc_o)
    return np.array(kept_e + groups_e), np.array(kept_o + groups_o)


def unseen_share(expected_freqs: Mapping[str, int], actual_counts: Mapping[str, int]) -> float:
    """Share of the window's values whose category has no count in the baseline.

    Raises:
        ValueError: If the window has no values or a count is negative.
    """
    _, expected, actual = aligned_counts(expected_freqs, actual_counts)
    if actual.sum() == 0:
        raise ValueError("unseen_share needs at least one value in the window")
    return _unseen_share(expected, actual)


def _unseen_share(expected: IntArray, actual: IntArray) -> float:
    return float(actual[expected == 0].sum() / actual.sum())


# --- multiple testing -----------------------------------------------------------------------------


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values, in the input order.

    With ``p_(1) <= ... <= p_(m)`` sorted, ``adj_(i) = min(1, min_{j >= i} m * p_(j) / j)``.
    Rejecting every hypothesis with ``adj < q`` controls the false discovery rate at ``q`` for
    independent (or positively dependent) tests. Adjusted values are ``>=`` the raw ones and keep
    their order.

    Raises:
        ValueError: If a p-value is NaN or outside [0, 1].

    Example:
        >>> benjamini_hochberg([0.01, 0.02, 0.03, 0.5])
        [0.04, 0.04, 0.04, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError("p-values must be a flat sequence of numbers in [0, 1]")
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    # The clip only absorbs rounding: mathematically p <= adjusted <= 1 already.
    adjusted_sorted = np.clip(np.minimum.accumulate(scaled[::-1])[::-1], p[order], 1.0)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = adjusted_sorted
    return [float(x) for x in adjusted]


# --- decision -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriftPolicy:
    """When a feature's window counts as drifted from its baseline.

    Attributes:
        min_samples: Window values needed before a feature can be judged at all.
        fdr: False discovery rate across the features of one window (Benjamini–Hochberg).
        min_psi: Minimum effect size: PSI beyond sampling noise (see ``FeatureDrift.effect``).
            A 0.5σ mean shift of a normal feature has a PSI of about 0.24 on 10 decile bins, a
            0.25σ shift about 0.06.
        n_bins: Quantile bins of the baseline used for numeric PSI and JS.
    """

    min_samples: int = 200
    fdr: float = 0.01
    min_psi: float = 0.2
    n_bins: int = 10

    def __post_init__(self) -> None:
        """Validate every field.

        Raises:
            ValueError: Naming the field and its valid range.
        """
        problems = []
        if isinstance(self.min_samples, bool) or self.min_samples < 1:
            problems.append(f"min_samples must be >= 1, got {self.min_samples!r}")
        if not 0.0 < self.fdr < 1.0:
            problems.append(f"fdr must be strictly between 0 and 1, got {self.fdr!r}")
        if not self.min_psi >= 0.0:
            problems.append(f"min_psi must be >= 0, got {self.min_psi!r}")
        if isinstance(self.n_bins, bool) or self.n_bins < 2:
            problems.append(f"n_bins must be >= 2, got {self.n_bins!r}")
        if problems:
            raise ValueError("invalid DriftPolicy: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """The drift finding for one feature in one window.

    Statistics that cannot be computed (an empty window or baseline) are NaN and the finding is
    not drifted; :meth:`to_dict` turns NaN into ``None``.

    Attributes:
        feature: Feature name.
        kind: ``"numeric"`` or ``"categorical"``.
        n: Values of the feature in the window.
        psi: Population stability index (:func:`psi`) on the policy's quantile bins or on the
            categories.
        js: Jensen–Shannon distance in bits (:func:`js_distance`) on the same bins.
        ks: Two-sample KS statistic (numeric only).
        wasserstein: Wasserstein-1 distance in the feature's units (numeric only).
        chi2: Chi-square statistic (categorical only).
        unseen_share: Share of window values in categories the baseline never saw (categorical).
        p_value: KS p-value (numeric) or chi-square p-value (categorical); NaN when the window
            has fewer than ``min_samples`` values, which are not tested (an exact KS p-value of
            a small window costs ~2 ms in scipy, and many low-traffic models close many).
        p_adjusted: Benjamini–Hochberg adjusted p-value across the window's judged features
            (set by :func:`decide`; 1.0 for features with fewer than ``min_samples`` values,
            which are left out of the correction).
        drifted: ``n >= min_samples and p_adjusted < fdr`` and the effect reaches the policy's
            floor (``effect >= min_psi``).
        baseline_mean: Mean of the baseline's values (numeric only).
        window_mean: Mean of the window's values (numeric only).
        effect: The effect size the decision uses: PSI with half a count added to every bin
            or category of both sides (so an empty cell is not worth ``ln(p / eps)``), minus
            the PSI two samples of these sizes from one distribution show on average,
            ``(bins - 1) * (1/n + 1/n_baseline)`` (PSI is about a chi-square statistic over
            the sample sizes). Without it a window of 200 values over 64 equally likely
            categories shows PSI 0.5 with no drift at all. ``None``: use ``psi``.
    """

    feature: str
    kind: Literal["numeric", "categorical"]
    n: int
    psi: float
    js: float
    ks: float | None
    wasserstein: float | None
    chi2: float | None
    unseen_share: float | None
    p_value: float
    p_adjusted: float
    drifted: bool
    baseline_mean: float | None
    window_mean: float | None
    effect: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict of every field, NaN and infinities as ``None``."""
        return {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in asdict(self).items()
        }


@dataclass(frozen=True, slots=True)
class NumericReference:
    """A numeric baseline as every window comparison reads it, computed once.

    Built by :func:`numeric_reference`. A baseline's sketch never changes, so a profile keeps
    one per feature and a closing window pays only for its own side.
    """

    relative_accuracy: float
    count: int
    support: tuple[FloatArray, IntArray]
    """Ascending representative values and their counts (:meth:`ValueSketch.support`)."""
    edges: FloatArray
    """Inner bin edges (:func:`quantile_edges`), checked."""
    expected: IntArray
    """The baseline's counts in the bins of ``edges``."""
    mean: float


def numeric_reference(baseline: ValueSketch, edges: FloatArray) -> NumericReference:
    """Read a non-empty baseline sketch once for :func:`compare_numerics`.

    Raises:
        ValueError: If the sketch is empty, or ``edges`` are not finite and strictly increasing.
    """
    support = _nonempty_support(baseline, "baseline")
    checked = _checked_edges(edges)
    return NumericReference(
        relative_accuracy=baseline.relative_accuracy,
        count=baseline.count,
        support=support,
        edges=checked,
        expected=_bin(support, checked),
        mean=_mean(support),
    )


def compare_numeric(
    feature: str,
    baseline: ValueSketch,
    window: ValueSketch,
    edges: FloatArray,
    policy: DriftPolicy,
) -> FeatureDrift:
    """Compare a numeric feature's window with its baseline.

    ``edges`` are the baseline's :func:`quantile_edges` (computed once per baseline). The
    p-value is the KS test's. ``p_adjusted`` and ``drifted`` are provisional (as if this were the
    window's only feature) until :func:`decide` corrects across features.

    Raises:
        ValueError: If the two sketches have different relative accuracies (their buckets would
            not line up).
    """
    if baseline.relative_accuracy != window.relative_accuracy:
        raise _accuracy_mismatch(feature, baseline.relative_accuracy, window.relative_accuracy)
    if baseline.count == 0:
        return _unjudged(feature, "numeric", window.count, math.nan, window.mean(), policy)
    reference = numeric_reference(baseline, edges)
    return compare_numerics([(feature, reference, window)], policy)[0]


def compare_numerics(
    comparisons: Sequence[tuple[str, NumericReference, ValueSketch]], policy: DriftPolicy
) -> list[FeatureDrift]:
    """:func:`compare_numeric` for each ``(feature, reference, window)``, in order.

    The KS p-values of all of them are one scipy call: its set-up costs more than the
    distribution itself for most windows. A window with fewer than ``policy.min_samples``
    values is not tested (see ``FeatureDrift.p_value``).

    Raises:
        ValueError: If a window's relative accuracy is not its reference's.
    """
    findings: list[FeatureDrift] = []
    tested: list[int] = []
    statistics: list[float] = []
    for feature, reference, window in comparisons:
        if reference.relative_accuracy != window.relative_accuracy:
            raise _accuracy_mismatch(feature, reference.relative_accuracy, window.relative_accuracy)
        n = window.count
        if n == 0:
            findings.append(_unjudged(feature, "numeric", 0, reference.mean, math.nan, policy))
            continue
        cur = window.support()
        actual = _bin(cur, reference.edges)
        grid, gaps = _cdf_gaps(reference.support, cur)
        d = float(gaps.max())
        psi_value, js_value, effect = _binned_distances(reference.expected, actual)
        finding = FeatureDrift(
            feature=feature,
            kind="numeric",
            n=n,
            psi=psi_value,
            js=js_value,
            ks=d,
            wasserstein=_w1(grid, gaps),
            chi2=None,
            unseen_share=None,
            p_value=math.nan,
            p_adjusted=math.nan,
            drifted=False,
            baseline_mean=reference.mean,
            window_mean=_mean(cur),
            effect=effect,
        )
        if n >= policy.min_samples:
            tested.append(len(findings))
            statistics.append(d)
        else:
            finding = _judged(finding, 1.0, policy)
        findings.append(finding)
    if tested:
        p_values = _ks_pvalues(
            statistics,
            [comparisons[i][1].count for i in tested],
            [findings[i].n for i in tested],
        )
        for i, p_value in zip(tested, p_values, strict=True):
            findings[i] = _judged(replace(findings[i], p_value=p_value), p_value, policy)
    return findings


def _ks_pvalues(ds: list[float], ns: list[int], ms: list[int]) -> list[float]:
    """:func:`ks_pvalue` of each ``(d, n, m)``, checked by the caller, in one scipy call."""
    effective_n = [max(1, round(n * m / (n + m))) for n, m in zip(ns, ms, strict=True)]
    p_values = np.clip(stats.kstwo.sf(np.array(ds), np.array(effective_n)), 0.0, 1.0)
    return [float(p) for p in np.atleast_1d(p_values)]


def _binned_distances(expected: IntArray, actual: IntArray) -> tuple[float, float, float]:
    """:func:`psi`, :func:`js_distance` and :func:`_effect` of two aligned counts.

    Without the public functions' checks: the counts are non-negative integers (bins, or
    :func:`aligned_counts`) with both sums positive.
    """
    e_counts, a_counts = expected.astype(np.float64), actual.astype(np.float64)
    e, a = e_counts / e_counts.sum(), a_counts / a_counts.sum()
    return _psi(e, a), _js_distance(e, a), _effect(expected, actual)


def _accuracy_mismatch(feature: str, baseline: float, window: float) -> ValueError:
    return ValueError(
        f"feature {feature!r}: baseline and window sketches must share a relative accuracy"
        f" ({baseline!r} != {window!r}); rebuild the baseline with the window's accuracy"
    )


def compare_categorical(
    feature: str,
    baseline: Mapping[str, int],
    window: Mapping[str, int],
    policy: DriftPolicy,
) -> FeatureDrift:
    """Compare a categorical feature's window counts with its baseline counts.

    PSI and JS are taken on the two count vectors aligned on the union of categories (a category
    the baseline never saw gets PSI's ``eps``); the p-value is :func:`chi_square`'s.
    ``p_adjusted`` and ``drifted`` are provisional until :func:`decide`.

    Raises:
        ValueError: If a count is negative.
    """
    _, expected, actual = aligned_counts(baseline, window)
    n = int(actual.sum())
    if n == 0 or expected.sum() == 0:
        return _unjudged(feature, "categorical", n, None, None, policy)
    statistic, p_value = _chi_square(expected, actual, MIN_EXPECTED_COUNT)
    if n < policy.min_samples:
        p_value = math.nan  # not tested (see FeatureDrift.p_value)
    psi_value, js_value, effect = _binned_distances(expected, actual)
    finding = FeatureDrift(
        feature=feature,
        kind="categorical",
        n=n,
        psi=psi_value,
        js=js_value,
        ks=None,
        wasserstein=None,
        chi2=statistic,
        unseen_share=_unseen_share(expected, actual),
        p_value=p_value,
        p_adjusted=math.nan,
        drifted=False,
        baseline_mean=None,
        window_mean=None,
        effect=effect,
    )
    return _judged(finding, p_value, policy)


def decide(findings: Sequence[FeatureDrift], policy: DriftPolicy) -> list[FeatureDrift]:
    """Correct the window's p-values across features and rank the findings.

    Benjamini–Hochberg runs over the findings with at least ``policy.min_samples`` values (the
    features actually tested); each finding then gets its ``p_adjusted`` and ``drifted``.

    Returns:
        New findings: drifted first, then by PSI descending (NaN last), then by feature name.
    """
    judged = [i for i, f in enumerate(findings) if _judgeable(f, policy)]
    adjusted = dict(
        zip(judged, benjamini_hochberg([findings[i].p_value for i in judged]), strict=True)
    )
    decided = [_judged(f, adjusted.get(i, 1.0), policy) for i, f in enumerate(findings)]
    return sorted(
        decided,
        key=lambda f: (not f.drifted, -f.psi if math.isfinite(f.psi) else math.inf, f.feature),
    )


def _effect(expected_counts: npt.ArrayLike, actual_counts: npt.ArrayLike) -> float:
    """Smoothed PSI minus its expectation under no drift (see ``FeatureDrift.effect``)."""
    expected = np.asarray(expected_counts, dtype=np.float64) + 0.5
    actual = np.asarray(actual_counts, dtype=np.float64) + 0.5
    p, q = expected / expected.sum(), actual / actual.sum()
    smoothed = float(np.sum((q - p) * np.log(q / p)))
    noise = (int(p.size) - 1) * (1.0 / float(actual.sum()) + 1.0 / float(expected.sum()))
    return smoothed - noise


def _judgeable(finding: FeatureDrift, policy: DriftPolicy) -> bool:
    return finding.n >= policy.min_samples and math.isfinite(finding.p_value)


def _judged(finding: FeatureDrift, p_adjusted: float, policy: DriftPolicy) -> FeatureDrift:
    if not _judgeable(finding, policy):
        return replace(finding, p_adjusted=1.0, drifted=False)
    size = finding.psi if finding.effect is None else finding.effect
    effect = size >= policy.min_psi
    return replace(finding, p_adjusted=p_adjusted, drifted=bool(effect and p_adjusted < policy.fdr))


def _unjudged(
    feature: str,
    kind: Literal["numeric", "categorical"],
    n: int,
    baseline_mean: float | None,
    window_mean: float | None,
    policy: DriftPolicy,
) -> FeatureDrift:
    numeric = kind == "numeric"
    finding = FeatureDrift(
        feature=feature,
        kind=kind,
        n=n,
        psi=math.nan,
        js=math.nan,
        ks=math.nan if numeric else None,
        wasserstein=math.nan if numeric else None,
        chi2=None if numeric else math.nan,
        unseen_share=None if numeric else math.nan,
        p_value=math.nan,
        p_adjusted=1.0,
        drifted=False,
        baseline_mean=baseline_mean,
        window_mean=window_mean,
    )
    return _judged(finding, 1.0, policy)
