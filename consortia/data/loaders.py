"""One CSV/Parquet file per institution -> validated frames in the vertical's schema.

Steps for each file, all before any training: read every cell as text (so nothing is guessed
silently), rename columns by the mapping, turn missing-value markers into NaN, translate
category labels, binarise the target, infer or take the declared kind of extra columns, then
validate with the schema (pandera). Across files, a column present at some institutions only is
dropped with a note (or is an error if the schema requires it).

Errors name the file, the column (the file's own name, and the schema's when they differ) and
the first offending rows, counted as data rows from 1 (the header is not a row). Input files
are only ever read.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from consortia.data.mapping import DataMapping, check_mapping_against, label
from consortia.data.preprocessing import FeatureSummary
from consortia.data.schema import Feature, TabularSchema
from consortia.errors import ConfigError, DataValidationError

SUFFIXES = (".csv", ".parquet", ".pq", ".tsv")


@dataclass
class LoadedFile:
    """One institution's rows in schema form, and the schema its columns support."""

    name: str
    path: str
    frame: pd.DataFrame
    schema: TabularSchema
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadedData:
    """All institutions of a consortium, restricted to the columns every one of them has."""

    schema: TabularSchema
    frames: dict[str, pd.DataFrame]
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def institution_name(path: str | Path) -> str:
    """An institution is named after its file: ``data/cleveland.csv`` -> ``cleveland``."""
    return Path(path).stem


def discover_files(data_dir: str | Path) -> list[Path]:
    """The data files of a folder, sorted by name (one per institution)."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ConfigError(f"--data-dir {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise ConfigError(f"{folder} holds no .csv or .parquet files")
    return files


def read_table(path: str | Path) -> pd.DataFrame:
    """Every cell as text (missing cells as ''), so markers and type errors can be reported."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError("file does not exist", source=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            frame = frame.astype(object).where(frame.notna(), "")
            return frame.map(lambda v: "" if v == "" else label(v) if isinstance(v, float) else str(v))
        sep = "\t" if suffix == ".tsv" else ","
        if (repeated := _repeated_header(path, sep)) is not None:
            raise DataValidationError("column appears twice in the header", source=str(path), column=repeated)
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except DataValidationError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"cannot be read as {suffix[1:]}: {exc}", source=str(path)) from None


def _repeated_header(path: Path, sep: str) -> str | None:
    """pandas silently renames a repeated header (``age``, ``age.1``): find it on the raw row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=sep, skipinitialspace=True), [])
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            return name
        seen.add(name)
    return None


# ---------------------------------------------------------------------------------------------
# one file
# ---------------------------------------------------------------------------------------------
def load_file(
    path: str | Path,
    base: TabularSchema,
    mapping: DataMapping | None = None,
    *,
    target: str | None = None,
    min_rows: int = 10,
    require_target: bool = True,
    name: str | None = None,
) -> LoadedFile:
    """Read, map and validate one institution's file; the file itself is not modified."""
    mapping = mapping or DataMapping()
    source = str(path)
    raw = read_table(path)
    check_mapping_against(mapping, set(base.feature_names), source)
    raw.columns = [str(c).strip() for c in raw.columns]
    duplicated = raw.columns[raw.columns.duplicated()].tolist()
    if duplicated:
        raise DataValidationError("column appears twice", source=source, column=duplicated[0])

    target_column = target or mapping.target.column or base.target
    notes: list[str] = []
    renamed: dict[str, str] = {}  # schema name -> file name, for error messages
    out = pd.DataFrame(index=raw.index)
    extras_numeric: list[str] = []
    extras_categorical: list[str] = []
    known = set(base.feature_names)
    skip = set(mapping.ignore) | {base.institution_column or ""}
    never_features = set(base.non_features) | {base.time_column or ""}

    if require_target and target_column not in raw.columns:
        raise DataValidationError(
            f"target column '{target_column}' is missing; columns: {', '.join(raw.columns)}",
            source=source,
            column=target_column,
        )
    for column in raw.columns:
        if column in skip or column == target_column:
            continue
        schema_name = mapping.schema_name(column)
        if schema_name in renamed:
            raise DataValidationError(
                f"columns '{renamed[schema_name]}' and '{column}' both map to '{schema_name}'",
                source=source,
                column=column,
            )
        renamed[schema_name] = column
        if schema_name in never_features - {""}:
            if schema_name == base.time_column:  # kept for the temporal split, never a feature
                out[schema_name] = _time(raw[column], mapping, source, column, schema_name)
            else:
                notes.append(f"{source}: column '{column}' is not a feature (ground truth) and was left out")
            continue
        values = _blank_markers(raw[column], mapping.markers_for(column))
        if schema_name in known:
            feature = base.feature(schema_name)
            if feature.kind == "categorical":
                values = _translate(values, mapping.categories.get(schema_name, {}))
            else:
                values = _numeric(values, source, column, schema_name)
        elif schema_name in mapping.extra.categorical:
            values = _translate(values, mapping.categories.get(schema_name, {}))
            extras_categorical.append(schema_name)
        elif schema_name in mapping.extra.numeric:
            values = _numeric(values, source, column, schema_name)
            extras_numeric.append(schema_name)
        elif mapping.infer_extra:
            numbers = pd.to_numeric(values, errors="coerce")
            if numbers.notna().sum() == values.notna().sum():
                values = _numeric(values, source, column, schema_name)  # rejects inf
                extras_numeric.append(schema_name)
                kind = "numeric"
            else:
                values = _translate(values, mapping.categories.get(schema_name, {}))
                extras_categorical.append(schema_name)
                kind = "categorical"
            notes.append(
                f"{source}: extra column '{column}' taken as {kind} "
                f"({int(values.notna().sum())} values, {int(values.isna().sum())} missing"
                + (f", {values.nunique()} categories" if kind == "categorical" else "")
                + "); declare it under 'extra' in the mapping to fix its kind"
            )
        else:
            notes.append(f"{source}: column '{column}' is not in the schema and was left out")
            continue
        out[schema_name] = values

    declared = set(mapping.extra.numeric) | set(mapping.extra.categorical)
    missing_declared = sorted(declared - set(out.columns))
    if missing_declared:
        notes.append(f"{source}: declared extra column(s) absent here: {', '.join(missing_declared)}")

    if require_target:
        out[base.target] = _binary_target(raw[target_column], mapping, source, target_column)

    try:
        schema = base.select(out.columns).with_extra(extras_numeric, extras_categorical)
        valid = schema.validate(
            out, source=source, require_target=require_target, min_rows=min_rows,
            require_both_classes=require_target,
        )  # fmt: skip
    except DataValidationError as exc:
        raise _in_file_terms(exc, source, renamed) from None
    return LoadedFile(name or institution_name(path), source, valid.reset_index(drop=True), schema, notes)


def _blank_markers(column: pd.Series, markers: tuple[set[str], set[float]]) -> pd.Series:
    texts, numbers = markers
    stripped = column.astype(str).str.strip()
    is_missing = stripped.isin(texts)
    if numbers:
        is_missing |= pd.to_numeric(stripped, errors="coerce").isin(list(numbers))
    return stripped.where(~is_missing, np.nan)


def _numeric(values: pd.Series, source: str, column: str, schema_name: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numbers.isna()
    if bad.any():
        rows = list(np.flatnonzero(bad.to_numpy()) + 1)
        examples = ", ".join(repr(v) for v in values[bad].drop_duplicates().head(3))
        raise DataValidationError(
            f"expects numbers but has text (e.g. {examples}); declare such markers as missing "
            "in the mapping or fix the file",
            source=source,
            column=_both_names(column, schema_name),
            rows=rows,
        )
    infinite = numbers.notna() & ~np.isfinite(numbers.to_numpy(dtype=float))
    if infinite.any():
        examples = ", ".join(repr(v) for v in values[infinite].drop_duplicates().head(3))
        raise DataValidationError(
            f"has non-finite numbers (e.g. {examples}); they would corrupt the federated statistics",
            source=source,
            column=_both_names(column, schema_name),
            rows=list(np.flatnonzero(infinite.to_numpy()) + 1),
        )
    return numbers.astype(float)


def _time(raw: pd.Series, mapping: DataMapping, source: str, column: str, schema_name: str) -> pd.Series:
    """The time column as numbers (e.g. days) or, failing that, ISO-8601 datetimes."""
    values = _blank_markers(raw, mapping.markers_for(column))
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() == values.notna().sum():
        return _numeric(values, source, column, schema_name)
    stamps = pd.to_datetime(values, errors="coerce", format="ISO8601")
    bad = values.notna() & stamps.isna()
    if bad.any():
        raise DataValidationError(
            f"time column must hold numbers or ISO-8601 dates (e.g. {values[bad].iloc[0]!r})",
            source=source, column=_both_names(column, schema_name), rows=list(np.flatnonzero(bad.to_numpy()) + 1),
        )  # fmt: skip
    return stamps


def _translate(values: pd.Series, table: dict[str, str]) -> pd.Series:
    labels = values.map(lambda v: v if pd.isna(v) else label(v))
    return labels.map(lambda v: v if pd.isna(v) else table.get(v, v))


def _binary_target(raw: pd.Series, mapping: DataMapping, source: str, column: str) -> pd.Series:
    values = _blank_markers(raw, mapping.markers_for(column))
    missing = values.isna()
    if missing.any():
        raise DataValidationError(
            "target has missing values; every training row needs a label",
            source=source, column=column, rows=list(np.flatnonzero(missing.to_numpy()) + 1),
        )  # fmt: skip
    rule = mapping.target.positive
    if rule is not None and not rule.numeric:
        return rule.apply(values)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna()
    if bad.any():
        raise DataValidationError(
            f"target must be numeric (e.g. {values[bad].iloc[0]!r}); or map labels with "
            "target.positive.values in the mapping",
            source=source, column=column, rows=list(np.flatnonzero(bad.to_numpy()) + 1),
        )  # fmt: skip
    if rule is not None:
        return rule.apply(numbers)
    outside = ~numbers.isin([0, 1])
    if outside.any():
        shown = ", ".join(label(v) for v in pd.unique(numbers[outside])[:4])
        raise DataValidationError(
            f"target must be 0/1 but has {shown}; add a rule to the mapping, e.g. "
            "target: {column: " + column + ", positive: {gt: 0}}",
            source=source, column=column, rows=list(np.flatnonzero(outside.to_numpy()) + 1),
        )  # fmt: skip
    return numbers.astype(int)


def _both_names(file_column: str, schema_name: str) -> str:
    # rendered by DataValidationError as: column 'trestbps' -> 'systolic_bp'
    return file_column if file_column == schema_name else f"{file_column}' -> '{schema_name}"


def _in_file_terms(exc: DataValidationError, source: str, renamed: dict[str, str]) -> DataValidationError:
    """Re-word a schema error with the file's own column name."""
    column = exc.column
    if column is not None and column in renamed:
        column = _both_names(renamed[column], column)
    text = str(exc)
    located = bool(exc.source or exc.column or exc.rows)
    message = text.split(": ", 1)[1] if located and ": " in text else text
    return DataValidationError(message, source=exc.source or source, column=column, rows=exc.rows)


# ---------------------------------------------------------------------------------------------
# a consortium
# ---------------------------------------------------------------------------------------------
def load_files(
    paths: Sequence[str | Path],
    base: TabularSchema,
    mapping: DataMapping | None = None,
    *,
    target: str | None = None,
    min_rows: int = 10,
) -> LoadedData:
    """Load every institution's file and keep the columns all of them can provide."""
    if len(paths) < 2:
        raise ConfigError(f"a federation needs at least 2 institution files (got {len(paths)})")
    names = [institution_name(p) for p in paths]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"two files would name the same institution '{duplicates[0]}'; rename one")
    files = [load_file(p, base, mapping, target=target, min_rows=min_rows) for p in paths]
    notes = [n for f in files for n in f.notes]
    schema, dropped = common_schema(base, [f.schema for f in files], [f.path for f in files])
    notes += dropped
    columns = schema.feature_names + [schema.target]
    time = base.time_column
    if time and all(time in f.frame.columns for f in files):
        columns.append(time)  # not a feature: orders rows for the temporal split
    elif time and any(time in f.frame.columns for f in files):
        notes.append(f"time column '{time}' is missing at some institutions; dropped everywhere")
    tables = (mapping or DataMapping()).categories
    frames = {}
    for f in files:
        frame = f.frame[columns].copy()
        for feature in schema.categorical:  # numeric at this site but categorical overall: one vocabulary
            if feature.name in f.schema.feature_names and f.schema.feature(feature.name).kind != "categorical":
                frame[feature.name] = _translate(frame[feature.name].astype(object), tables.get(feature.name, {}))
        frames[f.name] = frame
    return LoadedData(
        schema=schema,
        frames=frames,
        sources={f.name: f.path for f in files},
        notes=notes,
    )


def common_schema(
    base: TabularSchema, schemas: Sequence[TabularSchema], sources: Sequence[str]
) -> tuple[TabularSchema, list[str]]:
    """Features every institution has; the rest dropped with a note (required ones: an error)."""
    everywhere = set(schemas[0].feature_names).intersection(*(s.feature_names for s in schemas[1:]))
    notes = []
    seen: dict[str, Feature] = {}
    for schema in schemas:
        for feature in schema.features:
            seen.setdefault(feature.name, feature)
    for column, feature in seen.items():
        if column in everywhere:
            continue
        lacking = [src for s, src in zip(schemas, sources, strict=True) if column not in s.feature_names]
        if feature.required:
            raise DataValidationError(
                "required column is missing here (present at other institutions)",
                source=lacking[0],
                column=column,
            )
        notes.append(f"column '{column}' is missing at {', '.join(lacking)}; dropped everywhere")
    kinds: dict[str, set[str]] = {}
    for schema in schemas:
        for feature in schema.features:
            kinds.setdefault(feature.name, set()).add(feature.kind)
    numeric = [n for n in schemas[0].extra_columns if n in everywhere and kinds[n] == {"numeric"}]
    categorical = [n for n in schemas[0].extra_columns if n in everywhere and kinds[n] != {"numeric"}]
    for n in categorical:
        if len(kinds[n]) > 1:
            notes.append(f"extra column '{n}' is numeric at some institutions only; taken as categorical")
    chosen = base.select([n for n in base.feature_names if n in everywhere])
    return chosen.with_extra(numeric, categorical), notes


def schema_from_summaries(base: TabularSchema, summaries: Sequence[FeatureSummary]) -> TabularSchema:
    """Server side of a deployment: the features every node's summary covers.

    A node reads only its own file, so the server learns which columns exist from the
    summaries; the vertical's own features keep their declared kinds and category order.
    """
    if not summaries:
        return base
    names = [set(s.numeric) | set(s.categorical) for s in summaries]
    everywhere = names[0].intersection(*names[1:])
    numeric_extra = sorted(
        n for n in everywhere if n not in base.feature_names and all(n in s.numeric for s in summaries)
    )
    categorical_extra = sorted(n for n in everywhere if n not in base.feature_names and n not in numeric_extra)
    present = [n for n in base.feature_names if n in everywhere]
    return base.select(present).with_extra(numeric_extra, categorical_extra)
