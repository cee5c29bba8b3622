"""Reference data files (CSV, Parquet, JSON lines) read as events, and profiles built from them.

Owns the file formats behind ``streamwatch baseline build``; the profile itself belongs to
:mod:`streamwatch.core.baseline`. Every problem with a file raises
:class:`~streamwatch.exceptions.ConfigError` naming the file, the line (or Parquet row) and what
to fix. Nothing here touches Redis.

Formats, chosen by the file suffix:

* ``.csv``: a header line, then one row per reference event. The label, prediction, score,
  latency and status columns are read as such (each optional); every other column is a feature.
  Cells are typed one by one: empty is missing, then integer, float, ``true``/``false``
  (any case), else text. Surrounding spaces are ignored.
* ``.parquet`` / ``.pq``: the same columns, with their Parquet types (numbers, booleans,
  strings; NaN is missing). Needs pyarrow.
* ``.jsonl`` / ``.ndjson``: one :class:`~streamwatch.events.InferenceEvent` per line, as the
  model server sends it, optionally with the ground truth under an extra top-level ``label`` key.
  ``model_id``, ``model_version``, ``request_id`` and ``timestamp`` may be left out (they are
  filled in); a ``model_id`` or ``model_version`` that is present must be the one being profiled.

Reference rows are not traffic: rows without them get synthetic request ids (``ref-{line}``) and
the timestamp 0 (1970-01-01). Data without latencies (no latency column, or JSON lines without
``latency_ms``) yields a profile with no latency baseline.
"""

from __future__ import annotations

import csv
import importlib
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict, Unpack

import orjson
from pydantic import ValidationError

from streamwatch.core.aggregate import WindowAggregate
from streamwatch.core.baseline import BUILD_CHUNK_ROWS, BaselineProfile, profile_from_events
from streamwatch.core.processor import ANY_VERSION
from streamwatch.events import NAME_PATTERN, InferenceEvent
from streamwatch.exceptions import ConfigError

#: File suffix (lower case) -> format.
FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
PARQUET_HINT = "install pyarrow (pip install 'streamwatch[parquet]')"
#: Event time of reference rows that carry none.
REFERENCE_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
#: ``model_version`` given to events of a ``*`` (any version) profile whose rows name none.
_ANY_VERSION_STANDIN = "any"

_NAME = re.compile(NAME_PATTERN)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

Row = tuple[InferenceEvent, object | None]


class ColumnNames(TypedDict, total=False):
    """Names of the columns that are not features; ``None`` (or ``""``) means there is none."""

    label_column: str | None
    prediction_column: str | None
    score_column: str | None
    latency_column: str | None
    status_column: str | None


def parse_cell(text: str) -> bool | int | float | str | None:
    """Type one CSV cell: empty -> None, then int, float, ``true``/``false``, else the text.

    >>> [parse_cell(c) for c in ["", " 12 ", "-1.5e3", "TRUE", "de", "1_000"]]
    [None, 12, -1500.0, True, 'de', '1_000']
    """
    text = text.strip()
    if not text:
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return text


def read_reference(
    path: str | Path,
    *,
    model_id: str,
    model_version: str,
    label_column: str | None = "label",
    prediction_column: str | None = "prediction",
    score_column: str | None = "score",
    latency_column: str | None = "latency_ms",
    status_column: str | None = "status",
) -> Iterator[Row]:
    """Yield ``(event, label or None)`` for every row of a reference data file.

    Args:
        path: A ``.csv``, ``.parquet``/``.pq`` or ``.jsonl``/``.ndjson`` file (see the module
            docstring for each format).
        model_id: The model the data belongs to.
        model_version: Its version, or ``*`` for a profile any version may use.
        label_column: Ground-truth column (in JSON lines: the extra top-level key).
        prediction_column: Model output column (CSV and Parquet).
        score_column: Confidence column, values in [0, 1] (CSV and Parquet).
        latency_column: Serving latency column, ms (CSV and Parquet).
        status_column: ``ok``/``error`` column (CSV and Parquet).

    Raises:
        ConfigError: At once for an invalid model id or version or an unknown suffix; while
            iterating, at the first row that is invalid (the message names the file, the line
            or row, and what to fix), or at the end if the file holds no rows.
    """
    return iter(
        _Reader(
            Path(path),
            model_id,
            model_version,
            _Columns(label_column, prediction_column, score_column, latency_column, status_column),
        )
    )


def build_profile(
    path: str | Path,
    model_id: str,
    model_version: str,
    *,
    created_at_ms: int | None = None,
    max_features: int = 64,
    max_categories: int = 64,
    **columns: Unpack[ColumnNames],
) -> BaselineProfile:
    """Build a baseline profile of a reference data file (version 0: not stored yet).

    Args:
        path: The reference data (see :func:`read_reference`).
        model_id: The model the profile describes.
        model_version: Its version, or ``*``.
        created_at_ms: Creation time; default the wall clock now.
        max_features: Cap on distinct feature names (``STREAMWATCH_MAX_FEATURES``).
        max_categories: Cap on categories per feature (``STREAMWATCH_MAX_CATEGORIES``).
        **columns: Column names, as for :func:`read_reference`.

    Raises:
        ConfigError: As :func:`read_reference`.
    """
    reader = _Reader(
        Path(path),
        model_id,
        model_version,
        _Columns(
            columns.get("label_column", "label"),
            columns.get("prediction_column", "prediction"),
            columns.get("score_column", "score"),
            columns.get("latency_column", "latency_ms"),
            columns.get("status_column", "status"),
        ),
    )
    profile = profile_from_events(
        model_id,
        model_version,
        reader,
        source=f"file:{path}",
        created_at_ms=time.time_ns() // 1_000_000 if created_at_ms is None else created_at_ms,
        max_features=max_features,
        max_categories=max_categories,
    )
    if not reader.has_latency:
        # The events carried a stand-in latency of 0; a profile must not claim it as a baseline.
        empty = WindowAggregate()
        profile.aggregate.latency = empty.latency
        profile.aggregate.latency_moments = empty.latency_moments
    return profile


def write_reference_jsonl(path: str | Path, rows: Iterable[Row]) -> int:
    """Write ``(event, label)`` rows as JSON lines :func:`read_reference` reads; return the count.

    Each line is the event as it was given (unset fields left out) plus ``"label"`` when the row
    has one.
    """
    written = 0
    with open(path, "wb") as out:
        for event, label in rows:
            data = event.model_dump(mode="json", exclude_unset=True)
            if label is not None:
                data["label"] = label
            out.write(orjson.dumps(data))
            out.write(b"\n")
            written += 1
    return written


@dataclass(frozen=True, slots=True)
class _Columns:
    label: str | None
    prediction: str | None
    score: str | None
    latency: str | None
    status: str | None

    def special(self) -> frozenset[str]:
        """Names of the columns that are not features."""
        names = (self.label, self.prediction, self.score, self.latency, self.status)
        return frozenset(n for n in names if n)

    def field_names(self) -> dict[str, str]:
        """Event field -> the column it was read from, for error messages."""
        fields = {
            "prediction": self.prediction,
            "score": self.score,
            "latency_ms": self.latency,
            "status": self.status,
        }
        return {k: v for k, v in fields.items() if v}


class _Reader:
    """One pass over a reference file; ``has_latency`` is known once iteration has started."""

    def __init__(self, path: Path, model_id: str, model_version: str, columns: _Columns) -> None:
        if not _NAME.fullmatch(model_id):
            raise ConfigError(
                f"invalid model id {model_id!r}: use letters, digits and ._-/+@"
                " (no ':' or whitespace), at most 128 characters"
            )
        if model_version != ANY_VERSION and not _NAME.fullmatch(model_version):
            raise ConfigError(
                f"invalid model version {model_version!r}: use letters, digits and ._-/+@"
                " (no ':' or whitespace), at most 128 characters, or '*' for any version"
            )
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise ConfigError(
                f"{path}: unknown reference data format {suffix or '(no suffix)'!r}."
                f" Valid suffixes are: {sorted(FORMATS)}"
            )
        self.path = path
        self.format = FORMATS[suffix]
        self.model_id = model_id
        self.model_version = model_version
        self.columns = columns
        self.has_latency = True

    def __iter__(self) -> Iterator[Row]:
        rows = {"csv": self._csv_rows, "parquet": self._parquet_rows, "jsonl": self._jsonl_rows}
        count = 0
        try:
            for row in rows[self.format]():
                count += 1
                yield row
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self.path}: not UTF-8 text ({exc}); save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        if count == 0:
            layout = " after a header line naming the columns" if self.format == "csv" else ""
            raise ConfigError(f"{self.path}: holds no reference rows; add at least one{layout}")

    # CSV and Parquet -----------------------------------------------------------------------

    def _csv_rows(self) -> Iterator[Row]:
        with open(self.path, encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            try:
                header = next(reader, None)
                if header is None:
                    return
                names = [name.strip() for name in header]
                self._check_header(names, f"{self.path} line 1")
                for cells in reader:
                    where = f"{self.path} line {reader.line_num}"
                    if not cells:
                        continue  # a blank line
                    if len(cells) != len(names):
                        raise ConfigError(
                            f"{where}: {len(cells)} cells but the header names {len(names)}"
                            " columns; quote cells that contain commas"
                        )
                    values = {n: parse_cell(c) for n, c in zip(names, cells, strict=True)}
                    yield self._table_row(values, reader.line_num, where)
            except csv.Error as exc:
                raise ConfigError(
                    f"{self.path} line {reader.line_num}: malformed CSV ({exc})"
                ) from None

    def _parquet_rows(self) -> Iterator[Row]:
        try:
            parquet = importlib.import_module("pyarrow.parquet")
            types = importlib.import_module("pyarrow.types")
        except ImportError:
            raise ConfigError(
                f"{self.path}: reading Parquet needs pyarrow; {PARQUET_HINT}"
            ) from None
        try:
            file = parquet.ParquetFile(self.path)
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise ConfigError(f"{self.path}: not a readable Parquet file ({exc})") from None
        schema = file.schema_arrow
        for field in schema:
            kind = field.type
            if types.is_dictionary(kind):
                kind = kind.value_type
            if not (
                types.is_integer(kind)
                or types.is_floating(kind)
                or types.is_boolean(kind)
                or types.is_string(kind)
                or types.is_large_string(kind)
                or types.is_decimal(kind)
                or types.is_null(kind)
            ):
                raise ConfigError(
                    f"{self.path}: column {field.name!r} has type {field.type}; reference"
                    " columns must hold numbers, booleans or strings: cast it or drop it"
                )
        self._check_header([str(name) for name in schema.names], str(self.path))
        index = 0
        for batch in file.iter_batches(batch_size=BUILD_CHUNK_ROWS):
            for record in batch.to_pylist():
                index += 1
                values = {name: _parquet_value(value) for name, value in record.items()}
                yield self._table_row(values, index, f"{self.path} row {index}")

    def _check_header(self, names: list[str], where: str) -> None:
        if any(not name for name in names):
            raise ConfigError(f"{where}: a column has no name; name every column in the header")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"{where}: duplicate column names {duplicates}; rename them")
        latency = self.columns.latency
        self.has_latency = bool(latency) and latency in names

    def _table_row(self, values: Mapping[str, object], index: int, where: str) -> Row:
        columns = self.columns
        special = columns.special()
        latency: object = 0.0
        if self.has_latency:
            latency = values[columns.latency or ""]
            if latency is None:
                raise ConfigError(
                    f"{where}: column {columns.latency!r} is empty; fill in every latency or"
                    " leave the column out (then the profile has no latency baseline)"
                )
        status = values.get(columns.status or "") or "ok"
        if status not in ("ok", "error"):
            raise ConfigError(
                f"{where}: column {columns.status!r} is {status!r}; valid values are"
                " ('ok', 'error')"
            )
        data = {
            "request_id": f"ref-{index}",
            "model_id": self.model_id,
            "model_version": self.event_version,
            "timestamp": REFERENCE_TIMESTAMP,
            "latency_ms": latency,
            "status": status,
            "prediction": values.get(columns.prediction or ""),
            "score": values.get(columns.score or ""),
            "features": {k: v for k, v in values.items() if k not in special},
        }
        event = self._validate(data, where, columns.field_names())
        label = values.get(columns.label or "")
        return event, label

    # JSON lines ----------------------------------------------------------------------------

    def _jsonl_rows(self) -> Iterator[Row]:
        label_key = self.columns.label
        first_latency_line: int | None = None
        with open(self.path, "rb") as file:
            for line_no, raw in enumerate(file, start=1):
                if not raw.strip():
                    continue
                where = f"{self.path} line {line_no}"
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise ConfigError(
                        f"{where}: not valid JSON ({exc}); each line must be one event object"
                    ) from None
                if not isinstance(data, dict):
                    raise ConfigError(
                        f"{where}: a JSON {type(data).__name__}, not an event object;"
                        " write one event object per line"
                    )
                label = data.pop(label_key, None) if label_key else None
                if label is not None and (
                    not isinstance(label, bool | int | float | str)
                    or (isinstance(label, float) and not math.isfinite(label))
                ):
                    raise ConfigError(
                        f"{where}: {label_key!r} must be a string, number or boolean,"
                        f" got {label!r:.60}"
                    )
                self._fill_identity(data, line_no, where)
                has_latency = "latency_ms" in data
                if first_latency_line is None:
                    first_latency_line, self.has_latency = line_no, has_latency
                elif has_latency != self.has_latency:
                    first = "has" if self.has_latency else "has no"
                    raise ConfigError(
                        f"{where}: {'has' if has_latency else 'has no'} latency_ms but line"
                        f" {first_latency_line} {first}; give every line a latency_ms or none"
                    )
                if not has_latency:
                    data["latency_ms"] = 0.0
                yield self._validate(data, where, {}), label

    def _fill_identity(self, data: dict[str, Any], line_no: int, where: str) -> None:
        model_id = data.setdefault("model_id", self.model_id)
        if model_id != self.model_id:
            raise ConfigError(
                f"{where}: model_id {model_id!r} is not {self.model_id!r}; build the"
                f" baseline for {model_id!r}, or remove that line (model_id may be left out)"
            )
        version = data.setdefault("model_version", self.event_version)
        if self.model_version != ANY_VERSION and version != self.model_version:
            raise ConfigError(
                f"{where}: model_version {version!r} is not {self.model_version!r}; build the"
                f" baseline with --version {version!r} (or '*' for any version), or remove"
                " that line (model_version may be left out)"
            )
        data.setdefault("request_id", f"ref-{line_no}")
        data.setdefault("timestamp", REFERENCE_TIMESTAMP)

    # Shared --------------------------------------------------------------------------------

    @property
    def event_version(self) -> str:
        """``model_version`` of events whose row names none."""
        return _ANY_VERSION_STANDIN if self.model_version == ANY_VERSION else self.model_version

    def _validate(
        self, data: dict[str, Any], where: str, columns: Mapping[str, str]
    ) -> InferenceEvent:
        try:
            return InferenceEvent.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc, columns)}") from None


def _parquet_value(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    return value


def _describe(exc: ValidationError, columns: Mapping[str, str]) -> str:
    """Name the fields at fault, as columns where the event came from a table."""
    parts: dict[str, str] = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if not loc:
            name = "event"
        elif loc[0] == "features" and len(loc) > 1 and columns:
            name = f"column {loc[1]!r}"
        elif loc[0] in columns:
            name = f"column {columns[loc[0]]!r}"
        else:
            # Union members add their type name to the location; the field is enough.
            name = ".".join(
                loc[:2] if loc[0] in ("features", "stages_ms", "resources") else loc[:1]
            )
        if name in parts:
            continue
        if error["type"] == "missing":
            parts[name] = f"{name} is missing; add it"
        else:
            parts[name] = f"{name}: {error['msg']} (got {error['input']!r:.60}); correct it"
    return "; ".join(list(parts.values())[:3])
