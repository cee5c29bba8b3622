"""Turn a window aggregate into the metrics people and rules read.

``metrics`` is flat (``error_rate``, ``latency_p95_ms``, ``business_click_count``, ``ctr``, ...):
alert rules name these keys. ``features``, ``predictions`` and ``stages_ms`` carry the detail a
dashboard shows. Metrics that have no data in the window are absent rather than zero, so a rule
on ``accuracy`` never fires on a window without labels.
"""

from __future__ import annotations

import math
from typing import Any

from streamwatch.core.aggregate import Moments, SegmentStats, WindowAggregate

PERCENTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


def _mean(moments: Moments) -> float | None:
    return moments.mean if moments.n else None


def window_metrics(
    agg: WindowAggregate, size_ms: int, start_ms: int, closed: bool
) -> dict[str, Any]:
    """Return the flat metric dict of one window.

    Args:
        agg: The (merged) aggregate.
        size_ms: Window size.
        start_ms: Window start.
        closed: Whether the window is final. Throughput of an open window is computed over
            the time elapsed in it so far, not over its full size.
    """
    metrics: dict[str, Any] = {"count": agg.count, "late_events": agg.late_events}
    span_ms = size_ms
    if not closed and agg.last_event_ms is not None:
        span_ms = max(1, min(size_ms, agg.last_event_ms + 1 - start_ms))
    metrics["throughput_eps"] = agg.count * 1000.0 / span_ms
    if agg.count:
        metrics["error_count"] = agg.error_count
        metrics["error_rate"] = agg.error_count / agg.count
        metrics["latency_mean_ms"] = agg.latency_moments.mean
        metrics["latency_max_ms"] = agg.latency_moments.max
        quantiles = agg.latency.quantiles(list(PERCENTILES.values()))
        metrics.update(zip(PERCENTILES, quantiles, strict=True))
    for name, moments in (("score_mean", agg.score), ("prediction_mean", agg.prediction_values)):
        if moments.n:
            metrics[name] = moments.mean
    for name, moments in agg.resources.items():
        metrics[f"{name}_mean"] = moments.mean
        metrics[f"{name}_max"] = moments.max
    for stage, moments in agg.stages_ms.items():
        metrics[f"stage_{stage}_mean_ms"] = moments.mean
    if agg.feedback_count:
        metrics["feedback_count"] = agg.feedback_count
    for kind, moments in agg.business.items():
        metrics[f"business_{kind}_count"] = moments.n
        metrics[f"business_{kind}_sum"] = moments.n * moments.mean
    metrics.update(_business_ratios(agg))
    return metrics


#: The metrics a window reports per segment (what segment rules may name).
SEGMENT_METRICS = frozenset(
    {"count", "error_count", "error_rate", "throughput_eps", *PERCENTILES.keys()}
)


def segment_metrics(stats: SegmentStats, size_ms: int) -> dict[str, Any]:
    """Return the flat metrics of one segment in a closed window (see :data:`SEGMENT_METRICS`)."""
    metrics: dict[str, Any] = {
        "count": stats.count,
        "throughput_eps": stats.count * 1000.0 / size_ms,
    }
    if stats.count:
        metrics["error_count"] = stats.error_count
        metrics["error_rate"] = stats.error_count / stats.count
        quantiles = stats.latency.quantiles(list(PERCENTILES.values()))
        metrics.update(zip(PERCENTILES, quantiles, strict=True))
    return metrics


def _business_ratios(agg: WindowAggregate) -> dict[str, float]:
    """Click-through and conversion rates, when their denominators are present."""
    counts = {kind: m.n for kind, m in agg.business.items()}
    ratios: dict[str, float] = {}
    if counts.get("impression"):
        ratios["ctr"] = counts.get("click", 0) / counts["impression"]
    if counts.get("click"):
        ratios["conversion_rate"] = counts.get("conversion", 0) / counts["click"]
    return ratios


def feature_summary(agg: WindowAggregate) -> dict[str, dict[str, Any]]:
    """Per-feature count / missing / mean / std / min / max and top categories."""
    result: dict[str, dict[str, Any]] = {}
    for name, stats in sorted(agg.features.items()):
        entry: dict[str, Any] = {"count": stats.present, "missing": agg.count - stats.present}
        num = stats.numeric
        if num.n:
            entry.update(
                numeric_count=num.n,
                mean=num.mean,
                std=num.std,
                min=num.min,
                max=num.max,
            )
        if stats.categories:
            entry["categories"] = dict(
                sorted(stats.categories.items(), key=lambda kv: (-kv[1], kv[0]))
            )
        if num.n and stats.categories:
            # Both numbers and strings under one name is a schema problem worth surfacing.
            entry["mixed_types"] = True
        result[name] = entry
    return result


def window_view(agg: WindowAggregate, size_ms: int, start_ms: int, closed: bool) -> dict[str, Any]:
    """Return the full JSON view of one window: metrics plus per-feature and output detail."""
    return {
        "metrics": {
            k: clean_metric(v) for k, v in window_metrics(agg, size_ms, start_ms, closed).items()
        },
        "features": feature_summary(agg),
        "predictions": {
            "classes": dict(sorted(agg.prediction_classes.items(), key=lambda kv: -kv[1])),
            "numeric": _moments_view(agg.prediction_values),
        },
        "error_types": agg.error_types,
        "stages_ms": {k: _moments_view(m) for k, m in agg.stages_ms.items()},
        "resources": {k: _moments_view(m) for k, m in agg.resources.items()},
        "traffic": agg.traffic,
        "segments": {
            name: {k: clean_metric(v) for k, v in segment_metrics(stats, size_ms).items()}
            for name, stats in sorted(agg.segments.items())
        },
        "first_event_ms": agg.first_event_ms,
        "last_event_ms": agg.last_event_ms,
    }


def _moments_view(moments: Moments) -> dict[str, float | int] | None:
    if not moments.n:
        return None
    return {
        "count": moments.n,
        "mean": moments.mean,
        "std": moments.std,
        "min": moments.min,
        "max": moments.max,
    }


def clean_metric(value: Any) -> Any:
    """Return a metric value fit for JSON: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
