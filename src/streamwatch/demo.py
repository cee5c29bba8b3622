"""``streamwatch demo``: the whole system on one machine, with a live terminal view.

Starts the embedded Kafka-protocol broker (Tansu) and Redis (Valkey), a real ``streamwatch
worker`` process, and the synthetic traffic generator with the default incident schedule, then
shows each model's latest windows and the alerts as they fire. Ctrl-C stops everything it
started (children also die with this process if it is killed).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamwatch import generator as gen
from streamwatch.adapters.baseline_store import BaselineStore
from streamwatch.adapters.kafka_admin import ensure_topics
from streamwatch.client import StreamwatchClient, WindowState
from streamwatch.core.baseline import profile_from_events
from streamwatch.core.durations import format_duration_ms
from streamwatch.core.rules import load_rules
from streamwatch.embedded import EmbeddedBroker, EmbeddedRedis, free_port
from streamwatch.render import format_ts_ms, status_table
from streamwatch.settings import Settings, load_settings
from streamwatch.supervise import WorkerProcess

DEMO_DIR = Path(".streamwatch/demo")
REFRESH_S = 1.0
#: Reference events per demo model baseline (about half a second each to build).
BASELINE_ROWS = 10_000


@dataclass
class _AlertFeed:
    """Tails the alerts topic in a background thread (manual assignment: no group join)."""

    settings: Settings
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=12))
    total: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        topic = self.settings.topic("alerts")
        consumer = Consumer(
            {"bootstrap.servers": self.settings.kafka_bootstrap, "group.id": "streamwatch-demo"}
        )
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            while not self.stop.is_set():
                message = consumer.poll(0.5)
                value = None if message is None or message.error() else message.value()
                if value:
                    self.alerts.append(orjson.loads(value))
                    self.total += 1
        finally:
            consumer.close()


def _latest_windows(client: StreamwatchClient, size_ms: int) -> list[WindowState]:
    windows: list[WindowState] = []
    for series in client.models():
        if series.model_version == "*":
            continue
        windows.extend(client.windows(series.model_id, series.model_version, size_ms, limit=2))
    return windows


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _reason(alert: dict[str, Any]) -> str:
    """The why of an alert: the detector's change, or the metric and the most drifted feature."""
    detection = alert.get("detection")
    if detection:
        return f"{detection['series']} {detection['before_mean']:.3g}→{detection['after_mean']:.3g}"
    drifted = [c for c in alert.get("root_cause") or [] if c["drifted"]]
    if not drifted:
        return ""
    return f"{alert['metric']}={_value(alert.get('value'))}, drift: {drifted[0]['feature']}"


def _alerts_panel(feed: _AlertFeed) -> Panel:
    table = Table.grid(padding=(0, 1))
    for alert in reversed(feed.alerts):
        firing = alert["state"] == "firing"
        mark = {"critical": "🔴", "warning": "⚠️ ", "info": "ℹ️ "}[alert["severity"]]
        style = (
            "bold red"
            if firing and alert["severity"] == "critical"
            else ("yellow" if firing else "green")
        )
        table.add_row(
            Text(format_ts_ms(alert["window"]["start_ms"])[11:]),
            Text(f"{mark} {alert['state']}", style=style),
            Text(f"{alert['model_id']}@{alert['model_version']}"),
            Text(alert["message"].split(" — ")[0].split(": ", 1)[-1]),
            Text(_reason(alert) or f"{alert['metric']}={_value(alert.get('value'))}"),
        )
    if not feed.alerts:
        table.add_row(Text("no alerts yet: the first incident starts 15 s into the traffic"))
    return Panel(table, title=f"alerts ({feed.total})", border_style="red")


def _store_baselines(redis_url: str) -> None:
    """Give every demo model a reference profile, as `streamwatch baseline build` would."""
    store = BaselineStore.from_url(redis_url)
    try:
        for seed, spec in enumerate(gen.DEFAULT_MODELS):
            profile = profile_from_events(
                spec.model_id,
                spec.model_version,
                gen.reference_rows(spec, BASELINE_ROWS, seed=seed),
                source="demo reference data (streamwatch baseline sample)",
                created_at_ms=time.time_ns() // 1_000_000,
            )
            store.save(profile)
    finally:
        store.close()


def run_demo(rate_eps: float, partitions: int, duration_s: float | None) -> None:
    """Run the demo until Ctrl-C (or for ``duration_s`` seconds)."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    broker = EmbeddedBroker(log_dir=DEMO_DIR)
    redis_server = EmbeddedRedis(log_dir=DEMO_DIR)
    worker: WorkerProcess | None = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    feed: _AlertFeed | None = None
    try:
        broker.start()
        redis_server.start()
        env = {
            "STREAMWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STREAMWATCH_REDIS_URL": redis_server.url,
            "STREAMWATCH_PARTITIONS": str(partitions),
            "STREAMWATCH_WEB_PORT": str(free_port()),
            "STREAMWATCH_DATA_DIR": str(DEMO_DIR / "worker"),
        }
        settings = load_settings(
            environ={},
            **{
                "kafka_bootstrap": broker.bootstrap,
                "redis_url": redis_server.url,
                "partitions": partitions,
            },
        )
        ensure_topics(settings)
        _store_baselines(redis_server.url)
        worker = WorkerProcess(env, DEMO_DIR / "worker.log")
        worker.start()
        traffic = gen.TrafficGenerator(
            incidents=gen.parse_incidents("default"), seed=7, rate_eps=rate_eps
        )
        progress: dict[str, gen.ProduceStats] = {}

        def on_progress(stats: gen.ProduceStats) -> None:
            progress["last"] = stats

        producer_thread = threading.Thread(
            target=gen.produce,
            name="demo-producer",
            args=(broker.bootstrap, {k: settings.topic(k) for k in gen.TOPIC_KINDS}, traffic),
            kwargs={
                "rate_eps": rate_eps,
                "realtime": True,
                "batch_size": gen.DEFAULT_BATCH_SIZE,
                "columnar": True,
                "stop": stop,
                "on_progress": on_progress,
            },
            daemon=True,
        )
        feed = _AlertFeed(settings)
        feed_thread = threading.Thread(target=feed.run, name="demo-alerts", daemon=True)
        threads = [producer_thread, feed_thread]
        for thread in threads:
            thread.start()
        client = StreamwatchClient.from_url(redis_server.url)
        rules = load_rules(None, settings.windows_ms)
        size_ms = min(settings.windows_ms)
        with Live(refresh_per_second=2, screen=False) as live:
            while duration_s is None or time.monotonic() - started < duration_s:
                if worker.pid is None:
                    raise SystemExit(f"the worker exited; its log:\n{worker.log_tail()}")
                stats = progress.get("last")
                checkpoints = client.partition_checkpoints(settings.group_id)
                processed = sum(c["counters"].get("inference_events", 0) for c in checkpoints)
                dead = sum(sum(c["deadletters"].values()) for c in checkpoints)
                header = Text.assemble(
                    ("streamwatch demo", "bold"),
                    f"  ·  up {time.monotonic() - started:4.0f}s  ·  broker {broker.bootstrap}"
                    f"  ·  redis {redis_server.url}\n",
                    f"produced {stats.events_total if stats else 0:,} events"
                    f"  ·  processed {processed:,} inference events  ·  dead-letters {dead}"
                    f"  ·  showing {format_duration_ms(size_ms)} windows  ·  Ctrl-C to stop",
                )
                if not checkpoints:
                    header.append("\nworker joining the consumer group (a few seconds)...")
                table = status_table(_latest_windows(client, size_ms), rules)
                live.update(Group(header, table, _alerts_panel(feed)))
                time.sleep(REFRESH_S)  # screen refresh pacing
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if feed is not None:
            feed.stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if worker is not None:
            worker.stop()
        redis_server.stop()
        broker.stop()
        print(f"stopped; logs in {DEMO_DIR}/")
