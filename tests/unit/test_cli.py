import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streamwatch.cli import main


@pytest.mark.parametrize(
    ("command", "env", "expected"),
    [
        (
            ["worker"],
            {"STREAMWATCH_WINDOWS": "ten seconds"},
            "STREAMWATCH_WINDOWS: invalid duration",
        ),
        (
            ["worker"],
            {"STREAMWATCH_RULES": "/nonexistent/rules.yaml"},
            "STREAMWATCH_RULES: cannot read",
        ),
        (
            ["status"],
            {"STREAMWATCH_PARTITONS": "4"},
            "unknown setting(s) ['STREAMWATCH_PARTITONS']",
        ),
    ],
)
def test_bad_config_exits_2_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, command: list[str], env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2
    assert expected in result.output
    assert result.output.count("\n") == 1


def test_schemas_command_writes_every_contract_file(tmp_path) -> None:
    result = CliRunner().invoke(main, ["schemas", "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"inference_event.json", "alert_event.json"}


def test_baseline_sample_then_build_without_redis_writes_the_profile_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    sample = runner.invoke(
        main, ["baseline", "sample", "--model", "fraud-detector", "--rows", "2000", "ref.jsonl"]
    )
    assert sample.exit_code == 0, sample.output
    assert "wrote 2000 reference events of fraud-detector@2.1.0 (classifier)" in sample.output
    built = runner.invoke(
        main,
        [
            "baseline",
            "build",
            "--model",
            "fraud-detector",
            "--version",
            "2.1.0",
            "ref.jsonl",
            "--no-store",
        ],
    )
    assert built.exit_code == 0, built.output
    assert "fraud-detector@2.1.0: baseline from ref.jsonl" in built.output
    assert "features    8: 6 numeric, 2 categorical" in built.output
    assert "written to baselines/fraud-detector@2.1.0.json" in built.output
    profile = orjson.loads((tmp_path / "baselines" / "fraud-detector@2.1.0.json").read_bytes())
    assert (profile["version"], profile["source"]) == (0, "file:ref.jsonl")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["sample", "--model", "nope", "--rows", "5", "x.jsonl"],
            "streamwatch: no demo model nope; valid values are: ['churn-predictor --version",
        ),
        (
            ["sample", "--model", "recommender", "--rows", "5", "x.csv"],
            "streamwatch: x.csv: sample data is JSON lines; name the file *.jsonl",
        ),
        (
            ["build", "--model", "m", "--version", "1", "empty.csv", "--no-store"],
            "streamwatch: empty.csv: holds no reference rows; add at least one after a header",
        ),
        (
            ["build", "--model", "m", "--version", "1", "missing.jsonl", "--no-store"],
            "streamwatch: cannot read missing.jsonl: No such file or directory",
        ),
        (
            ["build", "--model", "m:x", "--version", "1", "empty.csv"],
            "streamwatch: invalid model id 'm:x'",
        ),
        (
            ["build", "--model", "m", "--version", "1", "ref.parquet", "--no-store"],
            "streamwatch: ref.parquet: reading Parquet needs pyarrow; install pyarrow"
            " (pip install 'streamwatch[parquet]')",
        ),
        (["list"], "streamwatch: cannot reach Redis at STREAMWATCH_REDIS_URL"),
        (["import", "empty.csv"], "streamwatch: empty.csv is not a baseline profile"),
    ],
)
def test_baseline_errors_exit_2_with_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str
) -> None:
    from streamwatch.embedded import free_port

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ref.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    # Nothing listens here: the Redis commands fail fast with "connection refused".
    monkeypatch.setenv("STREAMWATCH_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = CliRunner().invoke(main, ["baseline", *args])
    assert result.exit_code == 2
    assert result.output.startswith(expected)
    assert result.output.count("\n") == 1


def test_alert_lines_say_why() -> None:
    from streamwatch.render import describe_alert

    base = {
        "alert_id": "abc-1",
        "state": "firing",
        "severity": "warning",
        "rule": "accuracy_low",
        "model_id": "fraud",
        "model_version": "2.1.0",
        "metric": "accuracy",
        "value": 0.61,
        "window": {"size_ms": 10_000, "start_ms": 0, "end_ms": 10_000},
    }
    cause = {"feature": "amount", "drifted": True, "psi": 0.93}
    calm = {"feature": "age", "drifted": False, "psi": 0.01}
    line = describe_alert({**base, "root_cause": [cause, calm]})
    assert line.endswith("drift: amount (psi 0.93)  id=abc-1")
    detection = {"detector": "adwin", "series": "amount", "before_mean": 100, "after_mean": 115}
    shifted = describe_alert({**base, "value": None, "detection": detection})
    assert "accuracy=- [adwin on amount: 100 -> 115]" in shifted


def test_rules_check_lists_a_valid_file_and_rejects_a_bad_one(tmp_path: Path) -> None:
    runner = CliRunner()
    deploy_rules = Path(__file__).parents[2] / "deploy" / "rules.yaml"
    good = runner.invoke(main, ["rules", "check", str(deploy_rules)], env={})
    assert good.exit_code == 0, good.output
    assert good.output.splitlines()[-1].endswith(
        "OK, 12 rules, 5 detector rules, 1 absence rules and 1 inhibit rules"
    )
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "rules:\n  - name: x\n    metric: error_rate\n    op: '>'\n    threshold: 1\n    window: 7s\n"
    )
    result = runner.invoke(main, ["rules", "check", str(bad)], env={})
    assert result.exit_code == 2
    assert "window 7s is not one of the worker's windows" in result.output


def test_rules_test_runs_the_shipped_rule_tests_and_reports_failures(tmp_path: Path) -> None:
    runner = CliRunner()
    shipped = Path(__file__).parents[2] / "deploy" / "rules-test.yaml"
    ok = runner.invoke(main, ["rules", "test", str(shipped)], env={})
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[-1] == "10 passed, 0 failed"

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "tests:\n"
        "  - name: expects a resolve that never comes\n"
        "    windows: [{count: 100, error_rate: 0.5}, {count: 100, error_rate: 0.5}]\n"
        "    expect:\n"
        "      - {window: 0, rule: error_rate_high, state: firing}\n"
        "      - {window: 1, rule: error_rate_high, state: resolved}\n"
    )
    failed = runner.invoke(main, ["rules", "test", str(wrong)], env={})
    assert failed.exit_code == 1
    assert "FAIL  expects a resolve that never comes" in failed.output
    assert failed.output.split("  got:\n")[1].splitlines()[0].split() == [
        "window",
        "0",
        "error_rate_high",
        "firing",
    ]

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("tests: []\n")
    result = runner.invoke(main, ["rules", "test", str(invalid)], env={})
    assert result.exit_code == 2
    assert "tests" in result.output


def test_follow_marks_what_needs_a_human_and_dims_what_is_muted() -> None:
    from rich.console import Console

    from streamwatch.render import describe_alert, pretty_alert

    base = {
        "alert_id": "abc-1",
        "state": "firing",
        "severity": "critical",
        "rule": "error_rate_high",
        "model_id": "fraud",
        "model_version": "2.1.0",
        "metric": "error_rate",
        "value": 0.2,
        "window": {"size_ms": 10_000, "start_ms": 0, "end_ms": 10_000},
        "labels": {"segment": "eu"},
    }
    assert pretty_alert(base).startswith("🔴 [bold red]")
    assert "fraud@2.1.0[eu] error_rate=0.2" in describe_alert(base)
    assert pretty_alert({**base, "state": "resolved"}).startswith("✅ [green]")
    muted = pretty_alert({**base, "severity": "warning", "inhibited_by": "crit-9"})
    assert muted.startswith("⚠️ [dim]") and "(inhibited by crit-9)" in muted
    console = Console(record=True, width=200)
    # A model id with markup in it prints as text, not as a style.
    console.print(pretty_alert({**base, "model_id": "[red]x"}), soft_wrap=True)
    assert "[red]x@2.1.0" in console.export_text()


def test_produce_sends_columns_unless_told_rows() -> None:
    result = CliRunner().invoke(main, ["produce", "--help"])
    assert result.exit_code == 0
    assert "--layout [columns|rows]" in result.output
    assert "default: columns" in result.output
