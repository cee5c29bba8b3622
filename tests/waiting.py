"""Wait on an observable fact with a deadline, never on a guessed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)  # polling interval, not synchronisation: the probe decides
    detail = on_timeout() if on_timeout else ""
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}; last={last!r}\n{detail}"
    )
