"""Checking uploaded CSV files against a vertical's schema before anything trains on them.

Uploaded bytes are written only inside a ``tempfile.TemporaryDirectory`` that is removed when
the check ends; error messages name the file, the column and the rows, as the schema reports.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from consortia.errors import DataValidationError


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


def check_uploads(vertical_name: str, files: Iterable[tuple[str, bytes]]) -> list[UploadCheck]:
    """Validate each ``(file name, content)`` as one institution's rows of ``vertical_name``."""
    from consortia.config import DataConfig
    from consortia.data.loaders import load_file
    from consortia.verticals import get_vertical

    schema = get_vertical(vertical_name).schema
    min_rows = DataConfig().min_rows
    files = list(files)
    checks = []
    with uploaded_files(files) as paths:
        for index, ((name, _), path) in enumerate(zip(files, paths, strict=True)):
            shown = Path(name.replace("\\", "/")).name or f"file {index + 1}"
            try:  # exactly the loader and checks that training on these files uses
                valid = load_file(path, schema, min_rows=min_rows).frame
            except DataValidationError as exc:
                checks.append(UploadCheck(shown, False, str(exc).replace(str(path), shown)))
                continue
            rate = float(valid[schema.target].mean())
            checks.append(
                UploadCheck(shown, True, f"{shown}: {len(valid)} rows, label rate {rate:.3f}", len(valid), rate)
            )
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
