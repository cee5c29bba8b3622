import math

import numpy as np
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamwatch.core.sketch import MIN_POSITIVE, LogHistogram

# Bounded like real latencies (ms); zeros and sub-MIN_POSITIVE values are included on purpose.
latencies_ms = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
quantile_levels = st.floats(min_value=0.0, max_value=1.0)

# Slack on top of the stated accuracy for rounding in log/pow near bucket bounds.
FLOAT_EPSILON = 1e-9


def sketch_of(values: list[float], relative_accuracy: float = 0.01) -> LogHistogram:
    sketch = LogHistogram(relative_accuracy)
    sketch.add_array(np.array(values, dtype=np.float64))
    return sketch


def assert_within_accuracy(estimate: float, exact: float, relative_accuracy: float) -> None:
    if exact < MIN_POSITIVE:
        assert estimate == 0.0
    else:
        assert abs(estimate - exact) <= (relative_accuracy + FLOAT_EPSILON) * exact


# --- properties ---------------------------------------------------------------------------------


@settings(deadline=None)
@given(values=st.lists(latencies_ms, max_size=300), data=st.data())
def test_merging_two_parts_equals_sketch_of_whole(values: list[float], data: st.DataObject) -> None:
    split = data.draw(st.integers(min_value=0, max_value=len(values)), label="split")
    left, right = sketch_of(values[:split]), sketch_of(values[split:])

    left.merge(right)

    whole = sketch_of(values)
    assert left == whole
    assert left.count == whole.count == len(values)
    assert left.to_dict() == whole.to_dict()


@settings(deadline=None)
@given(values=st.lists(latencies_ms, max_size=300))
def test_add_one_by_one_equals_add_array(values: list[float]) -> None:
    one_by_one = LogHistogram()
    for value in values:
        one_by_one.add(value)

    assert one_by_one == sketch_of(values)
    assert one_by_one.count == len(values)


@settings(deadline=None)
@given(
    values=st.lists(latencies_ms, min_size=1, max_size=300),
    q=quantile_levels,
    relative_accuracy=st.sampled_from([0.001, 0.01, 0.05]),
)
@example(values=[MIN_POSITIVE], q=0.0, relative_accuracy=0.01)
@example(values=[0.0, MIN_POSITIVE / 2, 1.0], q=0.5, relative_accuracy=0.01)
@example(values=[1e7, 1.0, 1e7], q=1.0, relative_accuracy=0.01)
def test_quantile_within_relative_accuracy_of_lower_order_statistic(
    values: list[float], q: float, relative_accuracy: float
) -> None:
    exact = float(np.quantile(np.array(values), q, method="lower"))

    estimate = sketch_of(values, relative_accuracy).quantile(q)

    assert_within_accuracy(estimate, exact, relative_accuracy)


@settings(deadline=None)
@given(
    values=st.lists(latencies_ms, min_size=1, max_size=300),
    qs=st.lists(quantile_levels, max_size=10),
)
def test_quantiles_in_one_pass_equal_each_quantile(values: list[float], qs: list[float]) -> None:
    sketch = sketch_of(values)

    assert sketch.quantiles(qs) == [sketch.quantile(q) for q in qs]


# --- a realistic latency distribution -----------------------------------------------------------


def test_lognormal_100k_p50_p95_p99_within_one_percent() -> None:
    rng = np.random.default_rng(20240601)
    latency_ms = rng.lognormal(mean=3.0, sigma=1.0, size=100_000)
    sketch = LogHistogram()
    # Fed in batches, as the worker does.
    for batch in np.array_split(latency_ms, 100):
        sketch.add_array(batch)

    estimates = sketch.quantiles([0.5, 0.95, 0.99])

    assert sketch.count == 100_000
    for q, estimate in zip([0.5, 0.95, 0.99], estimates, strict=True):
        exact = float(np.quantile(latency_ms, q, method="lower"))
        assert abs(estimate - exact) <= 0.01 * exact, (q, estimate, exact)
    assert sketch == sketch_of(latency_ms.tolist())


# --- behaviour at the edges ---------------------------------------------------------------------


def test_bucket_index_and_estimate_follow_the_documented_formula() -> None:
    sketch = LogHistogram(0.01)
    gamma = (1 + 0.01) / (1 - 0.01)

    sketch.add(100.0)

    index = math.ceil(math.log(100.0) / math.log(gamma))
    assert sketch.gamma == gamma
    assert sketch.buckets == {index: 1}
    assert sketch.quantile(0.5) == 2 * gamma**index / (gamma + 1)


def test_values_below_min_positive_count_as_zero() -> None:
    sketch = sketch_of([0.0, -0.0, MIN_POSITIVE / 2, MIN_POSITIVE])

    assert sketch.zero_count == 3
    assert sketch.count == 4
    assert sketch.quantiles([0.0, 0.5, 1.0])[:2] == [0.0, 0.0]
    assert sketch.quantile(1.0) == pytest.approx(MIN_POSITIVE, rel=0.01)


def test_empty_sketch_quantile_is_nan() -> None:
    sketch = LogHistogram()

    assert math.isnan(sketch.quantile(0.5))
    assert all(math.isnan(estimate) for estimate in sketch.quantiles([0.0, 1.0]))
    assert sketch.quantiles([]) == []
    assert sketch.count == 0


def test_empty_array_is_a_no_op() -> None:
    sketch = LogHistogram()

    sketch.add_array(np.array([], dtype=np.float64))

    assert sketch == LogHistogram()
    assert sketch.count == 0


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan, math.inf])
def test_invalid_quantile_raises(q: float) -> None:
    sketch = sketch_of([1.0, 2.0])

    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\]"):
        sketch.quantile(q)
    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\]"):
        sketch.quantiles([0.5, q])
    with pytest.raises(ValueError, match=r"quantile must be in \[0, 1\]"):
        LogHistogram().quantile(q)


@pytest.mark.parametrize("bad", [-1.0, -1e-12, math.nan, math.inf, -math.inf])
def test_nan_negative_and_infinite_values_raise_and_leave_sketch_unchanged(bad: float) -> None:
    sketch = sketch_of([1.0, 0.0])
    before = sketch.copy()

    with pytest.raises(ValueError, match="finite values >= 0"):
        sketch.add(bad)
    with pytest.raises(ValueError, match="finite values >= 0"):
        sketch.add_array(np.array([5.0, bad, 7.0]))

    assert sketch == before
    assert sketch.count == before.count == 2


def test_merge_with_different_accuracy_raises() -> None:
    sketch = sketch_of([1.0], relative_accuracy=0.01)
    other = sketch_of([2.0], relative_accuracy=0.02)

    with pytest.raises(ValueError, match="different relative_accuracy"):
        sketch.merge(other)
    assert sketch == sketch_of([1.0])


def test_merge_does_not_modify_other_and_copy_is_independent() -> None:
    sketch, other = sketch_of([1.0, 2.0]), sketch_of([3.0, 0.0])
    other_before = other.copy()
    sketch_before = sketch.copy()

    sketch.merge(other)

    assert other == other_before
    assert sketch != sketch_before
    assert sketch_before == sketch_of([1.0, 2.0])


@pytest.mark.parametrize("relative_accuracy", [0.0, 1.0, -0.01, 1.5, math.nan])
def test_invalid_relative_accuracy_raises(relative_accuracy: float) -> None:
    with pytest.raises(ValueError, match="relative_accuracy must be strictly between 0 and 1"):
        LogHistogram(relative_accuracy)


def test_equality() -> None:
    assert sketch_of([1.0, 0.0]) == sketch_of([0.0, 1.0])
    assert sketch_of([1.0]) != sketch_of([1.0], relative_accuracy=0.02)
    assert sketch_of([1.0]) != sketch_of([0.0])
    assert sketch_of([0.0]) != sketch_of([0.0, 0.0])
    assert sketch_of([1.0]) != {"a": 0.01, "z": 0, "i": [0], "c": [1]}


# --- serialised form ----------------------------------------------------------------------------


def test_to_dict_is_compact_and_sorted() -> None:
    sketch = sketch_of([1000.0, 0.0, 1.0, 1.0])

    assert sketch.to_dict() == {"a": 0.01, "z": 1, "i": [0, 346], "c": [2, 1]}


@settings(deadline=None)
@given(
    values=st.lists(latencies_ms, max_size=300),
    relative_accuracy=st.sampled_from([0.001, 0.01, 0.05]),
)
def test_to_dict_from_dict_round_trip_through_orjson(
    values: list[float], relative_accuracy: float
) -> None:
    sketch = sketch_of(values, relative_accuracy)

    restored = LogHistogram.from_dict(orjson.loads(orjson.dumps(sketch.to_dict())))

    assert restored == sketch
    assert restored.count == sketch.count
    assert restored.relative_accuracy == sketch.relative_accuracy
    assert restored.quantiles([0.0, 0.5, 1.0]) == sketch.quantiles([0.0, 0.5, 1.0])
    # A restored sketch keeps accepting values and merging.
    restored.add(5.0)
    restored.merge(sketch)
    assert restored.count == 2 * sketch.count + 1


VALID = {"a": 0.01, "z": 1, "i": [0, 346], "c": [2, 1]}


@pytest.mark.parametrize(
    ("malformed", "message"),
    [
        ([], "expected a dict"),
        ({k: v for k, v in VALID.items() if k != "c"}, "expected keys"),
        ({**VALID, "v": 1}, "expected keys"),
        ({**VALID, "a": "0.01"}, "'a' must be a number"),
        ({**VALID, "a": True}, "'a' must be a number"),
        ({**VALID, "a": 0.0}, "relative_accuracy must be strictly between 0 and 1"),
        ({**VALID, "a": 2}, "relative_accuracy must be strictly between 0 and 1"),
        ({**VALID, "z": -1}, "'z' must be an integer >= 0"),
        ({**VALID, "z": 1.0}, "'z' must be an integer >= 0"),
        ({**VALID, "z": None}, "'z' must be an integer >= 0"),
        ({**VALID, "i": (0, 346)}, "'i' must be a list of integers"),
        ({**VALID, "i": [0, 1.5]}, "'i' must be a list of integers"),
        ({**VALID, "i": [False, 346]}, "'i' must be a list of integers"),
        ({**VALID, "c": [2, 0]}, "'c' must be a list of integers > 0"),
        ({**VALID, "c": [2, -1]}, "'c' must be a list of integers > 0"),
        ({**VALID, "c": "21"}, "'c' must be a list of integers > 0"),
        ({**VALID, "c": [2]}, "'i' has 2 entries but 'c' has 1"),
        ({**VALID, "i": [346, 0]}, "'i' must be strictly increasing"),
        ({**VALID, "i": [0, 0]}, "'i' must be strictly increasing"),
    ],
)
def test_from_dict_rejects_malformed_input(malformed: object, message: str) -> None:
    with pytest.raises(ValueError, match="malformed LogHistogram dict") as excinfo:
        LogHistogram.from_dict(malformed)
    assert message in str(excinfo.value)


def test_from_dict_accepts_the_valid_fixture() -> None:
    sketch = LogHistogram.from_dict(VALID)

    assert sketch.count == 4
    assert sketch == sketch_of([1000.0, 0.0, 1.0, 1.0])
