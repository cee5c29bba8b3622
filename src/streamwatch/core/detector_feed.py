"""Feed a model's series to its online drift detectors and turn detections into alerts.

:class:`DetectorFeed` owns one partition's detector side: which rule watches each
(model, version, signal, name) series, the river monitors (:class:`DetectorBank`) and the
firing detector alerts (:class:`DetectorAlerts`). Numeric features are fed as their percentile
in the model's baseline (so a heavy tail or one outlier cannot swamp a detector, and one setting
fits every scale) and only once a baseline exists; score, log latency (by the detector's
transform), the error indicator and prediction correctness need none.

Pure; its state is part of the partition checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from streamwatch.core.baseline import BaselineProfile
from streamwatch.core.columns import EventColumns
from streamwatch.core.detectors import DetectorBank, DetectorParams, SeriesKey
from streamwatch.core.identity import FiringRef
from streamwatch.core.rules import DetectedChange, DetectorAlerts, DetectorRule
from streamwatch.events import AlertEvent

#: Series whose matching rule is remembered; beyond it the lookup cache starts over.
RULE_CACHE_LIMIT = 100_000
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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

    def firing_refs(self) -> list[FiringRef]:
        """The detector alerts firing now (for inhibition)."""
        return self._alerts.firing_refs()

    def alerts_state(self) -> dict[str, Any]:
        """The firing detector alerts, for the checkpoint."""
        return self._alerts.to_state()

    def forget(self, model_id: str, model_version: str) -> list[str]:
        """Free a departed model version's monitors; return the stored keys to delete."""
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
                ranks = baseline.percentiles_of(name)
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

    def _rule(self, key: SeriesKey) -> DetectorRule | None:
        if key not in self._rule_of:
            if len(self._rule_of) >= RULE_CACHE_LIMIT:
                self._rule_of.clear()  # a cache: feature names can keep coming
            self._rule_of[key] = next((r for r in self._rules if r.matches(*key)), None)
        return self._rule_of[key]

    def _params(self, key: SeriesKey) -> DetectorParams | None:
        rule = self._rule(key)
        return None if rule is None else rule.params()
