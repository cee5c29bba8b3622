"""Baseline profiles in a real Redis: versions, current, rollback, adoption races, and the CLI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from click.testing import CliRunner

from streamwatch.adapters.baseline_store import (
    AsyncBaselineStore,
    BaselineStore,
    adopt_commands,
)
from streamwatch.cli import main
from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.baseline import BaselineProfile
from streamwatch.embedded import EmbeddedRedis
from streamwatch.exceptions import ConfigError, StateFormatError
from streamwatch.generator import DEFAULT_MODELS, reference_rows
from streamwatch.state_keys import baseline_key

pytestmark = pytest.mark.integration


def _profile(
    source: str, model_id: str = "m", version: str = "1", adopted: bool = False
) -> BaselineProfile:
    aggregate = WindowAggregate()
    aggregate.count = len(source)
    return BaselineProfile(
        model_id, version, aggregate, created_at_ms=1, source=source, adopted=adopted
    )


@pytest.fixture
def store(redis_client: redis.Redis) -> BaselineStore:
    return BaselineStore(redis_client)


@pytest.fixture
async def async_client(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def test_save_numbers_versions_and_makes_the_newest_current(store: BaselineStore) -> None:
    assert store.current("m", "1") is None
    assert store.save(_profile("first")) == 1
    assert store.save(_profile("second")) == 2
    assert store.save(_profile("other", model_id="n")) == 1
    current = store.current("m", "1")
    assert current is not None
    assert (current.source, current.version) == ("second", 2)
    first = store.get("m", "1", 1)
    assert first is not None
    assert (first.source, first.version) == ("first", 1)
    assert store.get("m", "1", 3) is None
    assert store.versions("m", "1") == [1, 2]
    assert store.current_version("m", "1") == 2


def test_activate_rolls_back_and_refuses_unknown_versions(store: BaselineStore) -> None:
    store.save(_profile("first"))
    store.save(_profile("second"))
    assert store.activate("m", "1", 1).source == "first"
    current = store.current("m", "1")
    assert current is not None and current.source == "first"
    with pytest.raises(
        ConfigError, match=r"m@1 has no baseline version 7; stored versions: \[1, 2\]"
    ):
        store.activate("m", "1", 7)
    # A save after a rollback still gets a new number and becomes current.
    assert store.save(_profile("third")) == 3
    assert store.current_version("m", "1") == 3


def test_list_summarises_every_version_and_marks_the_current(store: BaselineStore) -> None:
    store.save(_profile("a"))
    store.save(_profile("bb"))
    store.save(_profile("ccc", model_id="k", version="2"))
    store.activate("m", "1", 1)
    listed = [
        (s["model_id"], s["model_version"], s["version"], s["current"], s["rows"])
        for s in store.list()
    ]
    assert listed == [("k", "2", 1, True, 3), ("m", "1", 1, True, 1), ("m", "1", 2, False, 2)]


def test_profiles_of_another_format_are_skipped_in_list_and_raise_when_read(
    store: BaselineStore, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store.save(_profile("good"))
    data = _profile("future").to_dict() | {"fmt": 99, "version": 2}
    redis_client.hset(baseline_key("m", "1"), mapping={"v2": orjson.dumps(data), "current": 2})
    with caplog.at_level(logging.WARNING):
        assert [s["source"] for s in store.list()] == ["good"]
    assert "skipping baseline m@1 v2: baseline format 99 is not 1" in caplog.text
    with pytest.raises(StateFormatError, match="baseline m@1 v2: baseline format 99"):
        store.current("m", "1")
    with pytest.raises(StateFormatError):
        store.get("m", "1", 2)
    with pytest.raises(StateFormatError):
        store.activate("m", "1", 2)
    assert store.load_all_current() == {}
    assert store.get("m", "1", 1) is not None


def test_load_all_current_returns_each_model_versions_current_profile(store: BaselineStore) -> None:
    store.save(_profile("a"))
    store.save(_profile("b"))
    store.save(_profile("c", version="*"))
    store.activate("m", "1", 1)
    loaded = {series: p.source for series, p in store.load_all_current().items()}
    assert loaded == {("m", "1"): "a", ("m", "*"): "c"}


async def test_async_store_has_the_same_semantics(
    async_client: aioredis.Redis, store: BaselineStore
) -> None:
    baselines = AsyncBaselineStore(async_client)
    assert await baselines.current("m", "1") is None
    assert await baselines.save(_profile("a")) == 1
    assert store.save(_profile("b")) == 2
    assert (await baselines.activate("m", "1", 1)).source == "a"
    current = await baselines.current("m", "1")
    assert current is not None and current.source == "a"
    assert (await baselines.get("m", "1", 2)).source == "b"  # type: ignore[union-attr]
    assert await baselines.versions("m", "1") == [1, 2]
    assert [s["current"] for s in await baselines.list()] == [True, False]
    assert {k: p.source for k, p in (await baselines.load_all_current()).items()} == {
        ("m", "1"): "a"
    }
    with pytest.raises(ConfigError, match="stored versions: none"):
        await baselines.activate("x", "1", 1)


async def test_adoption_never_overwrites_a_stored_baseline(
    async_client: aioredis.Redis, store: BaselineStore
) -> None:
    store.save(_profile("manual"))
    pipe = async_client.pipeline(transaction=True)
    adopt_commands(pipe, _profile("adopted", adopted=True))
    assert await pipe.execute() == [0, 0, 0]
    current = store.current("m", "1")
    assert current is not None and (current.source, current.adopted) == ("manual", False)
    assert store.save(_profile("manual 2")) == 2


async def test_two_partitions_adopting_at_once_leave_exactly_one_v1(
    async_client: aioredis.Redis, redis_server: EmbeddedRedis, store: BaselineStore
) -> None:
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        pipes = []
        for client, source in ((async_client, "partition 0"), (other, "partition 1")):
            pipe = client.pipeline(transaction=True)
            pipe.set(f"checkpoint:{source}", "x")  # the checkpoint the adoption commits with
            adopt_commands(pipe, _profile(source, adopted=True))
            pipes.append(pipe)
        results = await asyncio.gather(*(pipe.execute() for pipe in pipes))
    finally:
        await other.aclose()
    assert sorted(r[1:] for r in results) == [[False, False, False], [True, True, True]]
    winner = "partition 0" if results[0][1] else "partition 1"
    assert store.versions("m", "1") == [1]
    assert store.current_version("m", "1") == 1
    current = store.current("m", "1")
    assert current is not None and (current.source, current.adopted, current.version) == (
        winner,
        True,
        1,
    )
    # A manual baseline after adoption becomes version 2, not a second v1.
    assert store.save(_profile("manual")) == 2


def test_cli_sample_build_list_show_activate_round_trip(
    redis_server: EmbeddedRedis,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMWATCH_REDIS_URL", redis_server.url)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["baseline", *args])
        assert result.exit_code == 0, result.output
        return result.output

    spec = DEFAULT_MODELS[0]
    out = run("sample", "--model", spec.model_id, "--rows", "4000", "ref.jsonl", "--seed", "3")
    assert f"wrote 4000 reference events of {spec.model_id}@{spec.model_version}" in out

    out = run("build", "--model", spec.model_id, "--version", spec.model_version, "ref.jsonl")
    assert "rows        4000" in out
    assert "accuracy 9" in out
    assert "stored      version 1 (current)" in out
    written = tmp_path / "baselines" / f"{spec.model_id}@{spec.model_version}.v1.json"
    on_file = BaselineProfile.from_dict(orjson.loads(written.read_bytes()))
    expected = BaselineProfile.from_dict(
        orjson.loads(redis_client.hget(baseline_key(spec.model_id, spec.model_version), "v1"))  # type: ignore[arg-type]
    )
    assert on_file.to_dict() == expected.to_dict()
    assert on_file.version == 1
    assert on_file.accuracy == pytest.approx(spec.accuracy, abs=0.02)

    run(
        "build",
        "--model",
        spec.model_id,
        "--version",
        spec.model_version,
        "ref.jsonl",
        "--out",
        "second.json",
    )
    listed = orjson.loads(run("list", "--json"))
    assert [(s["version"], s["current"], s["rows"]) for s in listed] == [
        (1, False, 4000),
        (2, True, 4000),
    ]
    table = run("list").splitlines()
    assert table[0].split()[:3] == ["MODEL", "VERSION", "N"]
    assert table[2].split()[:4] == [spec.model_id, spec.model_version, "2", "*"]

    shown = run("show", spec.model_id, spec.model_version)
    assert f"{spec.model_id}@{spec.model_version}: baseline version 2 (current)" in shown
    assert "amount" in shown and "country" in shown
    assert (
        orjson.loads(run("show", spec.model_id, spec.model_version, "--n", "1", "--json"))[
            "version"
        ]
        == 1
    )

    assert "baseline version 1 is now current" in run(
        "activate", spec.model_id, spec.model_version, "1"
    )
    assert "baseline version 1 (current)" in run("show", spec.model_id, spec.model_version)
    assert "as baseline version 3 (current)" in run("import", "second.json")

    failed = runner.invoke(main, ["baseline", "activate", spec.model_id, spec.model_version, "9"])
    assert failed.exit_code == 2
    assert failed.output == (
        f"streamwatch: {spec.model_id}@{spec.model_version} has no baseline version 9;"
        " stored versions: [1, 2, 3] (see 'streamwatch baseline list')\n"
    )
    missing = runner.invoke(main, ["baseline", "show", "nobody", "1"])
    assert (missing.exit_code, missing.output.count("\n")) == (2, 1)
    assert "nobody@1 has no baseline; stored versions: none" in missing.output


def test_reference_rows_profile_stores_and_loads_back(store: BaselineStore) -> None:
    from streamwatch.core.baseline import profile_from_events

    spec = DEFAULT_MODELS[1]
    profile = profile_from_events(
        spec.model_id,
        spec.model_version,
        reference_rows(spec, 2_000, seed=1),
        source="gen",
        created_at_ms=0,
    )
    n = store.save(profile)
    loaded = store.current(spec.model_id, spec.model_version)
    assert loaded is not None
    assert loaded.to_dict() == profile.to_dict() | {"version": n}
    assert profile.version == 0  # save does not change the caller's profile
