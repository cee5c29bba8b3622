"""Builders shared by the unit tests."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

from streamwatch.core.processor import RawMessage

BASE_MS = 1_700_000_000_000
INFERENCE_TOPIC = "streamwatch.inference"
T = TypeVar("T")


def event(
    i: int,
    ts_ms: int,
    *,
    model: str = "m",
    version: str = "1",
    latency_ms: float = 10.0,
    error: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": f"r{i}",
        "model_id": model,
        "model_version": version,
        "timestamp": ts_ms / 1000,
        "latency_ms": latency_ms,
        "status": "error" if error else "ok",
    }
    body.update(extra)
    return body


def messages(
    batches: list[list[dict[str, Any]]], start_offset: int = 0, partition: int = 0
) -> list[RawMessage]:
    return [
        RawMessage(INFERENCE_TOPIC, "inference", partition, start_offset + n, orjson.dumps(b))
        for n, b in enumerate(batches)
    ]


def cut(items: list[T], sizes: list[int]) -> list[list[T]]:
    """``items`` in consecutive parts of ``sizes`` (repeated as needed), as steps of a replay."""
    parts, start = [], 0
    for size in sizes * len(items):
        if start >= len(items):
            break
        parts.append(items[start : start + size])
        start += size
    return parts
