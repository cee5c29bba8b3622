"""The Redis key layout (version segment ``v1``) and the stored value formats.

======================================================  ======  ==================================
key                                                     type    value
======================================================  ======  ==================================
``sw:v1:win:{model}:{version}:{size_ms}:{start_ms}``    hash    field ``p{partition}`` -> window
                                                                 partial (JSON, below)
``sw:v1:idx:{model}:{version}:{size_ms}``               zset    member/score = ``start_ms``
``sw:v1:models``                                        hash    field ``{model}:{version}`` ->
                                                                 ``{"model_id", "model_version",
                                                                 "last_event_ms"}``
``sw:v1:ckpt:{group}:{partition}``                      string  partition checkpoint (JSON)
``sw:v1:pending:{group}:{partition}``                   hash    ``request_id`` -> prediction
                                                                 awaiting its label (JSON list)
``sw:v1:detectors:{group}:{partition}``                 hash    series -> detector state (JSON)
``sw:v1:baseline:{model}:{version}``                    hash    ``v{n}`` -> profile (JSON),
                                                                 ``current`` -> n, ``latest`` -> n
``sw:v1:silences``                                      hash    silence id -> silence (JSON)
``sw:v1:autobase:{group}:{model}:{version}``            hash    field ``p{partition}`` -> windows
                                                                 being adopted as a baseline
======================================================  ======  ==================================

A window hash also holds field ``l{partition}``: the label outcomes of the window's predictions
(``{"state", "predictions", "labels": <LabelStats dict>, "drift": [...]}``), which keep changing
after the window closes, until the label horizon has passed.

A window partial is ``{"state": "open"|"closed", "partition", "agg": <WindowAggregate dict>}``,
plus ``"drift"`` (the findings against the baseline, ranked) once the window has closed.
A window's value is the merge of its partials (one per input partition that saw the model; one
in the usual case, where producers key by model id). Every write sets an absolute value, so
writing the same window twice changes nothing. Window and index keys expire after the retention
(default 8 days: 7-day trends at 1 h windows, plus a day).

Model ids and versions cannot contain ``:`` (see :data:`streamwatch.events.NAME_PATTERN`), so
the layout is unambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.drift import FeatureDrift
from streamwatch.core.processor import WindowKey

KEY_PREFIX = "sw:v1"
MODELS_KEY = f"{KEY_PREFIX}:models"
SILENCES_KEY = f"{KEY_PREFIX}:silences"


def window_key(key: WindowKey) -> str:
    """Return the hash key holding one window's partials."""
    model_id, version, size_ms, start_ms = key
    return f"{KEY_PREFIX}:win:{model_id}:{version}:{size_ms}:{start_ms}"


def index_key(model_id: str, version: str, size_ms: int) -> str:
    """Return the sorted set listing a series' window starts."""
    return f"{KEY_PREFIX}:idx:{model_id}:{version}:{size_ms}"


def checkpoint_key(group_id: str, partition: int) -> str:
    """Return the key of one partition's checkpoint."""
    return f"{KEY_PREFIX}:ckpt:{group_id}:{partition}"


def checkpoint_pattern(group_id: str) -> str:
    """Return a SCAN pattern matching every checkpoint of a consumer group."""
    return f"{KEY_PREFIX}:ckpt:{group_id}:*"


def pending_key(group_id: str, partition: int) -> str:
    """Return the hash of predictions awaiting labels on one partition."""
    return f"{KEY_PREFIX}:pending:{group_id}:{partition}"


def detectors_key(group_id: str, partition: int) -> str:
    """Return the hash of one partition's drift detector states (field per series)."""
    return f"{KEY_PREFIX}:detectors:{group_id}:{partition}"


def ledger_key(group_id: str, partition: int) -> str:
    """Return the hash of one partition's day summaries (field: :func:`ledger_field`)."""
    return f"{KEY_PREFIX}:ledger:{group_id}:{partition}"


def ledger_pattern(group_id: str) -> str:
    """Return a SCAN pattern matching every partition's day-summary hash."""
    return f"{KEY_PREFIX}:ledger:{group_id}:*"


def ledger_field(model_id: str, version: str, day_start_ms: int) -> str:
    """Return the field of one model version's day in a ledger hash."""
    return f"{model_id}:{version}:{day_start_ms}"


def baseline_key(model_id: str, version: str) -> str:
    """Return the hash holding every profile version of one model version."""
    return f"{KEY_PREFIX}:baseline:{model_id}:{version}"


BASELINE_PATTERN = f"{KEY_PREFIX}:baseline:*"


def autobase_key(group_id: str, model_id: str, version: str) -> str:
    """Return the hash of windows a partition is adopting as a model's baseline."""
    return f"{KEY_PREFIX}:autobase:{group_id}:{model_id}:{version}"


def label_field(partition: int) -> str:
    """Return the window-hash field holding label outcomes written by ``partition``'s owner."""
    return f"l{partition}"


def partition_field(partition: int) -> str:
    """Return the window-hash field written by the owner of ``partition``."""
    return f"p{partition}"


def model_field(model_id: str, version: str) -> str:
    """Return the field of a model series in :data:`MODELS_KEY`."""
    return f"{model_id}:{version}"


def encode_partial(
    aggregate: WindowAggregate,
    partition: int,
    closed: bool,
    drift: Sequence[FeatureDrift] = (),
) -> bytes:
    """Serialise a window partial (with the drift judged when it closed, if any)."""
    value: dict[str, Any] = {
        "state": "closed" if closed else "open",
        "partition": partition,
        "agg": aggregate.to_dict(),
    }
    if drift:
        value["drift"] = [finding.to_dict() for finding in drift]
    return orjson.dumps(value)


def partial_drift(raw: bytes) -> list[dict[str, Any]]:
    """The drift findings stored with a closed partial (empty if none were judged)."""
    drift: list[dict[str, Any]] = orjson.loads(raw).get("drift", [])
    return drift


def decode_partial(raw: bytes) -> tuple[WindowAggregate, int, bool]:
    """Inverse of :func:`encode_partial`: ``(aggregate, partition, closed)``."""
    data: dict[str, Any] = orjson.loads(raw)
    return WindowAggregate.from_dict(data["agg"]), int(data["partition"]), data["state"] == "closed"
