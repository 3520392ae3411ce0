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
    from consortia.verticals import get_vertical

    schema = get_vertical(vertical_name).schema
    files = list(files)
    checks = []
    with uploaded_files(files) as paths:
        for index, ((name, _), path) in enumerate(zip(files, paths, strict=True)):
            shown = Path(name.replace("\\", "/")).name or f"file {index + 1}"
            try:
                frame = _read_csv(path, shown)
                valid = schema.validate(frame, source=shown, min_rows=4)
            except DataValidationError as exc:
                checks.append(UploadCheck(shown, False, str(exc)))
                continue
            rate = float(valid[schema.target].mean())
            checks.append(
                UploadCheck(shown, True, f"{shown}: {len(valid)} rows, label rate {rate:.3f}", len(valid), rate)
            )
    return checks


def _read_csv(path: Path, shown: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataValidationError(f"cannot be read as CSV ({first})", source=shown) from None
