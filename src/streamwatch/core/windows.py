"""Event-time tumbling window arithmetic: pure functions on integer milliseconds.

Windows are half-open ``[start_ms, start_ms + size_ms)`` and aligned to the Unix epoch, so every
worker computes the same boundaries for the same event without coordination.

A window *closes* once the partition's watermark (the largest event time seen) reaches
``end + allowed_lateness``. An event whose window has already closed is *late*.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def window_start_ms(event_ts_ms: int, size_ms: int) -> int:
    """Return the start of the window of ``size_ms`` that contains ``event_ts_ms``.

    >>> window_start_ms(12_345, 10_000)
    10000
    >>> window_start_ms(-1, 10_000)
    -10000
    """
    return event_ts_ms - (event_ts_ms % size_ms)


def window_starts_ms(event_ts_ms: IntArray, size_ms: int) -> IntArray:
    """Vectorised :func:`window_start_ms` (numpy's ``%`` floors like Python's)."""
    return event_ts_ms - (event_ts_ms % size_ms)


def first_open_start_ms(watermark_ms: int, size_ms: int, lateness_ms: int) -> int:
    """Return the start of the oldest window that is still open at ``watermark_ms``.

    Window ``[s, s + size)`` is closed when ``watermark >= s + size + lateness``; the oldest
    open window is therefore the one containing ``watermark - lateness``.

    >>> first_open_start_ms(25_000, 10_000, 5_000)
    20000
    >>> first_open_start_ms(24_999, 10_000, 5_000)
    10000
    """
    return window_start_ms(watermark_ms - lateness_ms, size_ms)


def is_closed(start_ms: int, size_ms: int, watermark_ms: int, lateness_ms: int) -> bool:
    """Return whether the window starting at ``start_ms`` is closed at ``watermark_ms``."""
    return watermark_ms >= start_ms + size_ms + lateness_ms


def late_mask(
    event_ts_ms: IntArray, watermark_before_ms: IntArray, size_ms: int, lateness_ms: int
) -> npt.NDArray[np.bool_]:
    """Return which events fall into a window that was already closed when they arrived.

    Args:
        event_ts_ms: Event times, in arrival order.
        watermark_before_ms: For each event, the watermark *before* it was seen.
        size_ms: Window size.
        lateness_ms: Allowed lateness.
    """
    frontier = window_starts_ms(watermark_before_ms - lateness_ms, size_ms)
    result: npt.NDArray[np.bool_] = event_ts_ms < frontier
    return result


def running_watermark_ms(event_ts_ms: IntArray, initial_ms: int) -> IntArray:
    """Return, for each event in arrival order, the watermark just before that event.

    The watermark is the maximum event time seen so far (starting from ``initial_ms``). Computed
    per event rather than per batch so results do not depend on how messages were batched: a
    replay after a crash may batch differently and must still produce the same windows.

    >>> running_watermark_ms(np.array([5, 3, 9, 7], dtype=np.int64), 4).tolist()
    [4, 5, 5, 9]
    """
    if event_ts_ms.size == 0:
        return event_ts_ms.copy()
    shifted = np.empty_like(event_ts_ms)
    shifted[0] = initial_ms
    shifted[1:] = event_ts_ms[:-1]
    result: IntArray = np.maximum.accumulate(np.maximum(shifted, initial_ms))
    return result
