"""TabularSchema: what a vertical's data must look like, and validation that says where it fails.

Validation runs through pandera; this module turns pandera's failure table into errors a person
can act on: the source (file or institution), the column and the first offending rows.
Row numbers are 1-based data rows (the header is not counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from consortia.errors import DataValidationError

FeatureKind = Literal["numeric", "categorical", "binary"]


@dataclass(frozen=True)
class Feature:
    """One input column: its kind, allowed range or categories, and whether it is required."""

    name: str
    kind: FeatureKind = "numeric"
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class TabularSchema:
    """Columns, target and optional institution/time columns of a vertical's data.

    ``target`` must hold 0/1 labels after mapping. ``institution_column`` names the natural
    split (one value per institution); ``time_column`` enables temporal train/test splits.
    ``non_features`` are columns a file may carry (e.g. a generator's ground truth) that must
    never become model features, since they would leak the label.
    """

    features: tuple[Feature, ...]
    target: str
    institution_column: str | None = "institution"
    time_column: str | None = None
    description: str = ""
    extra_columns: tuple[str, ...] = field(default=())
    non_features: tuple[str, ...] = ()

    # -- views -----------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[Feature]:
        return [f for f in self.features if f.kind in ("numeric", "binary")]

    @property
    def categorical(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "categorical"]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def select(self, columns: Iterable[str]) -> TabularSchema:
        """The schema restricted to ``columns`` (real data rarely has every column)."""
        keep = set(columns)
        missing_required = [f.name for f in self.features if f.required and f.name not in keep]
        if missing_required:
            raise DataValidationError(
                f"required feature(s) missing: {', '.join(missing_required)}",
                column=missing_required[0],
            )
        return replace(self, features=tuple(f for f in self.features if f.name in keep))

    def with_extra(self, numeric: Sequence[str] = (), categorical: Sequence[str] = ()) -> TabularSchema:
        """Add user-declared feature columns that the vertical does not know about."""
        known = set(self.feature_names)
        added = [Feature(n, "numeric") for n in numeric if n not in known]
        added += [Feature(n, "categorical") for n in categorical if n not in known]
        return replace(
            self,
            features=self.features + tuple(added),
            extra_columns=self.extra_columns + tuple(f.name for f in added),
        )

    # -- validation --------------------------------------------------------------------------
    def validate(
        self,
        frame: pd.DataFrame,
        source: str = "data",
        *,
        require_target: bool = True,
        min_rows: int = 1,
        require_both_classes: bool = True,
    ) -> pd.DataFrame:
        """Check ``frame``; return it with numeric columns as float and categoricals as str.

        Raises ``DataValidationError`` naming ``source``, the column and the first bad rows.
        The input frame is never modified.
        """
        if len(frame) < min_rows:
            raise DataValidationError(f"has {len(frame)} rows; at least {min_rows} are needed", source=source)
        missing = [f.name for f in self.features if f.name not in frame.columns]
        if missing:
            raise DataValidationError(
                f"missing column(s) {', '.join(missing)}; present: {', '.join(map(str, frame.columns))}",
                source=source,
                column=missing[0],
            )
        if require_target and self.target not in frame.columns:
            raise DataValidationError(f"target column '{self.target}' is missing", source=source, column=self.target)
        _raise_first_failure(self._pandera_schema(require_target), frame, source)
        out = frame.copy()
        for f in self.numeric:
            out[f.name] = pd.to_numeric(out[f.name]).astype(float)
        for f in self.categorical:
            values = out[f.name]
            out[f.name] = values.where(values.isna(), values.astype(str))
        if require_target:
            out[self.target] = pd.to_numeric(out[self.target]).astype(int)
            classes = set(np.unique(out[self.target]))
            if require_both_classes and len(classes) < 2:
                raise DataValidationError(
                    f"target '{self.target}' has a single class ({classes.pop()}); every "
                    "institution needs both positive and negative examples",
                    source=source,
                    column=self.target,
                )
        return out

    def _pandera_schema(self, require_target: bool):  # -> pandera.DataFrameSchema
        import pandera.pandas as pa

        columns: dict[str, pa.Column] = {}
        for f in self.features:
            if f.kind == "categorical":
                checks = []
                if f.categories is not None:
                    checks.append(pa.Check.isin([str(c) for c in f.categories]))
                columns[f.name] = pa.Column(str, checks=checks, nullable=True, coerce=True)
                continue
            checks = []
            if f.kind == "binary":
                checks.append(pa.Check.isin([0, 1]))
            if f.min is not None:
                checks.append(pa.Check.ge(f.min))
            if f.max is not None:
                checks.append(pa.Check.le(f.max))
            columns[f.name] = pa.Column(float, checks=checks, nullable=True, coerce=True)
        if require_target:
            columns[self.target] = pa.Column(float, checks=[pa.Check.isin([0, 1])], nullable=False, coerce=True)
        return pa.DataFrameSchema(columns, strict=False)


_CHECK_WORDS = {
    "not_nullable": "has missing values",
    "isin": "has values outside the allowed set",
    "greater_than_or_equal_to": "has values below the allowed minimum",
    "less_than_or_equal_to": "has values above the allowed maximum",
    "coerce_dtype": "has values of the wrong type",
    "dtype": "has values of the wrong type",
}


def _raise_first_failure(schema, frame: pd.DataFrame, source: str) -> None:
    """Run pandera lazily and raise one DataValidationError for the first failing column."""
    import pandera.errors as pe

    try:
        schema.validate(frame, lazy=True)
    except pe.SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[cases["index"].notna()]  # drop follow-on errors with no row attached
        if cases.empty:
            raise DataValidationError(str(exc).splitlines()[0], source=source) from None
        order = {name: i for i, name in enumerate(frame.columns)}
        cases = cases.assign(_order=cases["column"].map(order)).sort_values(["_order", "index"])
        column = cases["column"].iloc[0]
        mine = cases[cases["column"] == column]
        check = str(mine["check"].iloc[0])
        words = next((w for k, w in _CHECK_WORDS.items() if check.startswith(k)), f"fails {check}")
        positions = sorted({frame.index.get_loc(i) + 1 for i in mine["index"]})
        examples = ", ".join(repr(v) for v in mine["failure_case"].drop_duplicates().head(3))
        raise DataValidationError(
            f"{words} ({check}; e.g. {examples})", source=source, column=str(column), rows=positions
        ) from None
