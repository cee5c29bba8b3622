"""The ``streamwatch`` command line: worker, produce, status, alerts, deadletters, demo, schemas.

Every command builds :class:`~streamwatch.settings.Settings` once; a bad setting prints one line
naming the variable and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from streamwatch.core.durations import parse_duration_ms
from streamwatch.exceptions import StreamwatchError
from streamwatch.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def _settings(**overrides: Any) -> Settings:
    # Callers are wrapped in _fail_cleanly, which turns a ConfigError into one line and exit 2.
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _fail_cleanly(function: F) -> F:
    """Turn StreamwatchError into one line on stderr and exit status 2."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except StreamwatchError as exc:
            click.echo(f"streamwatch: {exc}", err=True)
            sys.exit(2)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="streamwatch")
def main() -> None:
    """Real-time monitoring for ML models in production."""


@main.command()
@_fail_cleanly
def worker() -> None:
    """Run a monitoring worker (configured by STREAMWATCH_* environment variables)."""
    from streamwatch.worker import processor_config, run_worker

    settings = _settings()
    processor_config(settings)  # fail on a bad rules file before connecting to anything
    run_worker(settings)


@main.command()
@click.option(
    "--rate",
    "rate_eps",
    type=float,
    default=1000.0,
    show_default=True,
    help="Inference events per second.",
)
@click.option("--duration", "duration", default=None, help="Stop after this long, e.g. 60s.")
@click.option(
    "--batch-size",
    type=int,
    default=200,
    show_default=True,
    help="Events per Kafka message (1 = single-event messages).",
)
@click.option(
    "--incidents",
    default="none",
    show_default=True,
    help="'default', 'none', or e.g. 'error_spike:fraud-detector@20s+30s:0.2'.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--fast/--realtime",
    default=False,
    show_default=True,
    help="Produce as fast as possible with simulated time, or pace to the clock.",
)
@_fail_cleanly
def produce(
    rate_eps: float, duration: str | None, batch_size: int, incidents: str, seed: int, fast: bool
) -> None:
    """Publish synthetic inference, feedback and business events with optional incidents."""
    import time

    from streamwatch import generator as gen

    settings = _settings()
    try:
        parsed = gen.parse_incidents(incidents)
        duration_s = parse_duration_ms(duration) / 1000 if duration else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    from streamwatch.adapters.kafka_admin import ensure_topics

    ensure_topics(settings)
    traffic = gen.TrafficGenerator(
        models=gen.DEFAULT_MODELS,
        incidents=parsed,
        seed=seed,
        start_ms=time.time_ns() // 1_000_000,
        rate_eps=rate_eps,
    )
    stats = gen.produce(
        settings.kafka_bootstrap,
        {k: settings.topic(k) for k in ("inference", "feedback", "business")},
        traffic,
        rate_eps=rate_eps,
        duration_s=duration_s,
        batch_size=batch_size,
        realtime=not fast,
        extra_conf=settings.librdkafka_security(),
    )
    click.echo(orjson.dumps(stats, default=_jsonable).decode())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    raise TypeError(type(value).__name__)


@main.command()
@click.option("--model", "model_id", default=None, help="Only this model id.")
@click.option("--version", "model_version", default=None, help="Only this model version.")
@click.option("--window", "window", default=None, help="Window size, e.g. 1m (default: all).")
@click.option("--limit", type=int, default=5, show_default=True, help="Windows per series.")
@click.option("--closed-only", is_flag=True, help="Hide open (in-progress) windows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_fail_cleanly
def status(
    model_id: str | None,
    model_version: str | None,
    window: str | None,
    limit: int,
    closed_only: bool,
    as_json: bool,
) -> None:
    """Show the newest windows of every model (or one model/version/size)."""
    from rich.console import Console

    from streamwatch.client import StreamwatchClient
    from streamwatch.core.rules import load_rules
    from streamwatch.render import status_table

    settings = _settings()
    sizes = settings.windows_ms
    if window is not None:
        try:
            sizes = (parse_duration_ms(window),)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--window") from None
    client = StreamwatchClient.from_url(settings.redis_url.get_secret_value())
    windows = []
    for series in client.models():
        if model_id and series.model_id != model_id:
            continue
        if model_version and series.model_version != model_version:
            continue
        for size in sizes:
            windows.extend(
                client.windows(series.model_id, series.model_version, size, limit, not closed_only)
            )
    if as_json:
        click.echo(orjson.dumps([w.to_dict() for w in windows], option=orjson.OPT_INDENT_2))
        return
    rules = load_rules(settings.rules, settings.windows_ms)
    Console().print(status_table(windows, rules))


def _tail(topic_kind: str, follow: bool, idle_exit_s: float, as_json: bool) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    settings = _settings()
    topic = settings.topic(topic_kind)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "streamwatch-cli",
            "enable.auto.commit": False,
            **settings.librdkafka_security(),
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
        # Manual assignment: no group join, so the first records show up at once.
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        import time

        last_seen = time.monotonic()
        while follow or time.monotonic() - last_seen < idle_exit_s:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            last_seen = time.monotonic()
            value = message.value() or b"null"
            if as_json:
                click.echo(value.decode("utf-8", errors="replace"))
            else:
                click.echo(_describe_record(topic_kind, orjson.loads(value)))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _describe_record(kind: str, record: dict[str, Any]) -> str:
    from streamwatch.render import format_ts_ms

    if kind == "alerts":
        window = record["window"]
        return (
            f"{format_ts_ms(window['start_ms'])} {record['state']:<8} {record['severity']:<8}"
            f" {record['rule']:<20} {record['model_id']}@{record['model_version']}"
            f" {record['metric']}={record['value']:.4g}  id={record['alert_id']}"
        )
    source = record["source"]
    where = f"{source['topic']}[{source['partition']}]@{source['offset']}"
    if source.get("batch_index") is not None:
        where += f"#{source['batch_index']}"
    return f"{record['reason']:<28} {where:<36} {record['detail']}"


@main.command()
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new alerts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON alert per line.")
@click.option(
    "--idle-exit",
    type=float,
    default=3.0,
    show_default=True,
    help="Without --follow, exit after this many seconds with no new alert.",
)
@_fail_cleanly
def alerts(follow: bool, as_json: bool, idle_exit: float) -> None:
    """Print alert events from the alerts topic, oldest first."""
    _tail("alerts", follow, idle_exit, as_json)


@main.command()
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new dead-letters.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@click.option("--idle-exit", type=float, default=3.0, show_default=True)
@_fail_cleanly
def deadletters(follow: bool, as_json: bool, idle_exit: float) -> None:
    """Print rejected input (reason, source topic/partition/offset, detail)."""
    _tail("deadletter", follow, idle_exit, as_json)


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
)
def schemas(out: Path) -> None:
    """Write the JSON Schemas of the event contract."""
    from streamwatch.schemas import write_schemas

    for path in write_schemas(out):
        click.echo(str(path))


@main.command()
@click.option("--rate", "rate_eps", type=float, default=800.0, show_default=True)
@click.option("--partitions", type=int, default=4, show_default=True)
@click.option("--duration", default=None, help="Stop after this long (default: until Ctrl-C).")
@_fail_cleanly
def demo(rate_eps: float, partitions: int, duration: str | None) -> None:
    """Start a broker, Redis, a worker and traffic with incidents; show live status."""
    from streamwatch.demo import run_demo

    duration_s = parse_duration_ms(duration) / 1000 if duration else None
    run_demo(rate_eps=rate_eps, partitions=partitions, duration_s=duration_s)
