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
