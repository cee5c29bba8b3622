"""Rule unit tests: a series of window metrics in, the expected alert events out.

Like ``promtool test rules``: a YAML file names a rules file and lists test cases, each a model's
consecutive windows (their metrics, as ``status --json`` shows them, with an optional
``segments`` map of per-segment metrics) and the alert events that must follow, in order.
:func:`run_rule_tests` feeds the windows through the same
:class:`~streamwatch.core.rules.AlertEngine` and inhibition the worker uses, so ``for``,
``keep_firing_for``, ``min_events``, relative rules and inhibition behave exactly as in
production. Online detector rules need raw event
streams and are not covered here (see ``make bench-drift``).

Pure; reading the files is :func:`load_rule_tests`' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streamwatch.core.durations import parse_duration_ms
from streamwatch.core.inhibition import apply_inhibitions
from streamwatch.core.rules import AlertEngine, ClosedWindow, Phase, RuleSet, load_rule_set
from streamwatch.exceptions import RulesFileError

#: Windows of a test series start here (any aligned time would do; alerts name the index).
SERIES_START_MS = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000


class ExpectedAlert(BaseModel):
    """One alert event a test expects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(ge=0, description="Index of the window whose close emits it.")
    rule: str
    state: Literal["firing", "resolved"]
    inhibited: bool = Field(False, description="Muted by an inhibit rule.")
    segment: str | None = None


class RuleTestCase(BaseModel):
    """One model's consecutive windows and the alert events they must produce."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str = "model"
    version: str = "1"
    windows: list[dict[str, float | int | dict[str, dict[str, float | int]] | None]] = Field(
        min_length=1
    )
    expect: list[ExpectedAlert] = Field(default_factory=list)


class RuleTestFile(BaseModel):
    """Top level of a rule test file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: str | None = Field(None, description="Rules file, relative to the test file.")
    window_ms: int | None = Field(None, alias="window")
    tests: list[RuleTestCase] = Field(min_length=1)

    @field_validator("window_ms", mode="before")
    @classmethod
    def _parse_window(cls, value: Any) -> Any:
        return parse_duration_ms(value) if isinstance(value, str) else value


#: (window index, rule, state, inhibited, segment) of one alert event.
Outcome = tuple[int, str, str, bool, str | None]


@dataclass(frozen=True, slots=True)
class RuleTestResult:
    """The outcome of one test case."""

    name: str
    expected: list[Outcome]
    got: list[Outcome]

    @property
    def passed(self) -> bool:
        """Whether exactly the expected events came, in order."""
        return self.expected == self.got


def load_rule_tests(
    path: Path, window_sizes_ms: tuple[int, ...]
) -> tuple[RuleTestFile, RuleSet, int]:
    """Read a test file and the rules it names; return them and the series' window size.

    Raises:
        RulesFileError: Naming the file and what is wrong with it.
    """
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RulesFileError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RulesFileError(f"{path}: not valid YAML: {exc}") from None
    try:
        spec = RuleTestFile.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise RulesFileError(f"{path}: {problems}") from None
    size_ms = spec.window_ms or min(window_sizes_ms)
    sizes = tuple(sorted({*window_sizes_ms, size_ms}))
    rules_path = None if spec.rules is None else path.parent / spec.rules
    return spec, load_rule_set(rules_path, sizes), size_ms


def run_rule_tests(spec: RuleTestFile, rules: RuleSet, size_ms: int) -> list[RuleTestResult]:
    """Run every test case through a fresh alert engine."""
    results = []
    for case in spec.tests:
        engine = AlertEngine(rules.thresholds, size_ms)
        got: list[Outcome] = []
        for index, entry in enumerate(case.windows):
            start_ms = SERIES_START_MS + index * size_ms
            segments = entry.get("segments")
            values = {k: v for k, v in entry.items() if v is not None and k != "segments"}
            values.setdefault("count", 0)
            labelled = dict(values, count=values.get("labelled_count", values["count"]))
            phases: tuple[tuple[Phase, dict[str, Any]], ...] = (
                ("window", values),
                ("labels", labelled),
            )
            for phase, judged in phases:
                window = ClosedWindow(
                    case.model,
                    case.version,
                    size_ms,
                    start_ms,
                    judged,
                    phase=phase,
                    segments=dict(segments) if isinstance(segments, dict) else {},
                )
                alerts = apply_inhibitions(
                    engine.evaluate(window, 0), engine.firing_refs(), rules.inhibit
                )
                got.extend(
                    (
                        index,
                        a.rule,
                        a.state,
                        a.inhibited_by is not None,
                        a.labels.get("segment"),
                    )
                    for a in alerts
                )
        expected: list[Outcome] = [
            (e.window, e.rule, e.state, e.inhibited, e.segment) for e in case.expect
        ]
        results.append(RuleTestResult(case.name, expected, got))
    return results
