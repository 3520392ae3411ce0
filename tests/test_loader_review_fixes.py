"""Review fixes of the real-data path: no label leakage, no silent inf, one vocabulary per column,
uploads checked like training, clear errors for odd mappings, FLamby files and repeated headers,
and extra columns kept by the federated preprocessor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from factories import patients as _patients

from consortia.data.loaders import load_file, load_files, schema_from_summaries
from consortia.data.mapping import DataMapping
from consortia.data.preprocessing import merge_summaries
from consortia.errors import ConfigError, DataValidationError
from consortia.verticals import get_vertical

HEALTH = get_vertical("healthcare").schema


def _per_institution_files(vertical_name: str, folder: Path) -> list[Path]:
    vertical = get_vertical(vertical_name)
    frame = vertical.generate(2, 1200, 0)
    column = vertical.schema.institution_column
    paths = []
    for name, rows in frame.groupby(column):
        path = folder / f"{name}.csv"
        rows.to_csv(path, index=False)
        paths.append(path)
    return paths


# 1 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vertical_name", "ground_truth"),
    [("finance", "typology"), ("manufacturing", "failure_mode")],
)
def test_generator_ground_truth_and_time_never_become_features(tmp_path, vertical_name, ground_truth):
    paths = _per_institution_files(vertical_name, tmp_path)
    assert ground_truth in pd.read_csv(paths[0]).columns  # the leak is really in the files
    data = load_files(paths, get_vertical(vertical_name).schema)
    names = data.schema.feature_names
    assert ground_truth not in names and "timestamp" not in names
    assert ground_truth not in data.schema.extra_columns
    for frame in data.frames.values():  # time still travels for the temporal split
        assert "timestamp" in frame.columns and frame["timestamp"].is_monotonic_increasing


# 2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("declared", [False, True])  # an inferred and a declared numeric extra
def test_infinite_numbers_are_rejected_with_file_column_rows(tmp_path, declared):
    frame = _patients().assign(score=np.linspace(0, 1, 30)).astype({"score": object})
    frame.loc[3, "score"] = "inf"
    path = tmp_path / "a.csv"
    frame.to_csv(path, index=False)
    mapping = DataMapping.parse({"extra": {"numeric": ["score"]}} if declared else {"infer_extra": True})
    with pytest.raises(DataValidationError) as info:
        load_file(path, HEALTH, mapping)
    text = str(info.value)
    assert str(path) in text and "'score'" in text and info.value.rows == [4]


# 3 ---------------------------------------------------------------------------------------------
def test_extra_numeric_here_and_text_there_shares_one_vocabulary(tmp_path):
    a = _patients(seed=1).assign(grade=[1, 2, 3] * 10)
    b = _patients(seed=2).assign(grade=["1", "2", "x"] * 10)
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    data = load_files([tmp_path / "a.csv", tmp_path / "b.csv"], HEALTH, DataMapping.parse({"infer_extra": True}))
    assert data.schema.feature("grade").kind == "categorical"
    assert set(data.frames["a"]["grade"]) == {"1", "2", "3"}
    assert set(data.frames["b"]["grade"]) == {"1", "2", "x"}


# 4 ---------------------------------------------------------------------------------------------
def test_upload_check_validates_like_training():
    from consortia.config import DataConfig
    from consortia.demo.uploads import check_uploads

    frame = _patients(n=DataConfig().min_rows - 2)
    (small,) = check_uploads("healthcare", [("tiny.csv", frame.to_csv(index=False).encode())])
    assert not small.ok and "tiny.csv" in small.message and "at least" in small.message
    with_inf = _patients().astype({"age": object})
    with_inf.loc[0, "age"] = "inf"
    (bad,) = check_uploads("healthcare", [("inf.csv", with_inf.to_csv(index=False).encode())])
    assert not bad.ok and "'age'" in bad.message and "consortia-upload" not in bad.message


@pytest.mark.parametrize("vertical_name", ["healthcare", "finance", "manufacturing"])
def test_example_csv_has_both_classes_and_no_ground_truth(vertical_name):
    import io

    from consortia.demo.widgets import _example_csv

    schema = get_vertical(vertical_name).schema
    frame = pd.read_csv(io.StringIO(_example_csv(vertical_name)))
    assert set(frame[schema.target]) == {0, 1}
    assert not set(schema.non_features) & set(frame.columns)


# 5 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["hello\n", "- a\n- b\n", "42\n"])
def test_mapping_that_is_not_a_document_is_a_config_error(tmp_path, text):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"mapping\.yaml"):
        DataMapping.from_file(path)
    with pytest.raises(ConfigError):
        DataMapping.parse(text.strip(), source="inline")


# 6 ---------------------------------------------------------------------------------------------
def test_flamby_protocol_reports_text_and_missing_files(tmp_path):
    from consortia.data.flamby import split_centre
    from consortia.examples import get_example

    frame = pd.read_csv(get_example("uci-heart").files[0], dtype=str)
    frame.loc[6, "chol"] = "high"
    path = tmp_path / "centre.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError) as info:
        split_centre(path)
    assert str(path) in str(info.value) and info.value.column == "chol" and info.value.rows == [7]
    with pytest.raises(DataValidationError, match="does not exist"):
        split_centre(tmp_path / "absent.csv")


# 7 ---------------------------------------------------------------------------------------------
def test_repeated_header_is_an_error_naming_the_column(tmp_path):
    frame = _patients()
    path = tmp_path / "a.csv"
    text = frame.to_csv(index=False).splitlines()
    text[0] = text[0].replace("sex", "age")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataValidationError) as info:
        load_file(path, HEALTH)
    assert str(path) in str(info.value) and info.value.column == "age"


# 8 ---------------------------------------------------------------------------------------------
def test_federated_preprocessor_keeps_extras_every_institution_has(tmp_path):
    from consortia.config import ExperimentConfig
    from consortia.data.consortium import load_federation

    vertical = get_vertical("healthcare")
    frame = vertical.generate(3, 600, 5)
    rng = np.random.default_rng(0)
    frame["extra_signal"] = frame[vertical.schema.target] + rng.normal(0, 0.3, len(frame))
    files = []
    for name, rows in frame.groupby(vertical.schema.institution_column):
        files.append(str(tmp_path / f"{name}.csv"))
        rows.to_csv(files[-1], index=False)
    mapping = DataMapping.parse({"extra": {"numeric": ["extra_signal"]}}).to_json()
    config = ExperimentConfig.build(vertical="healthcare", institutions=3, data={"files": files, "mapping": mapping})
    federation = load_federation(config, get_vertical(config.vertical))
    assert "extra_signal" in federation.schema.feature_names  # what local-only baselines use
    summaries = [inst.summary(federation.schema) for inst in federation.institutions.values()]
    preprocessor = merge_summaries(summaries, schema_from_summaries(vertical.schema, summaries))
    assert "extra_signal" in preprocessor.feature_names
