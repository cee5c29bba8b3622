"""The public surface: settings errors, generated schemas, exported names, pure-core imports."""

import ast
from pathlib import Path

import pytest

import streamwatch
from streamwatch.exceptions import ConfigError
from streamwatch.schemas import contract_schemas, render
from streamwatch.settings import load_settings

ROOT = Path(__file__).parents[2]


def test_public_api_is_exactly_the_intended_names() -> None:
    assert sorted(streamwatch.__all__) == [
        "AlertEvent",
        "BusinessEvent",
        "ConfigError",
        "DeadLetterEvent",
        "EmbeddedServiceError",
        "FeedbackEvent",
        "InferenceEvent",
        "ModelSeries",
        "RulesFileError",
        "Settings",
        "StateFormatError",
        "StreamwatchClient",
        "StreamwatchError",
        "WindowState",
        "__version__",
        "load_settings",
    ]


def test_committed_schemas_are_up_to_date() -> None:
    schemas = contract_schemas()
    on_disk = {p.name for p in (ROOT / "schemas").glob("*.json")}
    assert on_disk == set(schemas), "run `make schemas` and commit the result"
    for name, schema in schemas.items():
        assert (ROOT / "schemas" / name).read_bytes() == render(schema), (
            f"schemas/{name} is stale: run `make schemas` and commit the result"
        )


def test_pure_core_imports_no_io_library() -> None:
    forbidden = {"faust", "redis", "confluent_kafka", "aiokafka", "mode"}
    for path in (ROOT / "src" / "streamwatch" / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMWATCH_WINDOWS": "10x"}, "STREAMWATCH_WINDOWS: invalid duration '10x'"),
        ({"STREAMWATCH_WINDOWS": "10s,10s"}, "distinct"),
        ({"STREAMWATCH_PARTITIONS": "zero"}, "STREAMWATCH_PARTITIONS"),
        ({"STREAMWATCH_PARTITIONS": "0"}, "STREAMWATCH_PARTITIONS"),
        ({"STREAMWATCH_ALLOWED_LATENESS": "soon"}, "STREAMWATCH_ALLOWED_LATENESS"),
        ({"STREAMWATCH_WINDOW": "1m"}, "unknown setting(s) ['STREAMWATCH_WINDOW']"),
        ({"STREAMWATCH_LOG_LEVEL": "loud"}, "STREAMWATCH_LOG_LEVEL"),
        ({"STREAMWATCH_HEARTBEAT_INTERVAL_S": "5"}, "at most a third"),
    ],
)
def test_bad_config_fails_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_redis_password_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWATCH_REDIS_URL", "redis://:hunter2@db:6379/0")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
