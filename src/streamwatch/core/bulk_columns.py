"""Validate inference events column by column, in bulk, and build their columns.

The fast decoder's core (:mod:`.fast_decode`): the fields of many events arrive here as
:class:`Columns` (lists, one entry per row), from JSON rows (:func:`columns_of_rows`) or from a
columnar envelope (:func:`columns_of_envelope`), and :meth:`ColumnBuilder.build` checks them
against the contract of :class:`~streamwatch.events.InferenceEvent` and converts them, a column
at a time: the set of a column's value types, numpy range checks, the distinct values of model
ids, the longest string. Only when such a check fails are the rows at fault looked for.

A row at fault is *doubted*, not rejected: the caller asks pydantic about it. So a check may be
stricter than the contract (numeric strings, which its lax float fields accept, are doubted;
so are negative timestamps) but never laxer, and every value it converts is the one pydantic
gives, to the bit. Nothing here parses JSON or knows about messages.
"""

from __future__ import annotations

import array
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Final

import numpy as np
from pydantic import AwareDatetime, ConfigDict, TypeAdapter, ValidationError

from streamwatch.core.columns import (
    RESOURCE_NAMES,
    BoolArray,
    EventColumns,
    FeatureColumn,
    FloatArray,
    InferenceBatch,
    IntArray,
    category_of,
    split_prediction,
)
from streamwatch.core.rfc3339 import ms_of_rfc3339
from streamwatch.events import (
    COLUMN_OBJECT_FIELDS,
    COLUMN_SCALAR_FIELDS,
    EVENT_SCHEMA_VERSION,
    NAME_PATTERN,
    InferenceEvent,
    epoch_ms,
)

NoneType = type(None)

#: Columns whose value may be one scalar for every row of a columnar envelope.
SCALAR_COLUMNS: Final = frozenset(COLUMN_SCALAR_FIELDS)
#: Columns holding an object of columns (name -> values).
NESTED_COLUMNS: Final = COLUMN_OBJECT_FIELDS

# Limits of the contract (events.py); tests/unit/test_fast_decode.py pins each at its edge.
MAX_STR: Final[int] = InferenceEvent.model_config.get("str_max_length") or 4096
MAX_REQUEST_ID: Final = 256
MAX_ERROR_TYPE: Final = 256
MAX_TRAFFIC: Final = 64
MAX_SEGMENT: Final = 128
MAX_FEATURE_NAME: Final = 128
MAX_STAGE_NAME: Final = 64
MAX_GPU_PCT: Final = 100.0
#: pydantic reads epoch numbers above this as milliseconds, below (or equal) as seconds.
MS_WATERSHED: Final = 2e10
#: Epoch numbers from here on (year 9892 in ms) are left to pydantic (it stops at 9999).
MAX_EPOCH_NUMBER: Final = 2.5e14
#: Longer timestamp strings are left to pydantic (an RFC 3339 time has at most ~35 chars).
MAX_TIME_TEXT: Final = 64
#: orjson reads integers beyond 64 bits as floats, pydantic's JSON parser as integers: a
#: prediction that large may have been an integer (a class label), so pydantic decides.
INTEGER_DOUBT: Final = 2.0**63
#: Probability vectors whose entries all stay below this in magnitude are compared as floats
#: (exact for integers up to 2^53, so the arg-max is the one of the parsed numbers).
_EXACT_FLOAT: Final = 2.0**53
_NAME = re.compile(NAME_PATTERN)
#: A text column shares one object per value when it has at most 1/this as many values.
_SHARED_TEXTS: Final = 4
#: Leading values of a text column whose distinct count tells whether it has few values.
_TEXT_SAMPLE: Final = 64
#: Strings known valid (:class:`KnownTexts`); cleared when they grow past this (they are few).
_MAX_KNOWN_NAMES: Final = 10_000

_FIELDS: Final = frozenset(InferenceEvent.model_fields)
_NUMBER: Final = frozenset({int, float})
_NUMBER_OR_NONE: Final = frozenset({int, float, NoneType})
_TEXT: Final = frozenset({str})
_TEXT_OR_NONE: Final = frozenset({str, NoneType})
_CATEGORY_OR_NONE: Final = frozenset({str, bool, NoneType})
_VECTOR_OR_NONE: Final = frozenset({list, NoneType})
_DICT: Final = frozenset({dict})
_STATUSES: Final = frozenset({"ok", "error", None})
_RESOURCES: Final = frozenset(RESOURCE_NAMES)
_EMPTY: Final[dict[str, Any]] = {}  # a missing object member; never written to


class _Absent:
    """A key missing where null is not allowed (so ``dict.get``'s None cannot stand for it)."""


_ABSENT: Final = _Absent()
_VERSION_TYPES: Final = frozenset({int, _Absent})
_VERSIONS: Final = frozenset({EVENT_SCHEMA_VERSION, _ABSENT})
_NAN = math.nan
_INT64 = np.iinfo(np.int64)


#: The fields with one value per row (the others are objects of such columns).
VALUE_FIELDS: Final = tuple(
    name for name in InferenceEvent.model_fields if name not in (*NESTED_COLUMNS, "schema_version")
)


@dataclass(slots=True)
class Columns:
    """The fields of ``n`` rows as lists: None where a row has no value (absent or null)."""

    n: int
    values: dict[str, list[Any]]
    """Each of :data:`VALUE_FIELDS`: its value in every row."""
    features: dict[str, list[Any]]
    stages_ms: dict[str, list[Any]]
    resources: dict[str, list[Any]]
    doubted: BoolArray | None
    """Rows the source already found at fault (unknown keys, nulls where none may be, ...)."""
    from_rows: bool
    """Row form: a feature or stage named by a row is a column even if no row gives it a
    value, and a null stage is a value (invalid). Columnar form: null is absent, so neither."""
    keys: int = 0
    """Row form: object keys in the rows (their own and their objects'), to spot repeats."""

    def take(self, rows: list[int]) -> Columns:
        """Return the columns of ``rows`` only (for sources that do not keep empty names)."""

        def pick(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
            return {name: [values[i] for i in rows] for name, values in columns.items()}

        return Columns(
            n=len(rows),
            values=pick(self.values),
            features=pick(self.features),
            stages_ms=pick(self.stages_ms),
            resources=pick(self.resources),
            doubted=None if self.doubted is None else self.doubted[rows],
            from_rows=self.from_rows,
        )

    @classmethod
    def concat(cls, parts: list[Columns]) -> Columns:
        """Join the columns of consecutive columnar envelopes (a name one lacks is null there)."""
        if len(parts) == 1:
            return parts[0]

        def joined(columns: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
            names = dict.fromkeys(chain.from_iterable(columns))
            out: dict[str, list[Any]] = {}
            for name in names:
                values: list[Any] = []
                for part, member in zip(parts, columns, strict=True):
                    values += member.get(name) or [None] * part.n  # extend: a pointer copy
                out[name] = values
            return out

        doubts = [p.doubted for p in parts]
        return cls(
            n=sum(p.n for p in parts),
            values=joined([p.values for p in parts]),
            features=joined([p.features for p in parts]),
            stages_ms=joined([p.stages_ms for p in parts]),
            resources=joined([p.resources for p in parts]),
            doubted=(
                None
                if all(d is None for d in doubts)
                else np.concatenate(
                    [
                        np.zeros(p.n, np.bool_) if d is None else d
                        for d, p in zip(doubts, parts, strict=True)
                    ]
                )
            ),
            from_rows=parts[0].from_rows,
            keys=sum(p.keys for p in parts),
        )


@dataclass(frozen=True, slots=True)
class Built:
    """What :meth:`ColumnBuilder.build` made of some columns."""

    batch: InferenceBatch | None
    """The events as columns (positions left empty); None if any row was dropped."""
    doubted: BoolArray | None
    """Rows that failed a check: pydantic must judge them."""
    late: BoolArray | None
    """Valid rows whose time is after ``not_after_ms``."""
    ts_ms: IntArray
    """Event time of each row in Unix ms (meaningless for doubted rows)."""

    @property
    def dropped(self) -> BoolArray:
        """Rows doubted or late: those not in ``batch``."""
        if self.doubted is None:
            return self.late if self.late is not None else np.zeros(self.ts_ms.size, np.bool_)
        return self.doubted if self.late is None else self.doubted | self.late


class KnownTexts:
    """Strings seen to match a pattern (model ids, business kinds).

    A column is checked by its distinct values, and only those not seen before are matched.
    """

    def __init__(self, pattern: re.Pattern[str]) -> None:
        """Know the strings that fully match ``pattern``."""
        self._pattern = pattern
        self._known: set[str] = set()

    def check(self, values: list[Any]) -> tuple[list[Any], BoolArray | None]:
        """The values, shared (:func:`shared_texts`), and the rows that are not a known string."""
        known = self._known
        distinct = distinct_texts(values)
        if distinct is not None and None not in distinct:
            shared = shared_texts(values, distinct)
            fresh = distinct - known
            if not fresh:
                return shared, None
            valid = {text for text in fresh if self._pattern.fullmatch(text)}
            if len(known) + len(valid) > _MAX_KNOWN_NAMES:
                known.clear()  # they are few; many means ever-new ones, not worth keeping
            known |= valid
            if len(valid) == len(fresh):
                return shared, None
        return values, rows_where(values, lambda v: not (type(v) is str and v in known))


class ColumnBuilder:
    """Checks and converts columns; keeps the model ids it has seen valid."""

    def __init__(self) -> None:
        """Create a builder."""
        self._names = KnownTexts(_NAME)
        config = ConfigDict(str_max_length=MAX_STR, allow_inf_nan=False)
        self._times = TypeAdapter(list[AwareDatetime], config=config)
        self._time = TypeAdapter(AwareDatetime, config=config)

    def build(self, columns: Columns, not_after_ms: int | None) -> Built:
        """Check and convert ``columns``; rows after ``not_after_ms`` (Unix ms) are late."""
        c = columns
        v = c.values
        n = c.n
        doubts: list[BoolArray] = [] if c.doubted is None else [c.doubted]

        def note(rows: BoolArray | None) -> None:
            if rows is not None:
                doubts.append(rows)

        note(check_strings(v["request_id"], MAX_REQUEST_ID, min_len=1, nullable=False))
        model_ids, rows = self.model_names(v["model_id"])
        note(rows)
        versions, rows = self.model_names(v["model_version"])
        note(rows)
        ts_ms, rows = self.event_times_ms(v["timestamp"])
        note(rows)
        latency, rows = checked_numbers(v["latency_ms"], nullable=False)
        note(rows)
        note(_status(v["status"]))
        error_types, rows = _labels(v["error_type"], MAX_ERROR_TYPE)
        note(rows)
        traffic, rows = _labels(v["traffic"], MAX_TRAFFIC)
        note(rows)
        segment, rows = _labels(v["segment"], MAX_SEGMENT)
        note(rows)
        score, rows = checked_numbers(v["score"], hi=1.0)
        note(rows)
        labels, predicted, rows = _predictions(v["prediction"])
        note(rows)
        features: dict[str, FeatureColumn] = {}
        # NaN is where a row has no value (orjson never gives NaN): an envelope's column with
        # none at all is no column, as its rows would have none.
        for name, column in c.features.items():
            feature, rows = _feature(column)
            note(rows)
            if c.from_rows or feature.categorical is not None or not _all_nan(feature.numeric):
                features[name] = feature
        stages: dict[str, FloatArray] = {}
        for name, column in c.stages_ms.items():
            stage, rows = checked_numbers(column, nullable=not c.from_rows)
            note(rows)
            if c.from_rows or not _all_nan(stage):
                stages[name] = stage
        resources: dict[str, FloatArray] = {}
        for name in RESOURCE_NAMES:
            used = c.resources.get(name)
            if used is not None:
                usage, rows = checked_numbers(
                    used, hi=MAX_GPU_PCT if name == "gpu_pct" else math.inf
                )
                note(rows)
                if not _all_nan(usage):
                    resources[name] = usage
        doubted = any_rows(doubts)
        latest = (
            _INT64.max if not_after_ms is None else max(_INT64.min, min(not_after_ms, _INT64.max))
        )
        late_rows = ts_ms > latest
        if doubted is not None:
            late_rows &= ~doubted
        late = late_rows if late_rows.any() else None
        if doubted is not None or late is not None:
            return Built(None, doubted, late, ts_ms)
        is_error = np.zeros(n, dtype=np.bool_)
        error_type: list[str | None] = [None] * n
        for row in _positions_of("error", v["status"]):  # few: found by C-level scans
            is_error[row] = True
            error_type[row] = error_types[row]
        batch = InferenceBatch(
            columns=EventColumns(
                event_ts_ms=ts_ms,
                latency_ms=latency,
                is_error=is_error,
                error_type=error_type,
                score=score,
                prediction_label=labels,
                prediction_value=predicted,
                traffic=traffic,
                segment=segment,
                features=features,
                stages_ms=stages,
                resources=resources,
            ),
            request_id=v["request_id"],
            model_id=model_ids,
            model_version=versions,
            positions=[],
        )
        return Built(batch, None, None, ts_ms)

    def model_names(self, values: list[Any]) -> tuple[list[Any], BoolArray | None]:
        """Model ids (or versions), shared (:func:`shared_texts`); doubt rows without a name."""
        return self._names.check(values)

    def event_times_ms(self, values: list[Any]) -> tuple[IntArray, BoolArray | None]:
        """Event times in Unix ms, as pydantic reads them; doubt what is not a plain time."""
        seconds = _numbers_only(values)
        if seconds is not None:
            return _ms_of_numbers(seconds)
        if set(map(type, values)) == _TEXT:
            ms, doubted = self._ms_of_texts(values)
            return ms, doubted if doubted.any() else None
        n = len(values)
        ms = np.zeros(n, dtype=np.int64)
        doubted = np.zeros(n, dtype=np.bool_)
        numbers = [i for i, v in enumerate(values) if type(v) is int or type(v) is float]
        if numbers:
            ms[numbers], rows = _ms_of_numbers(np.array([values[i] for i in numbers], np.float64))
            if rows is not None:
                doubted[numbers] = rows
        texts = [i for i, v in enumerate(values) if type(v) is str]
        if texts:
            ms[texts], doubted[texts] = self._ms_of_texts([values[i] for i in texts])
        others = [i for i, v in enumerate(values) if type(v) not in (int, float, str)]
        doubted[others] = True
        return ms, doubted if doubted.any() else None

    def _ms_of_texts(self, texts: list[str]) -> tuple[IntArray, BoolArray]:
        """RFC 3339 times: the common shape at once (:mod:`.rfc3339`), the rest by pydantic."""
        ms, parsed = ms_of_rfc3339(texts)
        doubted = ms < 0
        if not parsed.all():
            rest = np.flatnonzero(~parsed).tolist()
            ms[rest], doubted[rest] = self._ms_of_texts_by_pydantic([texts[i] for i in rest])
        return ms, doubted

    def _ms_of_texts_by_pydantic(self, texts: list[str]) -> tuple[list[int], list[bool]]:
        """RFC 3339 times: validated by pydantic in one call, or one by one if that fails."""
        if max(map(len, texts)) <= MAX_TIME_TEXT:
            try:
                ms = [epoch_ms(moment) for moment in self._times.validate_python(texts)]
            except ValidationError:
                pass
            else:
                return ms, [t < 0 for t in ms]
        out: list[int] = []
        doubted: list[bool] = []
        for text in texts:
            try:
                if len(text) > MAX_TIME_TEXT:
                    raise ValueError(text)
                out.append(epoch_ms(self._time.validate_python(text)))
                doubted.append(out[-1] < 0)
            except ValueError:  # pydantic's ValidationError is one
                out.append(0)
                doubted.append(True)
        return out, doubted


# -- sources -------------------------------------------------------------------------------


def columns_of_rows(rows: list[Any]) -> Columns:
    """The columns of JSON rows (parsed by orjson), doubting rows the columns cannot show.

    A feature or stage a row names is a column, even where no row gives it a value (as
    pydantic's events give it); a stage absent from a row is NaN there, a null one None.
    """
    n = len(rows)
    doubts: list[BoolArray] = []
    if set(map(type, rows)) - _DICT:
        doubts.append(rows_where(rows, lambda r: type(r) is not dict))
        rows = [r if type(r) is dict else _EMPTY for r in rows]
    present = set().union(*rows)
    if not present <= _FIELDS:
        doubts.append(rows_where(rows, lambda r: not r.keys() <= _FIELDS))

    def column(key: str) -> list[Any]:
        return list(map(dict.get, rows, repeat(key))) if key in present else [None] * n

    if "schema_version" in present:
        found = schema_version_doubts(rows)
        if found is not None:
            doubts.append(found)
    status = (
        list(map(dict.get, rows, repeat("status"), repeat("ok")))
        if "status" in present
        else ["ok"] * n
    )
    if "status" in present and None in status:  # null is not absent: it is doubted
        doubts.append(rows_where(rows, lambda r: "status" in r and r["status"] is None))
    features = _objects(rows, "features", present, doubts)
    stages = _objects(rows, "stages_ms", present, doubts)
    resources = _objects(rows, "resources", present, doubts, nullable=True)
    resource_names = set().union(*resources)
    if not resource_names <= _RESOURCES:
        doubts.append(rows_where(resources, lambda d: not d.keys() <= _RESOURCES))
    tags = _objects(rows, "tags", present, doubts)
    tag_values = list(chain.from_iterable(map(dict.values, tags)))
    if tag_values and (
        set(map(type, tag_values)) != {str}
        or max(map(len, tag_values)) > MAX_STR
        or max(map(len, chain.from_iterable(tags))) > MAX_STR
    ):
        doubts.append(rows_where(tags, lambda d: not _plain_tags(d)))
    feature_names = _names(features)
    if feature_names and max(map(len, feature_names)) > MAX_FEATURE_NAME:
        doubts.append(rows_where(features, lambda d: any(len(k) > MAX_FEATURE_NAME for k in d)))
    stage_names = _names(stages)
    if stage_names and max(map(len, stage_names)) > MAX_STAGE_NAME:
        doubts.append(rows_where(stages, lambda d: any(len(k) > MAX_STAGE_NAME for k in d)))
    return Columns(
        n=n,
        values={name: status if name == "status" else column(name) for name in VALUE_FIELDS},
        features={name: list(map(dict.get, features, repeat(name))) for name in feature_names},
        stages_ms={
            name: list(map(dict.get, stages, repeat(name), repeat(_NAN))) for name in stage_names
        },
        resources={
            name: list(map(dict.get, resources, repeat(name)))
            for name in RESOURCE_NAMES
            if name in resource_names
        },
        doubted=any_rows(doubts),
        from_rows=True,
        keys=sum(map(len, rows))
        + sum(map(len, features))
        + sum(map(len, stages))
        + sum(map(len, resources))
        + sum(map(len, tags)),
    )


def count_keys(rows: Iterable[Any]) -> int:
    """Object keys in some rows, counted as :attr:`Columns.keys` counts them."""
    total = 0
    for row in rows:
        if type(row) is dict:
            total += len(row)
            for name in NESTED_COLUMNS:
                member = row.get(name)
                if type(member) is dict:
                    total += len(member)
    return total


def columns_of_envelope(columns: dict[str, Any], n: int) -> Columns:
    """The columns of a columnar envelope whose shape is checked (``n`` rows).

    A null entry is an absent key, so a nested column without any value is no column.
    """
    doubts: list[BoolArray] = []

    def column(name: str) -> list[Any]:
        values = columns.get(name)
        return values if type(values) is list else [values] * n

    def nested(name: str, max_name: int = MAX_STR) -> dict[str, list[Any]]:
        members: dict[str, list[Any]] = columns.get(name) or {}
        for key, values in members.items():
            if len(key) > max_name:
                doubts.append(rows_where(values, lambda v: v is not None))
        return members

    features = nested("features", MAX_FEATURE_NAME)
    stages = nested("stages_ms", MAX_STAGE_NAME)
    resources = nested("resources")
    for key, values in resources.items():
        if key not in _RESOURCES:
            doubts.append(rows_where(values, lambda v: v is not None))
    for values in nested("tags").values():
        at_fault = check_strings(values, MAX_STR)
        if at_fault is not None:
            doubts.append(at_fault)
    return Columns(
        n=n,
        values={name: column(name) for name in VALUE_FIELDS},
        features=features,
        stages_ms=stages,
        resources={k: v for k, v in resources.items() if k in _RESOURCES},
        doubted=any_rows(doubts),
        from_rows=False,
    )


# -- checks --------------------------------------------------------------------------------


def _positions_of(value: str, values: list[Any]) -> list[int]:
    """Indices of ``value`` in ``values``, by ``list.index`` (quick when it is rare)."""
    found: list[int] = []
    at = -1
    for _ in range(values.count(value)):
        at = values.index(value, at + 1)
        found.append(at)
    return found


def _all_nan(values: FloatArray) -> bool:
    return bool(np.isnan(values).all())


def rows_where(values: list[Any], at_fault: Callable[[Any], bool]) -> BoolArray:
    """A mask of the values ``at_fault`` says are at fault."""
    return np.fromiter(map(at_fault, values), dtype=np.bool_, count=len(values))


def any_rows(masks: list[BoolArray]) -> BoolArray | None:
    """The rows any of ``masks`` holds, or None if none does."""
    if not masks:
        return None
    combined = np.logical_or.reduce(masks) if len(masks) > 1 else masks[0]
    return combined if combined.any() else None


def _objects(
    rows: list[dict[str, Any]],
    key: str,
    present: set[str],
    doubts: list[BoolArray],
    *,
    nullable: bool = False,
) -> list[dict[str, Any]]:
    """The object member ``key`` of each row (empty where absent); doubt rows without one."""
    if key not in present:
        return [_EMPTY] * len(rows)
    members = list(map(dict.get, rows, repeat(key), repeat(_EMPTY)))
    kinds = set(map(type, members))
    if kinds <= _DICT:
        return members
    if nullable and kinds <= {dict, NoneType}:
        return [_EMPTY if m is None else m for m in members]
    doubts.append(rows_where(members, lambda m: not (type(m) is dict or (nullable and m is None))))
    return [m if type(m) is dict else _EMPTY for m in members]


def schema_version_doubts(rows: list[dict[str, Any]]) -> BoolArray | None:
    """Rows whose ``schema_version`` is given and is not this build's (an int, not ``true``)."""
    versions = list(map(dict.get, rows, repeat("schema_version"), repeat(_ABSENT)))
    if set(map(type, versions)) <= _VERSION_TYPES and set(versions) <= _VERSIONS:
        return None
    return rows_where(versions, lambda v: not (v is _ABSENT or _is_version(v)))


def _is_version(value: Any) -> bool:
    return type(value) is int and value == EVENT_SCHEMA_VERSION


def _names(objects: list[dict[str, Any]]) -> list[str]:
    """The keys of some objects in order of first appearance (fast when the first has all)."""
    if not objects:
        return []
    every = set().union(*objects)
    first = objects[0]
    if len(every) == len(first):
        return list(first)
    return list(dict.fromkeys(chain.from_iterable(objects)))


def _plain_tags(tags: dict[str, Any]) -> bool:
    return all(type(v) is str and len(v) <= MAX_STR and len(k) <= MAX_STR for k, v in tags.items())


def check_strings(
    values: list[Any], max_len: int, *, min_len: int = 0, nullable: bool = True
) -> BoolArray | None:
    """Doubt rows that are not a string of ``min_len`` to ``max_len`` characters (or None)."""
    kinds = set(map(type, values))
    if kinds <= ({str, NoneType} if nullable else {str}):
        texts = values if NoneType not in kinds else list(filter(None, values))  # "" is short
        if not texts or (
            max(map(len, texts)) <= max_len and (not min_len or min(map(len, texts)) >= min_len)
        ):
            return None

    def fits(v: Any) -> bool:
        return (nullable and v is None) or (type(v) is str and min_len <= len(v) <= max_len)

    return rows_where(values, lambda v: not fits(v))


def _labels(values: list[Any], max_len: int) -> tuple[list[Any], BoolArray | None]:
    """A text column (an arm, a segment, an error type): its values and the rows at fault.

    The values are shared where they are few (:func:`_texts`); a column that is not all
    strings or None is checked row by row (:func:`check_strings`).
    """
    shared = _texts(values, max_len)
    return shared if shared is not None else (values, check_strings(values, max_len))


def distinct_texts(values: list[Any]) -> set[Any] | None:
    """The distinct values, if each is a string or None (else None).

    One pass that hashes (strings keep their hash) instead of one that takes types and one
    that hashes: only a string equals a string, so no other value hides behind one.
    """
    if values and _constant(values):
        return {values[0]}
    try:
        distinct = set(values)
    except TypeError:  # an unhashable value: a list or an object
        return None
    return distinct if all(v is None or type(v) is str for v in distinct) else None


def _texts(values: list[Any], max_len: int) -> tuple[list[Any], BoolArray | None] | None:
    """The values and the rows with a string over ``max_len``, if each is text; else None.

    None too for a column whose first values are mostly distinct: the caller's own checks
    are cheaper there.

    Text is a string or None. Hashing each value once (a set) checks the types and lengths
    of the few distinct values only. Where they are few, each string is replaced by one
    object of its value (:func:`shared_texts`: ``Counter`` runs about 40 % faster on them).
    """
    if len(values) > _TEXT_SAMPLE:
        # Many distinct values (ids, free text): hashing them all costs ~4x the caller's pass
        # over the types, and sharing would save nothing.
        try:
            if len(set(values[:_TEXT_SAMPLE])) * _SHARED_TEXTS > _TEXT_SAMPLE:
                return None
        except TypeError:  # an unhashable value: not text
            return None
    distinct = distinct_texts(values)
    if distinct is None:
        return None
    values = shared_texts(values, distinct)
    if max(map(len, filter(None, distinct)), default=0) <= max_len:
        return values, None
    return values, rows_where(values, lambda v: type(v) is str and len(v) > max_len)


def shared_texts(values: list[Any], distinct: set[Any]) -> list[Any]:
    """The values with one object for each of their ``distinct`` values, if those are few.

    Parsed strings are each their own object; shared ones die with their message instead of
    living as long as the predictions that await labels (about 55 bytes each), and counting
    them finds equal values by identity.
    """
    if len(distinct) == 1:
        # One value: the first object for all (a column that is one object already stays).
        return values if values[0] is values[-1] else [values[0]] * len(values)
    if len(distinct) <= len(values) // _SHARED_TEXTS:
        return list(map({v: v for v in distinct}.__getitem__, values))
    return values


def _constant(values: list[Any]) -> bool:
    """Whether one string object (or None) fills the column: the first stands for all.

    A scalar given for every row of an envelope is one object repeated: ``count`` compares
    identity first, so it costs almost nothing, and only a string equals a string, only None
    is None. Parsed strings are each their own object: a column whose last value is not the
    first object is not counted (False), as comparing it through to the end would cost more
    than the set the caller builds instead.
    """
    first = values[0]
    return (
        (first is None or type(first) is str)
        and values[-1] is first
        and values.count(first) == len(values)
    )


def _status(values: list[Any]) -> BoolArray | None:
    distinct = distinct_texts(values)
    if distinct is not None and distinct <= _STATUSES:
        return None
    return rows_where(values, lambda v: not (v is None or (type(v) is str and v in _STATUSES)))


def checked_numbers(
    values: list[Any], *, lo: float = 0.0, hi: float = math.inf, nullable: bool = True
) -> tuple[FloatArray, BoolArray | None]:
    """Finite numbers in ``[lo, hi]`` as floats (NaN for None); doubt other rows.

    A boolean is read as 0 or 1, as the contract's lax float fields read it.
    """
    floats = _floats(values)
    other_types: BoolArray | None = None
    if floats is None:
        if set(map(type, values)) <= (_NUMBER_OR_NONE if nullable else _NUMBER):
            floats = np.array(values, dtype=np.float64)
        else:
            floats = np.array(
                [v if type(v) is int or type(v) is float else None for v in values],
                dtype=np.float64,
            )
            other_types = rows_where(
                values, lambda v: not (type(v) in _NUMBER or (nullable and v is None))
            )
    out = (floats < lo) | (floats > hi) | np.isinf(floats)
    if other_types is not None:
        out |= other_types
    return floats, out if out.any() else None


def _floats(values: list[Any]) -> FloatArray | None:
    """The values as floats if each is a number or a boolean (read as 0 or 1), else None.

    One C-level pass that converts and checks at once: ``array('d')`` takes exactly ints,
    floats and booleans, and refuses None, strings and containers (orjson gives no other
    types). About 14 ns a value against 33 for a pass over the types and a numpy conversion.
    """
    try:
        return np.frombuffer(array.array("d", values), dtype=np.float64)
    except (TypeError, OverflowError):  # OverflowError: an integer beyond the float range
        return None


def _numbers_only(values: list[Any]) -> FloatArray | None:
    """:func:`_floats` without booleans: None if any value is not an int or a float.

    A boolean comes out 0 or 1, so only the values that did need their type looked at.
    """
    floats = _floats(values)
    if floats is None:
        return None
    maybe = np.flatnonzero((floats == 0.0) | (floats == 1.0))
    if maybe.size == 0:
        return floats
    if maybe.size * 8 <= floats.size:
        suspects: Iterable[Any] = [values[i] for i in maybe.tolist()]
    else:
        suspects = values
    return None if bool in set(map(type, suspects)) else floats


def _ms_of_numbers(seconds: FloatArray) -> tuple[IntArray, BoolArray | None]:
    """Epoch numbers to Unix ms exactly as pydantic (speedate) reads them.

    pydantic takes the whole part as seconds (milliseconds above :data:`MS_WATERSHED`), and the
    fraction times 10^6 (10^3) rounded half away from zero as microseconds; ``epoch_ms``
    floors those to ms. Negative and huge numbers are doubted (pydantic rounds them otherwise).
    """
    valid = (seconds >= 0) & (seconds < MAX_EPOCH_NUMBER)
    doubted = None if valid.all() else ~valid
    t = seconds if doubted is None else np.where(valid, seconds, 0.0)
    whole = np.floor(t)
    millis = t > MS_WATERSHED
    if millis.any():
        fraction = (t - whole) * np.where(millis, 1e3, 1e6)
    else:
        fraction = (t - whole) * 1e6
    micros = np.floor(fraction)
    micros += (fraction - micros) >= 0.5
    ms = whole * 1000 + np.floor(micros / 1000)
    if millis.any():
        ms = np.where(millis, whole + (micros >= 1000), ms)
    return ms.astype(np.int64), doubted


def _predictions(values: list[Any]) -> tuple[list[str | None], FloatArray, BoolArray | None]:
    """Predictions as labels and numbers, as :func:`split_prediction` records them."""
    n = len(values)
    if n and (values[0] is None or type(values[0]) is str):
        shared = _texts(values, MAX_STR)
        if shared is not None:
            return shared[0], np.full(n, _NAN), shared[1]
    kinds = set(map(type, values))
    if kinds <= _TEXT_OR_NONE:
        return values, np.full(n, _NAN), check_strings(values, MAX_STR)
    if kinds <= _VECTOR_OR_NONE:
        classes = _arg_max_labels(values)
        if classes is not None:
            return classes, np.full(n, _NAN), None
    if kinds <= {float, NoneType}:
        numbers = np.array(values, dtype=np.float64)
        big = np.abs(numbers) >= INTEGER_DOUBT
        return [None] * n, numbers, big if big.any() else None
    if kinds <= {str, int, float, NoneType}:
        if int in kinds:
            labels = [v if type(v) is str else str(v) if type(v) is int else None for v in values]
        else:
            labels = [v if type(v) is str else None for v in values]
        numbers = np.array([None if type(v) is str else v for v in values], dtype=np.float64)
        doubted = np.abs(numbers) >= INTEGER_DOUBT
        if max(map(len, filter(None, labels)), default=0) > MAX_STR:
            doubted |= rows_where(values, lambda v: type(v) is str and len(v) > MAX_STR)
        return labels, numbers, doubted if doubted.any() else None
    labels = [None] * n
    numbers = np.full(n, _NAN)
    doubted = np.zeros(n, dtype=np.bool_)
    for i, value in enumerate(values):
        if _plain_prediction(value):
            split_prediction(value, i, labels, numbers)
        else:
            doubted[i] = True
    return labels, numbers, doubted if doubted.any() else None


def _arg_max_labels(values: list[list[Any] | None]) -> list[str | None] | None:
    """Each probability vector's predicted class, as :func:`split_prediction` names it.

    None if an entry needs a closer look (not an int or a float, or too large to compare as a
    float): the caller then goes row by row. Vectors of one length are one 2-d array with one
    arg-max per row; ``np.argmax`` on each list cost ~3 µs a prediction. Ties go to the first
    largest entry, as there. An empty vector or None predicts no class.
    """
    n = len(values)
    labels: list[str | None] = [None] * n
    lengths = np.fromiter((0 if v is None else len(v) for v in values), np.int64, n)
    for length in np.unique(lengths).tolist():
        if length == 0:
            continue
        rows = np.flatnonzero(lengths == length).tolist()
        vectors = values if len(rows) == n else [values[i] for i in rows]
        entries = _numbers_only(list(chain.from_iterable(vectors)))  # type: ignore[arg-type]
        if entries is None or not bool((np.abs(entries) < _EXACT_FLOAT).all()):
            return None
        names = [str(i) for i in range(length)]
        picked = entries.reshape(len(rows), length).argmax(axis=1).tolist()
        for row, best in zip(rows, picked, strict=True):
            labels[row] = names[best]
    return labels


def _plain_prediction(value: Any) -> bool:
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return True
    if kind is str:
        return len(value) <= MAX_STR
    if kind is float:
        return bool(abs(value) < INTEGER_DOUBT)
    if kind is list:
        return all(type(v) is int or (type(v) is float and abs(v) < INTEGER_DOUBT) for v in value)
    return False


def _feature(values: list[Any]) -> tuple[FeatureColumn, BoolArray | None]:
    """One feature's values: numbers, or categories (strings and booleans), or None."""
    n = len(values)
    numeric = _numbers_only(values)
    if numeric is not None:
        out = np.isinf(numeric)
        return FeatureColumn(numeric), out if out.any() else None
    if n and type(values[0]) is str:
        shared = _texts(values, MAX_STR)
        if shared is not None:
            return FeatureColumn(np.full(n, _NAN), shared[0]), shared[1]
    kinds = set(map(type, values))
    if kinds <= _NUMBER_OR_NONE:
        numeric = np.array(values, dtype=np.float64)
        out = np.isinf(numeric)
        return FeatureColumn(numeric), out if out.any() else None
    if kinds <= _CATEGORY_OR_NONE:
        numeric = np.full(n, _NAN)
        if kinds == {str}:
            texts = values
        else:  # without booleans, filter drops just None (and "", which is short)
            texts = (
                list(filter(None, values))
                if bool not in kinds
                else [v for v in values if type(v) is str]
            )
        doubted = None
        if texts and max(map(len, texts)) > MAX_STR:
            doubted = rows_where(values, lambda v: type(v) is str and len(v) > MAX_STR)
        categories = values
        if bool in kinds:
            categories = [None if v is None else category_of(v) for v in values]
        return FeatureColumn(numeric, categories if kinds != {NoneType} else None), doubted
    numeric = np.full(n, _NAN)
    categorical: list[str | None] | None = None
    at_fault = np.zeros(n, dtype=np.bool_)
    for i, value in enumerate(values):
        kind = type(value)
        if kind is int or kind is float:
            numeric[i] = value
            at_fault[i] = math.isinf(numeric[i])
        elif (kind is str and len(value) <= MAX_STR) or kind is bool:
            if categorical is None:
                categorical = [None] * n
            categorical[i] = category_of(value)
        elif value is not None:
            at_fault[i] = True
    return FeatureColumn(numeric, categorical), at_fault if at_fault.any() else None
