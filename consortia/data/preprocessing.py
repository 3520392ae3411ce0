"""Federated-safe preprocessing: statistics come from institutions' summaries, never pooled rows.

Each institution computes a ``FeatureSummary`` of its own training rows (per numeric column
the count, mean and standard deviation of present values and the missing count; category
counts). Only these summaries travel; the server merges them into one ``Preprocessor`` (means
and standard deviations for scaling, mean imputation, missing indicators, category
vocabularies) that every institution then applies locally.

What a summary reveals: the institution's row count, and per column its mean, variance, number
of missing values and how often each category occurs, with categories seen fewer than k times
merged into one count and no mean of fewer than k values (k: the node's ``min-category-count``,
``consortia.privacy.disclosure``). No row-level value leaves the institution.

Numerically safe for any finite input: each institution sends its mean and standard deviation
(two-pass, so values near ``1e10`` that differ by 1 keep their spread; recomputed on values
divided by the largest magnitude when squares would overflow), and the server merges them with
Chan et al.'s parallel formula on scaled terms, so ``1e200`` or ``1e308`` in a column give
finite, correct statistics where plain sums of squares overflowed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from consortia.data.schema import TabularSchema

#: the count of categories too rare to name (fewer than the institution's k rows)
RARE = "__rare__"
#: rows ``Preprocessor.transform`` builds at a time (a chunk of float64 columns stays in cache)
_CHUNK_ROWS = 8192


@dataclass
class NumericStats:
    """One numeric column at one institution; ``mean``/``std`` (population) of present values."""

    count: int  # non-missing values
    mean: float
    std: float
    missing: int
    withheld: bool = False  # too few values to share their mean and spread (see FeatureSummary)

    @classmethod
    def of(cls, values: np.ndarray) -> NumericStats:
        """Stats of ``values`` (NaN = missing); finite for any finite values."""
        present = values[~np.isnan(values)]
        if present.size == 0:
            return cls(count=0, mean=0.0, std=0.0, missing=int(values.size))
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = float(np.mean(present)), float(np.std(present))  # two-pass: no cancellation
        if not (np.isfinite(mean) and np.isfinite(std)):  # squares (or the sum) overflowed: go scaled
            scale = float(np.max(np.abs(present)))
            mean, std = float(np.mean(present / scale) * scale), float(np.std(present / scale) * scale)
        return cls(count=int(present.size), mean=mean, std=std, missing=int(values.size - present.size))


@dataclass
class FeatureSummary:
    """What one institution shares about its training rows."""

    n_rows: int
    numeric: dict[str, NumericStats] = field(default_factory=dict)
    categorical: dict[str, dict[str, int]] = field(default_factory=dict)
    categorical_missing: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, schema: TabularSchema, *, min_count: int = 1) -> FeatureSummary:
        """The summary of ``frame``; what leaves an institution uses its policy's ``min_count`` (k):
        categories seen fewer than k times are merged into one ``RARE`` count, and a numeric
        column with fewer than k present values reports its count but no mean or spread (the
        mean of one value is that value)."""
        summary = cls(n_rows=len(frame))
        for f in schema.numeric:
            stats = NumericStats.of(frame[f.name].to_numpy(dtype=float))
            if 0 < stats.count < min_count:
                stats = NumericStats(count=stats.count, mean=0.0, std=0.0, missing=stats.missing, withheld=True)
            summary.numeric[f.name] = stats
        for f in schema.categorical:
            column = frame[f.name]
            counts = {str(k): int(v) for k, v in column.dropna().astype(str).value_counts().items()}
            rare = sum(v for v in counts.values() if v < min_count)
            kept = {k: v for k, v in counts.items() if v >= min_count}
            summary.categorical[f.name] = kept | ({RARE: rare} if rare else {})
            summary.categorical_missing[f.name] = int(column.isna().sum())
        return summary

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSummary:
        raw = json.loads(text)
        raw["numeric"] = {k: NumericStats(**v) for k, v in raw["numeric"].items()}
        return cls(**raw)


@dataclass
class Preprocessor:
    """Turns a validated frame into a float32 matrix the same way at every institution."""

    numeric: list[str]
    means: list[float]
    stds: list[float]
    missing_indicators: list[str]
    categories: dict[str, list[str]]

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        names += [f"{c}__missing" for c in self.missing_indicators]
        for column, vocab in self.categories.items():
            names += [f"{column}={v}" for v in vocab]
        return names

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, frame: pd.DataFrame | FrameColumns) -> np.ndarray:
        """The float32 matrix of ``frame``'s rows; pass a ``FrameColumns`` to reuse one frame's
        extracted columns across many preprocessors (each local-only model on the pooled test rows).

        Row-wise: scaled numeric columns (missing -> the mean, i.e. 0), missing indicators, one-hot
        categories, clipped to [-10, 10]. Built in chunks of rows, so that turning columns into
        rows happens in cache (a whole-column write into a row-major matrix is several times slower).
        """
        columns = frame if isinstance(frame, FrameColumns) else FrameColumns(frame)
        n_numeric, n_indicators = len(self.numeric), len(self.missing_indicators)
        width = n_numeric + n_indicators + sum(len(v) for v in self.categories.values())
        out = np.zeros((columns.n_rows, width), dtype=np.float32)
        numeric = columns.numeric_rows(tuple(self.numeric)) if n_numeric else None
        means, stds = np.asarray(self.means, dtype=np.float64), np.asarray(self.stds, dtype=np.float64)
        # scaling makes NaN only of NaN rows, unless a (hand-written) preprocessor's mean or std is not finite or 0
        safe = bool(np.isfinite(means).all() and np.isfinite(stds).all() and (stds != 0).all())
        impute = n_numeric > 0 and (not safe or columns.has_missing(tuple(self.numeric)))
        indicators = columns.missing_rows(tuple(self.missing_indicators)) if n_indicators else None
        onehots = []
        for name, vocab in self.categories.items():
            codes, values = columns.categories(name)
            table = (values[:, None] == np.asarray(vocab)[None, :]).astype(np.float32)  # distinct values x vocabulary
            onehots.append((codes, table))
        scaled = np.empty((min(_CHUNK_ROWS, columns.n_rows), n_numeric), dtype=np.float64)
        for start in range(0, columns.n_rows, _CHUNK_ROWS):
            rows = slice(start, min(start + _CHUNK_ROWS, columns.n_rows))
            block = out[rows]
            if numeric is not None:
                part = scaled[: rows.stop - rows.start]
                np.subtract(numeric[rows], means, out=part)
                np.divide(part, stds, out=part)
                if impute:  # mean imputation in scaled space
                    np.copyto(part, 0.0, where=np.isnan(part))
                block[:, :n_numeric] = np.clip(part, -10.0, 10.0, out=part)
            if indicators is not None:
                block[:, n_numeric : n_numeric + n_indicators] = indicators[rows]
            j = n_numeric + n_indicators
            for codes, table in onehots:
                block[:, j : j + table.shape[1]] = table[codes[rows]]
                j += table.shape[1]
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        return cls(**json.loads(text))


class FrameColumns:
    """A frame's columns as ``Preprocessor.transform`` reads them, each extracted once.

    The values are exactly those of the pandas expressions the transform is defined by
    (``frame[numeric].to_numpy(dtype=float)``, ``isna()``, ``astype(str)`` compared with each
    vocabulary entry), but a categorical column is compared per distinct value rather than per
    row: the rows' codes (``pd.factorize``) index a small (distinct values x vocabulary) table.
    Columns whose dtype could make hashing merge values that ``astype(str)`` tells apart (floats:
    ``0.0``/``-0.0``; mixed objects: ``1``/``1.0``/``True``) take the row-by-row path.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.n_rows = len(frame)
        self._numeric: dict[str, np.ndarray] = {}
        self._missing: dict[str, np.ndarray] = {}
        self._categories: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._numeric_rows: dict[tuple[str, ...], np.ndarray] = {}
        self._missing_rows: dict[tuple[str, ...], np.ndarray] = {}
        self._has_missing: dict[tuple[str, ...], bool] = {}

    def numeric(self, name: str) -> np.ndarray:
        """The column as float64 (NaN = missing); callers must not write into it."""
        if name not in self._numeric:
            self._numeric[name] = self._read_numeric(name)
        return self._numeric[name]

    def _read_numeric(self, name: str) -> np.ndarray:
        column = self.frame[name]
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiub":
            return column.to_numpy(dtype=float)
        return self.frame[[name]].to_numpy(dtype=float)[:, 0]  # extension dtypes: the frame-level conversion

    def numeric_rows(self, names: tuple[str, ...]) -> np.ndarray:
        """``names``' columns side by side, row-major (rows x columns, float64), built once per set
        of names: every preprocessor with these columns then reads rows of it, not column slices."""
        if names not in self._numeric_rows:
            matrix = np.empty((self.n_rows, len(names)), dtype=np.float64)
            for k, name in enumerate(names):  # not kept column by column too: one copy of the values
                matrix[:, k] = self._numeric[name] if name in self._numeric else self._read_numeric(name)
            self._numeric_rows[names] = matrix
        return self._numeric_rows[names]

    def has_missing(self, names: tuple[str, ...]) -> bool:
        """Whether any of ``names``' values is NaN (``numeric_rows``), checked once."""
        if names not in self._has_missing:
            self._has_missing[names] = bool(np.isnan(self.numeric_rows(names)).any())
        return self._has_missing[names]

    def missing_rows(self, names: tuple[str, ...]) -> np.ndarray:
        """Missing indicators of ``names`` side by side (rows x columns, float32), built once."""
        if names not in self._missing_rows:
            matrix = np.empty((self.n_rows, len(names)), dtype=np.float32)
            for k, name in enumerate(names):
                matrix[:, k] = self.missing(name)
            self._missing_rows[names] = matrix
        return self._missing_rows[names]

    def missing(self, name: str) -> np.ndarray:
        if name not in self._missing:
            self._missing[name] = self.frame[name].isna().to_numpy(dtype=bool)
        return self._missing[name]

    def categories(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, values)``: ``values[codes]`` equals ``frame[name].astype(str).to_numpy()``."""
        if name not in self._categories:
            column = self.frame[name]
            if _hash_safe(column):
                codes, uniques = pd.factorize(column)
                values = pd.Series(uniques, dtype=column.dtype).astype(str).to_numpy()
                missing = np.flatnonzero(codes < 0)
                if missing.size:  # missing rows: what astype(str) makes of the first of them
                    values = np.concatenate([values, column.iloc[missing[:1]].astype(str).to_numpy()])
                    codes = np.where(codes < 0, len(values) - 1, codes)
            else:
                values = column.astype(str).to_numpy()
                codes = np.arange(len(values))
            self._categories[name] = (codes, values)
        return self._categories[name]


def _hash_safe(column: pd.Series) -> bool:
    """Whether equal hashes mean equal ``astype(str)`` results for this column's values."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _hash_safe(pd.Series(dtype.categories))
    if isinstance(dtype, pd.StringDtype):
        return True
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return True
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
    return False


def merge_summaries(summaries: Sequence[FeatureSummary], schema: TabularSchema) -> Preprocessor:
    """Server side: combine institutions' summaries into one Preprocessor (no rows needed)."""
    numeric, means, stds, indicators = [], [], [], []
    for f in schema.numeric:
        stats = [s.numeric[f.name] for s in summaries]
        count = sum(s.count for s in stats)
        missing = sum(s.missing for s in stats)
        if count == 0:
            continue  # a column no institution measured carries no information
        mean, std = _pooled_mean_std(stats)
        numeric.append(f.name)
        means.append(mean)
        stds.append(std if std > 1e-6 else 1.0)
        if missing:
            indicators.append(f.name)
    categories: dict[str, list[str]] = {}
    for f in schema.categorical:
        seen: set[str] = set()
        for s in summaries:
            seen.update(k for k in s.categorical.get(f.name, {}) if k != RARE)
        vocab = [str(c) for c in f.categories if str(c) in seen] if f.categories is not None else sorted(seen)
        if vocab:
            categories[f.name] = vocab
    return Preprocessor(numeric, means, stds, indicators, categories)


def _pooled_mean_std(stats: Sequence[NumericStats]) -> tuple[float, float]:
    """Mean and std of the union of institutions' values (Chan et al.'s parallel formula).

    The mean is a weighted average of finite means, so it cannot overflow; the spread is
    computed on halved, scaled terms so that values near +-1.8e308 stay finite too.
    """
    present = [s for s in stats if s.count and not s.withheld]
    if not present:  # every institution withheld this column's statistics: scale as is
        return 0.0, 1.0
    count = sum(s.count for s in present)
    weights = [s.count / count for s in present]
    mean = float(sum(w * s.mean for w, s in zip(weights, present, strict=True)))
    halves = [(s.std / 2, s.mean / 2 - mean / 2) for s in present]  # no overflow in the difference
    scale = max(max(abs(sd), abs(diff)) for sd, diff in halves) or 1.0
    spread = sum(w * ((sd / scale) ** 2 + (diff / scale) ** 2) for w, (sd, diff) in zip(weights, halves, strict=True))
    std = min(2 * scale * float(np.sqrt(spread)), float(np.finfo(float).max))
    return mean, std
