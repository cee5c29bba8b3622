"""Reading reference data files, building profiles from them, and the generator's reference rows."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from streamwatch.baseline_io import (
    PARQUET_HINT,
    build_profile,
    parse_cell,
    read_reference,
    write_reference_jsonl,
)
from streamwatch.core.baseline import profile_from_events
from streamwatch.exceptions import ConfigError
from streamwatch.generator import DEFAULT_MODELS, ModelSpec, reference_rows

FRAUD, CANARY, CHURN, RECOMMENDER = DEFAULT_MODELS


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _read(path: Path, **kwargs: object) -> list[tuple[object, object]]:
    return list(read_reference(path, model_id="m", model_version="1", **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("", None),
        ("   ", None),
        ("12", 12),
        ("-3", -3),
        ("+7", 7),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("-2.5E-2", -0.025),
        ("true", True),
        ("FALSE", False),
        ("True", True),
        (" de ", "de"),
        ("1_000", "1_000"),
        ("nan", "nan"),
        ("0x10", "0x10"),
    ],
)
def test_csv_cells_are_typed_one_by_one(cell: str, expected: object) -> None:
    value = parse_cell(cell)
    assert value == expected
    assert type(value) is type(expected)


def test_csv_reads_special_columns_and_types_every_other_column_as_a_feature(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path / "ref.csv",
        "amount,country,is_new,age_days,label,prediction,score,latency_ms,status\n"
        "12,de,true,,fraud,fraud,0.9,41.5,ok\n"
        "3.5,,FALSE,400,legit,fraud,,12,error\n",
    )
    (first, label1), (second, label2) = _read(path)
    assert first.features == {"amount": 12, "country": "de", "is_new": True, "age_days": None}
    assert type(first.features["amount"]) is int
    assert second.features == {"amount": 3.5, "country": None, "is_new": False, "age_days": 400}
    assert (label1, label2) == ("fraud", "legit")
    assert (first.prediction, first.score, first.latency_ms, first.status) == (
        "fraud",
        0.9,
        41.5,
        "ok",
    )
    assert (second.score, second.latency_ms, second.status) == (None, 12.0, "error")
    assert (first.model_id, first.model_version) == ("m", "1")
    assert first.request_id != second.request_id


def test_csv_column_names_are_configurable_and_can_be_switched_off(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.csv", "x,truth,label\n1,yes,7\n")
    ((event, label),) = _read(path, label_column="truth", latency_column=None)
    assert label == "yes"
    assert event.features == {"x": 1, "label": 7}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "x,score\n1,1.7\n",
            "ref.csv line 2: column 'score': Input should be less than or equal to 1",
        ),
        (
            "x,status\n1,ok\n2,failed\n",
            "ref.csv line 3: column 'status' is 'failed'; valid values are ('ok', 'error')",
        ),
        ("x,latency_ms\n1,\n", "ref.csv line 2: column 'latency_ms' is empty"),
        (
            "x,latency_ms\n1,-5\n",
            "ref.csv line 2: column 'latency_ms': Input should be greater than or equal to 0",
        ),
        ("x,y\n1,2\n3\n", "ref.csv line 3: 1 cells but the header names 2 columns"),
        ("x,x\n1,2\n", "ref.csv line 1: duplicate column names ['x']"),
        ("x,,y\n1,2,3\n", "ref.csv line 1: a column has no name"),
    ],
)
def test_bad_csv_rows_name_the_line_and_what_to_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path / "ref.csv", text)
    with pytest.raises(ConfigError) as caught:
        _read(path)
    assert expected in str(caught.value)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.csv", ""),
        ("header_only.csv", "amount,label\n"),
        ("empty.jsonl", ""),
        ("blank_lines.jsonl", "\n\n  \n"),
    ],
)
def test_a_file_without_rows_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(ConfigError, match="holds no reference rows; add at least one"):
        build_profile(path, "m", "1")


def test_unknown_suffix_lists_the_valid_ones(tmp_path: Path) -> None:
    path = _write(tmp_path / "ref.txt", "x\n1\n")
    with pytest.raises(ConfigError, match=r"unknown reference data format '.txt'. Valid suffixes"):
        _read(path)


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*nope.csv: No such file"):
        _read(tmp_path / "nope.csv")


@pytest.mark.parametrize("model_version", ["1:2", "", "two words"])
def test_invalid_model_version_is_rejected_before_reading(
    tmp_path: Path, model_version: str
) -> None:
    with pytest.raises(ConfigError, match="invalid model version"):
        read_reference(tmp_path / "x.csv", model_id="m", model_version=model_version)


def test_jsonl_lines_are_events_with_an_optional_label(tmp_path: Path) -> None:
    lines = [
        {"latency_ms": 10, "prediction": "a", "features": {"x": 1}, "label": "a"},
        {"latency_ms": 20, "prediction": "b", "features": {"x": 2}, "label": "a"},
        {"model_id": "m", "model_version": "1", "request_id": "r9", "latency_ms": 30,
         "timestamp": 1_700_000_000.5, "prediction": "a"},
    ]  # fmt: skip
    path = tmp_path / "ref.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    rows = _read(path)
    assert [label for _, label in rows] == ["a", "a", None]
    assert rows[2][0].request_id == "r9"
    assert rows[2][0].timestamp_ms == 1_700_000_000_500
    profile = build_profile(path, "m", "1", created_at_ms=5)
    assert (profile.rows, profile.labels.labelled, profile.accuracy) == (3, 2, 0.5)
    assert profile.source == f"file:{path}"
    assert profile.created_at_ms == 5
    assert profile.aggregate.latency_moments.max == 30


def test_jsonl_line_of_another_model_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ref.jsonl"
    path.write_bytes(
        b'{"latency_ms": 1}\n\n{"latency_ms": 1, "model_id": "other"}\n{"latency_ms": 1}\n'
    )
    with pytest.raises(ConfigError) as caught:
        _read(path)
    assert f"{path} line 3: model_id 'other' is not 'm'" in str(caught.value)


def test_jsonl_line_of_another_version_is_an_error_unless_building_for_any_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ref.jsonl"
    path.write_bytes(
        b'{"latency_ms": 1, "model_version": "1"}\n{"latency_ms": 1, "model_version": "2"}\n'
    )
    with pytest.raises(ConfigError, match=r"line 2: model_version '2' is not '1'.*--version '2'"):
        _read(path)
    rows = list(read_reference(path, model_id="m", model_version="*"))
    assert [event.model_version for event, _ in rows] == ["1", "2"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"{not json", "line 1: not valid JSON"),
        (b"[1, 2]", "line 1: a JSON list, not an event object"),
        (
            b'{"latency_ms": 1, "label": {"a": 1}}',
            "line 1: 'label' must be a string, number or boolean",
        ),
        (b'{"latency_ms": 1, "latency": 3}', "line 1: latency: Extra inputs are not permitted"),
        (
            b'{"latency_ms": 1, "score": 2}',
            "line 1: score: Input should be less than or equal to 1",
        ),
    ],
)
def test_bad_jsonl_lines_name_the_line(tmp_path: Path, line: bytes, expected: str) -> None:
    path = tmp_path / "ref.ndjson"
    path.write_bytes(line + b"\n")
    with pytest.raises(ConfigError) as caught:
        _read(path)
    assert expected in str(caught.value)


def test_without_latency_the_profile_claims_no_latency_baseline(tmp_path: Path) -> None:
    csv_path = _write(tmp_path / "ref.csv", "x,label,prediction\n1,a,a\n2,b,a\n")
    jsonl_path = tmp_path / "ref.jsonl"
    jsonl_path.write_bytes(b'{"features": {"x": 1}}\n{"features": {"x": 2}}\n')
    for path in (csv_path, jsonl_path):
        profile = build_profile(path, "m", "1")
        assert profile.rows == 2
        assert profile.latency_p95_ms is None
        assert profile.aggregate.latency.count == 0
        assert profile.aggregate.latency_moments.n == 0
        assert profile.summary()["latency_p95_ms"] is None
    with_latency = _write(tmp_path / "lat.csv", "x,latency_ms\n1,50\n")
    assert build_profile(with_latency, "m", "1").latency_p95_ms == pytest.approx(50, rel=0.01)


def test_jsonl_latency_must_be_on_every_line_or_none(tmp_path: Path) -> None:
    path = tmp_path / "ref.jsonl"
    path.write_bytes(b'{"latency_ms": 1}\n{"latency_ms": 2}\n{"features": {}}\n')
    with pytest.raises(ConfigError, match="line 3: has no latency_ms but line 1 has"):
        _read(path)


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "ref.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ConfigError) as caught:
        build_profile(path, "m", "1")
    assert str(caught.value) == f"{path}: reading Parquet needs pyarrow; {PARQUET_HINT}"
    assert "pip install 'streamwatch[parquet]'" in str(caught.value)


def test_parquet_columns_are_read_like_csv(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "amount": [1.5, float("nan"), 3.0],
            "country": pa.array(["de", None, "fr"]).dictionary_encode(),
            "n": [1, 2, None],
            "label": ["a", "b", None],
            "prediction": ["a", "a", "b"],
        }
    )
    path = tmp_path / "ref.parquet"
    pq.write_table(table, path)
    rows = _read(path)
    assert [event.features for event, _ in rows] == [
        {"amount": 1.5, "country": "de", "n": 1},
        {"amount": None, "country": None, "n": 2},
        {"amount": 3.0, "country": "fr", "n": None},
    ]
    assert [label for _, label in rows] == ["a", "b", None]
    profile = build_profile(path, "m", "1")
    assert (profile.rows, profile.accuracy, profile.latency_p95_ms) == (3, 0.5, None)


def test_reference_rows_are_deterministic_per_seed() -> None:
    def dumped(seed: int) -> list[tuple[dict[str, object], object]]:
        return [(e.model_dump(), label) for e, label in reference_rows(FRAUD, 2_500, seed)]

    first = dumped(seed=11)
    assert len(first) == 2_500
    assert first == dumped(seed=11)
    assert first != dumped(seed=12)
    assert list(reference_rows(FRAUD, 0, seed=1)) == []


@pytest.mark.parametrize(
    "spec",
    [FRAUD, CANARY, ModelSpec("toy", "1", 1.0, "classifier", accuracy=0.8, labels=("n", "y"))],
)
def test_reference_accuracy_is_the_models_normal_accuracy(spec: ModelSpec) -> None:
    rows = list(reference_rows(spec, 20_000, seed=3))
    profile = profile_from_events(
        spec.model_id, spec.model_version, rows, source="test", created_at_ms=0
    )
    assert profile.rows == 20_000
    # Every successful prediction is labelled; only failed requests are not.
    assert profile.labels.labelled == profile.rows - profile.aggregate.error_count
    assert profile.accuracy == pytest.approx(spec.accuracy, abs=0.01)
    assert all(event.model_id == spec.model_id for event, _ in rows[:10])


def test_regressors_and_recommenders_have_no_reference_labels() -> None:
    for spec in (CHURN, RECOMMENDER):
        assert {label for _, label in reference_rows(spec, 500, seed=1)} == {None}


def test_reference_jsonl_round_trips_to_the_same_profile(tmp_path: Path) -> None:
    rows = list(reference_rows(FRAUD, 3_000, seed=5))
    path = tmp_path / "ref.jsonl"
    assert write_reference_jsonl(path, rows) == 3_000
    read_back = list(read_reference(path, model_id=FRAUD.model_id, model_version="2.1.0"))
    assert [label for _, label in read_back] == [label for _, label in rows]
    assert [e.features for e, _ in read_back] == [e.features for e, _ in rows]
    direct = profile_from_events(FRAUD.model_id, "2.1.0", rows, source="x", created_at_ms=0)
    built = build_profile(path, FRAUD.model_id, "2.1.0", created_at_ms=0)
    assert built.summary() | {"source": "x"} == direct.summary()
    assert built.latency_p95_ms == direct.latency_p95_ms
