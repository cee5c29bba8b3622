"""Stable identities of alert series, and the resolve that keeps an incident's identity.

The same rule, model and series always hash alike; a resolve carries the ids of the firing
event it ends, so consumers pair the two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from streamwatch.events import AlertEvent


def fingerprint(
    rule: str, model_id: str, model_version: str, size_ms: int, series: str = ""
) -> str:
    """Return the stable identity of an alert series (``series``: a detector's feature)."""
    key = f"{rule}\x1f{model_id}\x1f{model_version}\x1f{size_ms}".encode()
    if series:
        key += f"\x1f{series}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


def resolved_copy(firing: dict[str, Any], note: str, emitted_at_ms: int) -> AlertEvent:
    """Return the resolve of a stored firing alert (its JSON form): same ids, a closing note."""
    alert = AlertEvent.model_validate(firing)
    return alert.model_copy(
        update={
            "state": "resolved",
            "message": alert.message.replace("FIRING", "resolved", 1) + f"; {note}",
            "emitted_at_ms": emitted_at_ms,
        }
    )


@dataclass(frozen=True, slots=True)
class FiringRef:
    """What inhibition needs to know about an alert that is firing now."""

    alert_id: str
    rule: str
    severity: str
    model_id: str
    model_version: str
    fired_ms: int
    """Start of the window in which it fired (event time)."""

    @classmethod
    def of_payload(cls, payload: dict[str, Any]) -> FiringRef:
        """The reference of a stored firing alert (its JSON form)."""
        return cls(
            str(payload["alert_id"]),
            str(payload["rule"]),
            str(payload["severity"]),
            str(payload["model_id"]),
            str(payload["model_version"]),
            int(payload["window"]["start_ms"]),
        )
