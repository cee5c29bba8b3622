"""Compare one window with its model's baseline: per-feature and output drift, ranked.

Glue between :mod:`streamwatch.core.drift` (the statistics and the decision rule) and the
aggregates: every numeric feature's sketch and every categorical feature's counts are compared
with the baseline's, and so are the outputs — the score distribution (``@score``), numeric
predictions and predicted classes (``@prediction``). Names starting with ``@`` are outputs; a
feature cannot be told apart from them only if its own name starts with ``@``.

Pure; computed when a window closes (for alerts) and when a window is read (for status).
"""

from __future__ import annotations

from typing import Any

from streamwatch.core.aggregate import OTHER_CATEGORY, WindowAggregate
from streamwatch.core.baseline import BaselineProfile
from streamwatch.core.distribution import ValueSketch
from streamwatch.core.drift import (
    DriftPolicy,
    FeatureDrift,
    NumericReference,
    compare_categorical,
    compare_numerics,
    decide,
)

SCORE_NAME = "@score"
PREDICTION_NAME = "@prediction"
#: Features named in an alert's root cause.
ROOT_CAUSE_FEATURES = 5


def assess_window(
    baseline: BaselineProfile, window: WindowAggregate, policy: DriftPolicy
) -> list[FeatureDrift]:
    """Return drift findings of every feature and output the window shares with the baseline.

    Ranked by :func:`~streamwatch.core.drift.decide`: drifted first, then by PSI.
    """
    reference = baseline.aggregate
    # Numeric findings are computed together (one p-value call) and slotted back in place, so
    # the order ``decide`` breaks ties by is the features' order.
    findings: list[FeatureDrift | None] = []
    numerics: list[tuple[str, NumericReference, ValueSketch]] = []
    slots: list[int] = []

    def numeric(name: str, ref: ValueSketch, cur: ValueSketch) -> None:
        # A profile built with another sketch accuracy cannot be bucketed alike: skip the
        # feature rather than fail the window (rebuild the baseline to compare it).
        if ref.count and cur.count and ref.relative_accuracy == cur.relative_accuracy:
            slots.append(len(findings))
            findings.append(None)
            numerics.append((name, baseline.reference_of(name, ref, policy.n_bins), cur))

    for name, stats in window.features.items():
        ref_stats = reference.features.get(name)
        if ref_stats is None:
            continue
        numeric(name, ref_stats.sketch, stats.sketch)
        if ref_stats.categories and stats.categories:
            ref_counts, cur_counts = comparable_counts(ref_stats.categories, stats.categories)
            findings.append(compare_categorical(name, ref_counts, cur_counts, policy))
    numeric(SCORE_NAME, reference.score_sketch, window.score_sketch)
    if reference.prediction_classes and window.prediction_classes:
        ref_counts, cur_counts = comparable_counts(
            reference.prediction_classes, window.prediction_classes
        )
        findings.append(compare_categorical(PREDICTION_NAME, ref_counts, cur_counts, policy))
    else:
        numeric(PREDICTION_NAME, reference.prediction_sketch, window.prediction_sketch)
    for slot, finding in zip(slots, compare_numerics(numerics, policy), strict=True):
        findings[slot] = finding
    return decide([f for f in findings if f is not None], policy)


def comparable_counts(
    baseline: dict[str, int], window: dict[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """Align two capped category counts so that they compare like with like.

    Aggregates keep the first ``max_categories`` categories they see and fold the rest into
    ``__other__``, so a window and its baseline of a high-cardinality feature (item ids) keep
    different sets: compared as they are, every window would look drifted. When either side has
    folded, only the categories both kept are compared, everything else on both sides is
    folded together.
    """
    if OTHER_CATEGORY not in baseline and OTHER_CATEGORY not in window:
        return baseline, window
    common = (baseline.keys() & window.keys()) - {OTHER_CATEGORY}

    def fold(counts: dict[str, int]) -> dict[str, int]:
        folded = {c: n for c, n in counts.items() if c in common}
        rest = sum(n for c, n in counts.items() if c not in common)
        if rest:
            folded[OTHER_CATEGORY] = rest
        return folded

    return fold(baseline), fold(window)


def drift_metrics(
    findings: list[FeatureDrift], baseline: BaselineProfile, window_metrics: dict[str, Any]
) -> dict[str, Any]:
    """Return the flat drift and baseline-relative metrics rules can name.

    ``drifted_features`` counts input features judged drifted; ``drift_psi_max`` is the
    largest input-feature PSI; ``score_psi`` / ``prediction_psi`` describe the outputs;
    ``latency_p95_vs_baseline`` is the window's p95 latency over the baseline's (1.5 = +50 %).
    """
    inputs = [f for f in findings if not f.feature.startswith("@")]
    metrics: dict[str, Any] = {"drift_checked_features": len(inputs)}
    if inputs:
        metrics["drifted_features"] = sum(f.drifted for f in inputs)
        metrics["drift_psi_max"] = max(f.psi for f in inputs)
    for finding in findings:
        if finding.feature == SCORE_NAME:
            metrics["score_psi"] = finding.psi
        elif finding.feature == PREDICTION_NAME:
            metrics["prediction_psi"] = finding.psi
            metrics["prediction_drifted"] = int(finding.drifted)
    reference_p95 = baseline.latency_p95_ms
    p95 = window_metrics.get("latency_p95_ms")
    if reference_p95 and p95 is not None:
        metrics["latency_p95_vs_baseline"] = p95 / reference_p95
    return metrics


def root_cause(findings: list[FeatureDrift]) -> list[FeatureDrift]:
    """Return the input features with the largest drift, ranked (what on-call asks first)."""
    return [f for f in findings if not f.feature.startswith("@")][:ROOT_CAUSE_FEATURES]
