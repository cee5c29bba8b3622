"""Read the common RFC 3339 times of a column at once, exactly as pydantic reads them.

Producers that write event times as text mostly write one fixed shape:
``YYYY-MM-DDTHH:MM:SS``, an optional fraction of 1 to 9 digits, then ``Z`` or ``±HH:MM``
(``datetime.isoformat()``, JavaScript's ``toISOString()``, Java's ``Instant``). Such a column
is read here as a byte matrix, a few numpy passes for all of its rows, where pydantic's datetime
and the subtraction that turns it into Unix milliseconds cost ~0.7 µs a row.

Only that shape, and only values pydantic accepts, are read: a year from 1970, real calendar
days, hours to 23, seconds to 59, offsets to ±23:59. Anything else (other separators, a leap
second, no seconds, other text) is left to the caller, who asks pydantic. The milliseconds are
pydantic's to the bit: it keeps the first six fraction digits (truncated), and
:func:`~streamwatch.events.epoch_ms` floors those to milliseconds, which is the first three.

Example:
    >>> ms, parsed = ms_of_rfc3339(
    ...     ["2026-11-24T10:15:02.125Z", "2026-11-24T11:15:02+01:00", "2026-11-24 10:15:02Z"]
    ... )
    >>> ms.tolist(), parsed.tolist()
    ([1795515302125, 1795515302000, 0], [True, True, False])
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ByteMatrix = npt.NDArray[np.uint8]

#: ``YYYY-MM-DDTHH:MM:SS``: the part every accepted time starts with.
_BASE: Final = 19
_SEPARATORS: Final = ((4, ord("-")), (7, ord("-")), (10, ord("T")), (13, ord(":")), (16, ord(":")))
_BASE_DIGITS: Final = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_MAX_FRACTION_DIGITS: Final = 9
_DAYS_IN_MONTH: Final = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
_ZERO: Final = np.uint8(ord("0"))
_MS_PER_MINUTE: Final = 60_000


def ms_of_rfc3339(texts: list[str]) -> tuple[IntArray, BoolArray]:
    """Unix milliseconds of each text in the shape the module reads, and which ones were read.

    Rows not read hold 0: the caller decides about them.
    """
    n = len(texts)
    ms = np.zeros(n, np.int64)
    parsed = np.zeros(n, np.bool_)
    lengths = np.fromiter(map(len, texts), np.int64, n)
    for length in np.unique(lengths).tolist():
        if not _BASE + 1 <= length <= _BASE + 1 + _MAX_FRACTION_DIGITS + 6:
            continue
        rows = np.flatnonzero(lengths == length)
        group = texts if rows.size == n else [texts[i] for i in rows.tolist()]
        try:
            joined = "".join(group).encode("ascii")
        except UnicodeEncodeError:
            continue  # other characters: not this shape (and bytes would not line up)
        matrix = np.frombuffer(joined, np.uint8).reshape(rows.size, length)
        utc = matrix[:, -1] == ord("Z")
        for zone_length, members in ((1, utc), (6, ~utc)):
            chosen = rows[members]
            if chosen.size:
                ms[chosen], parsed[chosen] = _read(matrix[members], zone_length)
    return ms, parsed


def _read(matrix: ByteMatrix, zone_length: int) -> tuple[IntArray, BoolArray]:
    """Milliseconds and validity of rows of one length ending in a zone of ``zone_length``."""
    length = matrix.shape[1]
    fraction = length - _BASE - zone_length  # the dot and the digits, if any
    rows = matrix.shape[0]
    if fraction < 0 or fraction == 1 or fraction > 1 + _MAX_FRACTION_DIGITS:
        return np.zeros(rows, np.int64), np.zeros(rows, np.bool_)
    digit_at = list(_BASE_DIGITS)
    ok = np.ones(rows, np.bool_)
    for position, byte in _SEPARATORS:
        ok &= matrix[:, position] == byte
    if fraction:
        ok &= matrix[:, _BASE] == ord(".")
        digit_at += range(_BASE + 1, _BASE + min(fraction, 4))
    zone = _BASE + fraction
    if zone_length == 6:
        sign = matrix[:, zone]
        ok &= (sign == ord("+")) | (sign == ord("-"))
        ok &= matrix[:, zone + 3] == ord(":")
        digit_at += (zone + 1, zone + 2, zone + 4, zone + 5)
    if fraction > 4:  # digits beyond the milliseconds: checked, not read
        ok &= ((matrix[:, _BASE + 4 : zone] - _ZERO) <= 9).all(axis=1)
    digits = matrix[:, digit_at] - _ZERO  # uint8: a byte below '0' wraps above 9
    ok &= (digits <= 9).all(axis=1)
    d = digits.astype(np.int64)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    hour = d[:, 8] * 10 + d[:, 9]
    minute = d[:, 10] * 10 + d[:, 11]
    second = d[:, 12] * 10 + d[:, 13]
    millis = np.zeros(rows, np.int64)
    for k in range(min(fraction - 1, 3)):
        millis += d[:, 14 + k] * (100, 10, 1)[k]
    ok &= (year >= 1970) & (month >= 1) & (month <= 12) & (hour <= 23)
    ok &= (minute <= 59) & (second <= 59) & (day >= 1)
    month = np.where(ok, month, 1)  # keeps the table lookup in range
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= day <= _DAYS_IN_MONTH[month] + (leap & (month == 2))
    offset_min = np.zeros(rows, np.int64)
    if zone_length == 6:
        z = d[:, -4:]
        zone_hours, zone_minutes = z[:, 0] * 10 + z[:, 1], z[:, 2] * 10 + z[:, 3]
        ok &= (zone_hours <= 23) & (zone_minutes <= 59)
        offset_min = zone_hours * 60 + zone_minutes
        offset_min[matrix[:, zone] == ord("-")] *= -1
    days = _days_from_civil(year, month, day)
    ms = ((days * 24 + hour) * 60 + minute) * _MS_PER_MINUTE + second * 1000 + millis
    ms -= offset_min * _MS_PER_MINUTE
    return np.where(ok, ms, 0), ok


def _days_from_civil(year: IntArray, month: IntArray, day: IntArray) -> IntArray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: IntArray = era * 146_097 + day_of_era - 719_468
    return days
