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
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streamwatch.core.absence import AbsenceRule
from streamwatch.core.detectors import DetectorParams, default_params
from streamwatch.core.drift import FeatureDrift
from streamwatch.core.durations import format_duration_ms, parse_duration_ms
from streamwatch.core.identity import FiringRef, fingerprint, resolved_copy
from streamwatch.core.inhibition import InhibitRule
from streamwatch.core.summary import SEGMENT_METRICS
from streamwatch.core.windows import window_start_ms
from streamwatch.events import AlertEvent, Detection, DriftCause, WindowRef
from streamwatch.exceptions import RulesFileError

Severity = Literal["critical", "warning", "info"]
Comparison = Literal[">", ">=", "<", "<="]
Signal = Literal["feature", "score", "latency", "error", "correctness"]
Phase = Literal["window", "labels"]
Change = Literal["difference", "ratio"]

#: Metrics known only once labels have arrived; rules on them are judged when a window's labels
#: are complete enough (see ``PartitionProcessor``), not when the window closes.
LABEL_METRICS = frozenset(
    {"accuracy", "mae", "rmse", "label_coverage", "labelled_count", "accuracy_vs_baseline"}
)

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
    segment: str | None = Field(
        None,
        description="Segment glob: the rule checks each matching segment of the window on its"
        " own (segment metrics only). Unset: the whole window.",
    )
    relative_to: Literal["previous"] | None = Field(
        None,
        description="'previous': compare the metric with its mean over the previous"
        " `previous_windows` judged windows of the same series; the threshold then applies"
        " to the change (see `change`). Unset: the threshold applies to the metric itself.",
    )
    previous_windows: int = Field(5, ge=1, le=1_000)
    change: Change = Field(
        "difference",
        description="With relative_to: 'difference' (now - before, e.g. -0.03 for a 3-point"
        " accuracy drop) or 'ratio' (now / before, e.g. 1.5 for +50 % latency).",
    )
    description: str = ""
    pending_for: int | str = Field(
        0,
        alias="for",
        description="How long the condition must hold before the alert fires: a duration"
        " ('30s') or a number of consecutive windows (3). 0: the first window fires.",
    )
    keep_firing_for: int | str = Field(
        0,
        description="How long a firing alert stays firing after the condition clears, against"
        " flapping: a duration or a number of windows. 0: the first clear window resolves.",
    )

    @field_validator("window_ms", mode="before")
    @classmethod
    def _parse_window(cls, value: Any) -> Any:
        return parse_duration_ms(value) if isinstance(value, str) else value

    @field_validator("pending_for", "keep_firing_for")
    @classmethod
    def _check_span(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            parse_duration_ms(value)
        elif value < 0:
            raise ValueError("must be >= 0 windows, or a duration such as '30s'")
        return value

    @model_validator(mode="after")
    def _check_segment_metric(self) -> ThresholdRule:
        if self.segment is not None and self.metric not in SEGMENT_METRICS:
            raise ValueError(
                f"metric {self.metric!r} is not tracked per segment; segment rules may use"
                f" {sorted(SEGMENT_METRICS)}"
            )
        return self

    def windows_to_fire(self, size_ms: int) -> int:
        """Consecutive breached windows needed to fire (Prometheus ``for`` semantics)."""
        return 1 + _windows_in(self.pending_for, size_ms)

    def windows_to_resolve(self, size_ms: int) -> int:
        """Consecutive clear windows needed to resolve a firing alert."""
        return 1 + _windows_in(self.keep_firing_for, size_ms)

    def matches(self, model_id: str, model_version: str) -> bool:
        """Return whether the rule applies to this model and version."""
        return fnmatch.fnmatchcase(model_id, self.model) and fnmatch.fnmatchcase(
            model_version, self.version
        )

    @property
    def phase(self) -> Phase:
        """``labels`` for rules on label metrics (accuracy, mae, ...), else ``window``."""
        return "labels" if self.metric in LABEL_METRICS else "window"

    def judged_value(self, metrics: dict[str, Any]) -> float | None:
        """The metric's value, or None when the window cannot be judged (no metric, too few)."""
        value = metrics.get(self.metric)
        if value is None or metrics.get("count", 0) < self.min_events:
            return None
        return float(value)

    def compared(self, value: float, before: Sequence[float]) -> float | None:
        """The value the threshold applies to, given the series' previous judged values."""
        if self.relative_to is None:
            return value
        if len(before) < self.previous_windows:
            return None  # not enough history yet: cannot judge
        reference = math.fsum(before[-self.previous_windows :]) / self.previous_windows
        if self.change == "difference":
            return value - reference
        return value / reference if reference > 0 else None

    def breached(self, metrics: dict[str, Any]) -> bool | None:
        """Return True/False, or None when the window cannot be judged (absolute rules only)."""
        value = self.judged_value(metrics)
        if value is None:
            return None
        return _OPERATORS[self.op](value, self.threshold)

    def holds(self, compared: float) -> bool:
        """Whether the compared value meets the rule's condition."""
        return _OPERATORS[self.op](compared, self.threshold)


class DetectorRule(BaseModel):
    """Run an online drift detector on matching series and alert when it detects a change.

    ``signal`` picks the series: ``feature`` (each numeric input feature matching ``series``),
    ``score``, ``latency``, ``error`` (the 0/1 error indicator) or ``correctness`` (0/1 from
    joined labels). ``detector`` overrides the measured defaults for the signal. An alert
    resolves after ``resolve_after`` of event time without another detection.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    signal: Signal
    series: str = Field("*", description="Feature-name glob (signal 'feature' only).")
    detector: DetectorParams | None = None
    severity: Severity = "warning"
    resolve_after_ms: int = Field(300_000, alias="resolve_after", gt=0)
    model: str = "*"
    version: str = "*"
    description: str = ""

    @field_validator("resolve_after_ms", mode="before")
    @classmethod
    def _parse_resolve_after(cls, value: Any) -> Any:
        return parse_duration_ms(value) if isinstance(value, str) else value

    def params(self) -> DetectorParams:
        """The detector parameters: the rule's own, or the measured defaults for the signal."""
        return self.detector if self.detector is not None else default_params(self.signal)

    def matches(self, model_id: str, model_version: str, signal: str, series: str) -> bool:
        """Return whether the rule watches this series."""
        return (
            signal == self.signal
            and fnmatch.fnmatchcase(model_id, self.model)
            and fnmatch.fnmatchcase(model_version, self.version)
            and (signal != "feature" or fnmatch.fnmatchcase(series, self.series))
        )


def _unique(names: list[str], what: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{what} names must be unique; repeated: {duplicates}")


class RulesFile(BaseModel):
    """Top level of a rules YAML file."""

    model_config = ConfigDict(extra="forbid")

    rules: list[ThresholdRule] = Field(default_factory=list)
    detectors: list[DetectorRule] = Field(default_factory=list)
    absence: list[AbsenceRule] = Field(default_factory=list)
    inhibit: list[InhibitRule] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[ThresholdRule]) -> list[ThresholdRule]:
        _unique([r.name for r in rules], "rule")
        return rules

    @field_validator("detectors")
    @classmethod
    def _unique_detectors(cls, rules: list[DetectorRule]) -> list[DetectorRule]:
        _unique([r.name for r in rules], "detector rule")
        return rules

    @field_validator("absence")
    @classmethod
    def _unique_absence(cls, rules: list[AbsenceRule]) -> list[AbsenceRule]:
        _unique([r.name for r in rules], "absence rule")
        return rules

    @field_validator("inhibit")
    @classmethod
    def _unique_inhibit(cls, rules: list[InhibitRule]) -> list[InhibitRule]:
        _unique([r.name for r in rules], "inhibit rule")
        return rules


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything a rules file declares."""

    thresholds: tuple[ThresholdRule, ...]
    detectors: tuple[DetectorRule, ...] = ()
    absence: tuple[AbsenceRule, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()


def load_rules(path: Path | None, window_sizes_ms: Sequence[int]) -> list[ThresholdRule]:
    """Load and validate the threshold rules of a file; see :func:`load_rule_set`."""
    return list(load_rule_set(path, window_sizes_ms).thresholds)


def load_rule_set(path: Path | None, window_sizes_ms: Sequence[int]) -> RuleSet:
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
        raise RulesFileError(f"{source}: {_describe(exc, document, text)}") from None
    for rule in parsed.rules:
        if rule.window_ms is not None and rule.window_ms not in window_sizes_ms:
            sizes = [format_duration_ms(s) for s in window_sizes_ms]
            raise RulesFileError(
                f"{source}: rule {rule.name!r}: window {format_duration_ms(rule.window_ms)} is"
                f" not one of the worker's windows {sizes} (STREAMWATCH_WINDOWS)"
            )
    return RuleSet(
        tuple(parsed.rules), tuple(parsed.detectors), tuple(parsed.absence), tuple(parsed.inhibit)
    )


_SECTIONS = {
    "rules": "rule",
    "detectors": "detector rule",
    "absence": "absence rule",
    "inhibit": "inhibit rule",
}


def _line_of(text: str, loc: Sequence[Any]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (as deep as the document goes)."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                break
            key = next(k for k, v in node.value if v is match)
            node, line = match, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _describe(exc: ValidationError, document: Any, text: str) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        where = ".".join(str(p) for p in loc) or "file"
        line = _line_of(text, loc)
        if len(loc) >= 2 and loc[0] in _SECTIONS and isinstance(loc[1], int):
            section, index = str(loc[0]), loc[1]
            name = None
            if isinstance(document, dict) and isinstance(document.get(section), list):
                entry = document[section][index]
                name = entry.get("name") if isinstance(entry, dict) else None
            field = ".".join(str(p) for p in loc[2:]) or "rule"
            kind = _SECTIONS[section]
            where = f"{kind} #{index + 1}" + (f" ({name!r})" if name else "") + f", field {field!r}"
        if line is not None:
            where = f"line {line}: {where}"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """What the alert engine needs to know about a window that just closed."""

    model_id: str
    model_version: str
    size_ms: int
    start_ms: int
    metrics: dict[str, Any]
    phase: Phase = "window"
    drift: tuple[DriftCause, ...] = ()
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Segment name -> that segment's metrics (window phase)."""


def _windows_in(span: int | str, size_ms: int) -> int:
    """Windows a ``for`` / ``keep_firing_for`` value spans beyond the first one."""
    if isinstance(span, str):
        return -(-parse_duration_ms(span) // size_ms)  # ceil: hold at least that long
    return max(0, span - 1)


@dataclass(frozen=True, slots=True)
class _Subject:
    """One series a rule judges in a window: the whole window, or one of its segments."""

    segment: str | None
    metrics: dict[str, Any]


class AlertEngine:
    """Evaluates rules on closed windows: inactive -> pending -> firing -> resolved.

    A breached window starts (or extends) a *pending* run; the alert fires once the run reaches
    the rule's ``for``, and resolves once the condition has been clear for its
    ``keep_firing_for``. Windows that cannot be judged change nothing. Relative rules
    (``relative_to: previous``) keep each series' last judged values. All of it is part of the
    partition's checkpoint (:meth:`to_state` / :meth:`restore`), so a restart neither forgets
    an alert nor fires it again.
    """

    def __init__(self, rules: Iterable[ThresholdRule], default_window_ms: int) -> None:
        """Create an engine; rules without a window check ``default_window_ms`` windows."""
        self._rules = list(rules)
        self._default_window_ms = default_window_ms
        # fingerprint -> {"id": alert id or None, "run": breached windows in a row,
        #                 "since": start of the run's first window, "clear": clear windows}
        self._series: dict[str, dict[str, Any]] = {}
        # fingerprint -> [start of the last judged window, size, [its value and the ones before]]
        self._history: dict[str, list[Any]] = {}

    @property
    def firing(self) -> dict[str, str]:
        """Fingerprint -> alert id of every alert currently firing."""
        return {fp: s["id"] for fp, s in self._series.items() if s["id"] is not None}

    def firing_refs(self) -> list[FiringRef]:
        """The alerts firing now (for inhibition)."""
        return [
            FiringRef(
                s["id"], s["rule"], s["severity"], s["model_id"], s["model_version"], s["fired"]
            )
            for s in self._series.values()
            if s["id"] is not None
        ]

    @property
    def pending(self) -> dict[str, int]:
        """Fingerprint -> start of the pending run of every alert not yet firing."""
        return {fp: s["since"] for fp, s in self._series.items() if s["id"] is None}

    def to_state(self) -> dict[str, Any]:
        """Serialisable state for the checkpoint."""
        return {
            "series": {fp: dict(s) for fp, s in self._series.items()},
            "history": {fp: [h[0], h[1], list(h[2])] for fp, h in self._history.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`to_state` output."""
        self._series = {fp: dict(s) for fp, s in state["series"].items()}
        self._history = {fp: [h[0], h[1], list(h[2])] for fp, h in state["history"].items()}

    def forget_model(
        self, model_id: str, model_version: str, emitted_at_ms: int
    ) -> list[AlertEvent]:
        """Drop a departed model version's series; return resolves of those still firing.

        Its windows are no longer judged, so nothing else would ever resolve them.
        """
        resolved = []
        for fp, series in list(self._series.items()):
            if (series["model_id"], series["model_version"]) != (model_id, model_version):
                continue
            del self._series[fp]
            rule = next((r for r in self._rules if r.name == series["rule"]), None)
            if series["id"] is None or rule is None:
                continue
            size = rule.window_ms if rule.window_ms is not None else self._default_window_ms
            what = rule.description or f"{rule.metric} {rule.op} {rule.threshold:g}"
            resolved.append(
                AlertEvent(
                    alert_id=str(series["id"]),
                    fingerprint=fp,
                    rule=rule.name,
                    severity=rule.severity,
                    state="resolved",
                    model_id=model_id,
                    model_version=model_version,
                    metric=rule.metric,
                    value=None,
                    threshold=rule.threshold,
                    window=WindowRef(
                        size_ms=size, start_ms=series["fired"], end_ms=series["fired"] + size
                    ),
                    message=(
                        f"[{rule.severity.upper()}] resolved: {what} — {model_id}@{model_version}"
                        " sends no more events and is no longer watched"
                    ),
                    labels={"window": format_duration_ms(size)},
                    emitted_at_ms=emitted_at_ms,
                )
            )
        return resolved

    def forget_history(self, watermark_ms: int, grace_ms: int) -> None:
        """Drop the history of series not judged for ``previous_windows`` windows + ``grace_ms``.

        Keeps the checkpoint bounded when models, versions or segments go away. ``grace_ms``
        covers how far behind the watermark windows are judged: label rules judge a window
        when its labels are in, up to the label horizon after it closed.
        """
        longest = max((r.previous_windows for r in self._rules), default=0) + 1
        for fp, (last_start, size, _) in list(self._history.items()):
            if watermark_ms - int(last_start) > longest * int(size) + grace_ms:
                del self._history[fp]

    def evaluate(self, window: ClosedWindow, emitted_at_ms: int) -> list[AlertEvent]:
        """Return the alert state changes caused by one closed window."""
        alerts: list[AlertEvent] = []
        for rule in self._rules:
            size = rule.window_ms if rule.window_ms is not None else self._default_window_ms
            if (
                size != window.size_ms
                or rule.phase != window.phase
                or not rule.matches(window.model_id, window.model_version)
            ):
                continue
            for subject in self._subjects(rule, window):
                series = f"segment={subject.segment}" if subject.segment is not None else ""
                fp = fingerprint(rule.name, window.model_id, window.model_version, size, series)
                value = rule.judged_value(subject.metrics)
                if value is None:
                    continue
                before = self._remember(rule, fp, window, value)
                compared = rule.compared(value, before)
                if compared is None:
                    continue
                change = self._transition(rule, fp, window, rule.holds(compared))
                if change is not None:
                    alert_id, state = change
                    alerts.append(
                        self._alert(
                            rule,
                            window,
                            subject,
                            fp,
                            (alert_id, state),
                            value,
                            before,
                            emitted_at_ms,
                        )
                    )
        return alerts

    @staticmethod
    def _subjects(rule: ThresholdRule, window: ClosedWindow) -> list[_Subject]:
        if rule.segment is None:
            return [_Subject(None, window.metrics)]
        return [
            _Subject(name, metrics)
            for name, metrics in sorted(window.segments.items())
            if fnmatch.fnmatchcase(name, rule.segment)
        ]

    def _remember(
        self, rule: ThresholdRule, fp: str, window: ClosedWindow, value: float
    ) -> list[float]:
        """Record the series' value; return the values judged before this window."""
        if rule.relative_to is None:
            return []
        entry = self._history.get(fp)
        if entry is None:
            entry = self._history[fp] = [window.start_ms, window.size_ms, []]
        elif window.start_ms <= int(entry[0]):
            # Label windows can be judged out of order (one reaches its coverage first): judge
            # a late one against the recent values without rewriting the series' history.
            return list(entry[2][-rule.previous_windows :])
        before = list(entry[2])
        entry[0] = window.start_ms
        entry[2] = [*before, value][-rule.previous_windows :]
        return before

    def _transition(
        self, rule: ThresholdRule, fp: str, window: ClosedWindow, breached: bool
    ) -> tuple[str, Literal["firing", "resolved"]] | None:
        """Advance the series' lifecycle; return ``(alert_id, state)`` when it changes."""
        series = self._series.get(fp)
        if breached:
            if series is None:
                series = self._series[fp] = {
                    "id": None,
                    "run": 0,
                    "since": window.start_ms,
                    "clear": 0,
                    "rule": rule.name,
                    "severity": rule.severity,
                    "model_id": window.model_id,
                    "model_version": window.model_version,
                }
            series["run"] += 1
            series["clear"] = 0
            if series["id"] is None and series["run"] >= rule.windows_to_fire(window.size_ms):
                # The id names the run's first window: a replay yields the same id.
                series["id"] = f"{fp}-{series['since']}"
                series["fired"] = window.start_ms
                return str(series["id"]), "firing"
            return None
        if series is None:
            return None
        if series["id"] is None:
            del self._series[fp]  # pending, never fired: nothing to resolve
            return None
        series["clear"] += 1
        series["run"] = 0
        if series["clear"] >= rule.windows_to_resolve(window.size_ms):
            del self._series[fp]
            return str(series["id"]), "resolved"
        return None

    def _alert(
        self,
        rule: ThresholdRule,
        window: ClosedWindow,
        subject: _Subject,
        fp: str,
        change: tuple[str, Literal["firing", "resolved"]],
        value: float,
        before: list[float],
        emitted_at_ms: int,
    ) -> AlertEvent:
        alert_id, state = change
        size = format_duration_ms(window.size_ms)
        what = rule.description or f"{rule.metric} {rule.op} {rule.threshold:g}"
        verb = "FIRING" if state == "firing" else "resolved"
        labels = {"window": size}
        metric, reported = rule.metric, value
        where = f"{window.model_id}@{window.model_version}"
        if subject.segment is not None:
            labels["segment"] = subject.segment
            where += f" segment {subject.segment}"
        measured = f"{rule.metric}={value:.4g} (threshold {rule.op} {rule.threshold:g})"
        if rule.relative_to is not None:
            history = before[-rule.previous_windows :]
            reference = math.fsum(history) / len(history)
            compared = rule.compared(value, history)
            metric = f"{rule.metric}_{rule.change}_vs_previous"
            reported = compared if compared is not None else value
            labels.update(
                relative_to="previous",
                previous_windows=str(rule.previous_windows),
                reference=f"{reference:.6g}",
            )
            shown = f"{reported:+.4g}" if rule.change == "difference" else f"x{reported:.3g}"
            measured = (
                f"{rule.metric} {reference:.4g} -> {value:.4g} ({shown} vs the mean of the"
                f" previous {rule.previous_windows} windows; threshold {rule.op}"
                f" {rule.threshold:g})"
            )
        message = (
            f"[{rule.severity.upper()}] {verb}: {what} — {where} {measured} over"
            f" {subject.metrics.get('count', 0)} events in the {size} window starting"
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
            metric=metric,
            value=reported,
            threshold=rule.threshold,
            window=WindowRef(
                size_ms=window.size_ms,
                start_ms=window.start_ms,
                end_ms=window.start_ms + window.size_ms,
            ),
            message=message,
            labels=labels,
            root_cause=list(window.drift) if state == "firing" else [],
            emitted_at_ms=emitted_at_ms,
        )


def drift_cause(finding: FeatureDrift) -> DriftCause:
    """Return the alert's view of one feature's drift."""
    return DriftCause(
        feature=finding.feature,
        drifted=finding.drifted,
        psi=_finite(finding.psi),
        js=_finite(finding.js),
        ks=_finite(finding.ks),
        p_adjusted=_finite(finding.p_adjusted),
        unseen_share=_finite(finding.unseen_share),
        baseline_mean=_finite(finding.baseline_mean),
        window_mean=_finite(finding.window_mean),
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class DetectedChange:
    """An online detector's finding, with the series it was found on."""

    rule: DetectorRule
    model_id: str
    model_version: str
    signal: str
    series: str
    detector: str
    before_mean: float
    after_mean: float
    changed_at_ms: int


class DetectorAlerts:
    """Turns detections into alerts: fire once per series, resolve after a quiet period.

    A series' alert fires at its first detection; later detections while it fires only extend
    it. It resolves once the watermark is ``resolve_after`` past the last detection. State is
    part of the partition checkpoint.
    """

    def __init__(self, window_ms: int) -> None:
        """Alerts reference the window of size ``window_ms`` that contains the change."""
        self._window_ms = window_ms
        # fingerprint -> [alert_id, last detection event time, the firing alert as JSON dict]
        self._firing: dict[str, list[Any]] = {}

    def to_state(self) -> dict[str, list[Any]]:
        """Serialisable state for the checkpoint."""
        return {fp: list(entry) for fp, entry in self._firing.items()}

    def restore(self, state: dict[str, list[Any]]) -> None:
        """Restore from :meth:`to_state` output."""
        self._firing = {fp: list(entry) for fp, entry in state.items()}

    def firing_refs(self) -> list[FiringRef]:
        """The detector alerts firing now (for inhibition)."""
        return [FiringRef.of_payload(entry[2]) for entry in self._firing.values()]

    def on_detection(self, change: DetectedChange, emitted_at_ms: int) -> AlertEvent | None:
        """Return a firing alert for a new incident, or None when the series already fires."""
        fp = fingerprint(change.rule.name, change.model_id, change.model_version, 0, change.series)
        entry = self._firing.get(fp)
        if entry is not None:
            entry[1] = max(int(entry[1]), change.changed_at_ms)
            return None
        alert_id = f"{fp}-{change.changed_at_ms}"
        alert = self._alert(change, fp, alert_id, emitted_at_ms)
        self._firing[fp] = [alert_id, change.changed_at_ms, alert.model_dump(mode="json")]
        return alert

    def resolve_due(self, watermark_ms: int, emitted_at_ms: int) -> list[AlertEvent]:
        """Return resolved alerts for series quiet for their rule's ``resolve_after``."""
        resolved: list[AlertEvent] = []
        for fp, (_, last_ms, payload) in sorted(self._firing.items()):
            # Runs every step: read the quiet period from the stored dict, validate only to resolve.
            quiet_ms = int(payload["labels"].get("resolve_after_ms", "0"))
            if watermark_ms - int(last_ms) >= quiet_ms:
                del self._firing[fp]
                note = f"no change detected since {last_ms}"
                resolved.append(resolved_copy(payload, note, emitted_at_ms))
        return resolved

    def _alert(
        self, change: DetectedChange, fp: str, alert_id: str, emitted_at_ms: int
    ) -> AlertEvent:
        rule = change.rule
        start = window_start_ms(change.changed_at_ms, self._window_ms)
        what = rule.description or f"{change.signal} change detected by {change.detector}"
        message = (
            f"[{rule.severity.upper()}] FIRING: {what} — {change.model_id}@{change.model_version}"
            f" {change.series}: mean {change.before_mean:.4g} -> {change.after_mean:.4g}"
            f" at event time {change.changed_at_ms}"
        )
        return AlertEvent(
            alert_id=alert_id,
            fingerprint=fp,
            rule=rule.name,
            severity=rule.severity,
            state="firing",
            model_id=change.model_id,
            model_version=change.model_version,
            metric=f"{change.signal}_mean",
            value=change.after_mean,
            threshold=None,
            window=WindowRef(
                size_ms=self._window_ms, start_ms=start, end_ms=start + self._window_ms
            ),
            message=message,
            labels={
                "signal": change.signal,
                "series": change.series,
                "detector": change.detector,
                "resolve_after_ms": str(rule.resolve_after_ms),
            },
            detection=Detection(
                detector=change.detector,
                signal=change.signal,
                series=change.series,
                before_mean=change.before_mean,
                after_mean=change.after_mean,
                changed_at_ms=change.changed_at_ms,
            ),
            emitted_at_ms=emitted_at_ms,
        )
