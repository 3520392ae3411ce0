"""Checking uploaded CSV files against a vertical's schema before anything trains on them.

Uploaded bytes are written only inside a ``tempfile.TemporaryDirectory`` that is removed when
the check ends; error messages name the file, the column and the rows, as the schema reports.
A mapping (``mapping.yaml``, see ``consortia.data.mapping``) translates a consortium's own
column names and labels, exactly as ``consortia run --map`` does.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from consortia.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from consortia.data.mapping import DataMapping
    from consortia.examples import Example


@dataclass(frozen=True)
class UploadCheck:
    """One file's verdict: either a summary (rows, label rate) or the validation message."""

    file: str
    ok: bool
    message: str
    rows: int = 0
    label_rate: float | None = None


def safe_file_name(name: str) -> str:
    """A plain file name for the temp folder: no directories, no odd characters."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    return cleaned or "upload.csv"


@contextlib.contextmanager
def uploaded_files(files: Iterable[tuple[str, bytes]]) -> Iterator[list[Path]]:
    """The uploads as files in a temporary folder (removed on exit), one name per institution.

    File names become institution names, so each keeps its own (made safe) name; clashes get
    a numeric suffix.
    """
    with tempfile.TemporaryDirectory(prefix="consortia-upload-") as folder:
        paths: list[Path] = []
        for name, content in files:
            path = Path(folder) / safe_file_name(name)
            stem, suffix, n = path.stem, path.suffix, 2
            while path in paths:
                path = path.with_name(f"{stem}-{n}{suffix}")
                n += 1
            path.write_bytes(content)
            paths.append(path)
        yield paths


def read_mapping(name: str, content: bytes) -> DataMapping:
    """An uploaded mapping file (YAML, or JSON by its suffix); ``ConfigError`` names the file."""
    from consortia.data.mapping import DataMapping

    shown = Path(name.replace("\\", "/")).name or "mapping"
    with uploaded_files([(name, content)]) as (path,):
        try:
            return DataMapping.from_file(path)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(path), shown)) from None


def matching_example(vertical_name: str, files: Iterable[tuple[str, bytes]]) -> Example | None:
    """The shipped example whose files have these columns (so its mapping fits), as the CLI finds it."""
    from consortia.examples import find_example_for

    with uploaded_files(files) as paths:
        return find_example_for(paths, vertical_name) if paths else None


def check_uploads(
    vertical_name: str, files: Iterable[tuple[str, bytes]], mapping: DataMapping | None = None
) -> list[UploadCheck]:
    """Validate each ``(file name, content)`` as one institution's rows of ``vertical_name``."""
    files = list(files)
    names = [Path(name.replace("\\", "/")).name or f"file {i + 1}" for i, (name, _) in enumerate(files)]
    with uploaded_files(files) as paths:
        return check_files(vertical_name, paths, mapping, names)


def check_files(
    vertical_name: str, paths: list[Path], mapping: DataMapping | None = None, names: list[str] | None = None
) -> list[UploadCheck]:
    """Validate files on disk (``names`` are shown in their place) with the loader training uses."""
    from consortia.config import DataConfig
    from consortia.data.loaders import load_file
    from consortia.verticals import get_vertical

    schema = get_vertical(vertical_name).schema
    min_rows = int(DataConfig.model_fields["min_rows"].default)  # what a run on these files requires
    checks = []
    for path, shown in zip(paths, names or [p.name for p in paths], strict=True):
        try:  # exactly the loader and checks that training on these files uses
            valid = load_file(path, schema, mapping, min_rows=min_rows).frame
        except DataValidationError as exc:
            checks.append(UploadCheck(shown, False, str(exc).replace(str(path), shown)))
            continue
        rate = float(valid[schema.target].mean())
        checks.append(UploadCheck(shown, True, f"{shown}: {len(valid)} rows, label rate {rate:.3f}", len(valid), rate))
    return checks


def example_frame(vertical_name: str, rows: int = 50, seed: int = 0) -> pd.DataFrame:
    """One institution's rows as an upload should look: both classes, no ground-truth columns."""
    from consortia.verticals import get_vertical

    vertical = get_vertical(vertical_name)
    schema = vertical.schema
    frame = vertical.generate(2, 400, seed)
    column = schema.institution_column
    if column in frame:
        frame = frame[frame[column] == frame[column].iloc[0]]
    frame = frame.drop(columns=[c for c in schema.non_features if c in frame.columns])
    positives = frame[frame[schema.target] == 1].head(max(2, rows // 5))
    negatives = frame[frame[schema.target] != 1].head(rows - len(positives))
    return frame.loc[sorted([*positives.index, *negatives.index])]  # original (time) order
