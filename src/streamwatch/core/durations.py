"""Parse human durations ("10s", "1m", "1h", "250ms", "7d") into integer milliseconds."""

from __future__ import annotations

import re

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(text: str) -> int:
    """Return the duration in milliseconds.

    Args:
        text: A whole number followed by one unit: ``ms``, ``s``, ``m``, ``h`` or ``d``.

    Raises:
        ValueError: If the text is not of that form; the message lists the valid units.

    >>> parse_duration_ms("1m")
    60000
    >>> parse_duration_ms("250ms")
    250
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: use a whole number and one unit of {sorted(_UNIT_MS)},"
            " e.g. '10s', '1m', '1h'"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_duration_ms(duration_ms: int) -> str:
    """Return the shortest exact human form of a duration.

    >>> format_duration_ms(60000)
    '1m'
    >>> format_duration_ms(1500)
    '1500ms'
    """
    for unit in ("d", "h", "m", "s"):
        unit_ms = _UNIT_MS[unit]
        if duration_ms % unit_ms == 0 and duration_ms >= unit_ms:
            return f"{duration_ms // unit_ms}{unit}"
    return f"{duration_ms}ms"
