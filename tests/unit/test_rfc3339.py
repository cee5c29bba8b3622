"""The column reader of RFC 3339 times against pydantic, which stays the authority."""

from __future__ import annotations

import doctest
import random

from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from streamwatch.core import rfc3339
from streamwatch.core.rfc3339 import ms_of_rfc3339
from streamwatch.events import epoch_ms

PYDANTIC = TypeAdapter(AwareDatetime)


def pydantic_ms(text: str) -> int | None:
    try:
        return epoch_ms(PYDANTIC.validate_python(text))
    except ValidationError:
        return None


def assert_never_laxer(texts: list[str]) -> int:
    """Every time read is pydantic's to the millisecond; return how many were read."""
    ms, parsed = ms_of_rfc3339(texts)
    for text, value, read in zip(texts, ms.tolist(), parsed.tolist(), strict=True):
        if read:
            assert pydantic_ms(text) == value, text
        else:
            assert value == 0, text
    return int(parsed.sum())


def random_time(rng: random.Random) -> str:
    """A time of the shape read, with field values reaching just past their ranges."""
    year = rng.choice([1969, 1970, 1999, 2000, 2024, 2026, 2100, 2400, 9999])
    date = f"{year:04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}"
    clock = f"{rng.randint(0, 24):02d}:{rng.randint(0, 60):02d}:{rng.randint(0, 60):02d}"
    digits = rng.randint(0, 9)
    fraction = "." + "".join(rng.choice("0123456789") for _ in range(digits)) if digits else ""
    if rng.random() < 0.5:
        zone = rng.choice("Zz")
    else:
        zone = f"{rng.choice('+-')}{rng.randint(0, 24):02d}:{rng.randint(0, 60):02d}"
    return f"{date}T{clock}{fraction}{zone}"


def test_the_docstring_example_holds() -> None:
    assert doctest.testmod(rfc3339).failed == 0


def test_the_usual_shapes_are_read_exactly() -> None:
    texts = [
        "2026-11-24T10:15:02Z",
        "2026-11-24T10:15:02.1Z",
        "2026-11-24T10:15:02.125Z",
        "2026-11-24T10:15:02.125999Z",
        "2026-11-24T10:15:02.123456789Z",
        "2026-11-24T10:15:02.125+00:00",
        "2026-11-24T10:15:02.125000+05:30",
        "2026-11-24T10:15:02-08:00",
        "2026-11-24T10:15:02-00:00",
        "2026-11-24T10:15:02+23:59",
        "2024-02-29T23:59:59.999Z",
        "2000-02-29T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ]
    assert assert_never_laxer(texts) == len(texts)
    assert ms_of_rfc3339(["1970-01-01T00:00:00.001Z"])[0].tolist() == [1]


def test_what_the_shape_does_not_cover_is_left_to_pydantic() -> None:
    texts = [
        "2026-11-24t10:15:02Z",  # pydantic accepts these four: not read here all the same
        "2026-11-24 10:15:02Z",
        "2026-11-24T10:15:02z",
        "2026-11-24T10:15:02,5Z",
        "2026-11-24T10:15Z",
        "2026-11-24T10:15:02+0100",
        "2026-11-24T10:15:60Z",  # pydantic refuses these
        "2026-11-24T24:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-24T10:15:02+24:00",
        "2026-11-24T10:15:02.Z",
        "2026-11-24T10:15:02.1234567890Z",
        "1969-12-31T23:59:59Z",
        "+2026-11-24T10:15:02Z",
        "2026-11-24T10:15:0٢Z",  # a non-ASCII digit
        "2026-11-24T10:1/:02Z",  # the byte below '0'
        "",
        "now",
    ]
    assert assert_never_laxer(texts) == 0


def test_random_times_in_one_column_agree_with_pydantic() -> None:
    rng = random.Random(3339)
    texts = [random_time(rng) for _ in range(4_000)]
    in_shape = [
        t for t in texts if pydantic_ms(t) is not None and not t.endswith("z") and t >= "1970"
    ]
    assert len(in_shape) > 500
    assert assert_never_laxer(texts) == len(in_shape)


@given(
    st.lists(st.tuples(st.integers(0, 34), st.characters(codec="utf-8")), min_size=1, max_size=3)
)
def test_any_character_changed_is_read_as_pydantic_reads_it_or_left(
    changes: list[tuple[int, str]],
) -> None:
    text = list("2026-11-24T10:15:02.125678+05:30")
    for position, character in changes:
        text[position % len(text)] = character
    assert_never_laxer(["2026-11-24T10:15:02.125Z", "".join(text)])
