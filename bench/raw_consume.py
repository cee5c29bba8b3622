"""The raw limit of ``bench/run.py``: confluent-kafka consume + ``orjson.loads`` of every value.

What any Python consumer of these messages must at least spend: a ``confluent_kafka.Consumer``
with manual assignment of every partition from the beginning (no group join), ``consume()`` in
batches, and one ``orjson.loads`` per message value; nothing is kept. Run as a child process so
its CPU time and peak RSS are its own:

    python bench/raw_consume.py BOOTSTRAP TOPIC MESSAGES

It reads until it has seen ``MESSAGES`` messages and prints one JSON object: ``seconds`` and
``cpu_s`` from the end of the first ``consume()`` batch to the last message decoded (wall time,
and user + system CPU of the whole process, librdkafka's threads included), ``messages`` read
in that interval (all but the first batch), ``peak_rss_mib``, and ``join_s`` (start of the
process to the end of the first batch).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

START = time.perf_counter()
#: Give up when no message arrives for this long.
IDLE_TIMEOUT_S = 30.0
#: Messages per ``consume()`` call, at most: small enough that the uncounted first batch is a
#: sliver (at most 1/50 of the messages: 1,000-event messages are few).
BATCH_MESSAGES = 100


def peak_rss_mib() -> float:
    """``VmHWM`` (``ru_maxrss`` would also count the parent's pages from before ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def consume(bootstrap: str, topic: str, expect: int) -> dict[str, float]:
    """Read ``expect`` messages of ``topic`` from the beginning, decoding each value."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-raw",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        loads = orjson.loads
        seen = 0
        counted_from = 0
        first_s = first_cpu = 0.0
        last_message_s = time.perf_counter()
        per_call = max(1, min(BATCH_MESSAGES, expect // 50))
        while seen < expect:
            batch = consumer.consume(num_messages=per_call, timeout=0.1)
            if not batch:
                if time.perf_counter() - last_message_s > IDLE_TIMEOUT_S:
                    raise SystemExit(f"raw_consume: {seen} of {expect} messages, then nothing")
                continue
            for message in batch:
                if message.error() is not None:
                    raise SystemExit(f"raw_consume: {message.error()}")
                value = message.value()
                if value is not None:
                    loads(value)
            last_message_s = time.perf_counter()
            if not seen:
                # The clock starts once the first batch is decoded; that batch is not counted.
                counted_from = len(batch)
                first_s, first_cpu = last_message_s, time.process_time()
            seen += len(batch)
        return {
            "messages": seen - counted_from,
            "seconds": last_message_s - first_s,
            "cpu_s": time.process_time() - first_cpu,
            "join_s": first_s - START,
            "peak_rss_mib": peak_rss_mib(),
        }
    finally:
        consumer.close()


if __name__ == "__main__":
    bootstrap, topic, expect = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(orjson.dumps(consume(bootstrap, topic, expect)).decode())
