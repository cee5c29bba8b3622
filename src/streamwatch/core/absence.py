"""Absence rules: a model that was serving and went silent ("system down" in the source guide).

:class:`AbsenceWatch` remembers, per (model, version), the event time of its last inference
event on the partition. When the partition's watermark (driven by the other models' events, or
by the idle clock when the whole partition is quiet) is ``after`` past it, the rule fires; the
model's next event resolves it. A model silent for ``forget_after`` stops being watched (a
retired version), and a still-firing alert resolves saying so. Pure; state is part of the
partition checkpoint.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamwatch.core.durations import format_duration_ms, parse_duration_ms
from streamwatch.core.identity import FiringRef, fingerprint, resolved_copy
from streamwatch.core.windows import window_start_ms
from streamwatch.events import AlertEvent, WindowRef

ModelKey = tuple[str, str]


class AbsenceRule(BaseModel):
    """Fire when a model that sent events sends none for ``after`` of event time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    after_ms: int = Field(60_000, alias="after", gt=0)
    forget_after_ms: int = Field(86_400_000, alias="forget_after", gt=0)
    severity: Literal["critical", "warning", "info"] = "critical"
    model: str = "*"
    version: str = "*"
    description: str = ""

    @field_validator("after_ms", "forget_after_ms", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        return parse_duration_ms(value) if isinstance(value, str) else value

    def matches(self, model_id: str, model_version: str) -> bool:
        """Return whether the rule watches this model version."""
        return fnmatch.fnmatchcase(model_id, self.model) and fnmatch.fnmatchcase(
            model_version, self.version
        )


class AbsenceWatch:
    """Last event time per model version, and the absence alerts firing; see the module doc."""

    def __init__(self, rules: tuple[AbsenceRule, ...], window_ms: int) -> None:
        """Alerts reference the ``window_ms`` window in which the silence was noticed."""
        self._rules = rules
        self._window_ms = window_ms
        self._last_ms: dict[ModelKey, int] = {}
        # fingerprint -> the firing alert (JSON dict), to resolve it with the same identity
        self._firing: dict[str, dict[str, Any]] = {}

    @property
    def watching(self) -> bool:
        """Whether any model is watched (event time must keep advancing while idle)."""
        return bool(self._last_ms)

    def firing_refs(self) -> list[FiringRef]:
        """The absence alerts firing now (for inhibition)."""
        return [FiringRef.of_payload(payload) for payload in self._firing.values()]

    def to_state(self) -> dict[str, Any]:
        """Serialisable state for the checkpoint."""
        return {
            "last": [[m, v, ts] for (m, v), ts in sorted(self._last_ms.items())],
            "firing": dict(self._firing),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`to_state` output."""
        self._last_ms = {(str(m), str(v)): int(ts) for m, v, ts in state["last"]}
        self._firing = dict(state["firing"])

    def seen(
        self, model_id: str, model_version: str, last_event_ms: int, emitted_at_ms: int
    ) -> list[AlertEvent]:
        """Record a model's newest event time; return resolves of its absence alerts."""
        if not self._rules:
            return []
        key = (model_id, model_version)
        self._last_ms[key] = max(self._last_ms.get(key, last_event_ms), last_event_ms)
        resolved = []
        for rule in self._rules:
            fp = fingerprint(rule.name, model_id, model_version, 0)
            payload = self._firing.pop(fp, None)
            if payload is not None:
                resolved.append(
                    resolved_copy(payload, f"events again from {last_event_ms}", emitted_at_ms)
                )
        return resolved

    def check(self, watermark_ms: int, emitted_at_ms: int) -> list[AlertEvent]:
        """Fire for models silent past their rule's ``after``; forget long-retired ones."""
        alerts: list[AlertEvent] = []
        for key, last_ms in sorted(self._last_ms.items()):
            silent_ms = watermark_ms - last_ms
            rules = [r for r in self._rules if r.matches(*key)]
            for rule in rules:
                fp = fingerprint(rule.name, key[0], key[1], 0)
                if silent_ms >= rule.forget_after_ms:
                    payload = self._firing.pop(fp, None)
                    if payload is not None:
                        note = f"not watched any more after {format_duration_ms(silent_ms)}"
                        alerts.append(resolved_copy(payload, note, emitted_at_ms))
                elif silent_ms >= rule.after_ms and fp not in self._firing:
                    alert = self._firing_alert(rule, key, fp, last_ms, watermark_ms, emitted_at_ms)
                    self._firing[fp] = alert.model_dump(mode="json")
                    alerts.append(alert)
            if not rules or all(silent_ms >= r.forget_after_ms for r in rules):
                del self._last_ms[key]
        return alerts

    def _firing_alert(
        self,
        rule: AbsenceRule,
        key: ModelKey,
        fp: str,
        last_ms: int,
        watermark_ms: int,
        emitted_at_ms: int,
    ) -> AlertEvent:
        start = window_start_ms(watermark_ms, self._window_ms)
        silent = format_duration_ms(rule.after_ms)
        what = rule.description or f"no events for {silent}"
        return AlertEvent(
            alert_id=f"{fp}-{last_ms}",
            fingerprint=fp,
            rule=rule.name,
            severity=rule.severity,
            state="firing",
            model_id=key[0],
            model_version=key[1],
            metric="silence_ms",
            value=float(watermark_ms - last_ms),
            threshold=float(rule.after_ms),
            window=WindowRef(
                size_ms=self._window_ms, start_ms=start, end_ms=start + self._window_ms
            ),
            message=(
                f"[{rule.severity.upper()}] FIRING: {what} — {key[0]}@{key[1]} sent its last"
                f" event at {last_ms} and nothing for {silent} of event time since"
            ),
            labels={"kind": "absence"},
            emitted_at_ms=emitted_at_ms,
        )
