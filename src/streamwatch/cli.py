"""The ``streamwatch`` command line: worker, produce, status, alerts, baseline, demo, and more.

Every command builds :class:`~streamwatch.settings.Settings` once; a bad setting prints one line
naming the variable and exits with status 2.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from streamwatch.core.durations import parse_duration_ms
from streamwatch.events import DEFAULT_BATCH_SIZE
from streamwatch.exceptions import ConfigError, StreamwatchError
from streamwatch.settings import Settings, load_settings

if TYPE_CHECKING:
    from streamwatch.adapters.baseline_store import BaselineStore
    from streamwatch.adapters.silence_store import SilenceStore
    from streamwatch.core.baseline import BaselineProfile

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
    from streamwatch.core_config import processor_config
    from streamwatch.worker import run_worker

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
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Events per Kafka message (1 = single-event messages).",
)
@click.option(
    "--incidents",
    default="none",
    show_default=True,
    help="'default', 'none', or e.g. 'error_spike:fraud-detector@20s+30s:0.2'.",
)
@click.option(
    "--layout",
    type=click.Choice(["columns", "rows"]),
    default="columns",
    show_default=True,
    help="Inference messages as columnar envelopes (fastest) or JSON arrays of events.",
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
    rate_eps: float,
    duration: str | None,
    batch_size: int,
    incidents: str,
    layout: str,
    seed: int,
    fast: bool,
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
        columnar=layout == "columns",
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
    client = StreamwatchClient.from_settings(settings)
    windows = []
    with _redis_reachable():
        for series in client.models():
            if model_id and series.model_id != model_id:
                continue
            if model_version and series.model_version != model_version:
                continue
            for size in sizes:
                windows.extend(
                    client.windows(
                        series.model_id, series.model_version, size, limit, not closed_only
                    )
                )
    if as_json:
        click.echo(orjson.dumps([w.to_dict() for w in windows], option=orjson.OPT_INDENT_2))
        return
    rules = load_rules(settings.rules, settings.windows_ms)
    Console().print(status_table(windows, rules))


def _tail(topic_kind: str, follow: bool, idle_exit_s: float, as_json: bool) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from rich.console import Console

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

        console = Console(highlight=False)

        last_seen = time.monotonic()
        while follow or time.monotonic() - last_seen < idle_exit_s:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            last_seen = time.monotonic()
            value = message.value() or b"null"
            if as_json:
                click.echo(value.decode("utf-8", errors="replace"))
            elif topic_kind == "alerts":
                from streamwatch.render import pretty_alert

                console.print(pretty_alert(orjson.loads(value)), soft_wrap=True)
            else:
                click.echo(_describe_record(topic_kind, orjson.loads(value)))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _describe_record(kind: str, record: dict[str, Any]) -> str:
    from streamwatch.render import describe_alert

    if kind == "alerts":
        return describe_alert(record)
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


# --- streamwatch baseline ------------------------------------------------------------------


@main.group()
def baseline() -> None:
    """Reference profiles (baselines) that windows are compared with for drift and accuracy.

    Each model version keeps numbered profile versions in Redis; one of them is current.
    """


@contextmanager
def _baseline_store(settings: Settings) -> Iterator[BaselineStore]:
    """Yield a store on STREAMWATCH_REDIS_URL; an unreachable Redis becomes one line, exit 2."""
    from streamwatch.adapters.baseline_store import BaselineStore
    from streamwatch.client import redis_from_settings

    store = BaselineStore(redis_from_settings(settings, socket_connect_timeout=5.0))
    try:
        with _redis_reachable():
            yield store
    finally:
        store.close()


@contextmanager
def _redis_reachable() -> Iterator[None]:
    """Turn an unreachable Redis into one line naming the setting (exit 2 via _fail_cleanly)."""
    import redis

    try:
        yield
    except redis.AuthenticationError as exc:  # a ConnectionError: caught first
        raise ConfigError(
            f"Redis refused the credentials ({exc}); fix the password in STREAMWATCH_REDIS_URL"
            " or STREAMWATCH_REDIS_PASSWORD"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach Redis at STREAMWATCH_REDIS_URL ({exc}); start it or fix the setting"
        ) from None


def _profile_file_name(profile: BaselineProfile, n: int | None) -> Path:
    def safe(name: str) -> str:
        return "any" if name == "*" else re.sub(r"[^A-Za-z0-9._+@-]", "_", name)

    suffix = "" if n is None else f".v{n}"
    return (
        Path("baselines") / f"{safe(profile.model_id)}@{safe(profile.model_version)}{suffix}.json"
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _profile_lines(profile: BaselineProfile) -> list[str]:
    """The headline numbers of a profile, as ``build`` and ``show`` print them."""
    summary = profile.summary()
    numeric, categorical = summary["numeric_features"], summary["categorical_features"]
    p95 = profile.latency_p95_ms
    if profile.labels.classified:
        quality = f"accuracy {_percent(profile.accuracy)} ({profile.labels.labelled} labelled)"
    elif profile.labels.regressed:
        quality = f"mae {summary['mae']:.4g} ({profile.labels.labelled} labelled)"
    else:
        quality = "no labels"
    return [
        f"  rows        {profile.rows}, error rate {_percent(summary['error_rate'])}",
        f"  features    {len(profile.aggregate.features)}: {len(numeric)} numeric,"
        f" {len(categorical)} categorical",
        f"  quality     {quality}",
        "  latency     " + ("no latency data" if p95 is None else f"p95 {p95:.1f} ms"),
    ]


@baseline.command("build")
@click.option("--model", "model_id", required=True, help="Model id the data belongs to.")
@click.option(
    "--version",
    "model_version",
    required=True,
    help="Model version, or '*' for a profile any version of the model may use.",
)
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Profile JSON file [default: baselines/MODEL@VERSION.vN.json].",
)
@click.option("--label-column", default="label", show_default=True, help="'' if none.")
@click.option("--prediction-column", default="prediction", show_default=True)
@click.option("--score-column", default="score", show_default=True)
@click.option("--latency-column", default="latency_ms", show_default=True)
@click.option("--status-column", default="status", show_default=True)
@click.option(
    "--store/--no-store",
    default=True,
    show_default=True,
    help="Store in Redis as the model version's next baseline and make it current.",
)
@_fail_cleanly
def baseline_build(
    model_id: str,
    model_version: str,
    data: Path,
    out: Path | None,
    label_column: str,
    prediction_column: str,
    score_column: str,
    latency_column: str,
    status_column: str,
    store: bool,
) -> None:
    """Build a baseline from reference DATA (.csv, .parquet, .jsonl), store it, write it.

    In CSV and Parquet files the label, prediction, score, latency and status columns are read
    as such and every other column is a feature. JSON lines are inference events, optionally
    with a "label" key. Without a latency column the baseline has no latency.
    """
    from streamwatch.baseline_io import build_profile

    settings = _settings()
    profile = build_profile(
        data,
        model_id,
        model_version,
        max_features=settings.max_features,
        max_categories=settings.max_categories,
        label_column=label_column or None,
        prediction_column=prediction_column or None,
        score_column=score_column or None,
        latency_column=latency_column or None,
        status_column=status_column or None,
    )
    n: int | None = None
    if store:
        with _baseline_store(settings) as baselines:
            n = baselines.save(profile)
        profile.version = n
    path = out or _profile_file_name(profile, n)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(profile.to_dict(), option=orjson.OPT_INDENT_2))
    except OSError as exc:
        stored = "" if n is None else f"stored as version {n}, but "
        raise ConfigError(f"{stored}cannot write {path}: {exc.strerror or exc}") from None
    click.echo(f"{model_id}@{model_version}: baseline from {data}")
    for line in _profile_lines(profile):
        click.echo(line)
    if n is None:
        click.echo(f"  not stored  written to {path} ('streamwatch baseline import' stores it)")
    else:
        click.echo(f"  stored      version {n} (current), written to {path}")


@baseline.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_fail_cleanly
def baseline_list(as_json: bool) -> None:
    """List every stored baseline version; * marks the current one of each model version."""
    from streamwatch.render import format_ts_ms

    with _baseline_store(_settings()) as baselines:
        summaries = baselines.list()
    if as_json:
        click.echo(orjson.dumps(summaries, option=orjson.OPT_INDENT_2))
        return
    if not summaries:
        click.echo("no baselines stored; build one with 'streamwatch baseline build'")
        return
    rows = [
        ("MODEL", "VERSION", "N", "", "ROWS", "FEATURES", "ACCURACY", "P95 MS", "CREATED", "SOURCE")
    ]
    for s in summaries:
        rows.append(
            (
                s["model_id"],
                s["model_version"],
                str(s["version"]),
                "*" if s["current"] else "",
                str(s["rows"]),
                str(len(s["numeric_features"]) + len(s["categorical_features"])),
                _percent(s["accuracy"]),
                "-" if s["latency_p95_ms"] is None else f"{s['latency_p95_ms']:.1f}",
                format_ts_ms(s["created_at_ms"]),
                s["source"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@baseline.command("show")
@click.argument("model_id")
@click.argument("model_version")
@click.option("--n", "number", type=int, default=None, help="Version (default: the current one).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole profile as stored.")
@_fail_cleanly
def baseline_show(model_id: str, model_version: str, number: int | None, as_json: bool) -> None:
    """Show a model version's current baseline (or version --n): numbers and features."""
    from streamwatch.render import format_ts_ms

    with _baseline_store(_settings()) as baselines:
        current = baselines.current_version(model_id, model_version)
        wanted = current if number is None else number
        profile = None if wanted is None else baselines.get(model_id, model_version, wanted)
        if profile is None:
            stored = baselines.versions(model_id, model_version)
    if profile is None:
        which = "no baseline" if number is None else f"no baseline version {number}"
        raise ConfigError(
            f"{model_id}@{model_version} has {which}; stored versions: {stored or 'none'}"
            " (see 'streamwatch baseline list')"
        )
    if as_json:
        click.echo(orjson.dumps(profile.to_dict(), option=orjson.OPT_INDENT_2))
        return
    mark = " (current)" if wanted == current else ""
    click.echo(f"{model_id}@{model_version}: baseline version {wanted}{mark}")
    click.echo(f"  source      {profile.source}")
    click.echo(f"  created     {format_ts_ms(profile.created_at_ms)} UTC")
    for line in _profile_lines(profile):
        click.echo(line)
    aggregate = profile.aggregate
    if aggregate.score.n:
        click.echo(f"  score       mean {aggregate.score.mean:.4g}")
    if aggregate.prediction_classes:
        top = sorted(aggregate.prediction_classes.items(), key=lambda kv: -kv[1])[:5]
        click.echo("  predictions " + ", ".join(f"{label} {count}" for label, count in top))
    width = max((len(name) for name in aggregate.features), default=0)
    for name, stats in sorted(aggregate.features.items()):
        missing = _percent(1 - stats.present / profile.rows if profile.rows else None)
        if stats.numeric.n:
            m = stats.numeric
            detail = f"mean {m.mean:.4g}  std {m.std:.4g}  min {m.min:.4g}  max {m.max:.4g}"
        else:
            total = sum(stats.categories.values())
            top = sorted(stats.categories.items(), key=lambda kv: -kv[1])[:4]
            detail = ", ".join(f"{c} {_percent(k / total)}" for c, k in top)
            detail += f" ({len(stats.categories)} values)"
        click.echo(f"  {name.ljust(width)}  {detail}  missing {missing}")


@baseline.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_fail_cleanly
def baseline_import(file: Path) -> None:
    """Store a profile FILE (from 'baseline build') as its model version's next baseline."""
    from streamwatch.core.baseline import BaselineProfile
    from streamwatch.core.processor import ANY_VERSION
    from streamwatch.events import NAME_PATTERN

    try:
        data = orjson.loads(file.read_bytes())
        profile = BaselineProfile.from_dict(data)
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{file} is not a baseline profile ({type(exc).__name__}: {exc}); write one with"
            " 'streamwatch baseline build --no-store'"
        ) from None
    for what, name in (("model_id", profile.model_id), ("model_version", profile.model_version)):
        if not re.fullmatch(NAME_PATTERN, name) and not (
            what == "model_version" and name == ANY_VERSION
        ):
            raise ConfigError(f"{file}: invalid {what} {name!r} (no ':' or whitespace)")
    with _baseline_store(_settings()) as baselines:
        n = baselines.save(profile)
    click.echo(
        f"{profile.model_id}@{profile.model_version}: stored {file} as baseline version {n}"
        " (current)"
    )


@baseline.command("activate")
@click.argument("model_id")
@click.argument("model_version")
@click.argument("number", metavar="N", type=int)
@_fail_cleanly
def baseline_activate(model_id: str, model_version: str, number: int) -> None:
    """Make stored baseline version N current (e.g. roll back to an older one)."""
    with _baseline_store(_settings()) as baselines:
        profile = baselines.activate(model_id, model_version, number)
    click.echo(
        f"{model_id}@{model_version}: baseline version {number} is now current"
        f" ({profile.rows} rows, {profile.source}); workers use it from their next refresh"
    )


@baseline.command("sample")
@click.option("--model", "model_id", required=True, help="A model of the demo fleet.")
@click.option(
    "--version", "model_version", default=None, help="Its version [default: the first one]."
)
@click.option("--rows", type=int, required=True, help="Number of reference events.")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=7, show_default=True)
@_fail_cleanly
def baseline_sample(
    model_id: str, model_version: str | None, rows: int, out: Path, seed: int
) -> None:
    """Write OUT (.jsonl): labelled reference events of a demo model, to try 'baseline build'."""
    from streamwatch.baseline_io import write_reference_jsonl
    from streamwatch.generator import DEFAULT_MODELS, reference_rows

    specs = [
        spec
        for spec in DEFAULT_MODELS
        if spec.model_id == model_id and model_version in (None, spec.model_version)
    ]
    if not specs:
        fleet = sorted(f"{s.model_id} --version {s.model_version}" for s in DEFAULT_MODELS)
        raise ConfigError(
            f"no demo model {model_id}{'' if model_version is None else '@' + model_version};"
            f" valid values are: {fleet}"
        )
    if rows < 1:
        raise ConfigError(f"--rows must be at least 1, got {rows}")
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        raise ConfigError(f"{out}: sample data is JSON lines; name the file *.jsonl")
    spec = specs[0]
    try:
        written = write_reference_jsonl(out, reference_rows(spec, rows, seed))
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(
        f"wrote {written} reference events of {spec.model_id}@{spec.model_version}"
        f" ({spec.kind}) to {out}; next: streamwatch baseline build --model {spec.model_id}"
        f" --version {spec.model_version} {out}"
    )


@main.group()
def rules() -> None:
    """Alert rules files: validate them before a worker loads them."""


@rules.command("check")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@_fail_cleanly
def rules_check(path: Path) -> None:
    """Validate a rules file against the worker's settings (window sizes from STREAMWATCH_*).

    Prints what the file declares; a problem exits with status 2 and names the line, the rule
    and the field.
    """
    from streamwatch.core.durations import format_duration_ms
    from streamwatch.core.rules import load_rule_set

    settings = _settings()
    rule_set = load_rule_set(path, settings.windows_ms)
    smallest = format_duration_ms(min(settings.windows_ms))
    for rule in rule_set.thresholds:
        window = smallest if rule.window_ms is None else format_duration_ms(rule.window_ms)
        compared = rule.metric
        if rule.relative_to is not None:
            compared = f"{rule.metric} {rule.change} vs previous {rule.previous_windows}"
        scope = "" if rule.segment is None else f" per segment {rule.segment}"
        click.echo(
            f"rule      {rule.name:<26} {rule.severity:<8} {compared} {rule.op}"
            f" {rule.threshold:g} on {window} windows{scope}, min {rule.min_events} events"
        )
    for detector in rule_set.detectors:
        params = detector.params()
        click.echo(
            f"detector  {detector.name:<26} {detector.severity:<8} {params.kind} on"
            f" {detector.signal}{'' if detector.signal != 'feature' else ' ' + detector.series}"
        )
    for absence in rule_set.absence:
        click.echo(
            f"absence   {absence.name:<26} {absence.severity:<8} no events for"
            f" {format_duration_ms(absence.after_ms)} from {absence.model}@{absence.version}"
        )
    for inhibit in rule_set.inhibit:
        click.echo(
            f"inhibit   {inhibit.name:<26} {inhibit.source_severity} {inhibit.source_rule} mutes"
            f" {inhibit.target_severity} {inhibit.target_rule} with equal {list(inhibit.equal)}"
        )
    click.echo(
        f"{path}: OK, {len(rule_set.thresholds)} rules, {len(rule_set.detectors)} detector"
        f" rules, {len(rule_set.absence)} absence rules and {len(rule_set.inhibit)} inhibit"
        " rules"
    )


@rules.command("test")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@_fail_cleanly
def rules_test(path: Path) -> None:
    """Run rule unit tests: window metric series in, expected alert events out.

    Exit status 0 when every test passes, 1 when one fails, 2 when a file is invalid.
    """
    from streamwatch.core.rule_tests import load_rule_tests, run_rule_tests

    settings = _settings()
    spec, rule_set, size_ms = load_rule_tests(path, settings.windows_ms)
    results = run_rule_tests(spec, rule_set, size_ms)
    for result in results:
        if result.passed:
            click.echo(f"PASS  {result.name}")
            continue
        click.echo(f"FAIL  {result.name}")
        for heading, outcomes in (("expected", result.expected), ("got", result.got)):
            click.echo(f"  {heading}:" + ("" if outcomes else " no alert events"))
            for index, rule, state, inhibited, segment in outcomes:
                extra = (f" segment={segment}" if segment else "") + (
                    " (inhibited)" if inhibited else ""
                )
                click.echo(f"    window {index:<3} {rule:<26} {state}{extra}")
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@main.group()
def silence() -> None:
    """Silences: mute matching alerts for a while (they are still published, marked)."""


@contextmanager
def _silence_store(settings: Settings) -> Iterator[SilenceStore]:
    """Yield a store on STREAMWATCH_REDIS_URL; an unreachable Redis becomes one line, exit 2."""
    from streamwatch.adapters.silence_store import SilenceStore
    from streamwatch.client import redis_from_settings

    client = redis_from_settings(settings)
    try:
        with _redis_reachable():
            yield SilenceStore(client)
    finally:
        client.close()


@silence.command("add")
@click.option("--model", default="*", show_default=True, help="Model id glob.")
@click.option("--version", "model_version", default="*", show_default=True, help="Version glob.")
@click.option("--rule", default="*", show_default=True, help="Rule name glob.")
@click.option("--for", "duration", required=True, help="How long, e.g. 2h, 30m.")
@click.option("--comment", default="", help="Why (shown by silence list).")
@click.option("--by", "created_by", default="", help="Who (shown by silence list).")
@_fail_cleanly
def silence_add(
    model: str, model_version: str, rule: str, duration: str, comment: str, created_by: str
) -> None:
    """Mute alerts of matching model / version / rule from now on, for --for."""
    try:
        duration_ms = parse_duration_ms(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    with _silence_store(_settings()) as store:
        created = store.add(
            model=model,
            version=model_version,
            rule=rule,
            duration_ms=duration_ms,
            created_by=created_by,
            comment=comment,
        )
    click.echo(
        f"silence {created.id}: {created.model}@{created.version} rule {created.rule} until"
        f" {_utc(created.ends_at_ms)} UTC; workers apply it within"
        " 5 s; 'streamwatch silence expire " + created.id + "' ends it"
    )


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@click.option("--json", "as_json", is_flag=True, help="One JSON silence per line.")
@_fail_cleanly
def silence_list(show_all: bool, as_json: bool) -> None:
    """List active silences (with --all, expired ones too)."""
    import time

    now_ms = time.time_ns() // 1_000_000
    with _silence_store(_settings()) as store:
        silences = store.list()
    for item in silences:
        if not show_all and item.ends_at_ms <= now_ms:
            continue
        if as_json:
            click.echo(orjson.dumps(item.model_dump()))
            continue
        state = "active" if item.active(now_ms) else "expired"
        click.echo(
            f"{item.id}  {state:<7}  {item.model}@{item.version}  rule {item.rule}"
            f"  until {_utc(item.ends_at_ms)}  {item.created_by}  {item.comment}"
        )


@silence.command("expire")
@click.argument("silence_id")
@_fail_cleanly
def silence_expire(silence_id: str) -> None:
    """End a silence now."""
    with _silence_store(_settings()) as store:
        ended = store.expire(silence_id)
    click.echo(f"silence {ended.id} ended at {_utc(ended.ends_at_ms)} UTC")


def _utc(ts_ms: int) -> str:
    from streamwatch.render import format_ts_ms

    return format_ts_ms(ts_ms)


# Commands kept in their own modules (registered last: they import nothing from this one).
from streamwatch.cli_notify import notify  # noqa: E402
from streamwatch.cli_report import report  # noqa: E402

main.add_command(notify)
main.add_command(report)
