"""Silences: mute matching alerts for a while, the way Alertmanager does.

A :class:`Silence` matches alerts by model, version and rule globs during a wall-clock interval.
Silencing does not change an alert's lifecycle: the alert still fires and resolves with the
same ids, and is still published on the alert topic (so a consumer's view of what is firing
stays whole), but carries ``silenced_by``; notifying sinks skip it. Pure; storing silences is
:mod:`streamwatch.adapters.silence_store`'s job.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from streamwatch.events import AlertEvent


class Silence(BaseModel):
    """Mute alerts of matching model / version / rule from ``starts_at_ms`` to ``ends_at_ms``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    model: str = "*"
    version: str = "*"
    rule: str = "*"
    starts_at_ms: int
    ends_at_ms: int
    created_by: str = ""
    comment: str = ""

    def active(self, now_ms: int) -> bool:
        """Whether the silence mutes alerts at wall-clock time ``now_ms``."""
        return self.starts_at_ms <= now_ms < self.ends_at_ms

    def matches(self, alert: AlertEvent) -> bool:
        """Whether the alert is one this silence is about."""
        return (
            fnmatch.fnmatchcase(alert.model_id, self.model)
            and fnmatch.fnmatchcase(alert.model_version, self.version)
            and fnmatch.fnmatchcase(alert.rule, self.rule)
        )


def apply_silences(
    alerts: Iterable[AlertEvent], silences: Sequence[Silence], now_ms: int
) -> list[AlertEvent]:
    """Return the alerts, each marked ``silenced_by`` the first active silence matching it."""
    active = [s for s in silences if s.active(now_ms)]
    result = []
    for alert in alerts:
        silence = next((s for s in active if s.matches(alert)), None)
        if silence is not None:
            alert = alert.model_copy(update={"silenced_by": silence.id})
        result.append(alert)
    return result
