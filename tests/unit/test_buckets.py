from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.core.buckets import BucketCounts
from streamwatch.core.distribution import ValueSketch
from streamwatch.core.sketch import LogHistogram

batches = st.lists(st.lists(st.integers(-2_000, 2_000), max_size=50), max_size=6)


def as_dict(buckets: BucketCounts) -> dict[int, int]:
    indices, counts = buckets.nonempty()
    return dict(zip(indices.tolist(), counts.tolist(), strict=True))


@given(first=batches, second=batches)
def test_adding_and_merging_count_each_index_as_a_dict_would(
    first: list[list[int]], second: list[list[int]]
) -> None:
    # The dense range grows left and right as batches arrive: every count must stay put.
    a, b = BucketCounts(), BucketCounts()
    for batch in first:
        a.add_indices(np.array(batch, dtype=np.int64))
    for batch in second:
        b.add_indices(np.array(batch, dtype=np.int64))
    copy = a.copy()

    a.merge(b)

    expected = Counter(i for batch in first + second for i in batch)
    assert as_dict(a) == dict(sorted(expected.items()))
    assert as_dict(copy) == dict(sorted(Counter(i for batch in first for i in batch).items()))
    assert a.total() == sum(expected.values())
    assert BucketCounts.from_pairs(*a.to_lists()) == a


def test_a_damaged_value_sketch_dict_cannot_size_the_counts() -> None:
    data = ValueSketch().to_dict() | {"p": [[10**12], [1]]}
    with pytest.raises(ValueError, match="bucket indices must lie in"):
        ValueSketch.from_dict(data)


def test_a_damaged_histogram_dict_cannot_size_the_counts() -> None:
    data = LogHistogram().to_dict() | {"i": [-(10**12)], "c": [1]}
    with pytest.raises(ValueError, match="'i' must lie in"):
        LogHistogram.from_dict(data)
