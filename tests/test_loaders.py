"""Real data in: loading, mapping, validation errors (file, column, rows), the shipped UCI example."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from factories import patients as _patients

from consortia.data.loaders import load_file, load_files, schema_from_summaries
from consortia.data.mapping import DataMapping
from consortia.data.preprocessing import FeatureSummary
from consortia.errors import ConfigError, DataValidationError
from consortia.examples import EXAMPLES, find_example_for, get_example
from consortia.verticals import get_vertical

SCHEMA = get_vertical("healthcare").schema


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _error(path: Path, mapping: DataMapping | None = None, **kwargs) -> DataValidationError:
    before = _digest(path)
    with pytest.raises(DataValidationError) as info:
        load_file(path, SCHEMA, mapping, **kwargs)
    assert _digest(path) == before, "validation must leave the input file untouched"
    assert str(path) in str(info.value)
    return info.value


def test_clean_file_loads_in_schema_terms(tmp_path):
    loaded = load_file(_write(tmp_path / "a.csv", _patients()), SCHEMA)
    assert loaded.name == "a"
    assert set(loaded.schema.feature_names) == {"age", "sex", "systolic_bp", "chest_pain"}
    assert loaded.frame["systolic_bp"].dtype == float
    assert loaded.frame["disease"].tolist() == (np.arange(30) % 2).tolist()


def test_missing_target_column(tmp_path):
    err = _error(_write(tmp_path / "a.csv", _patients().drop(columns=["disease"])))
    assert err.column == "disease" and "target column 'disease' is missing" in str(err)


def test_wrong_type_names_column_and_rows(tmp_path):
    frame = _patients().astype({"systolic_bp": object})
    frame.loc[[3, 7], "systolic_bp"] = "high"
    err = _error(_write(tmp_path / "a.csv", frame))
    assert err.column == "systolic_bp" and err.rows == [4, 8]
    assert "'high'" in str(err)


def test_value_out_of_range(tmp_path):
    frame = _patients()
    frame.loc[5, "age"] = 250
    err = _error(_write(tmp_path / "a.csv", frame))
    assert err.column == "age" and err.rows == [6] and "maximum" in str(err)


def test_unknown_category_label(tmp_path):
    frame = _patients()
    frame.loc[2, "chest_pain"] = "sharp"
    err = _error(_write(tmp_path / "a.csv", frame))
    assert err.column == "chest_pain" and err.rows == [3]


def test_error_uses_the_files_own_column_name(tmp_path):
    frame = _patients().rename(columns={"systolic_bp": "trestbps"})
    frame.loc[0, "trestbps"] = 999
    mapping = DataMapping.parse({"columns": {"trestbps": "systolic_bp"}})
    err = _error(_write(tmp_path / "a.csv", frame), mapping)
    assert "trestbps" in str(err) and "systolic_bp" in str(err) and err.rows == [1]


def test_missing_markers_default_and_declared_per_column(tmp_path):
    frame = _patients().astype({"systolic_bp": object, "age": object})
    frame.loc[0, "systolic_bp"] = "?"
    frame.loc[1, "systolic_bp"] = ""
    frame.loc[2, "systolic_bp"] = "-9"
    frame.loc[3, "age"] = "0"
    path = _write(tmp_path / "a.csv", frame)
    # 0 and -9 are not default markers, and are out of range for the schema
    err = _error(path)
    assert (err.column, err.rows) == ("age", [4])
    err = _error(path, DataMapping.parse({"missing": {"age": [0]}}))
    assert (err.column, err.rows) == ("systolic_bp", [3])
    mapping = DataMapping.parse({"missing": {"*": [-9], "age": [0]}})
    loaded = load_file(path, SCHEMA, mapping)
    assert loaded.frame["systolic_bp"].isna().tolist()[:4] == [True, True, True, False]
    assert loaded.frame["age"].isna().tolist()[:4] == [False, False, False, True]


def test_too_few_rows_and_single_class(tmp_path):
    err = _error(_write(tmp_path / "small.csv", _patients(5)))
    assert "at least 10" in str(err)
    one_class = _patients().assign(disease=1)
    err = _error(_write(tmp_path / "one.csv", one_class))
    assert err.column == "disease" and "single class" in str(err)


def test_target_rule_and_message_when_target_not_binary(tmp_path):
    frame = _patients().assign(disease=np.arange(30) % 4)
    path = _write(tmp_path / "a.csv", frame)
    err = _error(path)
    assert err.column == "disease" and "positive" in str(err) and err.rows[0] == 3
    mapping = DataMapping.parse({"target": {"column": "disease", "positive": {"gt": 0}}})
    assert load_file(path, SCHEMA, mapping).frame["disease"].tolist()[:5] == [0, 1, 1, 1, 0]


def test_target_missing_values(tmp_path):
    frame = _patients().astype({"disease": object})
    frame.loc[4, "disease"] = ""
    err = _error(_write(tmp_path / "a.csv", frame))
    assert err.column == "disease" and err.rows == [5]


def test_extra_columns_inferred_with_a_note(tmp_path):
    frame = _patients().assign(ward=["a", "b", "c"] * 10, score=np.linspace(0, 1, 30))
    err = _error(_write(tmp_path / "a.csv", frame))  # undeclared: refused, never silently a feature
    assert "'ward', 'score'" in str(err) and "ignore" in str(err)
    loaded = load_file(tmp_path / "a.csv", SCHEMA, DataMapping.parse({"infer_extra": True}))
    assert {f.name: f.kind for f in loaded.schema.features}["ward"] == "categorical"
    assert "score" in loaded.schema.extra_columns
    assert any("'ward' taken as categorical" in n for n in loaded.notes)
    declared = DataMapping.parse({"extra": {"categorical": ["score"]}, "ignore": ["ward"]})
    kinds = {f.name: f.kind for f in load_file(tmp_path / "a.csv", SCHEMA, declared).schema.features}
    assert kinds["score"] == "categorical"


def test_columns_at_some_institutions_only_are_dropped(tmp_path):
    a = _write(tmp_path / "a.csv", _patients(seed=1))
    b = _write(tmp_path / "b.csv", _patients(seed=2).drop(columns=["systolic_bp"]))
    data = load_files([a, b], SCHEMA)
    assert "systolic_bp" not in data.schema.feature_names
    assert "systolic_bp" not in data.frames["a"].columns
    assert any("'systolic_bp' is missing at" in n and str(b) in n for n in data.notes)


def test_required_column_missing_at_one_institution_is_an_error(tmp_path):
    from dataclasses import replace

    features = tuple(replace(f, required=f.name == "systolic_bp") for f in SCHEMA.features)
    schema = replace(SCHEMA, features=features)
    a = _write(tmp_path / "a.csv", _patients(seed=1))
    b = _write(tmp_path / "b.csv", _patients(seed=2).drop(columns=["systolic_bp"]))
    with pytest.raises(DataValidationError) as info:
        load_files([a, b], schema)
    assert "systolic_bp" in str(info.value) and str(b) in str(info.value)


def test_malformed_mapping_is_a_config_error(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("target: {column: num, positive: {gt: 0, lt: 3}}\n")
    with pytest.raises(ConfigError, match="exactly one"):
        DataMapping.from_file(bad)
    with pytest.raises(DataValidationError, match="does not have"):
        load_file(_write(tmp_path / "a.csv", _patients()), SCHEMA, DataMapping.parse({"columns": {"x": "nope"}}))


def test_parquet_reads_like_csv(tmp_path):
    frame = _patients()
    frame.to_parquet(tmp_path / "a.parquet")
    loaded = load_file(tmp_path / "a.parquet", SCHEMA)
    assert loaded.frame["age"].tolist() == frame["age"].astype(float).tolist()


def test_uci_heart_example_maps_onto_the_healthcare_schema():
    example = get_example("uci-heart")
    assert "uci-heart" in EXAMPLES and find_example_for(example.files, "healthcare") is example
    data = load_files(example.files, SCHEMA, DataMapping.from_file(example.mapping_path))
    assert {n: len(f) for n, f in data.frames.items()} == {
        "cleveland": 303, "hungary": 294, "switzerland": 123, "va_long_beach": 200,
    }  # fmt: skip
    # num > 0; Swiss cholesterol 0 means not measured
    assert data.frames["switzerland"]["disease"].mean() == pytest.approx(115 / 123)
    assert data.frames["switzerland"]["cholesterol"].isna().all()
    assert set(data.frames["cleveland"]["chest_pain"]) == {"typical", "atypical", "non_anginal", "asymptomatic"}
    assert {"oldpeak", "ca", "thal", "slope", "restecg", "fbs"} <= set(data.schema.extra_columns)
    assert data.frames["hungary"]["ca"].isna().sum() == 291


def test_flamby_protocol_reproduces_its_sizes():
    from consortia.data.flamby import FEATURES, split_centre

    sizes = {p.stem: tuple(len(part) for part in split_centre(p)) for p in get_example("uci-heart").files}
    assert sizes == {"cleveland": (199, 104), "hungary": (172, 89), "switzerland": (30, 16), "va_long_beach": (85, 45)}
    train, test = split_centre(get_example("uci-heart").files[2])
    assert list(train.columns) == [*FEATURES, "disease"] and test["disease"].sum() == 15
    assert train[FEATURES].mean().abs().max() < 1e-9  # z-scored with its own training split


def test_server_schema_from_summaries_keeps_common_columns():
    a = _patients(seed=1).assign(extra=1.0)
    b = _patients(seed=2)
    sa = FeatureSummary.from_frame(a, SCHEMA.select(a.columns).with_extra(["extra"]))
    sb = FeatureSummary.from_frame(b, SCHEMA.select(b.columns))
    schema = schema_from_summaries(SCHEMA, [sa, sb])
    assert schema.feature_names == ["age", "sex", "systolic_bp", "chest_pain"]
    assert schema_from_summaries(SCHEMA, []) is SCHEMA
