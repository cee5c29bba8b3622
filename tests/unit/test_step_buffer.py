"""The worker's step buffer (steps end at a message count, a byte count or a wait) and GC."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from streamwatch.worker import StepBuffer


@dataclass
class _Message:
    value: bytes | None
    tp: str = "inference-0"


@dataclass
class _Event:
    message: _Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


@dataclass
class _Runtime:
    steps: list[list[Any]] = field(default_factory=list)

    async def handle(self, events: list[Any]) -> None:
        assert not any(e.acked for e in events), "acknowledged before the step was stored"
        self.steps.append(list(events))


def _events(*sizes: int) -> list[_Event]:
    return [_Event(_Message(b"x" * size if size else None)) for size in sizes]


def _run(buffer: StepBuffer, events: list[_Event]) -> None:
    async def feed() -> None:
        for event in events:
            await buffer.add(event)

    asyncio.run(feed())


def _buffer(runtime: _Runtime, max_messages: int = 1_000, max_bytes: int = 1 << 20) -> StepBuffer:
    return StepBuffer(runtime, max_messages, max_bytes, max_wait_s=3_600.0)  # type: ignore[arg-type]


def test_a_step_ends_once_its_messages_hold_max_bytes() -> None:
    runtime = _Runtime()
    events = _events(400, 400, 300, 0, 500, 600, 100)
    _run(_buffer(runtime, max_bytes=1_000), events)
    assert [len(step) for step in runtime.steps] == [3, 3]  # 1,100 bytes; then 1,100 (None: 0)
    assert all(e.acked for step in runtime.steps for e in step)
    assert not events[-1].acked  # 100 bytes wait for more (or for the timer)


def test_a_step_ends_at_max_messages_whatever_its_bytes() -> None:
    runtime = _Runtime()
    _run(_buffer(runtime, max_messages=2), _events(1, 1, 1, 1, 1))
    assert [len(step) for step in runtime.steps] == [2, 2]


def test_discarding_revoked_partitions_forgets_their_bytes() -> None:
    runtime = _Runtime()
    buffer = _buffer(runtime, max_bytes=1_000)
    revoked = [_Event(_Message(b"x" * 900, tp="inference-1"))]
    _run(buffer, revoked)
    buffer.discard({"inference-1"})
    kept = _events(600)
    _run(buffer, kept)
    assert runtime.steps == []  # 600 bytes, not 1,500: the revoked 900 no longer count
    _run(buffer, _events(400))
    assert [len(step) for step in runtime.steps] == [2]
    assert not revoked[0].acked


def test_tuning_the_collector_freezes_start_up_and_raises_the_young_threshold() -> None:
    import gc

    from streamwatch.worker import GC_YOUNG_THRESHOLD, tune_garbage_collector

    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
