"""Bad input gets a clear error naming the source, the column and the rows."""

from __future__ import annotations

import pandas as pd
import pytest

from consortia.data.schema import Feature, TabularSchema
from consortia.errors import DataValidationError

SCHEMA = TabularSchema(
    features=(
        Feature("age", "numeric", 0, 120),
        Feature("smoker", "binary"),
        Feature("pain", "categorical", categories=("typical", "atypical")),
    ),
    target="disease",
)


def _frame(**changes) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "age": [50, 61, 45, 70],
            "smoker": [0, 1, 0, 1],
            "pain": ["typical", "atypical", "typical", "atypical"],
            "disease": [0, 1, 0, 1],
        }
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


def _error(frame: pd.DataFrame) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        SCHEMA.validate(frame, source="site_a.csv")
    return info.value


def test_valid_frame_passes_and_is_typed():
    out = SCHEMA.validate(_frame(), source="site_a.csv")
    assert out["age"].dtype == float and out["disease"].dtype == int


def test_missing_column_names_file_and_column():
    error = _error(_frame().drop(columns="age"))
    assert error.source == "site_a.csv" and error.column == "age"
    assert "site_a.csv" in str(error) and "age" in str(error)


def test_wrong_type_names_the_row():
    error = _error(_frame(age=[50, "fifty", 45, 70]))
    assert error.column == "age" and error.rows == [2]
    assert "wrong type" in str(error) and "fifty" in str(error)


def test_out_of_range_names_the_rows():
    error = _error(_frame(age=[50, 61, 450, 700]))
    assert error.column == "age" and error.rows == [3, 4]
    assert "maximum" in str(error)


def test_unknown_category_and_non_binary_values():
    assert _error(_frame(pain=["typical", "x", "typical", "atypical"])).column == "pain"
    assert _error(_frame(smoker=[0, 2, 0, 1])).column == "smoker"


def test_missing_or_bad_target():
    assert _error(_frame().drop(columns="disease")).column == "disease"
    error = _error(_frame(disease=[0, 1, None, 1]))
    assert error.column == "disease" and error.rows == [3] and "missing" in str(error)


def test_single_class_is_refused():
    error = _error(_frame(disease=[1, 1, 1, 1]))
    assert "single class" in str(error)


def test_empty_institution_is_refused():
    with pytest.raises(DataValidationError, match="0 rows"):
        SCHEMA.validate(_frame().iloc[:0], source="empty.csv")


def test_missing_feature_values_are_allowed_and_input_untouched():
    frame = _frame(age=[50, None, 45, 70])
    before = frame.copy()
    out = SCHEMA.validate(frame, source="site_a.csv")
    assert out["age"].isna().sum() == 1
    pd.testing.assert_frame_equal(frame, before)
