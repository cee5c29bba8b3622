"""Create streamwatch's topics explicitly at start-up (confluent-kafka admin client).

Explicit, because broker auto-creation picks its own partition count (Apache Kafka: 1, Tansu: 4),
and the three input topics must share one count: they are co-partitioned by model id, so
partition *p* of each belongs to the same worker.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streamwatch.exceptions import ConfigError
from streamwatch.settings import Settings

log = logging.getLogger(__name__)

INPUT_KINDS = ("inference", "feedback", "business")
OUTPUT_KINDS = ("alerts", "deadletter")


def admin_config(settings: Settings) -> dict[str, str | int | float | bool]:
    """Return the librdkafka configuration for an admin client."""
    return {"bootstrap.servers": settings.kafka_bootstrap, **settings.librdkafka_security()}


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing topics; return ``{topic: partitions}`` for all of them.

    Raises:
        ConfigError: If the broker is unreachable, or existing input topics disagree on their
            partition count (co-partitioning would silently break).
    """
    admin = AdminClient(admin_config(settings))
    wanted = [settings.topic(kind) for kind in INPUT_KINDS + OUTPUT_KINDS]
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConfigError(
            f"STREAMWATCH_KAFKA_BOOTSTRAP: cannot reach Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from None
    missing = [t for t in wanted if t not in metadata.topics]
    if missing:
        futures = admin.create_topics(
            [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing],
            operation_timeout=timeout_s,
        )
        for topic, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                log.info("created topic %s (%d partitions)", topic, settings.partitions)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ConfigError(f"cannot create topic {topic}: {exc}") from None
        metadata = admin.list_topics(timeout=timeout_s)
    counts = {t: len(metadata.topics[t].partitions) for t in wanted if t in metadata.topics}
    inputs = {settings.topic(k): counts.get(settings.topic(k), 0) for k in INPUT_KINDS}
    if len(set(inputs.values())) != 1:
        raise ConfigError(
            f"input topics must have the same partition count (they are co-partitioned by"
            f" model id), found {inputs}; recreate them with STREAMWATCH_PARTITIONS partitions"
        )
    return counts
