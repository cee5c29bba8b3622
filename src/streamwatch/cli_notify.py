"""``streamwatch notify``: the optional webhook sink, run as its own process.

Registered on the main group by :mod:`streamwatch.cli`. Self-contained (it imports nothing from
``streamwatch.cli``, which imports this module) and cheap to import: Kafka is loaded only when
the command runs.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

import click

from streamwatch.exceptions import ConfigError, StreamwatchError
from streamwatch.settings import Settings, load_settings


@click.command("notify")
@click.option(
    "--webhook-url",
    default=None,
    metavar="URL",
    help="POST notifications here (overrides STREAMWATCH_WEBHOOK_URL). Prefer the variable"
    " for a URL with a token: command lines are visible to other users of the host.",
)
@click.option(
    "--format",
    "webhook_format",
    type=click.Choice(["json", "slack"]),
    default=None,
    help="Payload: streamwatch's JSON or Slack text (overrides STREAMWATCH_WEBHOOK_FORMAT)."
    "  [default: json]",
)
def notify(webhook_url: str | None, webhook_format: str | None) -> None:
    """Send alert notifications to a webhook, grouped per model like Alertmanager.

    Consumes the alert topic as its own consumer group, skips silenced and inhibited alerts,
    retries failed POSTs with backoff and dead-letters what cannot be delivered. Delivery is at
    least once: offsets are committed only after a notification is delivered or dead-lettered.
    Runs until SIGINT/SIGTERM.
    """
    try:
        settings = _notify_settings(webhook_url, webhook_format)
        _run(settings)
    except StreamwatchError as exc:
        click.echo(f"streamwatch: {exc}", err=True)
        sys.exit(2)


def _notify_settings(webhook_url: str | None, webhook_format: str | None) -> Settings:
    given = {"webhook_url": webhook_url, "webhook_format": webhook_format}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    settings = load_settings(**overrides)
    if settings.webhook_url is None or not settings.webhook_url.get_secret_value():
        raise ConfigError(
            "no webhook to notify: set STREAMWATCH_WEBHOOK_URL (or pass --webhook-url)"
        )
    from streamwatch.notifier import check_webhook_url

    check_webhook_url(settings.webhook_url.get_secret_value())
    return settings


def _run(settings: Settings) -> None:
    from streamwatch.adapters.kafka_admin import ensure_topics
    from streamwatch.notifier import Notifier

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    notifier = Notifier(settings)
    try:
        ensure_topics(settings)
        notifier.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        notifier.close()
