"""Bounded memory: ever-new model ids, feature names, categories and request ids.

Each per-key structure of a partition has a stated bound; nothing beyond it is silently lost:
refused events are dead-lettered (``too_many_models``) and dropped values counted
(``features_over_limit``, ``stages_over_limit``, ``label_join_evicted``, ...).
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core.absence import AbsenceRule
from streamwatch.core.aggregate import OTHER_CATEGORY, WindowAggregate
from streamwatch.core.processor import (
    PartitionProcessor,
    ProcessorConfig,
    RawMessage,
    StepResult,
)
from streamwatch.core.rules import load_rule_set

from .helpers import BASE_MS, cut, event, messages

NOW_MS = BASE_MS + 3_600_000


def config(**overrides: Any) -> ProcessorConfig:
    values: dict[str, Any] = dict(
        window_sizes_ms=(1_000, 10_000),
        allowed_lateness_ms=500,
        idle_timeout_ms=2_000,
        max_future_skew_ms=1_000,
        label_horizon_ms=2_000,
        rules=(),
    )
    values.update(overrides)
    return ProcessorConfig(**values)


def stored(results: list[StepResult]) -> dict[Any, Any]:
    state: dict[Any, Any] = {}
    for result in results:
        for update in result.windows:
            state[update.key] = update.aggregate.to_dict()
    return state


# -- series (model, version) -----------------------------------------------------------------


def test_events_of_series_beyond_max_models_are_dead_lettered_and_counted() -> None:
    processor = PartitionProcessor(0, config(max_models=3))
    batch = [event(i, BASE_MS + i, model=f"m{i % 6}") for i in range(12)]
    result = processor.process(messages([batch]), NOW_MS)
    assert processor.tracked_series == [("m0", "1"), ("m1", "1"), ("m2", "1")]
    refused = [(d.source.batch_index, d.reason) for d in result.deadletters]
    assert refused == [(i, "too_many_models") for i in (3, 4, 5, 9, 10, 11)]
    assert "STREAMWATCH_MAX_MODELS" in result.deadletters[0].detail
    assert (
        orjson.loads(__import__("base64").b64decode(result.deadletters[0].original_b64))["model_id"]
        == "m3"
    )
    assert processor.deadletter_counts == {"too_many_models": 6}
    assert processor.counters["inference_events"] == 6
    # Business and feedback events name a series too (the model's "*" when unversioned).
    side = RawMessage(
        "business",
        "business",
        0,
        0,
        orjson.dumps([{"model_id": "m0", "kind": "click", "timestamp": BASE_MS / 1000}]),
    )
    processor.process([side], NOW_MS)
    assert processor.deadletter_counts == {"too_many_models": 7}


def test_a_silent_series_gives_its_place_up_after_its_retention() -> None:
    cfg = config(max_models=2, baseline_auto_windows=100)
    retention = cfg.series_retention_ms
    assert retention == 10_000 + 500 + 2_000 + 1_000
    processor = PartitionProcessor(0, cfg)
    results = [
        processor.process(
            messages([[event(0, BASE_MS, model="a"), event(1, BASE_MS + 5, model="b")]]), NOW_MS
        )
    ]
    # "b" keeps sending; "a" went quiet at BASE_MS. Until "a" has been silent for the
    # retention, a new model is refused; then it takes the place of "a".
    late = BASE_MS + retention
    results.append(
        processor.process(
            messages(
                [[event(2, late, model="b"), event(3, late, model="c")]],
                start_offset=1,
            ),
            NOW_MS,
        )
    )
    assert processor.deadletter_counts == {"too_many_models": 1}
    assert processor.tracked_series == [("a", "1"), ("b", "1")]
    results.append(
        processor.process(messages([[event(4, late + 1, model="c")]], start_offset=2), NOW_MS + 1)
    )
    assert processor.tracked_series == [("b", "1"), ("c", "1")]
    assert processor.counters["series_evicted"] == 1
    # Its stalled baseline adoption went with it (and the edge is told to delete it).
    assert results[-1].builders.get(("a", "1"), "kept") is None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 40_000)), min_size=1, max_size=80),
    st.lists(st.integers(1, 15), min_size=1, max_size=8),
)
def test_admission_does_not_depend_on_batching(
    events: list[tuple[int, int]], cuts: list[int]
) -> None:
    """A replay may batch differently: the same series are refused and the same windows kept."""
    msgs = messages([[event(i, BASE_MS + ts, model=f"m{m}")] for i, (m, ts) in enumerate(events)])
    batches = cut(msgs, cuts)

    def run(parts: list[list[RawMessage]]) -> tuple[Any, Any, list[Any]]:
        processor = PartitionProcessor(0, config(max_models=3))
        results = [processor.process(part, NOW_MS) for part in parts]
        dead = [(d.source.offset, d.reason) for r in results for d in r.deadletters]
        return stored(results), dead, processor.tracked_series

    assert run(batches) == run([msgs])


# -- feature and stage names -------------------------------------------------------------------


def test_feature_names_are_capped_per_model_over_time() -> None:
    processor = PartitionProcessor(0, config(max_features=4))
    batches = [
        [
            event(b * 10 + i, BASE_MS + b * 10 + i, features={f"f{b}-{j}": 1.0 for j in range(3)})
            for i in range(2)
        ]
        for b in range(4)
    ]
    # Another model has room of its own.
    batches.append([event(99, BASE_MS + 50, model="other", features={"z": 2.0})])
    processor.process(messages(batches), NOW_MS)
    assert processor.tracked_names("m", "1")[0] == ["f0-0", "f0-1", "f0-2", "f1-0"]
    assert processor.tracked_names("other", "1")[0] == ["z"]
    # Batch 1 drops 2 names x 2 events, batches 2 and 3 drop 3 names x 2 events each.
    assert processor.counters["features_over_limit"] == 4 + 6 + 6
    window = processor.open_windows[("m", "1", 10_000, BASE_MS)]
    assert list(window.features) == ["f0-0", "f0-1", "f0-2", "f1-0"]


def test_feature_admission_does_not_depend_on_batching() -> None:
    rng = random.Random(5)
    events = [
        event(i, BASE_MS + i * 10, features={f"f{rng.randrange(12)}": 1.0 for _ in range(3)})
        for i in range(60)
    ]
    whole = PartitionProcessor(0, config(max_features=5))
    whole_results = [whole.process(messages([events]), NOW_MS)]
    split = PartitionProcessor(0, config(max_features=5))
    split_results = [
        split.process(messages([[e]], start_offset=i), NOW_MS) for i, e in enumerate(events)
    ]
    assert stored(whole_results) == stored(split_results)
    assert whole.tracked_names("m", "1") == split.tracked_names("m", "1")
    assert whole.counters["features_over_limit"] == split.counters["features_over_limit"] > 0


def test_stage_names_are_capped_per_model() -> None:
    processor = PartitionProcessor(0, config(max_features=2))
    batch = [event(i, BASE_MS + i, stages_ms={f"s{i}": 1.0, "s0": 2.0}) for i in range(5)]
    processor.process(messages([batch]), NOW_MS)
    assert processor.tracked_names("m", "1")[1] == ["s0", "s1"]
    assert list(processor.open_windows[("m", "1", 10_000, BASE_MS)].stages_ms) == ["s0", "s1"]
    assert processor.counters["stages_over_limit"] == 3


def test_restore_keeps_the_series_and_their_names() -> None:
    cfg = config(max_models=2, max_features=2)
    first = PartitionProcessor(0, cfg)
    batch = [
        event(0, BASE_MS, model="a", features={"x": 1.0, "y": 2.0}),
        event(1, BASE_MS + 1, model="b", features={"q": 1.0}),
    ]
    first.process(messages([batch]), NOW_MS)
    restored = PartitionProcessor.restore(
        0,
        cfg,
        orjson.loads(orjson.dumps(first.checkpoint())),
        {
            k: WindowAggregate.from_dict(orjson.loads(orjson.dumps(a.to_dict())))
            for k, a in first.open_windows.items()
        },
    )
    assert restored.tracked_series == first.tracked_series
    assert restored.tracked_names("a", "1") == (["x", "y"], [])
    later = [event(2, BASE_MS + 2, model="c"), event(3, BASE_MS + 3, model="a", features={"z": 1})]
    restored.process(messages([later], start_offset=1), NOW_MS)
    assert restored.deadletter_counts == {"too_many_models": 1}
    assert restored.counters["features_over_limit"] == 1


# -- categories --------------------------------------------------------------------------------


def test_categories_segments_and_kinds_fold_into_other_beyond_the_cap() -> None:
    processor = PartitionProcessor(0, config(max_categories=3))
    batch = [
        event(
            i,
            BASE_MS + i,
            error=True,
            error_type=f"E{i}",
            prediction=f"class{i}",
            features={"country": f"c{i}"},
            segment=f"s{i}",
            traffic=f"arm{i}",
        )
        for i in range(10)
    ]
    business = RawMessage(
        "business",
        "business",
        0,
        0,
        orjson.dumps(
            [
                {
                    "model_id": "m",
                    "model_version": "1",
                    "kind": f"k{i}",
                    "timestamp": BASE_MS / 1000,
                }
                for i in range(10)
            ]
        ),
    )
    processor.process([*messages([batch]), business], NOW_MS)
    window = processor.open_windows[("m", "1", 10_000, BASE_MS)]
    for counts in (
        window.features["country"].categories,
        window.error_types,
        window.prediction_classes,
        window.traffic,
    ):
        assert list(counts) == ["c0", "c1", "c2", OTHER_CATEGORY] or len(counts) == 4
        assert counts[OTHER_CATEGORY] == 7 and sum(counts.values()) == 10
    assert list(window.segments) == ["s0", "s1", "s2", OTHER_CATEGORY]
    assert window.segments[OTHER_CATEGORY].count == 7
    assert len(window.business) == 4 and window.business[OTHER_CATEGORY].n == 7


# -- everything at once --------------------------------------------------------------------------

MAX_MODELS = 12
MAX_FEATURES = 6
MAX_CATEGORIES = 5
MAX_PENDING = 300
MAX_DETECTOR_SERIES = 40
SIZES_MS = (1_000, 10_000)
LATENESS_MS = 500
HORIZON_MS = 3_000
SKEW_MS = 1_000


def churn_config() -> ProcessorConfig:
    """The shipped rules (segment, relative, detector rules), with a short absence memory."""
    rules = load_rule_set(None, SIZES_MS)
    return ProcessorConfig(
        window_sizes_ms=SIZES_MS,
        allowed_lateness_ms=LATENESS_MS,
        idle_timeout_ms=2_000,
        max_future_skew_ms=SKEW_MS,
        rules=rules.thresholds,
        detectors=rules.detectors,
        absence=(AbsenceRule(name="model_silent", after="2s", forget_after="15s"),),
        inhibit=rules.inhibit,
        label_horizon_ms=HORIZON_MS,
        max_models=MAX_MODELS,
        max_features=MAX_FEATURES,
        max_categories=MAX_CATEGORIES,
        max_pending_labels=MAX_PENDING,
        max_detector_series=MAX_DETECTOR_SERIES,
        baseline_auto_windows=3,
        ledger_window_ms=10_000,
    )


def churn(steps: int) -> list[tuple[PartitionProcessor, StepResult, set[tuple[str, str]]]]:
    """A stream where everything is new all the time, one step per 200 ms of event time."""
    processor = PartitionProcessor(0, churn_config())
    rng = random.Random(7)
    seen: list[tuple[str, str]] = []
    admitted: set[tuple[str, str]] = set()
    out = []
    for step in range(steps):
        t = BASE_MS + step * 200
        batch = []
        for i in range(40):
            model = f"m{step // 5 + i % 2}"  # a new model id every second
            batch.append(
                event(
                    step * 100 + i,  # a new request id every event
                    t + i,
                    model=model,
                    version="1",
                    error=rng.random() < 0.2,
                    error_type=f"E{rng.randrange(10**6)}",
                    score=rng.random(),
                    prediction=f"c{rng.randrange(10**6)}",
                    features={f"f{step}-{j}": rng.random() for j in range(3)}
                    | {"cat": f"v{rng.randrange(10**6)}"},
                    stages_ms={f"stage{step}": 1.0},
                    segment=f"seg{step // 5}-{i % 2}",
                    traffic=f"arm{rng.randrange(10**6)}",
                )
            )
        feedback = [
            {
                "request_id": f"r{(step - 3) * 100 + i}",
                "model_id": f"m{(step - 3) // 5 + i % 2}",
                "label": f"c{rng.randrange(3)}",
                "timestamp": t / 1000,
            }
            for i in range(20)
        ]
        business = [
            {"model_id": f"m{step // 5}", "kind": f"k{rng.randrange(10**6)}", "timestamp": t / 1000}
        ]
        result = processor.process(
            [
                RawMessage("inference", "inference", 0, step, orjson.dumps(batch)),
                RawMessage("feedback", "feedback", 0, step, orjson.dumps(feedback)),
                RawMessage("business", "business", 0, step, orjson.dumps(business)),
            ],
            t,
        )
        seen.extend((e["model_id"], e["model_version"]) for e in batch)
        admitted |= set(processor.tracked_series)
        out.append((processor, result, set(admitted)))
    assert len(set(seen)) > 5 * MAX_MODELS  # the stream did bring ever-new series
    return out


@pytest.fixture(scope="module")
def churned() -> list[tuple[PartitionProcessor, StepResult, set[tuple[str, str]]]]:
    return churn(300)


def window_bound(extra_ms: int) -> int:
    """Windows a series can hold per partition: per size, those spanning ``extra_ms`` + 2."""
    return MAX_MODELS * sum((size + extra_ms) // size + 2 for size in SIZES_MS)


def test_state_stays_under_its_bounds_with_ever_new_keys(churned: list[Any]) -> None:
    detector_series: set[str] = set()
    ledger_days: set[str] = set()
    for processor, result, admitted in churned:
        checkpoint = processor.checkpoint()
        assert len(processor.tracked_series) <= MAX_MODELS
        assert len(processor.open_windows) <= window_bound(LATENESS_MS + SKEW_MS)
        assert len(processor.label_windows) <= window_bound(LATENESS_MS + HORIZON_MS + SKEW_MS)
        assert len(processor.pending_predictions) <= MAX_PENDING
        assert len(checkpoint["absence"]["last"]) <= MAX_MODELS
        for window in processor.open_windows.values():
            assert len(window.features) <= MAX_FEATURES
            assert len(window.stages_ms) <= MAX_FEATURES
            for stats in window.features.values():
                assert len(stats.categories) <= MAX_CATEGORIES + 1  # + __other__
            for counts in (
                window.error_types,
                window.prediction_classes,
                window.traffic,
                window.segments,
                window.business,
            ):
                assert len(counts) <= MAX_CATEGORIES + 1
        for window in processor.label_windows.values():
            assert len(window.stats.label_classes) <= 64
        detector_series -= set(result.detectors_removed)
        detector_series |= set(result.detectors)
        assert len(detector_series) <= MAX_DETECTOR_SERIES
        ledger_days |= set(result.ledger_days)
        ledger_days -= set(result.ledger_removed)
        # Days are kept 8 days (for the weekly summary): bounded by the series admitted then.
        assert len(ledger_days) <= len(admitted)
    processor = churned[-1][0]
    counters = processor.counters
    for name in (
        "features_over_limit",
        "stages_over_limit",
        "series_evicted",
        "label_join_evicted",
    ):
        assert counters[name] > 0, name
    assert processor.deadletter_counts["too_many_models"] > 0
    assert counters["alerts_emitted"] > 0


def test_alert_state_belongs_to_tracked_series(churned: list[Any]) -> None:
    processor = churned[-1][0]
    tracked = set(processor.tracked_series)
    series = processor.checkpoint()["alerts"]["series"].values()
    assert series  # error-rate rules fired on the churned models
    assert {(s["model_id"], s["model_version"]) for s in series} <= tracked


def test_detector_monitors_belong_to_tracked_series(churned: list[Any]) -> None:
    # Stored monitors, as Redis would hold them: written when fed, deleted when their series
    # is evicted. None may outlive its series, or its slot would be lost for good.
    stored: set[str] = set()
    for _, result, _ in churned:
        stored -= set(result.detectors_removed)
        stored |= set(result.detectors)
    processor = churned[-1][0]
    tracked = set(processor.tracked_series)
    assert any(r.detectors_removed for _, r, _ in churned)  # evictions freed monitors
    assert {tuple(key.split("\x1f")[:2]) for key in stored} <= tracked
