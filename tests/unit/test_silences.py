from streamwatch.core.silences import Silence, apply_silences
from streamwatch.events import AlertEvent, WindowRef


def alert(model: str = "fraud", rule: str = "latency_p95_high") -> AlertEvent:
    return AlertEvent(
        alert_id="fp-0",
        fingerprint="fp",
        rule=rule,
        severity="warning",
        state="firing",
        model_id=model,
        model_version="2.1.0",
        metric="latency_p95_ms",
        value=300.0,
        threshold=200.0,
        window=WindowRef(size_ms=10_000, start_ms=0, end_ms=10_000),
        message="m",
        emitted_at_ms=0,
    )


def test_an_active_matching_silence_marks_the_alert_but_keeps_it() -> None:
    silence = Silence(id="s1", model="fraud*", rule="latency_*", starts_at_ms=100, ends_at_ms=200)
    alerts = [alert(), alert(model="churn"), alert(rule="error_rate_high")]
    marked = apply_silences(alerts, [silence], now_ms=150)
    assert [a.silenced_by for a in marked] == ["s1", None, None]
    assert [a.alert_id for a in marked] == [a.alert_id for a in alerts]


def test_a_silence_mutes_only_inside_its_interval() -> None:
    silence = Silence(id="s1", starts_at_ms=100, ends_at_ms=200)
    assert apply_silences([alert()], [silence], now_ms=99)[0].silenced_by is None
    assert apply_silences([alert()], [silence], now_ms=199)[0].silenced_by == "s1"
    assert apply_silences([alert()], [silence], now_ms=200)[0].silenced_by is None
