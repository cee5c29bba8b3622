"""Inhibition: while an alert of one kind fires, alerts of another kind on the same model are muted.

Alertmanager's ``inhibit_rules`` on the stream: a critical error-rate alert on a model makes its
latency warnings noise, so they carry ``inhibited_by`` (the muting alert's id) and notifying
sinks skip them. Like silences, inhibition changes no lifecycle: the muted alert still fires and
resolves with the same ids and is still published, so the topic stays a complete record.

Pure. Alerts of one model live on one partition, so the partition's own firing set is the
whole truth for the model.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from streamwatch.core.identity import FiringRef
from streamwatch.events import AlertEvent

Severity = Literal["critical", "warning", "info"]
Label = Literal["model_id", "model_version"]


class InhibitRule(BaseModel):
    """While a *source* alert fires, mute *target* alerts that agree with it on ``equal``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    source_severity: Severity = "critical"
    source_rule: str = Field("*", description="Rule-name glob of the muting alerts.")
    target_severity: Severity = "warning"
    target_rule: str = Field("*", description="Rule-name glob of the muted alerts.")
    equal: tuple[Label, ...] = Field(
        ("model_id",), description="Fields source and target must share (same model by default)."
    )

    def is_source(self, ref: FiringRef) -> bool:
        """Whether ``ref`` can mute others under this rule."""
        return ref.severity == self.source_severity and fnmatch.fnmatchcase(
            ref.rule, self.source_rule
        )

    def mutes(self, source: FiringRef, alert: AlertEvent) -> bool:
        """Whether the firing ``source`` mutes the firing ``alert`` under this rule.

        Only a source that fired in a window starting before the alert's window ends mutes it:
        a step that covers a long stretch of event time must not mute an alert with a critical
        that came after it.
        """
        return (
            source.alert_id != alert.alert_id
            and source.fired_ms < alert.window.end_ms
            and alert.severity == self.target_severity
            and fnmatch.fnmatchcase(alert.rule, self.target_rule)
            and self.is_source(source)
            and all(getattr(source, f) == getattr(alert, f) for f in self.equal)
        )


def apply_inhibitions(
    alerts: Iterable[AlertEvent], firing: Sequence[FiringRef], rules: Sequence[InhibitRule]
) -> list[AlertEvent]:
    """Return the alerts, each firing one marked ``inhibited_by`` the first alert muting it.

    Resolves are never marked: a notifier that skipped a firing event skips its resolve by id,
    and one that sent the firing must send the resolve.

    Args:
        alerts: The alert state changes of one step.
        firing: Every alert firing once the step is done (the step's own firing ones included).
        rules: The inhibition rules.
    """
    sources = sorted(
        (ref for ref in firing if any(rule.is_source(ref) for rule in rules)),
        key=lambda ref: ref.alert_id,
    )
    if not sources:
        return list(alerts)
    result = []
    for alert in alerts:
        if alert.state != "firing":
            result.append(alert)
            continue
        source = next(
            (s for s in sources for rule in rules if rule.mutes(s, alert)),
            None,
        )
        if source is not None:
            alert = alert.model_copy(update={"inhibited_by": source.alert_id})
        result.append(alert)
    return result
