"""A mapping file: how one consortium's column names and labels meet a vertical's schema.

Institutions rarely use the vertical's names. A mapping (YAML or JSON) says, once for the whole
consortium, which file column is which schema column, how category labels translate, which
values mean "not measured", which extra columns are features, and how the target becomes 0/1::

    target: {column: num, positive: {gt: 0}}     # num > 0 means disease
    columns: {trestbps: systolic_bp, chol: cholesterol}
    categories:
      chest_pain: {1: typical, 2: atypical, 3: non_anginal, 4: asymptomatic}
    missing: {"*": ["?", -9], cholesterol: [0]}  # "*" applies to every column
    extra: {numeric: [oldpeak, ca], categorical: [restecg, slope, thal]}
    ignore: [patient_id]

Validation is pydantic's: a malformed mapping fails with one line per problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from consortia.errors import ConfigError, DataValidationError

#: cells that mean "missing" in every column, whatever the mapping says
DEFAULT_MISSING = ("", "?", "NA", "N/A", "na", "n/a", "NaN", "nan", "null", "NULL", "None")


def label(value: Any) -> str:
    """A category label as text, with numeric labels normalised (``1``, ``1.0`` -> ``"1"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


class PositiveRule(BaseModel):
    """When a raw target value counts as positive (1): a comparison or a list of values."""

    model_config = ConfigDict(extra="forbid")

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    values: list[str | int | float] | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> PositiveRule:
        given = [k for k in ("gt", "ge", "lt", "le", "values") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("target.positive needs exactly one of gt, ge, lt, le, values")
        return self

    @property
    def numeric(self) -> bool:
        return self.values is None

    def apply(self, raw: pd.Series) -> pd.Series:
        """0/1 labels; ``raw`` is numeric for comparisons, text for ``values``."""
        if self.values is not None:
            wanted = {label(v) for v in self.values}
            return raw.map(lambda v: int(label(v) in wanted))
        op, bound = next((k, getattr(self, k)) for k in ("gt", "ge", "lt", "le") if getattr(self, k) is not None)
        result = {"gt": raw > bound, "ge": raw >= bound, "lt": raw < bound, "le": raw <= bound}[op]
        return result.astype(int)


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(None, description="target column in the files")
    positive: PositiveRule | None = Field(None, description="binarisation; omit when already 0/1")


class ExtraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> ExtraSpec:
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"extra column(s) declared both numeric and categorical: {', '.join(both)}")
        return self


class DataMapping(BaseModel):
    """The whole mapping document; every part is optional."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    target: TargetSpec = Field(default_factory=TargetSpec)
    columns: dict[str, str] = Field(default_factory=dict, description="file column -> schema column")
    categories: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="schema column -> {file label: schema label}"
    )
    missing: dict[str, list[str | int | float]] = Field(
        default_factory=dict, description="column (file or schema name, or '*') -> missing markers"
    )
    extra: ExtraSpec = Field(default_factory=ExtraSpec)
    ignore: list[str] = Field(default_factory=list, description="file columns to leave out")
    infer_extra: bool = Field(
        default=False, description="treat undeclared columns as features (kind inferred); default: they are an error"
    )

    @field_validator("categories", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {col: {label(k): str(v) for k, v in (table or {}).items()} for col, table in value.items()}
        return value

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> DataMapping:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"mapping file {path} does not exist")
        try:
            text = path.read_text()
            raw = json.loads(text) if path.suffix == ".json" else _yaml(text)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{path}: cannot read the mapping ({exc})") from None
        if raw is not None and not isinstance(raw, dict):  # e.g. a YAML file holding one word
            raise ConfigError(_not_a_document(str(path), raw))
        return cls.parse(raw or {}, source=str(path))

    @classmethod
    def parse(cls, raw: Any, source: str = "mapping") -> DataMapping:
        from consortia.config import format_validation_error

        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise ConfigError(f"{source}: the mapping is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(_not_a_document(source, raw))
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {format_validation_error(exc)}") from None

    # -- lookups -----------------------------------------------------------------------------
    def schema_name(self, file_column: str) -> str:
        return self.columns.get(file_column, file_column)

    def markers_for(self, file_column: str) -> tuple[set[str], set[float]]:
        """Missing markers of one column (defaults, '*', and its file or schema name)."""
        markers: list[Any] = list(DEFAULT_MISSING)
        for key in ("*", file_column, self.schema_name(file_column)):
            markers += self.missing.get(key, [])
        texts = {str(m).strip() for m in markers}
        numbers = set()
        for m in markers:
            try:
                number = float(m)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                numbers.add(number)
        return texts, numbers

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)


def _not_a_document(source: str, raw: Any) -> str:
    return (
        f"{source}: a mapping must be a document of keys (target, columns, ...), "
        f"not a {type(raw).__name__} ({str(raw)[:40]!r})"
    )


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # where and what, without YAML's multi-line excerpt
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from None


def check_mapping_against(mapping: DataMapping, schema_features: set[str], source: str) -> None:
    """A mapping that targets columns the schema does not have is a typo, not an extra."""
    unknown = sorted(v for v in mapping.columns.values() if v not in schema_features)
    if unknown:
        raise DataValidationError(
            f"maps onto {', '.join(unknown)}, which the schema does not have; schema columns: "
            f"{', '.join(sorted(schema_features))}",
            source=source,
            column=unknown[0],
        )
