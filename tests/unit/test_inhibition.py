"""Inhibition: a firing critical mutes the same model's warnings, on the topic and in rule tests."""

from __future__ import annotations

import numpy as np

from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.columns import EventColumns
from streamwatch.core.identity import FiringRef
from streamwatch.core.inhibition import InhibitRule, apply_inhibitions
from streamwatch.core.processor import PartitionProcessor, ProcessorConfig
from streamwatch.core.rules import ThresholdRule
from streamwatch.events import AlertEvent, InferenceEvent, WindowRef

from .helpers import BASE_MS, event, messages

CRITICAL_MUTES_WARNINGS = InhibitRule(name="critical_mutes_warnings")


def _alert(alert_id: str, severity: str, model: str = "m", state: str = "firing") -> AlertEvent:
    return AlertEvent(
        alert_id=alert_id,
        fingerprint=alert_id,
        rule=f"{severity}_rule",
        severity=severity,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        model_id=model,
        model_version="1",
        metric="x",
        value=1.0,
        threshold=0.0,
        window=WindowRef(size_ms=1_000, start_ms=0, end_ms=1_000),
        message="m",
        emitted_at_ms=0,
    )


def _ref(alert_id: str, severity: str, model: str = "m", fired_ms: int = 0) -> FiringRef:
    return FiringRef(alert_id, f"{severity}_rule", severity, model, "1", fired_ms)


def test_a_firing_critical_mutes_warnings_of_the_same_model_only() -> None:
    warning, other_model, info = (
        _alert("w", "warning"),
        _alert("w2", "warning", model="other"),
        _alert("i", "info"),
    )
    firing = [_ref("c", "critical"), _ref("w", "warning"), _ref("w2", "warning", "other")]
    muted = apply_inhibitions([warning, other_model, info], firing, [CRITICAL_MUTES_WARNINGS])
    assert [a.inhibited_by for a in muted] == ["c", None, None]


def test_nothing_is_muted_once_the_critical_has_resolved() -> None:
    firing = _alert("w", "warning")
    assert apply_inhibitions([firing], [], [CRITICAL_MUTES_WARNINGS]) == [firing]


def test_resolves_are_never_marked() -> None:
    # A notifier pairs a resolve with its firing event by id; marking it could hide the resolve
    # of an alert people were told about.
    resolved = _alert("w", "warning", state="resolved")
    firing = [_ref("c", "critical")]
    assert apply_inhibitions([resolved], firing, [CRITICAL_MUTES_WARNINGS]) == [resolved]


def test_a_critical_that_fired_after_the_warnings_window_does_not_mute_it() -> None:
    # One step can span a lot of event time (a backlog): order in event time decides.
    warning = _alert("w", "warning")  # window [0, 1000)
    later = [_ref("c", "critical", fired_ms=1_000)]
    assert apply_inhibitions([warning], later, [CRITICAL_MUTES_WARNINGS])[0].inhibited_by is None
    earlier = [_ref("c", "critical", fired_ms=999)]
    assert apply_inhibitions([warning], earlier, [CRITICAL_MUTES_WARNINGS])[0].inhibited_by == "c"


def test_equal_on_version_keeps_other_versions_audible() -> None:
    rule = InhibitRule(name="per_version", equal=("model_id", "model_version"))
    canary = _alert("w", "warning").model_copy(update={"model_version": "2"})
    assert apply_inhibitions([canary], [_ref("c", "critical")], [rule])[0].inhibited_by is None


def test_the_processor_marks_a_warning_firing_with_a_critical_on_the_same_model() -> None:
    rules = (
        ThresholdRule(
            name="error_rate_high",
            metric="error_rate",
            op=">",
            threshold=0.01,
            severity="critical",
        ),
        ThresholdRule(name="latency_p95_high", metric="latency_p95_ms", op=">", threshold=200),
    )
    config = ProcessorConfig(
        window_sizes_ms=(1_000,),
        allowed_lateness_ms=0,
        idle_timeout_ms=2_000,
        max_future_skew_ms=300_000,
        rules=rules,
        inhibit=(CRITICAL_MUTES_WARNINGS,),
    )
    processor = PartitionProcessor(0, config)
    batch = [event(i, BASE_MS + i, latency_ms=500.0, error=i % 2 == 0) for i in range(20)]
    batch.append(event(99, BASE_MS + 1_000))  # closes the first window
    result = processor.process(messages([batch]), BASE_MS)
    by_rule = {a.rule: a for a in result.alerts}
    assert by_rule["error_rate_high"].inhibited_by is None
    assert by_rule["latency_p95_high"].inhibited_by == by_rule["error_rate_high"].alert_id


def test_segments_are_aggregated_and_merge_exactly() -> None:
    events = [
        InferenceEvent.model_validate(
            event(i, BASE_MS + i, latency_ms=float(i), error=i % 4 == 0, segment=seg)
        )
        for i, seg in enumerate(["eu", "us", "eu", None] * 25)
    ]
    columns = EventColumns.from_events(events, 64)
    whole = WindowAggregate()
    whole.add_columns(columns, np.arange(100))
    left, right = WindowAggregate(), WindowAggregate()
    left.add_columns(columns, np.arange(40))
    right.add_columns(columns, np.arange(40, 100))
    left.merge(right)
    assert {k: (v.count, v.error_count) for k, v in whole.segments.items()} == {
        "eu": (50, 25),
        "us": (25, 0),
    }
    assert left.to_dict() == whole.to_dict()
    assert WindowAggregate.from_dict(whole.to_dict()).to_dict() == whole.to_dict()


def test_segments_beyond_the_cap_fold_into_other() -> None:
    events = [
        InferenceEvent.model_validate(event(i, BASE_MS + i, segment=f"s{i}")) for i in range(5)
    ]
    agg = WindowAggregate(max_categories=3)
    agg.add_columns(EventColumns.from_events(events, 64), np.arange(5))
    assert sum(s.count for s in agg.segments.values()) == 5
    assert "__other__" in agg.segments and len(agg.segments) == 4
