"""Feed a model's series to its online drift detectors and turn detections into alerts.

:class:`DetectorFeed` owns one partition's detector side: which rule watches each
(model, version, signal, name) series, the river monitors (:class:`DetectorBank`) and the
firing detector alerts (:class:`DetectorAlerts`). Numeric features are fed as their percentile
in the model's baseline (so a heavy tail or one outlier cannot swamp a detector, and one setting
fits every scale; looked up by :class:`BaselineRanks`) and only once a baseline exists and a
rule watches them; score, log latency (by the detector's transform), the error indicator and
prediction correctness need none.

Pure; its state is part of the partition checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from streamwatch.core.baseline import BaselineProfile, Percentiles
from streamwatch.core.columns import EventColumns
from streamwatch.core.detectors import DetectorBank, DetectorParams, SeriesKey
from streamwatch.core.identity import FiringRef
from streamwatch.core.rules import DetectedChange, DetectorAlerts, DetectorRule
from streamwatch.events import AlertEvent

#: Series whose matching rule is remembered; beyond it the lookup cache starts over.
RULE_CACHE_LIMIT = 100_000
#: Features whose percentile lookup is remembered; beyond it the cache starts over.
RANKS_CACHE_LIMIT = 2_000
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class BaselineRanks:
    """A baseline feature's :meth:`Percentiles.percentiles`, the same numbers about 4x faster.

    ``Percentiles`` binary-searches every value twice (left and right) for its mid-rank; on
    unordered values each search costs ~55 ns, most of it mispredicted branches, which at eight
    features per event is most of what the detectors cost. The baseline's values are distinct,
    so the right search is an equality test; and the left one starts from a guide table: each
    value's float bits, a monotone integer that grows by about the same step per bucket of the
    log-bucketed sketch, pick a cell that holds at most one baseline value, so one comparison
    finishes the search. The arithmetic is on integers and comparisons only, so the index is
    exactly ``np.searchsorted``'s.

    Example:
        >>> table = Percentiles(np.array([-3.0, 0.0, 1.0, 2.0, 4.0]),
        ...                     np.array([0.1, 0.25, 0.4, 0.6, 1.0]))
        >>> values = np.array([-5.0, 0.0, 0.5, 1.0, 3.0, 4.0, 9.0, np.nan])
        >>> BaselineRanks(table).percentiles(values).tolist()
        [0.0, 0.175, 0.25, 0.325, 0.6, 0.8, 1.0, nan]
        >>> table.percentiles(values).tolist()
        [0.0, 0.175, 0.25, 0.325, 0.6, 0.8, 1.0, nan]
    """

    __slots__ = (
        "_by_index",
        "_guarded",
        "_guide",
        "_high",
        "_last_cell",
        "_low",
        "_offset",
        "_shift",
        "source",
    )

    def __init__(self, source: Percentiles) -> None:
        """Prepare the lookup of ``source``'s percentiles."""
        self.source = source
        values = source.values
        below = np.concatenate(([0.0], source.cdf))
        # Found at index i (values[i - 1] < x <= values[i]): below[i] if x < values[i], the
        # mid-rank (below[i] + below[i + 1]) / 2 if x == values[i]; interleaved, so that the
        # index is 2 * i + (x == values[i]). Past the end, x is NaN or beyond every value.
        mid = np.append((below[:-1] + below[1:]) / 2.0, below[-1])
        self._by_index = np.stack((below, mid), axis=1).ravel()
        self._guarded = np.append(values, np.inf)
        self._guide: IntArray | None = None
        self._low = self._high = 0.0
        self._offset = self._shift = self._last_cell = 0
        if values.size >= 2 and bool((values[1:] > values[:-1]).all()):
            self._build_guide(values)

    def _build_guide(self, values: FloatArray) -> None:
        magnitudes = np.abs(values)
        nonzero = magnitudes[magnitudes > 0.0]
        if nonzero.size == 0:
            return
        # Magnitudes are clamped to [low, high] before taking their bits: below low the only
        # baseline value is 0, above high there is none, so no search result changes.
        self._low = float(nonzero.min()) / 2.0
        self._high = float(magnitudes.max()) * 2.0
        self._offset = int(np.float64(self._low).view(np.int64)) - 1
        span = 2 * (int(np.float64(self._high).view(np.int64)) - self._offset)
        if span >= 1 << 62:
            return  # the keys could overflow: keep the binary search
        self._last_cell = 1 << 62
        keys = self._cells(values, 0)
        for shift in range(max(span.bit_length() - values.size.bit_length() - 1, 0), -1, -1):
            cells = keys >> shift
            guide = np.searchsorted(cells, np.arange(int(cells[-1]) + 2), side="left")
            guide = guide.astype(np.int32)
            if int(np.diff(guide).max()) <= 1:  # at most one baseline value per cell
                self._guide, self._shift, self._last_cell = guide, shift, guide.size - 1
                return
            if guide.size > 1 << 16:
                return  # values too unevenly spread for a small table: keep the binary search

    def _cells(self, x: FloatArray, shift: int) -> IntArray:
        """The guide cell of each value: monotone in the value, NaN in the first cell."""
        negative = x < 0.0
        magnitude = np.abs(x)
        np.fmax(magnitude, self._low, out=magnitude)  # and NaN becomes low
        np.fmin(magnitude, self._high, out=magnitude)
        keys = magnitude.view(np.int64)
        keys -= self._offset  # 1 at low, and growing with the magnitude
        np.negative(keys, out=keys, where=negative)
        keys += int(np.float64(self._high).view(np.int64)) - self._offset  # from 0
        keys >>= shift
        np.minimum(keys, self._last_cell, out=keys)
        return keys

    def percentiles(self, x: FloatArray) -> FloatArray:
        """Mid-rank baseline percentile of each value (NaN stays NaN), as ``Percentiles``."""
        if self._guide is None:
            return self.source.percentiles(x)
        found = self._guide[self._cells(x, self._shift)]
        found += self._guarded[found] < x  # at most one baseline value left in the cell
        index = found * 2
        index += self._guarded[found] == x
        result: FloatArray = self._by_index[index]
        missing = np.isnan(x)
        if missing.any():
            result[missing] = np.nan
        return result


class DetectorFeed:
    """The detectors of one partition; see the module docstring."""

    def __init__(
        self, rules: tuple[DetectorRule, ...], alert_window_ms: int, max_series: int
    ) -> None:
        """Watch the series ``rules`` match; alerts reference ``alert_window_ms`` windows."""
        self._rules = rules
        self._rule_of: dict[SeriesKey, DetectorRule | None] = {}
        self._bank = DetectorBank(self._params, max_series)
        self._alerts = DetectorAlerts(alert_window_ms)
        self._detections = 0
        self._unwatched_seen = 0
        self._ranks: dict[tuple[str, str, str], BaselineRanks] = {}

    def firing_refs(self) -> list[FiringRef]:
        """The detector alerts firing now (for inhibition)."""
        return self._alerts.firing_refs()

    def alerts_state(self) -> dict[str, Any]:
        """The firing detector alerts, for the checkpoint."""
        return self._alerts.to_state()

    def forget(self, model_id: str, model_version: str) -> list[str]:
        """Free a departed model version's monitors; return the stored keys to delete."""
        for key in [k for k in self._ranks if k[0] == model_id and k[1] == model_version]:
            del self._ranks[key]
        return self._bank.forget(model_id, model_version)

    def drain_monitor_changes(self) -> dict[str, str]:
        """Serialised monitors fed since the last call, by joined series key (for storage)."""
        return self._bank.drain_changed()

    def restore(self, alerts: dict[str, Any], monitors: dict[str, str]) -> None:
        """Restore the alerts (:meth:`alerts_state`) and every stored monitor.

        A monitor that cannot be continued starts afresh (see :attr:`discarded`).
        """
        self._alerts.restore(alerts)
        self._bank.restore(monitors)

    @property
    def discarded(self) -> int:
        """Stored monitors that could not be continued on restore and started afresh."""
        return self._bank.discarded

    def feed_inference(
        self,
        model_id: str,
        version: str,
        columns: EventColumns,
        rows: IntArray,
        baseline: BaselineProfile | None,
        now_wall_ms: int,
    ) -> list[AlertEvent]:
        """Feed one model's events (positions ``rows`` of ``columns``, in arrival order)."""
        ts = columns.event_ts_ms[rows]
        series: list[tuple[str, str, FloatArray]] = []
        if baseline is not None:
            for name, column in columns.features.items():
                if self._rule((model_id, version, "feature", name)) is None:
                    continue  # not watched: no need for its percentiles
                ranks = self._ranks_of(model_id, version, name, baseline)
                if ranks is not None:
                    series.append(("feature", name, ranks.percentiles(column.numeric[rows])))
        series.append(("score", "score", columns.score[rows]))
        series.append(("latency", "latency_ms", columns.latency_ms[rows]))
        series.append(("error", "error", columns.is_error[rows].astype(np.float64)))
        alerts: list[AlertEvent] = []
        for signal, name, values in series:
            key = (model_id, version, signal, name)
            alerts.extend(self.feed(key, values, ts, baseline, now_wall_ms))
        return alerts

    def feed(
        self,
        key: SeriesKey,
        values: FloatArray,
        ts: IntArray,
        baseline: BaselineProfile | None,
        now_wall_ms: int,
    ) -> list[AlertEvent]:
        """Feed one series; return the alerts of new incidents."""
        rule = self._rule(key)
        if rule is None:
            return []
        alerts: list[AlertEvent] = []
        for hit in self._bank.feed(key, values, ts):
            self._detections += 1
            before, after = hit.before_mean, hit.after_mean
            if key[2] == "feature" and baseline is not None:
                # Percentiles back to the feature's units, through the baseline's quantiles.
                ranks = baseline.percentiles_of(key[3])
                if ranks is not None:
                    before, after = ranks.value_at(before), ranks.value_at(after)
            change = DetectedChange(
                rule=rule,
                model_id=key[0],
                model_version=key[1],
                signal=key[2],
                series=key[3],
                detector=hit.detector,
                before_mean=before,
                after_mean=after,
                changed_at_ms=hit.event_ts_ms,
            )
            alert = self._alerts.on_detection(change, now_wall_ms)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def drain_detections(self) -> int:
        """Return and reset the number of detections since the last call (alerted or not)."""
        count, self._detections = self._detections, 0
        return count

    def drain_unwatched(self) -> int:
        """Series refused since the last call because ``max_series`` were watched already."""
        refused = self._bank.overflow + self._bank.bad_keys
        count, self._unwatched_seen = refused - self._unwatched_seen, refused
        return count

    def resolve_due(self, watermark_ms: int, now_wall_ms: int) -> list[AlertEvent]:
        """Resolve the alerts of series quiet for their rule's ``resolve_after``."""
        return self._alerts.resolve_due(watermark_ms, now_wall_ms)

    def _ranks_of(
        self, model_id: str, version: str, name: str, baseline: BaselineProfile
    ) -> BaselineRanks | None:
        table = baseline.percentiles_of(name)
        if table is None:
            return None
        key = (model_id, version, name)
        ranks = self._ranks.get(key)
        if ranks is None or ranks.source is not table:  # new, or the baseline was replaced
            if len(self._ranks) >= RANKS_CACHE_LIMIT:
                self._ranks.clear()
            ranks = self._ranks[key] = BaselineRanks(table)
        return ranks

    def _rule(self, key: SeriesKey) -> DetectorRule | None:
        if key not in self._rule_of:
            if len(self._rule_of) >= RULE_CACHE_LIMIT:
                self._rule_of.clear()  # a cache: feature names can keep coming
            self._rule_of[key] = next((r for r in self._rules if r.matches(*key)), None)
        return self._rule_of[key]

    def _params(self, key: SeriesKey) -> DetectorParams | None:
        rule = self._rule(key)
        return None if rule is None else rule.params()
