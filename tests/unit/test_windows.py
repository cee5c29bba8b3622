import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.core.durations import format_duration_ms, parse_duration_ms
from streamwatch.core.windows import (
    first_open_start_ms,
    is_closed,
    late_mask,
    running_watermark_ms,
    window_start_ms,
    window_starts_ms,
)


@given(st.integers(-(10**13), 10**13), st.integers(1, 10**8))
def test_window_contains_its_event_half_open(ts: int, size: int) -> None:
    start = window_start_ms(ts, size)
    assert start <= ts < start + size
    assert start % size == 0


def test_boundaries_are_half_open() -> None:
    assert window_start_ms(10_000, 10_000) == 10_000
    assert window_start_ms(9_999, 10_000) == 0


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=50), st.integers(1, 10**6))
def test_vectorised_starts_match_scalar(ts: list[int], size: int) -> None:
    arr = np.array(ts, dtype=np.int64)
    assert window_starts_ms(arr, size).tolist() == [window_start_ms(t, size) for t in ts]


def test_window_closes_exactly_at_end_plus_lateness() -> None:
    assert not is_closed(0, 10_000, 14_999, 5_000)
    assert is_closed(0, 10_000, 15_000, 5_000)
    assert first_open_start_ms(15_000, 10_000, 5_000) == 10_000


def test_running_watermark_is_max_before_each_event() -> None:
    ts = np.array([5, 3, 9, 7], dtype=np.int64)
    assert running_watermark_ms(ts, 0).tolist() == [0, 5, 5, 9]


def test_late_mask_marks_only_events_of_closed_windows() -> None:
    ts = np.array([24_999, 3_000, 12_000], dtype=np.int64)
    before = running_watermark_ms(ts, 0)
    # At 24.999 s with 5 s lateness, [0, 10 s) is closed; [10 s, 20 s) closes at 25 s.
    assert late_mask(ts, before, 10_000, 5_000).tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250ms", 250), ("10s", 10_000), ("1m", 60_000), ("1h", 3_600_000), ("7d", 604_800_000)],
)
def test_durations_round_trip(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert format_duration_ms(ms) == text


@pytest.mark.parametrize("text", ["", "10", "1.5s", "10 sec", "-1s", "1w"])
def test_bad_durations_name_the_valid_units(text: str) -> None:
    with pytest.raises(ValueError, match="one unit of"):
        parse_duration_ms(text)
