import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core.aggregate import OTHER_CATEGORY, WindowAggregate, add_category_counts
from streamwatch.core.columns import EventColumns
from streamwatch.core.summary import window_metrics, window_view
from streamwatch.events import InferenceEvent
from streamwatch.exceptions import StateFormatError

from .helpers import BASE_MS, event

feature_value = st.one_of(
    st.none(),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-1000, 1000),
    st.sampled_from(["de", "fr", "us"]),
    st.booleans(),
)
event_strategy = st.builds(
    lambda i, dt, lat, err, score, f1, f2, pred, cpu: InferenceEvent.model_validate(
        event(
            i,
            BASE_MS + dt,
            latency_ms=lat,
            error=err,
            score=score,
            features={"f1": f1, "f2": f2},
            prediction=pred,
            resources={"cpu_pct": cpu},
            stages_ms={"inference": lat / 2},
        )
    ),
    st.integers(0, 10**6),
    st.integers(0, 9_999),
    st.floats(0, 5_000, allow_nan=False),
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 1)),
    feature_value,
    feature_value,
    st.one_of(st.none(), st.sampled_from(["cat", "dog"]), st.integers(0, 3), st.floats(-5, 5)),
    st.floats(0, 100),
)


def aggregate_of(events: list[InferenceEvent]) -> WindowAggregate:
    agg = WindowAggregate()
    if events:
        cols = EventColumns.from_events(events, max_features=64)
        agg.add_columns(cols, np.arange(len(events), dtype=np.int64))
    return agg


def assert_equivalent(a: WindowAggregate, b: WindowAggregate) -> None:
    da, db = a.to_dict(), b.to_dict()
    # Counts, categories and histograms are exact; float moments up to rounding.
    for key in ("count", "errors", "error_types", "latency", "pred_classes", "traffic", "late"):
        assert da[key] == db[key], key
    assert da["features"].keys() == db["features"].keys()
    for name in da["features"]:
        assert da["features"][name]["cat"] == db["features"][name]["cat"]
        assert_moments(da["features"][name]["num"], db["features"][name]["num"])
    for key in ("latency_moments", "score", "pred_values"):
        assert_moments(da[key], db[key])
    for key in ("stages_ms", "resources"):
        assert da[key].keys() == db[key].keys()
        for name in da[key]:
            assert_moments(da[key][name], db[key][name])


def assert_moments(a: list, b: list) -> None:
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:], strict=True):
        if x is None or y is None:
            assert x == y
        else:
            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.lists(event_strategy, max_size=40), st.data())
def test_merging_partials_equals_aggregating_the_whole(events, data) -> None:
    cut = data.draw(st.integers(0, len(events)))
    left, right = aggregate_of(events[:cut]), aggregate_of(events[cut:])
    left.merge(right)
    assert_equivalent(left, aggregate_of(events))


@settings(max_examples=100, deadline=None)
@given(st.lists(event_strategy, max_size=30))
def test_serialisation_round_trips(events) -> None:
    agg = aggregate_of(events)
    restored = WindowAggregate.from_dict(orjson.loads(orjson.dumps(agg.to_dict())))
    assert restored.to_dict() == agg.to_dict()


def test_metrics_match_direct_computation() -> None:
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(3.5, 0.6, 2_000)
    errors = rng.random(2_000) < 0.05
    events = [
        InferenceEvent.model_validate(
            event(
                i,
                BASE_MS + i,
                latency_ms=float(lat),
                error=bool(err),
                score=0.5,
                features={"x": float(i), "c": "a" if i % 3 else "b", "gone": None},
            )
        )
        for i, (lat, err) in enumerate(zip(latencies, errors, strict=True))
    ]
    m = window_metrics(aggregate_of(events), 10_000, BASE_MS, closed=True)
    assert m["count"] == 2_000
    assert m["error_count"] == int(errors.sum())
    assert m["error_rate"] == errors.sum() / 2_000
    assert m["throughput_eps"] == 200.0
    assert m["latency_mean_ms"] == pytest.approx(latencies.mean())
    assert m["latency_max_ms"] == latencies.max()
    for key, q in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)):
        exact = np.quantile(latencies, q, method="lower")
        assert abs(m[key] - exact) <= 0.01 * exact
    view = window_view(aggregate_of(events), 10_000, BASE_MS, closed=True)
    x = view["features"]["x"]
    assert x["count"] == 2_000 and x["missing"] == 0
    assert x["mean"] == pytest.approx(999.5)
    assert x["std"] == pytest.approx(np.arange(2_000).std())
    assert view["features"]["c"]["categories"] == {"a": 1333, "b": 667}
    # A feature sent only as null is entirely missing.
    assert "gone" not in view["features"]


def test_missing_counts_absent_and_null_values() -> None:
    events = [
        InferenceEvent.model_validate(event(0, BASE_MS, features={"x": 1.0})),
        InferenceEvent.model_validate(event(1, BASE_MS, features={"x": None})),
        InferenceEvent.model_validate(event(2, BASE_MS, features={})),
    ]
    view = window_view(aggregate_of(events), 1_000, BASE_MS, closed=True)
    assert view["features"]["x"] == {
        "count": 1,
        "missing": 2,
        "numeric_count": 1,
        "mean": 1.0,
        "std": 0.0,
        "min": 1.0,
        "max": 1.0,
    }


def test_categories_beyond_the_cap_fold_into_other() -> None:
    counts: dict[str, int] = {}
    add_category_counts(counts, {"a": 1, "b": 2, "c": 3}, cap=2)
    assert counts == {"a": 1, "b": 2, OTHER_CATEGORY: 3}
    assert sum(counts.values()) == 6


def fold_one_by_one(target: dict[str, int], counts: dict[str, int], cap: int) -> None:
    """The folding rule, one category at a time."""
    for label, count in counts.items():
        if label in target:
            target[label] += count
        elif len(target) < cap or label == OTHER_CATEGORY:
            target[label] = count
        else:
            target[OTHER_CATEGORY] = target.get(OTHER_CATEGORY, 0) + count


labels = st.sampled_from(["a", "b", "c", "d", "e", "f", OTHER_CATEGORY])


@given(
    merges=st.lists(st.dictionaries(labels, st.integers(1, 9)), max_size=5),
    cap=st.integers(1, 5),
)
def test_folding_a_full_window_keeps_the_one_by_one_rule(
    merges: list[dict[str, int]], cap: int
) -> None:
    fast: dict[str, int] = {}
    slow: dict[str, int] = {}
    for counts in merges:
        add_category_counts(fast, counts, cap)
        fold_one_by_one(slow, counts, cap)
        assert list(fast.items()) == list(slow.items())


def test_business_ratios() -> None:
    agg = WindowAggregate()
    for _ in range(100):
        agg.add_business("impression", 1, BASE_MS)
    for _ in range(5):
        agg.add_business("click", 1, BASE_MS)
    agg.add_business("conversion", 1, BASE_MS)
    agg.add_business("revenue", 12.5, BASE_MS)
    m = window_metrics(agg, 60_000, BASE_MS, closed=True)
    assert m["ctr"] == 0.05
    assert m["conversion_rate"] == 0.2
    assert m["business_revenue_sum"] == 12.5
    assert "error_rate" not in m  # no inference events: no rate, rather than 0 %


def test_other_format_version_is_refused_not_misread() -> None:
    data = WindowAggregate().to_dict()
    data["fmt"] = 99
    with pytest.raises(StateFormatError, match="delete the key"):
        WindowAggregate.from_dict(data)
