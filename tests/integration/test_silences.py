"""Silences through the CLI, stored in a real Redis."""

from __future__ import annotations

import orjson
import pytest
import redis
from click.testing import CliRunner

from streamwatch.adapters.silence_store import SilenceStore
from streamwatch.cli import main
from streamwatch.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration


def test_silence_add_list_and_expire(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    runner = CliRunner()
    env = {"STREAMWATCH_REDIS_URL": redis_server.url}
    added = runner.invoke(
        main,
        [
            "silence",
            "add",
            "--model",
            "fraud-*",
            "--rule",
            "latency_*",
            "--for",
            "2h",
            "--comment",
            "deploy window",
            "--by",
            "ana",
        ],
        env=env,
    )
    assert added.exit_code == 0, added.output
    (stored,) = SilenceStore(redis_client).list()
    assert (stored.model, stored.version, stored.rule) == ("fraud-*", "*", "latency_*")
    assert stored.ends_at_ms - stored.starts_at_ms == 2 * 3_600_000
    assert stored.id in added.output

    listed = runner.invoke(main, ["silence", "list", "--json"], env=env)
    assert [orjson.loads(line)["id"] for line in listed.output.splitlines()] == [stored.id]

    expired = runner.invoke(main, ["silence", "expire", stored.id], env=env)
    assert expired.exit_code == 0, expired.output
    assert runner.invoke(main, ["silence", "list"], env=env).output == ""
    assert stored.id in runner.invoke(main, ["silence", "list", "--all"], env=env).output

    unknown = runner.invoke(main, ["silence", "expire", "nope"], env=env)
    assert unknown.exit_code == 2
    assert "no silence 'nope'" in unknown.output
