"""Mergeable sketch of a feature's value distribution, for drift statistics against a baseline.

This module owns :class:`ValueSketch`: a signed log-bucket histogram (DDSketch-style, like
:class:`~streamwatch.core.sketch.LogHistogram` but for values of either sign). Window
aggregates keep one per numeric feature, for the score and for numeric predictions; baselines
keep one per feature too. Drift statistics (PSI, KS, Wasserstein) read both through
:meth:`ValueSketch.support`, so a window and its baseline are bucketed identically and a
stationary stream compares as equal.

Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from streamwatch.core.buckets import BucketCounts, reachable_indices

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Default relative accuracy: each value is represented within 2 % of itself.
DEFAULT_RELATIVE_ACCURACY = 0.02
#: Values with ``|x|`` below this are counted as zero (bounds the number of buckets near 0).
MIN_MAGNITUDE = 1e-6


class ValueSketch:
    """Mergeable histogram of finite values of any sign with a relative-accuracy guarantee.

    A value ``x`` with ``|x| >= MIN_MAGNITUDE`` goes to bucket ``ceil(log|x| / log(gamma))`` on
    its sign's side, ``gamma = (1 + a) / (1 - a)``; the bucket's representative value
    ``sign * 2 * gamma**i / (gamma + 1)`` is within relative error ``a`` of every value in it.
    Smaller magnitudes count as zero. Merging is exact.

    Example:
        >>> s = ValueSketch()
        >>> s.add_array(np.array([-2.0, 0.0, 1.0, 3.0]))
        >>> values, counts = s.support()
        >>> [round(float(v), 2) for v in values], counts.tolist()
        ([-2.01, 0.0, 0.98, 3.0], [1, 1, 1, 1])
        >>> ValueSketch.from_dict(s.to_dict()) == s
        True
    """

    __slots__ = ("_count", "_gamma", "_log_gamma", "_neg", "_pos", "_relative_accuracy", "_zero")

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        """Create an empty sketch.

        Raises:
            ValueError: If ``relative_accuracy`` is not strictly between 0 and 1.
        """
        if isinstance(relative_accuracy, bool) or not 0.0 < relative_accuracy < 1.0:
            raise ValueError(
                f"relative_accuracy must be strictly between 0 and 1, got {relative_accuracy!r}"
            )
        self._relative_accuracy = float(relative_accuracy)
        self._gamma = (1.0 + self._relative_accuracy) / (1.0 - self._relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._pos = BucketCounts()
        self._neg = BucketCounts()
        self._zero = 0
        self._count = 0

    @property
    def count(self) -> int:
        """Number of values added."""
        return self._count

    @property
    def relative_accuracy(self) -> float:
        """The relative error bound of each value's representative."""
        return self._relative_accuracy

    def add_array(self, values: FloatArray) -> None:
        """Add finite values (callers drop NaN first).

        Raises:
            ValueError: If any value is NaN or infinite; the sketch is left unchanged.
        """
        array = np.asarray(values, dtype=np.float64).ravel()
        if array.size == 0:
            return
        if not np.isfinite(array).all():
            raise ValueError("ValueSketch accepts only finite values: drop NaN and inf first")
        magnitude = np.abs(array)
        big = magnitude >= MIN_MAGNITUDE
        self._count += int(array.size)
        self._zero += int(array.size - np.count_nonzero(big))
        if not big.any():
            return
        indices = np.ceil(np.log(magnitude[big]) / self._log_gamma).astype(np.int64)
        negative = array[big] < 0
        if not negative.any():
            self._pos.add_indices(indices)
            return
        self._pos.add_indices(indices[~negative])
        self._neg.add_indices(indices[negative])

    def merge(self, other: ValueSketch) -> None:
        """Fold ``other`` (same relative accuracy) into this sketch.

        Raises:
            ValueError: If the relative accuracies differ.
        """
        if other._relative_accuracy != self._relative_accuracy:
            raise ValueError(
                "cannot merge ValueSketches with different relative_accuracy"
                f" ({self._relative_accuracy!r} and {other._relative_accuracy!r})"
            )
        self._pos.merge(other._pos)
        self._neg.merge(other._neg)
        self._zero += other._zero
        self._count += other._count

    def copy(self) -> Self:
        """Return an independent copy."""
        clone = type(self)(self._relative_accuracy)
        clone._pos, clone._neg = self._pos.copy(), self._neg.copy()
        clone._zero, clone._count = self._zero, self._count
        return clone

    def support(self) -> tuple[FloatArray, IntArray]:
        """Return the distribution as ascending representative values and their counts."""
        factor = 2.0 / (self._gamma + 1.0)
        gamma = self._gamma
        neg_indices, neg_counts = self._neg.nonempty()
        pos_indices, pos_counts = self._pos.nonempty()
        # Python's pow, not numpy's: the representatives stay the same floats everywhere.
        values = [-factor * gamma**i for i in neg_indices[::-1].tolist()]
        counts = [neg_counts[::-1]]
        if self._zero:
            values.append(0.0)
            counts.append(np.array([self._zero], dtype=np.int64))
        values.extend([factor * gamma**i for i in pos_indices.tolist()])
        counts.append(pos_counts)
        return np.array(values, dtype=np.float64), np.concatenate(counts)

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Estimate quantiles (order statistic at rank ``floor(q * (count - 1))``); NaN if empty."""
        if self._count == 0:
            return [math.nan] * len(qs)
        values, counts = self.support()
        cumulative = np.cumsum(counts)
        ranks = np.floor(np.asarray(qs, dtype=np.float64) * (self._count - 1))
        positions = np.searchsorted(cumulative, ranks, side="right")
        return [float(values[p]) for p in positions]

    def mean(self) -> float:
        """Mean of the representative values (within the relative accuracy of the true mean)."""
        if self._count == 0:
            return math.nan
        values, counts = self.support()
        return float(np.dot(values, counts) / self._count)

    def to_dict(self) -> dict[str, Any]:
        """Return the compact JSON-ready form ``{"a", "z", "p": [[i...], [c...]], "n": ...}``."""
        return {
            "a": self._relative_accuracy,
            "z": self._zero,
            "p": self._pos.to_lists(),
            "n": self._neg.to_lists(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: If ``data`` does not have that shape.
        """
        try:
            sketch = cls(float(data["a"]))
            sketch._zero = int(data["z"])
            sketch._pos = _side_of(data["p"], sketch._log_gamma)
            sketch._neg = _side_of(data["n"], sketch._log_gamma)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"malformed ValueSketch dict ({exc}); it must come from to_dict()"
            ) from None
        sketch._count = sketch._zero + sketch._pos.total() + sketch._neg.total()
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValueSketch):
            return NotImplemented
        return (
            self._relative_accuracy == other._relative_accuracy
            and self._zero == other._zero
            and self._pos == other._pos
            and self._neg == other._neg
        )

    def __repr__(self) -> str:
        return (
            f"ValueSketch(relative_accuracy={self._relative_accuracy!r}, count={self._count},"
            f" buckets={len(self._pos) + len(self._neg)})"
        )


def _side_of(lists: Any, log_gamma: float) -> BucketCounts:
    """One side's buckets from :meth:`ValueSketch.to_dict`'s ``[indices, counts]``.

    Raises:
        ValueError: If an index is beyond what a finite value can reach (a damaged dict would
            otherwise size the dense counts by it).
    """
    indices, counts = lists
    pairs = [int(i) for i in indices], [int(c) for c in counts]
    lowest, highest = reachable_indices(MIN_MAGNITUDE, log_gamma)
    if pairs[0] and (min(pairs[0]) < lowest or max(pairs[0]) > highest):
        raise ValueError(f"bucket indices must lie in [{lowest}, {highest}]")
    return BucketCounts.from_pairs(*pairs)
