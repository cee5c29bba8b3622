from pathlib import Path

import pytest

from streamwatch.core.identity import fingerprint
from streamwatch.core.rules import (
    AlertEngine,
    ClosedWindow,
    ThresholdRule,
    load_rule_set,
    load_rules,
)
from streamwatch.exceptions import RulesFileError

SIZES = (10_000, 60_000, 3_600_000)


def window(start_ms: int, **metrics) -> ClosedWindow:
    return ClosedWindow("m", "1", 10_000, start_ms, {"count": 100, **metrics})


def labels(start_ms: int, **metrics) -> ClosedWindow:
    return ClosedWindow("m", "1", 10_000, start_ms, {"count": 100, **metrics}, phase="labels")


def test_shipped_defaults_are_the_source_documents_rules() -> None:
    rules = {r.name: r for r in load_rules(None, SIZES)}
    assert {(r.metric, r.op, r.threshold, r.severity) for r in rules.values()} == {
        ("error_rate", ">", 0.01, "critical"),
        ("latency_p95_ms", ">", 200, "warning"),
        ("accuracy", "<", 0.90, "warning"),
        ("cpu_pct_mean", ">", 80, "warning"),
        # The source's relative rules: 3 points of accuracy, +50 % latency vs the baseline.
        ("accuracy_vs_baseline", "<", -0.03, "warning"),
        ("latency_p95_vs_baseline", ">", 1.5, "warning"),
        ("drifted_features", ">=", 1, "warning"),
        ("prediction_drifted", ">=", 1, "warning"),
        # ... and against the previous windows: "95 % -> 92 %", "100 -> 150 ms".
        ("accuracy", "<", -0.03, "warning"),
        ("latency_p95_ms", ">", 1.5, "warning"),
        ("error_rate", ">", 0.05, "warning"),
        # Business next to accuracy: CTR 5 % -> 3 % is a 40 % fall.
        ("ctr", "<", 0.7, "warning"),
    }
    assert rules["accuracy_drop"].relative_to == "previous"
    assert rules["latency_rise"].change == "ratio"
    assert rules["segment_error_rate_high"].segment == "*"
    inhibit = load_rule_set(None, SIZES).inhibit
    assert [(i.source_severity, i.target_severity, i.equal) for i in inhibit] == [
        ("critical", "warning", ("model_id",))
    ]
    detectors = load_rule_set(None, SIZES).detectors
    assert {d.signal for d in detectors} == {"feature", "score", "latency", "error", "correctness"}


def test_deploy_rules_file_is_valid() -> None:
    load_rules(Path(__file__).parents[2] / "deploy" / "rules.yaml", SIZES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [{name: x, metric: m, op: '!=', threshold: 1}]", "rule #1 ('x'), field 'op'"),
        ("rules: [{name: x, metric: m, op: '>', threshold: high}]", "field 'threshold'"),
        (
            "rules: [{name: x, metric: m, op: '>', threshold: 1, window: 5s}]",
            "not one of the worker's windows",
        ),
        ("rules: [{name: x, metric: m, op: '>', threshold: 1, colour: red}]", "field 'colour'"),
        (
            "rules: [{name: x, metric: m, op: '>', threshold: 1}, {name: x, metric: n, op: '<', threshold: 2}]",
            "unique",
        ),
        ("rules: [unclosed", "not valid YAML"),
    ],
)
def test_bad_rules_files_name_the_rule_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesFileError, match="rules.yaml") as info:
        load_rules(path, SIZES)
    assert message in str(info.value)


def test_missing_rules_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="STREAMWATCH_RULES"):
        load_rules(tmp_path / "absent.yaml", SIZES)


def test_firing_is_not_repeated_and_resolve_reuses_the_id() -> None:
    rule = ThresholdRule(name="err", metric="error_rate", op=">", threshold=0.01, min_events=50)
    engine = AlertEngine([rule], default_window_ms=10_000)
    states = []
    for start, rate in ((0, 0.0), (10_000, 0.2), (20_000, 0.3), (30_000, 0.0), (40_000, 0.0)):
        states += [
            (a.state, a.alert_id) for a in engine.evaluate(window(start, error_rate=rate), 0)
        ]
    fp = fingerprint("err", "m", "1", 10_000)
    assert states == [("firing", f"{fp}-10000"), ("resolved", f"{fp}-10000")]


def test_windows_that_cannot_be_judged_change_nothing() -> None:
    rule = ThresholdRule(name="acc", metric="accuracy", op="<", threshold=0.9, min_events=20)
    engine = AlertEngine([rule], default_window_ms=10_000)
    assert engine.evaluate(labels(0), 0) == []  # no accuracy in the window
    too_few = ClosedWindow("m", "1", 10_000, 0, {"count": 5, "accuracy": 0.1}, phase="labels")
    assert engine.evaluate(too_few, 0) == []
    # Accuracy is judged on label evaluations, never on the plain window close.
    assert engine.evaluate(window(10_000, accuracy=0.5), 0) == []
    fired = engine.evaluate(labels(10_000, accuracy=0.5), 0)
    assert [a.state for a in fired] == ["firing"]
    assert engine.evaluate(labels(20_000), 0) == []  # unknown: still firing, no resolve
    assert engine.firing


def test_rules_match_models_and_window_sizes() -> None:
    rule = ThresholdRule.model_validate(
        {
            "name": "lat",
            "metric": "latency_p95_ms",
            "op": ">",
            "threshold": 200,
            "window": "1m",
            "model": "fraud-*",
        }
    )
    engine = AlertEngine([rule], default_window_ms=10_000)
    hot = {"count": 100, "latency_p95_ms": 500.0}
    assert engine.evaluate(ClosedWindow("fraud-x", "1", 10_000, 0, hot), 0) == []
    assert engine.evaluate(ClosedWindow("churn", "1", 60_000, 0, hot), 0) == []
    assert len(engine.evaluate(ClosedWindow("fraud-x", "1", 60_000, 0, hot), 0)) == 1


def test_engine_state_round_trips_for_checkpoints() -> None:
    rule = ThresholdRule(name="err", metric="error_rate", op=">", threshold=0.01)
    engine = AlertEngine([rule], default_window_ms=10_000)
    engine.evaluate(window(0, error_rate=0.5), 0)
    restored = AlertEngine([rule], default_window_ms=10_000)
    restored.restore(engine.to_state())
    assert [a.state for a in restored.evaluate(window(10_000, error_rate=0.5), 0)] == []
    assert [a.state for a in restored.evaluate(window(20_000, error_rate=0.0), 0)] == ["resolved"]


def test_errors_name_the_line_the_rule_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - name: ok_rule\n"
        "    metric: error_rate\n"
        '    op: ">"\n'
        "    threshold: 0.01\n"
        "  - name: bad\n"
        "    metric: latency_p95_ms\n"
        '    op: "=>"\n'
        "    threshold: 200\n"
        "detectors:\n"
        "  - name: drift\n"
        "    signal: features\n"
    )
    with pytest.raises(RulesFileError) as info:
        load_rule_set(path, SIZES)
    message = str(info.value)
    assert "line 8: rule #2 ('bad'), field 'op'" in message
    assert "line 12: detector rule #1 ('drift'), field 'signal'" in message


def _run(rule: ThresholdRule, rates: list[float | None]) -> list[tuple[str, int]]:
    """Feed one 10 s window per rate (None: a window that cannot be judged)."""
    engine = AlertEngine([rule], default_window_ms=10_000)
    events = []
    for n, rate in enumerate(rates):
        metrics = {"count": 100} if rate is None else {"count": 100, "error_rate": rate}
        for alert in engine.evaluate(window(n * 10_000, **metrics), 0):
            events.append((alert.state, n))
    return events


def test_for_needs_the_condition_to_hold_long_enough() -> None:
    rule = ThresholdRule.model_validate(
        {"name": "err", "metric": "error_rate", "op": ">", "threshold": 0.01, "for": "20s"}
    )
    # 20 s of 10 s windows: active in window 1, firing at window 3 (3 breached in a row).
    assert _run(rule, [0, 0.5, 0.5, 0.5, 0.5, 0]) == [("firing", 3), ("resolved", 5)]
    # A run interrupted before it fires never fires, and needs no resolve.
    assert _run(rule, [0.5, 0.5, 0, 0.5, 0]) == []
    counted = ThresholdRule.model_validate(
        {"name": "err", "metric": "error_rate", "op": ">", "threshold": 0.01, "for": 2}
    )
    assert _run(counted, [0.5, 0.5, 0]) == [("firing", 1), ("resolved", 2)]


def test_keep_firing_for_rides_out_flapping() -> None:
    rule = ThresholdRule.model_validate(
        {
            "name": "err",
            "metric": "error_rate",
            "op": ">",
            "threshold": 0.01,
            "keep_firing_for": "20s",
        }
    )
    flapping = [0.5, 0, 0.5, 0, 0, 0.5, 0, 0, 0]
    # Clear for 10 s or 20 s keeps it firing; the third clear window in a row resolves it.
    assert _run(rule, flapping) == [("firing", 0), ("resolved", 8)]
    plain = ThresholdRule(name="err", metric="error_rate", op=">", threshold=0.01)
    assert _run(plain, flapping) == [
        ("firing", 0),
        ("resolved", 1),
        ("firing", 2),
        ("resolved", 3),
        ("firing", 5),
        ("resolved", 6),
    ]


def test_lifecycle_state_survives_a_restart_mid_pending() -> None:
    rule = ThresholdRule.model_validate(
        {"name": "err", "metric": "error_rate", "op": ">", "threshold": 0.01, "for": 3}
    )
    engine = AlertEngine([rule], default_window_ms=10_000)
    engine.evaluate(window(0, error_rate=0.5), 0)
    engine.evaluate(window(10_000, error_rate=0.5), 0)
    assert engine.pending and not engine.firing
    restored = AlertEngine([rule], default_window_ms=10_000)
    restored.restore(engine.to_state())
    (alert,) = restored.evaluate(window(20_000, error_rate=0.5), 0)
    assert alert.state == "firing"
    assert alert.alert_id.endswith("-0")  # named after the run's first window


@pytest.mark.parametrize("value", [-1, "soon"])
def test_bad_for_values_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="for"):
        ThresholdRule.model_validate(
            {"name": "err", "metric": "error_rate", "op": ">", "threshold": 0.01, "for": value}
        )


# --- relative rules ------------------------------------------------------------------------------


def _relative(**overrides) -> ThresholdRule:
    values = {
        "name": "latency_rise",
        "metric": "latency_p95_ms",
        "relative_to": "previous",
        "previous_windows": 3,
        "change": "ratio",
        "op": ">",
        "threshold": 1.5,
    }
    return ThresholdRule.model_validate({**values, **overrides})


def _series(engine: AlertEngine, values: list[float], metric: str, phase="window") -> list:
    events = []
    for i, value in enumerate(values):
        closed = ClosedWindow("m", "1", 10_000, i * 10_000, {"count": 500, metric: value}, phase)
        events.extend((i, a.state, a.value) for a in engine.evaluate(closed, 0))
    return events


def test_latency_plus_50_percent_against_the_previous_windows_fires_and_resolves() -> None:
    engine = AlertEngine([_relative()], 10_000)
    # 100 ms for three windows, then 140 ms (+40 %), 180 ms (+59 % on 100, 100, 140), then back.
    events = _series(engine, [100, 100, 100, 140, 180, 100], "latency_p95_ms")
    (fired, resolved) = events
    assert fired[:2] == (4, "firing")
    # Reference: mean of windows 1-3 = (100 + 100 + 140) / 3.
    assert fired[2] == pytest.approx(180 / (340 / 3))
    assert resolved[:2] == (5, "resolved")


def test_accuracy_3_point_drop_against_the_previous_windows() -> None:
    rule = _relative(
        name="accuracy_drop",
        metric="accuracy",
        change="difference",
        op="<",
        threshold=-0.03,
        previous_windows=2,
    )
    engine = AlertEngine([rule], 10_000)
    events = _series(engine, [0.95, 0.95, 0.92 + 1e-9, 0.91, 0.95], "accuracy", phase="labels")
    # 0.92 is a 3-point drop, not more; 0.91 vs mean(0.95, 0.92) is -0.025: not enough either.
    assert events == []
    events = _series(AlertEngine([rule], 10_000), [0.95, 0.95, 0.91, 0.95], "accuracy", "labels")
    assert [(i, state) for i, state, _ in events] == [(2, "firing"), (3, "resolved")]
    assert events[0][2] == pytest.approx(-0.04)


def test_a_relative_rule_needs_its_full_history_before_judging() -> None:
    engine = AlertEngine([_relative()], 10_000)
    # Two windows of history are not three: the jump in window 2 is not judged.
    assert _series(engine, [100, 100, 1000], "latency_p95_ms") == []


def test_relative_history_survives_a_restore_and_is_forgotten_when_stale() -> None:
    rule = _relative()
    engine = AlertEngine([rule], 10_000)
    _series(engine, [100, 100, 100], "latency_p95_ms")
    restored = AlertEngine([rule], 10_000)
    restored.restore(engine.to_state())
    closed = ClosedWindow("m", "1", 10_000, 30_000, {"count": 500, "latency_p95_ms": 400})
    (alert,) = restored.evaluate(closed, 0)
    assert alert.metric == "latency_p95_ms_ratio_vs_previous"
    assert alert.labels["reference"] == "100"
    assert "100 -> 400 (x4 vs the mean of the previous 3 windows" in alert.message
    # Kept while a late label window could still be judged (the grace), then dropped.
    restored.forget_history(30_000 + 10 * 10_000, grace_ms=60_000)
    assert restored.to_state()["history"] != {}
    restored.forget_history(30_000 + 10 * 10_000, grace_ms=0)
    assert restored.to_state()["history"] == {}


def test_a_label_window_judged_out_of_order_does_not_rewrite_history() -> None:
    rule = _relative(metric="accuracy", change="difference", op="<", threshold=-0.03)
    engine = AlertEngine([rule], 10_000)
    _series(engine, [0.9, 0.9, 0.9, 0.9], "accuracy", phase="labels")
    before = engine.to_state()["history"]
    late = ClosedWindow("m", "1", 10_000, 10_000, {"count": 500, "accuracy": 0.5}, "labels")
    assert [a.state for a in engine.evaluate(late, 0)] == ["firing"]
    assert engine.to_state()["history"] == before


# --- segments ---------------------------------------------------------------------------------


def test_segment_rules_judge_each_matching_segment_on_its_own() -> None:
    rule = ThresholdRule.model_validate(
        {
            "name": "segment_errors",
            "metric": "error_rate",
            "segment": "eu-*",
            "op": ">",
            "threshold": 0.05,
            "min_events": 50,
        }
    )
    engine = AlertEngine([rule], 10_000)
    segments = {
        "eu-west": {"count": 100, "error_rate": 0.2},
        "eu-north": {"count": 100, "error_rate": 0.0},
        "us-east": {"count": 900, "error_rate": 0.5},  # does not match the glob
        "eu-south": {"count": 10, "error_rate": 1.0},  # too few events
    }
    closed = ClosedWindow(
        "m", "1", 10_000, 0, {"count": 1110, "error_rate": 0.03}, segments=segments
    )
    (alert,) = engine.evaluate(closed, 0)
    assert (alert.labels["segment"], alert.value) == ("eu-west", 0.2)
    assert "segment eu-west" in alert.message
    assert alert.fingerprint == fingerprint("segment_errors", "m", "1", 10_000, "segment=eu-west")
    healed = ClosedWindow(
        "m",
        "1",
        10_000,
        10_000,
        {"count": 100},
        segments={"eu-west": {"count": 100, "error_rate": 0.0}},
    )
    assert [(a.state, a.alert_id) for a in engine.evaluate(healed, 0)] == [
        ("resolved", alert.alert_id)
    ]


def test_a_segment_rule_on_a_metric_not_kept_per_segment_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {name: x, metric: accuracy, segment: '*', op: '<', threshold: 0.9}\n"
    )
    with pytest.raises(RulesFileError, match="line 2: rule #1 .*not tracked per segment"):
        load_rule_set(path, SIZES)
