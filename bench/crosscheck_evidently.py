"""Cross-check ``streamwatch.core.drift`` against Evidently's own stattests on seeded samples.

Run with ``make crosscheck``: it builds ``.venv-crosscheck`` (streamwatch plus the pinned Evidently,
about 1 GB, hence not part of ``make test``) and runs this script, which prints a markdown table
of both values per statistic and exits 1 if any difference exceeds its tolerance.

What is compared, and why the tolerances:

* Ours reads :class:`~streamwatch.core.distribution.ValueSketch` (2 % relative buckets);
  Evidently reads the raw samples. Evidently's stattests live in
  ``evidently.legacy.calculations.stattests`` since 0.7 (``evidently.calculations.stattests``
  before).
* PSI and Jensen–Shannon on numeric data: Evidently bins numeric features (more than 20 distinct
  reference values) into equal-width Sturges bins over *both* samples; we bin at the baseline's
  deciles. To compare the statistics rather than the binnings, Evidently is given the raw values
  already cut at our edges (each sketch edge stands for the baseline value nearest it), as a
  categorical column of bin labels: its categorical path then computes the same proportions.
  Values within a bucket of an edge can land on the other side, hence PSI within 0.02 and JS
  within 0.01. Evidently's own binning is shown separately, for information only.
* Evidently's ``jensenshannon`` uses the natural log; it is converted to bits (divided by
  ``sqrt(ln 2)``), our unit.
* KS: Evidently returns the p-value of ``scipy.stats.ks_2samp`` (exact distribution below 10,000
  values per side); ours is asymptotic (``kstwo`` at the effective size) on the sketch's D,
  which is at most ~0.006 below the raw D here. Mid-range p-values move a lot for such a D
  difference (dp/dD is about 20 at these sizes), so the tolerance is 0.15 absolute; near 0 both
  agree closely.
* Wasserstein: Evidently divides W1 by the reference's standard deviation (at least 0.001); ours
  is divided by the baseline sketch's. Each value moves by at most 2 % of itself, so W1 is within
  ``0.02 * (E|X| + E|Y|)``; the tolerance is that bound over sigma plus 3 % of the value for the
  standard deviation's own error.
* Chi-square, categorical PSI and JS: identical inputs (category counts), so 1e-9 (relative for
  chi-square p-values, which can be tiny). Ours is run with ``min_expected=0``, the plain Pearson
  statistic Evidently computes; every category here expects at least 5 values, so the default
  grouping would give the same number.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests import (
    chi_stat_test,
    jensenshannon_stat_test,
    ks_stat_test,
    psi_stat_test,
    wasserstein_stat_test,
)
from evidently.legacy.core import ColumnType

from streamwatch.core.distribution import ValueSketch
from streamwatch.core.drift import (
    bin_counts,
    chi_square,
    js_distance,
    ks_pvalue,
    ks_statistic,
    psi,
    quantile_edges,
    wasserstein,
)

REFERENCE_SIZE = 5000
CURRENT_SIZE = 2000
NATS_PER_BIT = math.sqrt(math.log(2))

Sampler = Callable[[np.random.Generator, int, float], np.ndarray]

NUMERIC_CASES: list[tuple[str, Sampler, float]] = [
    ("normal, stationary", lambda r, n, s: r.normal(s, 1.0, n), 0.0),
    ("normal, 0.5σ shift", lambda r, n, s: r.normal(s, 1.0, n), 0.5),
    ("normal, 1σ shift", lambda r, n, s: r.normal(s, 1.0, n), 1.0),
    ("amounts (lognormal ×1000), stationary", lambda r, n, s: 1000 * r.lognormal(s, 1.0, n), 0.0),
    ("amounts (lognormal ×1000), shifted", lambda r, n, s: 1000 * r.lognormal(s, 1.0, n), 0.3),
    ("probabilities (beta), stationary", lambda r, n, s: r.beta(2.0 + s, 5.0, n), 0.0),
    ("probabilities (beta), shifted", lambda r, n, s: r.beta(2.0 + s, 5.0, n), 1.0),
    ("mixed sign (t4), shifted", lambda r, n, s: 3.0 * r.standard_t(4, n) + 0.5 + s, 0.5),
    ("ties (half grid), shifted", lambda r, n, s: np.round(2 * r.normal(s, 1.0, n)) / 2, 0.3),
    (
        "zero-inflated, stationary",
        lambda r, n, s: np.where(r.random(n) < 0.4, 0.0, r.exponential(1.0 + s, n)),
        0.0,
    ),
]

CATEGORIES = ["card", "paypal", "wire", "crypto", "cash"]
CATEGORICAL_CASES: list[tuple[str, list[float], list[float]]] = [
    ("payment method, stationary", [0.55, 0.25, 0.12, 0.05, 0.03], [0.55, 0.25, 0.12, 0.05, 0.03]),
    ("payment method, shifted", [0.55, 0.25, 0.12, 0.05, 0.03], [0.40, 0.25, 0.12, 0.20, 0.03]),
]


@dataclass(frozen=True)
class Row:
    case: str
    statistic: str
    evidently: float
    ours: float
    tolerance: float
    relative: bool = False

    @property
    def difference(self) -> float:
        return self.ours - self.evidently

    @property
    def ok(self) -> bool:
        allowed = self.tolerance * (abs(self.evidently) if self.relative else 1.0)
        return abs(self.difference) <= max(allowed, 1e-12)


def sketch_of(values: np.ndarray) -> ValueSketch:
    sketch = ValueSketch()
    sketch.add_array(values)
    return sketch


def evidently(
    test: Callable[..., Any], reference: pd.Series, current: pd.Series, kind: ColumnType
) -> float:
    return float(test(reference, current, kind, None).drift_score)


def numeric_rows(name: str, sampler: Sampler, shift: float, seed: int) -> tuple[list[Row], str]:
    rng = np.random.default_rng(seed)
    ref_raw = sampler(rng, REFERENCE_SIZE, 0.0)
    cur_raw = sampler(rng, CURRENT_SIZE, shift)
    ref, cur = sketch_of(ref_raw), sketch_of(cur_raw)
    reference, current = pd.Series(ref_raw), pd.Series(cur_raw)

    edges = quantile_edges(ref)
    expected, actual = bin_counts(ref, edges), bin_counts(cur, edges)
    support = np.unique(ref_raw)
    raw_edges = support[np.abs(support[:, None] - edges[None, :]).argmin(axis=0)]
    ref_bins = pd.Series(np.searchsorted(raw_edges, ref_raw, side="left"))
    cur_bins = pd.Series(np.searchsorted(raw_edges, cur_raw, side="left"))
    categorical = ColumnType.Categorical

    ref_values, ref_counts = ref.support()
    sigma = math.sqrt(np.dot((ref_values - ref.mean()) ** 2, ref_counts) / ref.count)
    norm = max(sigma, 0.001)
    w_bound = 0.02 * (np.abs(ref_raw).mean() + np.abs(cur_raw).mean()) / norm
    w_ours = wasserstein(ref, cur) / norm
    w_theirs = evidently(wasserstein_stat_test, reference, current, ColumnType.Numerical)

    rows = [
        Row(name, "PSI", evidently(psi_stat_test, ref_bins, cur_bins, categorical),
            psi(expected, actual), 0.02),
        Row(name, "JS (bits)",
            evidently(jensenshannon_stat_test, ref_bins, cur_bins, categorical) / NATS_PER_BIT,
            js_distance(expected, actual), 0.01),
        Row(name, "KS p-value", evidently(ks_stat_test, reference, current, ColumnType.Numerical),
            ks_pvalue(ks_statistic(ref, cur), ref.count, cur.count), 0.15),
        Row(name, "Wasserstein / σ", w_theirs, w_ours, w_bound + 0.03 * max(w_ours, w_theirs)),
    ]  # fmt: skip
    native_psi = evidently(psi_stat_test, reference, current, ColumnType.Numerical)
    native_js = evidently(jensenshannon_stat_test, reference, current, ColumnType.Numerical)
    native = (
        f"| {name} | {len(edges) + 1} | {rows[0].ours:.4f} | {native_psi:.4f}"
        f" | {rows[1].ours:.4f} | {native_js / NATS_PER_BIT:.4f} |"
    )
    return rows, native


def categorical_rows(name: str, ref_p: list[float], cur_p: list[float], seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    ref_raw = rng.choice(CATEGORIES, REFERENCE_SIZE, p=ref_p)
    cur_raw = rng.choice(CATEGORIES, CURRENT_SIZE, p=cur_p)
    reference, current = pd.Series(ref_raw), pd.Series(cur_raw)
    ref_counts, cur_counts = Counter(ref_raw.tolist()), Counter(cur_raw.tolist())
    categories = sorted(set(ref_counts) | set(cur_counts))
    expected = [ref_counts[c] for c in categories]
    actual = [cur_counts[c] for c in categories]
    kind = ColumnType.Categorical
    return [
        Row(name, "PSI", evidently(psi_stat_test, reference, current, kind),
            psi(expected, actual), 1e-9),
        Row(name, "JS (bits)",
            evidently(jensenshannon_stat_test, reference, current, kind) / NATS_PER_BIT,
            js_distance(expected, actual), 1e-9),
        Row(name, "chi-square p-value", evidently(chi_stat_test, reference, current, kind),
            chi_square(ref_counts, cur_counts, min_expected=0.0)[1], 1e-9, relative=True),
    ]  # fmt: skip


def fmt(x: float) -> str:
    return f"{x:.3g}" if x != 0.0 and (abs(x) < 1e-3 or abs(x) >= 1e4) else f"{x:.4f}"


def main() -> int:
    import evidently as evidently_package

    rows: list[Row] = []
    natives: list[str] = []
    for seed, (name, sampler, shift) in enumerate(NUMERIC_CASES):
        case_rows, native = numeric_rows(name, sampler, shift, seed)
        rows += case_rows
        natives.append(native)
    for seed, (name, ref_p, cur_p) in enumerate(CATEGORICAL_CASES, start=100):
        rows += categorical_rows(name, ref_p, cur_p, seed)

    print(
        f"Evidently {evidently_package.__version__}; reference {REFERENCE_SIZE} values, current"
        f" {CURRENT_SIZE}; ours from ValueSketch (2 % relative accuracy).\n"
    )
    print("| case | statistic | Evidently | ours | difference | tolerance | ok |")
    print("|---|---|---:|---:|---:|---:|:-:|")
    for row in rows:
        tolerance = f"{row.tolerance:.0e} rel" if row.relative else fmt(row.tolerance)
        print(
            f"| {row.case} | {row.statistic} | {fmt(row.evidently)} | {fmt(row.ours)}"
            f" | {fmt(row.difference)} | {tolerance} | {'✓' if row.ok else '✗'} |"
        )
    print(
        "\nFor information, not checked: Evidently's own numeric binning (equal-width Sturges bins"
        " over both samples) against ours (baseline deciles).\n"
    )
    print("| case | our bins | PSI ours | PSI Evidently bins | JS ours | JS Evidently bins |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(natives))

    failures = [row for row in rows if not row.ok]
    if failures:
        print(f"\n{len(failures)} difference(s) above tolerance.", file=sys.stderr)
        return 1
    print(f"\nAll {len(rows)} differences within tolerance.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
