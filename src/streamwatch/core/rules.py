"""Threshold alert rules and the firing/resolved state machine, evaluated on closed windows.

Pure: rules come in as validated models, windows as metric dicts, alerts go out as
:class:`~streamwatch.events.AlertEvent` values. Loading YAML lives in :func:`load_rules` so that
errors can name the file, the rule and the field.

Alert identity is deterministic: the *fingerprint* hashes (rule, model, version, window size);
the *alert id* is the fingerprint plus the start of the window where the condition first held.
A condition that stays true does not fire again; a ``resolved`` event with the same id follows
when a later window no longer meets it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streamwatch.core.durations import format_duration_ms, parse_duration_ms
from streamwatch.events import AlertEvent, WindowRef
from streamwatch.exceptions import RulesFileError

Severity = Literal["critical", "warning", "info"]
Comparison = Literal[">", ">=", "<", "<="]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class ThresholdRule(BaseModel):
    """Fire when ``metric op threshold`` on a closed window with at least ``min_events`` events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    metric: str = Field(min_length=1)
    op: Comparison
    threshold: float
    severity: Severity = "warning"
    window_ms: int | None = Field(
        None, alias="window", description="Window size the rule checks, e.g. '1m'."
    )
    min_events: int = Field(1, ge=0)
    model: str = "*"
    version: str = "*"
    description: str = ""

    @field_validator("window_ms", mode="before")
    @classmethod
    def _parse_window(cls, value: Any) -> Any:
        return parse_duration_ms(value) if isinstance(value, str) else value

    def matches(self, model_id: str, model_version: str) -> bool:
        """Return whether the rule applies to this model and version."""
        return fnmatch.fnmatchcase(model_id, self.model) and fnmatch.fnmatchcase(
            model_version, self.version
        )

    def breached(self, metrics: dict[str, Any]) -> bool | None:
        """Return True/False, or None when the window cannot be judged (no metric, too few)."""
        value = metrics.get(self.metric)
        if value is None or metrics.get("count", 0) < self.min_events:
            return None
        return _OPERATORS[self.op](float(value), self.threshold)


class RulesFile(BaseModel):
    """Top level of a rules YAML file."""

    model_config = ConfigDict(extra="forbid")

    rules: list[ThresholdRule]

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[ThresholdRule]) -> list[ThresholdRule]:
        names = [r.name for r in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {duplicates}")
        return rules


def load_rules(path: Path | None, window_sizes_ms: Sequence[int]) -> list[ThresholdRule]:
    """Load and validate rules; ``None`` loads the shipped defaults.

    Raises:
        RulesFileError: Naming the file, the rule (index and name) and the field at fault.
    """
    if path is None:
        source = "default rules"
        text = resources.files("streamwatch").joinpath("defaults/rules.yaml").read_text()
    else:
        source = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise RulesFileError(f"STREAMWATCH_RULES: cannot read {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesFileError(f"{source}: not valid YAML: {exc}") from None
    try:
        parsed = RulesFile.model_validate(document)
    except ValidationError as exc:
        raise RulesFileError(f"{source}: {_describe(exc, document)}") from None
    for rule in parsed.rules:
        if rule.window_ms is not None and rule.window_ms not in window_sizes_ms:
            sizes = [format_duration_ms(s) for s in window_sizes_ms]
            raise RulesFileError(
                f"{source}: rule {rule.name!r}: window {format_duration_ms(rule.window_ms)} is"
                f" not one of the worker's windows {sizes} (STREAMWATCH_WINDOWS)"
            )
    return parsed.rules


def _describe(exc: ValidationError, document: Any) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        where = ".".join(str(p) for p in loc) or "file"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1]
            name = None
            if isinstance(document, dict) and isinstance(document.get("rules"), list):
                entry = document["rules"][index]
                name = entry.get("name") if isinstance(entry, dict) else None
            field = ".".join(str(p) for p in loc[2:]) or "rule"
            where = f"rule #{index + 1}" + (f" ({name!r})" if name else "") + f", field {field!r}"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def fingerprint(rule: str, model_id: str, model_version: str, size_ms: int) -> str:
    """Return the stable identity of an alert series."""
    key = f"{rule}\x1f{model_id}\x1f{model_version}\x1f{size_ms}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """What the alert engine needs to know about a window that just closed."""

    model_id: str
    model_version: str
    size_ms: int
    start_ms: int
    metrics: dict[str, Any]


class AlertEngine:
    """Evaluates rules on closed windows and remembers which alerts are firing.

    The firing set is part of the partition's checkpoint (:meth:`to_state` /
    :meth:`from_state`), so a restart neither forgets an alert nor fires it again.
    """

    def __init__(self, rules: Iterable[ThresholdRule], default_window_ms: int) -> None:
        """Create an engine; rules without a window check ``default_window_ms`` windows."""
        self._rules = list(rules)
        self._default_window_ms = default_window_ms
        self._firing: dict[str, str] = {}

    @property
    def firing(self) -> dict[str, str]:
        """Fingerprint -> alert id of every alert currently firing."""
        return dict(self._firing)

    def to_state(self) -> dict[str, str]:
        """Serialisable state for the checkpoint."""
        return dict(self._firing)

    def restore(self, state: dict[str, str]) -> None:
        """Restore the firing set from a checkpoint."""
        self._firing = dict(state)

    def evaluate(self, window: ClosedWindow, emitted_at_ms: int) -> list[AlertEvent]:
        """Return the alert state changes caused by one closed window."""
        alerts: list[AlertEvent] = []
        for rule in self._rules:
            size = rule.window_ms if rule.window_ms is not None else self._default_window_ms
            if size != window.size_ms or not rule.matches(window.model_id, window.model_version):
                continue
            breached = rule.breached(window.metrics)
            if breached is None:
                continue
            fp = fingerprint(rule.name, window.model_id, window.model_version, size)
            alert_id = self._firing.get(fp)
            if breached and alert_id is None:
                alert_id = f"{fp}-{window.start_ms}"
                self._firing[fp] = alert_id
                alerts.append(self._alert(rule, window, fp, alert_id, "firing", emitted_at_ms))
            elif not breached and alert_id is not None:
                del self._firing[fp]
                alerts.append(self._alert(rule, window, fp, alert_id, "resolved", emitted_at_ms))
        return alerts

    def _alert(
        self,
        rule: ThresholdRule,
        window: ClosedWindow,
        fp: str,
        alert_id: str,
        state: Literal["firing", "resolved"],
        emitted_at_ms: int,
    ) -> AlertEvent:
        value = window.metrics.get(rule.metric)
        size = format_duration_ms(window.size_ms)
        what = rule.description or f"{rule.metric} {rule.op} {rule.threshold:g}"
        verb = "FIRING" if state == "firing" else "resolved"
        message = (
            f"[{rule.severity.upper()}] {verb}: {what} — {window.model_id}@{window.model_version}"
            f" {rule.metric}={value:.4g} (threshold {rule.op} {rule.threshold:g}) over"
            f" {window.metrics.get('count', 0)} events in the {size} window starting"
            f" {window.start_ms}"
        )
        return AlertEvent(
            alert_id=alert_id,
            fingerprint=fp,
            rule=rule.name,
            severity=rule.severity,
            state=state,
            model_id=window.model_id,
            model_version=window.model_version,
            metric=rule.metric,
            value=None if value is None else float(value),
            threshold=rule.threshold,
            window=WindowRef(
                size_ms=window.size_ms,
                start_ms=window.start_ms,
                end_ms=window.start_ms + window.size_ms,
            ),
            message=message,
            labels={"window": size},
            emitted_at_ms=emitted_at_ms,
        )
