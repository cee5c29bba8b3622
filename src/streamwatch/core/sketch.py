"""Mergeable log-bucket histogram (DDSketch-style) for latency quantiles.

This module owns :class:`LogHistogram`: the quantile sketch that window aggregates keep for
non-negative values such as ``latency_ms``, its relative-accuracy guarantee, and its compact
JSON-ready form. It is pure numpy and must not import Kafka, Faust or Redis, nor know how or
under which key the state is stored; adapters do that (the key carries the schema version).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Self, TypeGuard

import numpy as np
import numpy.typing as npt

from streamwatch.core.buckets import BucketCounts, reachable_indices

MIN_POSITIVE = 1e-3
"""Values below this (including 0) are counted in the zero bucket and estimated as 0.0.

Without a floor, values near 0 would spread over an unbounded number of ever-smaller buckets.
"""

_DICT_KEYS = frozenset({"a", "z", "i", "c"})


def _invalid_values_error(values: npt.NDArray[np.float64]) -> ValueError:
    first_bad = values[~(np.isfinite(values) & (values >= 0.0))][0]
    return ValueError(
        f"LogHistogram accepts only finite values >= 0, got {float(first_bad)!r}:"
        " drop NaN, infinite and negative values before adding them"
    )


class LogHistogram:
    """Mergeable histogram of non-negative values with a relative-accuracy guarantee.

    A value ``x >= MIN_POSITIVE`` goes to bucket ``ceil(log(x) / log(gamma))`` with
    ``gamma = (1 + a) / (1 - a)``; bucket ``i`` covers ``(gamma**(i-1), gamma**i]`` and is
    estimated by ``2 * gamma**i / (gamma + 1)``, which is within relative error ``a`` of every
    value in it. Values below :data:`MIN_POSITIVE` are counted in ``zero_count`` and estimated
    as 0.0.

    ``quantile(q)`` estimates the order statistic at 0-based rank ``floor(q * (count - 1))``,
    the value ``np.quantile(x, q, method="lower")`` returns, so the estimate is within relative
    error ``a`` of it (or 0.0 when that value is below :data:`MIN_POSITIVE`).

    Merging is exact: two sketches of the parts of a stream merge into the sketch of the whole.

    Example:
        >>> h = LogHistogram(relative_accuracy=0.01)
        >>> h.add_array(np.array([0.0, 12.0, 15.0, 20.0, 250.0]))
        >>> h.count, h.zero_count
        (5, 1)
        >>> round(h.quantile(0.5), 2)  # exact: 15.0
        15.03
        >>> other = LogHistogram()
        >>> other.add(1000.0)
        >>> h.merge(other)
        >>> round(h.quantile(1.0), 1)  # exact: 1000.0
        1002.4
        >>> LogHistogram.from_dict(h.to_dict()) == h
        True
    """

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        """Create an empty histogram.

        Args:
            relative_accuracy: Maximum relative error ``a`` of any quantile estimate, in
                ``(0, 1)``. Smaller values use more buckets: about ``ln(max/min) / (2a)``.

        Raises:
            ValueError: If ``relative_accuracy`` is not strictly between 0 and 1.
        """
        if isinstance(relative_accuracy, bool) or not 0.0 < relative_accuracy < 1.0:
            raise ValueError(
                f"relative_accuracy must be strictly between 0 and 1, got {relative_accuracy!r};"
                " 0.01 means quantiles within 1 %"
            )
        self._relative_accuracy = float(relative_accuracy)
        self._gamma = (1.0 + self._relative_accuracy) / (1.0 - self._relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._buckets = BucketCounts()
        self._zero_count = 0
        self._count = 0

    @property
    def relative_accuracy(self) -> float:
        """The relative error bound ``a`` of quantile estimates."""
        return self._relative_accuracy

    @property
    def gamma(self) -> float:
        """Ratio between consecutive bucket bounds, ``(1 + a) / (1 - a)``."""
        return self._gamma

    @property
    def count(self) -> int:
        """Number of values added, including those in the zero bucket."""
        return self._count

    @property
    def zero_count(self) -> int:
        """Number of values below :data:`MIN_POSITIVE` (including 0)."""
        return self._zero_count

    @property
    def buckets(self) -> dict[int, int]:
        """A copy of the non-empty buckets, as bucket index -> count, by ascending index."""
        indices, counts = self._buckets.to_lists()
        return dict(zip(indices, counts, strict=True))

    def add(self, value: float) -> None:
        """Add one value. Prefer :meth:`add_array` for batches; it is much faster.

        Args:
            value: A finite, non-negative number.

        Raises:
            ValueError: If ``value`` is NaN, infinite or negative. Callers filter such values
                out (and count them) before adding; the histogram is left unchanged.
        """
        self.add_array(np.array([value], dtype=np.float64))

    def add_array(self, values: npt.ArrayLike) -> None:
        """Add every value of an array (of any shape), vectorised.

        Args:
            values: Finite, non-negative numbers, typically a float array of ``latency_ms``.

        Raises:
            ValueError: If any value is NaN, infinite or negative. Callers filter such values
                out (and count them) before adding; the histogram is left unchanged.
        """
        array = np.asarray(values, dtype=np.float64).ravel()
        if array.size == 0:
            return
        if not (np.isfinite(array) & (array >= 0.0)).all():
            raise _invalid_values_error(array)
        positive = array[array >= MIN_POSITIVE]
        self._zero_count += array.size - positive.size
        self._count += array.size
        if positive.size == 0:
            return
        # add() goes through here too, so one value and a batch can never land in different
        # buckets because of differing log implementations (libm vs numpy's SIMD loops).
        self._buckets.add_indices(np.ceil(np.log(positive) / self._log_gamma).astype(np.int64))

    def merge(self, other: LogHistogram) -> None:
        """Add all values of ``other`` into this histogram, in place.

        Args:
            other: A histogram with the same relative accuracy; it is not modified.

        Raises:
            ValueError: If the relative accuracies differ (their buckets do not line up).
        """
        if other._relative_accuracy != self._relative_accuracy:
            raise ValueError(
                "cannot merge LogHistograms with different relative_accuracy"
                f" ({self._relative_accuracy!r} and {other._relative_accuracy!r}):"
                " build both with the same setting"
            )
        self._buckets.merge(other._buckets)
        self._zero_count += other._zero_count
        self._count += other._count

    def copy(self) -> Self:
        """Return an independent copy."""
        clone = type(self)(self._relative_accuracy)
        clone._buckets = self._buckets.copy()
        clone._zero_count = self._zero_count
        clone._count = self._count
        return clone

    def quantile(self, q: float) -> float:
        """Estimate the ``q``-quantile: the value at rank ``floor(q * (count - 1))``.

        Args:
            q: Quantile in ``[0, 1]``, e.g. 0.99 for p99.

        Returns:
            The estimate, within ``relative_accuracy`` of ``np.quantile(x, q, method="lower")``
            (0.0 if that value is below :data:`MIN_POSITIVE`); NaN if the histogram is empty.

        Raises:
            ValueError: If ``q`` is not in ``[0, 1]``.
        """
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Estimate several quantiles in one pass over the sorted buckets.

        Args:
            qs: Quantiles in ``[0, 1]``, in any order.

        Returns:
            One estimate per entry of ``qs``, in the same order (see :meth:`quantile`).

        Raises:
            ValueError: If any ``q`` is not in ``[0, 1]``.
        """
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"quantile must be in [0, 1], got {q!r}; e.g. 0.99 for p99")
        if self._count == 0:
            return [math.nan] * len(qs)
        ranks = [math.floor(q * (self._count - 1)) for q in qs]
        estimates = [0.0] * len(ranks)
        sorted_buckets = zip(*self._buckets.to_lists(), strict=True)
        # Ranks below `seen` are covered by the buckets consumed so far; the zero bucket is first.
        seen = self._zero_count
        estimate = 0.0
        for position in sorted(range(len(ranks)), key=ranks.__getitem__):
            while ranks[position] >= seen:
                index, n = next(sorted_buckets)
                seen += n
                estimate = self._estimate(index)
            estimates[position] = estimate
        return estimates

    def _estimate(self, index: int) -> float:
        try:
            return 2.0 * self._gamma**index / (self._gamma + 1.0)
        except OverflowError:
            # Only the topmost buckets (values within `a` of the largest float) get here: their
            # upper bound gamma**index is not representable, but gamma**(index - 1) is.
            return self._gamma ** (index - 1) * (2.0 * self._gamma / (self._gamma + 1.0))

    def to_dict(self) -> dict[str, object]:
        """Return the compact JSON-ready form ``{"a", "z", "i", "c"}``.

        ``a`` is the relative accuracy, ``z`` the zero count, ``i`` the sorted bucket indices
        and ``c`` their counts in the same order. The total count is implied.
        """
        indices, counts = self._buckets.to_lists()
        return {"a": self._relative_accuracy, "z": self._zero_count, "i": indices, "c": counts}

    @classmethod
    def from_dict(cls, d: object) -> Self:
        """Rebuild a histogram from :meth:`to_dict` output, typically after a JSON round trip.

        Args:
            d: A mapping with exactly the keys ``a``, ``z``, ``i`` and ``c``.

        Raises:
            ValueError: If ``d`` does not have that shape; the message names the problem.
        """
        if not isinstance(d, dict):
            raise _malformed(f"expected a dict, got {type(d).__name__}")
        if set(d) != _DICT_KEYS:
            raise _malformed(f"expected keys {sorted(_DICT_KEYS)}, got {sorted(map(str, d))}")
        accuracy, zero_count, indices, counts = d["a"], d["z"], d["i"], d["c"]
        if isinstance(accuracy, bool) or not isinstance(accuracy, float | int):
            raise _malformed(f"'a' must be a number, got {accuracy!r}")
        if not _is_int(zero_count) or zero_count < 0:
            raise _malformed(f"'z' must be an integer >= 0, got {zero_count!r}")
        if not isinstance(indices, list) or not all(_is_int(i) for i in indices):
            raise _malformed("'i' must be a list of integers")
        if not isinstance(counts, list) or not all(_is_int(c) and c > 0 for c in counts):
            raise _malformed("'c' must be a list of integers > 0")
        if len(indices) != len(counts):
            raise _malformed(f"'i' has {len(indices)} entries but 'c' has {len(counts)}")
        if any(a >= b for a, b in itertools.pairwise(indices)):
            raise _malformed("'i' must be strictly increasing")
        try:
            histogram = cls(accuracy)
        except ValueError as exc:
            raise _malformed(str(exc)) from exc
        lowest, highest = reachable_indices(MIN_POSITIVE, histogram._log_gamma)
        if indices and (indices[0] < lowest or indices[-1] > highest):
            raise _malformed(f"'i' must lie in [{lowest}, {highest}] at this accuracy")
        histogram._buckets = BucketCounts.from_pairs(indices, counts)
        histogram._zero_count = zero_count
        histogram._count = zero_count + sum(counts)
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogHistogram):
            return NotImplemented
        return (
            self._relative_accuracy == other._relative_accuracy
            and self._zero_count == other._zero_count
            and self._buckets == other._buckets
        )

    def __repr__(self) -> str:
        return (
            f"LogHistogram(relative_accuracy={self._relative_accuracy!r}, count={self._count},"
            f" zero_count={self._zero_count}, buckets={len(self._buckets)})"
        )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _malformed(reason: str) -> ValueError:
    return ValueError(
        f"malformed LogHistogram dict: {reason}; it must come from LogHistogram.to_dict()"
    )
