"""One CSV/Parquet file per institution -> validated frames in the vertical's schema.

Steps for each file, all before any training: read every cell as text (so nothing is guessed
silently; a non-UTF-8 encoding or a ``;`` separator is detected with a note), rename columns by
the mapping, turn missing-value markers into NaN, translate category labels, binarise the
target, take the declared kind of extra columns (a column neither the schema nor the mapping
knows is an error, unless the mapping sets ``infer_extra``), validate with the schema (pandera),
and note any feature that alone predicts the label (almost) perfectly: a likely leak. Across
files, a column present at some institutions only is dropped with a note (or is an error if the
schema requires it).

Errors name the file, the column (the file's own name, and the schema's when they differ) and
the first offending rows, counted as data rows from 1 (the header is not a row). Input files
are only ever read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from consortia.data.mapping import DataMapping, check_mapping_against, label
from consortia.data.preprocessing import FeatureSummary
from consortia.data.schema import TabularSchema
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


def read_table(path: str | Path, notes: list[str] | None = None) -> pd.DataFrame:
    """Every cell as text (missing cells as ''), so markers and type errors can be reported.

    A CSV that is not UTF-8 is read as cp1252/latin-1, and one separated by ``;``, tabs or ``|``
    is read with that separator; either way a line is added to ``notes``.
    """
    path = Path(path)
    if path.is_dir():
        raise DataValidationError(
            "is a folder, not a file; pass the files inside it with --data, or the folder with --data-dir",
            source=str(path),
        )
    if not path.is_file():
        raise DataValidationError("file does not exist", source=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return _read_parquet(path)
        return _read_text_table(path, "\t" if suffix == ".tsv" else ",", notes if notes is not None else [])
    except DataValidationError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataValidationError(f"cannot be read as {suffix[1:] or 'csv'}: {reason}", source=str(path)) from None


def _read_parquet(path: Path) -> pd.DataFrame:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"PAR1":
        raise DataValidationError(
            "is not a Parquet file (it does not start with PAR1); if it is a CSV, give it a .csv name",
            source=str(path),
        )
    frame = pd.read_parquet(path)
    frame = frame.astype(object).where(frame.notna(), "")
    return frame.map(lambda v: "" if v == "" else label(v) if isinstance(v, float) else str(v))


def _read_text_table(path: Path, sep: str, notes: list[str]) -> pd.DataFrame:
    text, encoding = _decode(path)
    if encoding != "utf-8":
        notes.append(f"{path}: not UTF-8, read as {encoding}; save it as UTF-8 if accented text looks wrong")
    if not text.strip():
        raise DataValidationError("is empty: no header and no rows", source=str(path))
    found = _delimiter(text, sep)
    if found != sep:
        notes.append(f"{path}: columns are separated by {_SEPARATORS[found]}, not {_SEPARATORS[sep]}; read that way")
    if (repeated := _repeated_header(text, found)) is not None:
        raise DataValidationError("column appears twice in the header", source=str(path), column=repeated)
    return pd.read_csv(io.StringIO(text), sep=found, dtype=str, keep_default_na=False, skipinitialspace=True)


def _decode(path: Path) -> tuple[str, str]:
    """The file's text and its encoding: UTF-8 (with or without BOM), UTF-16 with a BOM, else cp1252/latin-1."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "UTF-16"
    for encoding, shown in (("utf-8-sig", "utf-8"), ("cp1252", "cp1252"), ("latin-1", "latin-1")):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            raise DataValidationError("holds NUL bytes: not a text file; save it as a UTF-8 CSV", source=str(path))
        return text, shown
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


_SEPARATORS = {",": "commas (,)", ";": "semicolons (;)", "\t": "tabs", "|": "bars (|)"}


def _delimiter(text: str, expected: str) -> str:
    """``expected`` unless the header lacks it and another separator splits header and first row alike."""
    lines = [line for line in text.splitlines()[:2] if line.strip()]
    if not lines or expected in lines[0]:
        return expected
    for candidate in _SEPARATORS:
        count = lines[0].count(candidate)
        if candidate != expected and count and all(line.count(candidate) == count for line in lines[1:]):
            return candidate
    return expected


def _repeated_header(text: str, sep: str) -> str | None:
    """pandas silently renames a repeated header (``age``, ``age.1``): find it on the raw row."""
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True), [])
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            return name
        seen.add(name)
    return None


def check_output_file(
    path: str | Path, option: str, inputs: Sequence[str | Path] = (), example: str = "out.csv"
) -> Path:
    """An output file's path, refused before any work if it cannot be written or is one of ``inputs``.

    Checked up front so that a long run never ends in a traceback about its output, and so
    that no input (a data file, a run's own files) is ever overwritten.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name, e.g. {path / example}")
    resolved = path.resolve()
    if not resolved.parent.is_dir():
        problem = "is not a folder" if resolved.parent.exists() else "does not exist; create it first"
        raise ConfigError(f"{option} {path}: {resolved.parent} {problem}")
    for given in inputs:
        if Path(given).resolve() == resolved:
            raise ConfigError(f"{option} {path} is an input of this command; write to another file")
    return path


# ---------------------------------------------------------------------------------------------
# one file
# ---------------------------------------------------------------------------------------------
@dataclass
class _Mapped:
    """A file's columns in schema terms, on their way to validation."""

    frame: pd.DataFrame
    renamed: dict[str, str] = field(default_factory=dict)  # schema name -> file name, for messages
    numeric: list[str] = field(default_factory=list)  # extra (non-schema) features by kind
    categorical: list[str] = field(default_factory=list)
    undeclared: list[str] = field(default_factory=list)  # file columns neither schema nor mapping knows
    notes: list[str] = field(default_factory=list)


def load_file(
    path: str | Path,
    base: TabularSchema,
    mapping: DataMapping | None = None,
    *,
    target: str | None = None,
    min_rows: int = 10,
    require_target: bool = True,
    name: str | None = None,
    allow_undeclared: bool = False,
) -> LoadedFile:
    """Read, map and validate one institution's file; the file itself is not modified.

    Columns that neither the schema nor the mapping knows are refused (they would otherwise
    become features unnoticed: an id, a copy of the label); ``allow_undeclared`` leaves them
    out instead, for scoring files whose other columns the model never uses.
    """
    mapping = mapping or DataMapping()
    source = str(path)
    notes: list[str] = []
    raw = _read_columns(path, base, mapping, notes)
    target_column = target or mapping.target.column or base.target
    if require_target and target_column not in raw.columns:
        raise DataValidationError(
            f"target column '{target_column}' is missing; columns: {', '.join(raw.columns)}",
            source=source,
            column=target_column,
        )
    mapped = _map_columns(raw, base, mapping, target_column, source)
    notes += mapped.notes
    if require_target:
        mapped.frame[base.target] = _binary_target(raw[target_column], mapping, source, target_column)
    if mapped.undeclared and not allow_undeclared:
        raise _undeclared_error(mapped.undeclared, source)
    declared = set(mapping.extra.numeric) | set(mapping.extra.categorical)
    if missing_declared := sorted(declared - set(mapped.frame.columns)):
        notes.append(f"{source}: declared extra column(s) absent here: {', '.join(missing_declared)}")
    schema, valid = _validate(mapped, base, source, require_target=require_target, min_rows=min_rows)
    if require_target:
        notes += leak_notes(valid, schema, source, mapped.renamed)
    return LoadedFile(name or institution_name(path), source, valid, schema, notes)


def _read_columns(path: str | Path, base: TabularSchema, mapping: DataMapping, notes: list[str]) -> pd.DataFrame:
    """The file as text cells with stripped, unique column names; the mapping checked against the schema."""
    source = str(path)
    raw = read_table(path, notes)
    check_mapping_against(mapping, set(base.feature_names), source)
    raw.columns = [str(c).strip() for c in raw.columns]
    duplicated = raw.columns[raw.columns.duplicated()].tolist()
    if duplicated:
        raise DataValidationError("column appears twice", source=source, column=duplicated[0])
    return raw


def _map_columns(
    raw: pd.DataFrame, base: TabularSchema, mapping: DataMapping, target_column: str, source: str
) -> _Mapped:
    """Rename by the mapping, blank missing markers, parse each column as its kind."""
    mapped = _Mapped(pd.DataFrame(index=raw.index))
    skip = set(mapping.ignore) | {base.institution_column or "", target_column}
    for column in raw.columns:
        if column in skip:
            continue
        schema_name = mapping.schema_name(column)
        if schema_name in mapped.renamed:
            raise DataValidationError(
                f"columns '{mapped.renamed[schema_name]}' and '{column}' both map to '{schema_name}'",
                source=source,
                column=column,
            )
        mapped.renamed[schema_name] = column
        if schema_name == base.time_column:  # kept for the temporal split, never a feature
            mapped.frame[schema_name] = _time(raw[column], mapping, source, column, schema_name)
            continue
        if schema_name in base.non_features:
            mapped.notes.append(f"{source}: column '{column}' is not a feature (ground truth) and was left out")
            continue
        values = _blank_markers(raw[column], mapping.markers_for(column))
        kind = _declared_kind(schema_name, base, mapping)
        inferred = kind is None and mapping.infer_extra
        if inferred:
            kind = _inferred_kind(values)
        if kind is None:
            mapped.undeclared.append(column)
            continue
        if kind == "categorical":
            values = _translate(values, mapping.categories.get(schema_name, {}))
        else:
            values = _numeric(values, source, column, schema_name)  # rejects text and inf
        if inferred:
            mapped.notes.append(_inferred_note(source, column, kind, values))
        if schema_name not in base.feature_names:
            (mapped.categorical if kind == "categorical" else mapped.numeric).append(schema_name)
        mapped.frame[schema_name] = values
    return mapped


def _declared_kind(schema_name: str, base: TabularSchema, mapping: DataMapping) -> str | None:
    """'numeric' or 'categorical' as the schema or the mapping's ``extra`` says; None if neither knows."""
    if schema_name in base.feature_names:
        return "categorical" if base.feature(schema_name).kind == "categorical" else "numeric"
    if schema_name in mapping.extra.categorical:
        return "categorical"
    if schema_name in mapping.extra.numeric:
        return "numeric"
    return None


def _inferred_kind(values: pd.Series) -> str:
    numbers = pd.to_numeric(values, errors="coerce")
    return "numeric" if numbers.notna().sum() == values.notna().sum() else "categorical"


def _inferred_note(source: str, column: str, kind: str, values: pd.Series) -> str:
    categories = f", {values.nunique()} categories" if kind == "categorical" else ""
    return (
        f"{source}: extra column '{column}' taken as {kind} ({int(values.notna().sum())} values, "
        f"{int(values.isna().sum())} missing{categories}); declare it under 'extra' in the mapping to fix its kind"
    )


def _undeclared_error(columns: Sequence[str], source: str) -> DataValidationError:
    names = ", ".join(columns)
    quoted = ", ".join(f"'{c}'" for c in columns)
    which = f"column {quoted} is" if len(columns) == 1 else f"columns {quoted} are"
    return DataValidationError(
        f"{which} in neither the schema nor the mapping, so not used unasked; in the mapping (--map) declare "
        f"features under extra (numeric: [...] or categorical: [...]) and leave the rest out with ignore: [{names}]",
        source=source,
    )


def _validate(
    mapped: _Mapped, base: TabularSchema, source: str, *, require_target: bool, min_rows: int
) -> tuple[TabularSchema, pd.DataFrame]:
    """The schema this file supports, and its rows checked by it (errors in the file's own column names)."""
    try:
        schema = base.select(mapped.frame.columns).with_extra(mapped.numeric, mapped.categorical)
        valid = schema.validate(
            mapped.frame, source=source, require_target=require_target, min_rows=min_rows,
            require_both_classes=require_target,
        )  # fmt: skip
    except DataValidationError as exc:
        raise _in_file_terms(exc, source, mapped.renamed) from None
    return schema, valid.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# label leaks
# ---------------------------------------------------------------------------------------------
#: single-feature AUROC at or above which a column is reported as a likely copy of the label
LEAK_AUROC = 0.99


def leak_notes(frame: pd.DataFrame, schema: TabularSchema, source: str, renamed: dict[str, str]) -> list[str]:
    """Notes on features that predict the label (almost) perfectly at this institution.

    Such a column is usually derived from the outcome (a copy of the label, a diagnosis code, a
    field filled in afterwards) and makes every model look excellent while learning nothing.
    """
    y = frame[schema.target].to_numpy(dtype=int)
    notes = []
    for feature in schema.features:
        strength, equal = _label_strength(frame[feature.name], y, feature.kind == "categorical")
        if strength < LEAK_AUROC:
            continue
        how = "equals the label in every row" if equal else f"alone predicts the label (AUROC {strength:.3f})"
        column = _both_names(renamed.get(feature.name, feature.name), feature.name)
        notes.append(
            f"{source}: possible label leak: column '{column}' {how} at this institution; if it is derived "
            "from the outcome, list it under 'ignore' in the mapping"
        )
    return notes


def _label_strength(values: pd.Series, y: np.ndarray, categorical: bool) -> tuple[float, bool]:
    """max(AUROC, 1 - AUROC) of one column as a score for ``y`` (rows where it is present), and
    whether it equals the label (or its negation) outright."""
    present = values.notna().to_numpy()
    labels = y[present]
    if present.sum() < 10 or labels.min() == labels.max():
        return 0.0, False
    if categorical:
        texts = values[present].astype(str)
        if texts.nunique() > 10:  # an id-like column: every category would look "pure"
            return 0.0, False
        if set(texts) <= {"0", "1"} and (texts.astype(int).to_numpy() == labels).all():
            return 1.0, True
        score = texts.map(pd.Series(labels, index=texts.index).groupby(texts).mean()).to_numpy(dtype=float)
    else:
        score = values[present].to_numpy(dtype=float)
        if (score == labels).all() or (score == 1 - labels).all():
            return 1.0, True
    ranks = pd.Series(score).rank().to_numpy()
    positives = int(labels.sum())
    negatives = labels.size - positives
    auc = (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    return float(max(auc, 1 - auc)), False


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
        rows = [int(r) for r in np.flatnonzero(bad.to_numpy()) + 1]
        examples = ", ".join(repr(v) for v in values[bad].drop_duplicates().head(3))
        commas = values[bad].astype(str).str.fullmatch(r"[-+]?\d*,\d+").all()
        fix = "save the file with '.' as the decimal separator" if commas else "fix the file"
        raise DataValidationError(
            f"expects numbers but has text (e.g. {examples}); declare such markers as missing in the mapping or {fix}",
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
        clash = [str(p) for p in paths if institution_name(p) == duplicates[0]]
        raise ConfigError(
            f"{' and '.join(clash)} would both be institution '{duplicates[0]}' (an institution is named after "
            "its file); rename one"
        )
    files = [load_file(p, base, mapping, target=target, min_rows=min_rows) for p in paths]
    notes = [n for f in files for n in f.notes]
    schema, dropped = common_schema(base, [f.schema for f in files], [f.path for f in files])
    notes += dropped
    columns = [*schema.feature_names, schema.target]
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


#: an institution's columns as the consortium sees them: column name -> "numeric" | "categorical"
ColumnKinds = Mapping[str, str]


def agree_schema(base: TabularSchema, institutions: Mapping[str, ColumnKinds]) -> tuple[TabularSchema, list[str]]:
    """The consortium's schema: the features every institution has, in one order, one kind each.

    The one function for it, in simulation (from each loaded file's schema, ``common_schema``) and
    on a deployed server (from each node's summary, ``schema_from_summaries``). A column missing
    somewhere is dropped everywhere with a note (a required one is an error naming the institution);
    extra columns are numeric only where every institution has them numeric, else categorical; the
    vertical's own features keep their declared kinds and category order.
    """
    if not institutions:
        return base, []
    kinds = list(institutions.values())
    everywhere = set(kinds[0]).intersection(*kinds[1:])
    notes = []
    seen = list(dict.fromkeys(name for k in kinds for name in k))
    for column in seen:
        if column in everywhere:
            continue
        lacking = [source for source, k in institutions.items() if column not in k]
        if column in base.feature_names and base.feature(column).required:
            raise DataValidationError(
                "required column is missing here (present at other institutions)", source=lacking[0], column=column
            )
        notes.append(f"column '{column}' is missing at {', '.join(lacking)}; dropped everywhere")
    extras = sorted(n for n in everywhere if n not in base.feature_names)
    numeric = [n for n in extras if all(k[n] == "numeric" for k in kinds)]
    categorical = [n for n in extras if n not in numeric]
    for n in categorical:
        if any(k[n] == "numeric" for k in kinds):
            notes.append(f"extra column '{n}' is numeric at some institutions only; taken as categorical")
    chosen = base.select([n for n in base.feature_names if n in everywhere])
    return chosen.with_extra(numeric, categorical), notes


def common_schema(
    base: TabularSchema, schemas: Sequence[TabularSchema], sources: Sequence[str]
) -> tuple[TabularSchema, list[str]]:
    """Simulation: ``agree_schema`` over every loaded file's own schema."""
    kinds = {source: {f.name: f.kind for f in s.features} for s, source in zip(schemas, sources, strict=True)}
    return agree_schema(base, kinds)


def schema_from_summaries(base: TabularSchema, summaries: Sequence[FeatureSummary]) -> TabularSchema:
    """A server (simulated or deployed): ``agree_schema`` over the nodes' summaries.

    A deployed node reads only its own file, so the server learns which columns exist from the
    summaries; it applies the very rules the simulation applies to the files.
    """
    kinds = {
        f"institution {i}": dict.fromkeys(s.numeric, "numeric") | dict.fromkeys(s.categorical, "categorical")
        for i, s in enumerate(summaries, start=1)
    }
    return agree_schema(base, kinds)[0]
