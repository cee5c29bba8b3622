"""Counts per integer bucket index, held densely: the storage of the log-bucket sketches.

The bucket indices of one value stream span a few hundred consecutive integers (the buckets are
logarithmic), so an ``int64`` array over their range, with its first index, makes adding a batch
one ``bincount`` and merging two sketches one array addition, where a dict of counts needs a
Python step per bucket. The range only grows, and is bounded by what finite values can reach:
at 2 % accuracy, values from 1e-6 to 1e308 span about 18,000 buckets (144 KB); a feature's usual
few decades span a few hundred.

Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def reachable_indices(smallest: float, log_gamma: float) -> tuple[int, int]:
    """The lowest and highest bucket index of a finite value at least ``smallest``.

    A value ``x`` goes to bucket ``ceil(log(x) / log_gamma)``; one bucket is spared either side
    for rounding in ``log``. A stored sketch's indices outside them were damaged: refuse them
    rather than size the dense counts by them.
    """
    lowest = math.ceil(math.log(smallest) / log_gamma) - 1
    highest = math.ceil(math.log(np.finfo(np.float64).max) / log_gamma) + 1
    return lowest, highest


class BucketCounts:
    """A count for each bucket index, over the contiguous range of the indices seen.

    Example:
        >>> counts = BucketCounts()
        >>> counts.add_indices(np.array([3, 5, 3]))
        >>> other = BucketCounts.from_pairs([1, 3], [2, 1])
        >>> counts.merge(other)
        >>> [c.tolist() for c in counts.nonempty()]
        [[1, 3, 5], [2, 3, 1]]
    """

    __slots__ = ("_counts", "_lo")

    def __init__(self) -> None:
        """Create empty counts."""
        self._lo = 0
        self._counts: IntArray = np.zeros(0, dtype=np.int64)

    @classmethod
    def from_pairs(cls, indices: list[int], counts: list[int]) -> Self:
        """Counts with ``counts[j]`` at ``indices[j]``; a repeated index keeps its last count."""
        buckets = cls()
        pairs = dict(zip(indices, counts, strict=True))
        if pairs:
            lo, hi = min(pairs), max(pairs)
            buckets._lo = lo
            buckets._counts = np.zeros(hi - lo + 1, dtype=np.int64)
            buckets._counts[np.array(list(pairs), dtype=np.int64) - lo] = list(pairs.values())
        return buckets

    def __len__(self) -> int:
        """The number of non-empty buckets."""
        return int(np.count_nonzero(self._counts))

    def total(self) -> int:
        """The sum of all counts."""
        return int(self._counts.sum())

    def add_indices(self, indices: IntArray) -> None:
        """Add one to the count of each index in ``indices`` (repeats count repeatedly)."""
        if indices.size == 0:
            return
        lo, hi = int(indices.min()), int(indices.max())
        self._cover(lo, hi)
        start = lo - self._lo
        self._counts[start : start + hi - lo + 1] += np.bincount(indices - lo)

    def merge(self, other: BucketCounts) -> None:
        """Add ``other``'s counts into these."""
        size = other._counts.size
        if size == 0:
            return
        self._cover(other._lo, other._lo + size - 1)
        start = other._lo - self._lo
        self._counts[start : start + size] += other._counts

    def nonempty(self) -> tuple[IntArray, IntArray]:
        """The indices with a non-zero count, ascending, and their counts."""
        present = np.flatnonzero(self._counts)
        return present + self._lo, self._counts[present]

    def to_lists(self) -> list[list[int]]:
        """``[indices, counts]`` of the non-empty buckets, ascending, as JSON-ready lists."""
        indices, counts = self.nonempty()
        return [indices.tolist(), counts.tolist()]

    def copy(self) -> Self:
        """An independent copy."""
        clone = type(self)()
        clone._lo, clone._counts = self._lo, self._counts.copy()
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BucketCounts):
            return NotImplemented
        return self.to_lists() == other.to_lists()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def _cover(self, lo: int, hi: int) -> None:
        """Grow the range to include the indices ``lo`` to ``hi``."""
        size = self._counts.size
        if size == 0:
            self._lo = lo
            self._counts = np.zeros(hi - lo + 1, dtype=np.int64)
            return
        top = self._lo + size - 1
        if lo >= self._lo and hi <= top:
            return
        new_lo = min(lo, self._lo)
        grown = np.zeros(max(hi, top) - new_lo + 1, dtype=np.int64)
        grown[self._lo - new_lo : self._lo - new_lo + size] = self._counts
        self._lo, self._counts = new_lo, grown
