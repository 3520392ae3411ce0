"""Additive aggregates as integer vectors, so secure aggregation can sum them exactly.

The preprocessing summaries (counts, sums, sums of squares, category counts) and the pooled-metric
score histograms add up across institutions. Under the secured protocol each institution sends
them as one vector through SecAgg+ (``consortia.federation.secure``) and the server learns only the
consortium's totals.

SecAgg+ sums integers modulo 2^32. With its clipping range set to half its quantisation range an
integer stays an integer through quantisation (``integer_workflow_ranges``), so the sum is exact.
Every value here is a fixed-point integer (``FRACTION_BITS`` fractional bits for sums of values)
cut into limbs of ``limb_bits`` bits; the limbs of N institutions add without overflow and the
server puts the totals back together exactly. Nothing is rounded except the fixed-point step.

What travels in the clear first is the *layout*: column names and the category names an institution
holds at least k times (its disclosure policy's ``min_count``, as for plain summaries).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from consortia.data.preprocessing import RARE, FeatureSummary, NumericStats
from consortia.data.schema import TabularSchema
from consortia.errors import ConsortiaError as SecureSumError
from consortia.evaluation.pooled import ScoreHistogram

#: fractional bits of a fixed-point sum of values (2^-24: about 6e-8)
FRACTION_BITS = 24
#: bins of the secure score histograms (plain ones have 2^16): a dense vector must carry every bin
SECURE_HISTOGRAM_BINS = 1 << 12
#: a fixed-point value must fit in this many bits (sign included) at every institution
VALUE_BITS = 126
#: histogram entries are counts and sums of scores in [0, 1]: 56 bits, added as int64 (fast)
HISTOGRAM_VALUE_BITS = 56


def integer_workflow_ranges(n_institutions: int) -> tuple[int, float]:
    """SecAgg+'s ``quantization_range`` and ``clipping_range`` for exact integer sums of N vectors.

    The masked sum is taken modulo 2^32, so N quantised values must stay below 2^32 together; with
    ``clipping_range = quantization_range / 2`` quantisation maps an integer v to v + range/2, itself."""
    quantization = 1 << (31 - math.ceil(math.log2(max(n_institutions, 2))))
    return quantization, quantization / 2


def limb_bits(n_institutions: int) -> int:
    """Bits per limb so that N limbs of either sign add up inside the exact integer range."""
    quantization, _ = integer_workflow_ranges(n_institutions)
    return math.floor(math.log2(quantization / 2 / max(n_institutions, 2))) - 1


def to_limbs(values: Sequence[int] | np.ndarray, bits: int, value_bits: int = VALUE_BITS) -> np.ndarray:
    """Each integer as ``ceil(value_bits / bits)`` limbs (lowest first, each in ``[0, 2^bits)``, the
    top one signed): limb sums over institutions recombine into the exact total."""
    count = math.ceil(value_bits / bits)
    base = 1 << bits
    if value_bits <= HISTOGRAM_VALUE_BITS:  # the vectorised path (histograms: long vectors of int64)
        v = np.asarray(values, dtype=np.int64)
        if v.size and int(np.abs(v).max()) >= 1 << (value_bits - 1):
            raise SecureSumError(f"a value of {int(np.abs(v).max()):.3g} (fixed point) is too large to sum securely")
        out = np.zeros((v.size, count), dtype=np.float64)
        for j in range(count - 1):
            v, out[:, j] = np.divmod(v, base)
        out[:, count - 1] = v
        return out.ravel()
    rows = np.zeros((len(values), count), dtype=np.float64)
    for i, value in enumerate(values):
        w = int(value)
        if abs(w) >= 1 << (value_bits - 1):
            raise SecureSumError(f"a value of {float(value):.3g} (fixed point) is too large to sum securely")
        for j in range(count - 1):
            w, rows[i, j] = divmod(w, base)
        rows[i, count - 1] = w
    return rows.ravel()


def from_limbs(summed: np.ndarray, bits: int, value_bits: int = VALUE_BITS) -> list[int]:
    """The exact integer totals from summed limbs (``to_limbs``' inverse, summed)."""
    count = math.ceil(value_bits / bits)
    limbs = np.rint(np.asarray(summed, dtype=np.float64)).astype(np.int64).reshape(-1, count)
    if value_bits <= HISTOGRAM_VALUE_BITS:  # N (< 128) values of 56 bits add up inside int64
        weights = np.asarray([1 << (bits * j) for j in range(count)], dtype=np.int64)
        return (limbs * weights).sum(axis=1).tolist()
    return [sum(int(limb) << (bits * j) for j, limb in enumerate(row)) for row in limbs]


def fixed(x: float) -> int:
    """A finite float as a fixed-point integer (``FRACTION_BITS`` fractional bits)."""
    return round(math.ldexp(float(x), FRACTION_BITS))


def unfixed(v: int) -> float:
    return math.ldexp(float(v), -FRACTION_BITS) if abs(v) < 1 << 1000 else float("inf")


# -- the preprocessing summary ----------------------------------------------------------------------
@dataclass
class SummaryLayout:
    """Which entries the summary vector holds, agreed from every institution's layout."""

    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def union(cls, summaries: Sequence[FeatureSummary]) -> SummaryLayout:
        numeric = sorted({c for s in summaries for c in s.numeric})
        names: dict[str, set[str]] = {}
        for s in summaries:
            for column, counts in s.categorical.items():
                names.setdefault(column, set()).update(counts)
        return cls(numeric, {c: sorted(v | {RARE}) for c, v in sorted(names.items())})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SummaryLayout:
        return cls(**json.loads(text))

    @property
    def size(self) -> int:
        """Integers per institution: rows; per numeric column count, missing, sum, sum of squares;
        per categorical column its categories' counts and the missing count."""
        return 1 + 4 * len(self.numeric) + sum(len(v) + 1 for v in self.categorical.values())


def layout_summary(frame: pd.DataFrame, schema: TabularSchema, min_count: int) -> FeatureSummary:
    """What an institution shows before the secure sum: its columns and the category names it holds
    at least ``min_count`` times, with every count and statistic zeroed."""
    full = FeatureSummary.from_frame(frame, schema, min_count=min_count)
    return FeatureSummary(
        n_rows=0,
        numeric={c: NumericStats(count=0, mean=0.0, std=0.0, missing=0, withheld=True) for c in full.numeric},
        categorical={c: dict.fromkeys(v, 0) for c, v in full.categorical.items()},
        categorical_missing=dict.fromkeys(full.categorical_missing, 0),
    )


def summary_integers(frame: pd.DataFrame, layout: SummaryLayout) -> list[int]:
    """An institution's summary as integers in the layout's order (exact sums in fixed point)."""
    out = [len(frame)]
    for column in layout.numeric:
        values = frame[column].to_numpy(dtype=np.float64) if column in frame.columns else np.zeros(0)
        present = values[~np.isnan(values)]
        out += [present.size, values.size - present.size]
        with np.errstate(over="ignore"):
            squares = present * present
        if not (np.isfinite(present).all() and np.isfinite(squares).all()):
            raise SecureSumError(f"column '{column}' has values too large to sum securely (their squares overflow)")
        out += [fixed(math.fsum(present)), fixed(math.fsum(squares))]
    for column, names in layout.categorical.items():
        col = frame[column] if column in frame.columns else pd.Series([], dtype=object)
        counts = {str(k): int(v) for k, v in col.dropna().astype(str).value_counts().items()}
        known = set(names) - {RARE}
        out += [counts.get(name, 0) if name != RARE else sum(v for k, v in counts.items() if k not in known)
                for name in names]  # fmt: skip
        out.append(int(col.isna().sum()))
    return out


def summary_from_integers(totals: Sequence[int], layout: SummaryLayout) -> FeatureSummary:
    """The consortium's summary (one FeatureSummary of the union of every institution's rows)."""
    it = iter(totals)
    summary = FeatureSummary(n_rows=int(next(it)))
    for column in layout.numeric:
        count, missing, total, squares = (next(it) for _ in range(4))
        if count == 0:
            summary.numeric[column] = NumericStats(count=0, mean=0.0, std=0.0, missing=int(missing))
            continue
        mean = unfixed(total) / count
        variance = max(unfixed(squares) / count - mean * mean, 0.0)
        summary.numeric[column] = NumericStats(
            count=int(count), mean=mean, std=math.sqrt(variance), missing=int(missing)
        )
    for column, names in layout.categorical.items():
        counts = {name: int(next(it)) for name in names}
        summary.categorical[column] = {k: v for k, v in counts.items() if v}
        summary.categorical_missing[column] = int(next(it))
    return summary


# -- the score histograms ------------------------------------------------------------------------
def histogram_size(columns: Sequence[str]) -> int:
    """Integers per histogram: per (bin, class) cell a count, a score sum and one sum per column."""
    return 2 * SECURE_HISTOGRAM_BINS * (2 + len(columns))


def histogram_integers(
    y: np.ndarray, p: np.ndarray, columns: Mapping[str, np.ndarray], names: Sequence[str]
) -> list[int]:
    """A dense per-cell histogram as integers: counts, then fixed-point score sums, then each column's."""
    histogram = ScoreHistogram.from_scores(y, p, {n: columns[n] for n in names}, n_bins=SECURE_HISTOGRAM_BINS)
    cells = 2 * SECURE_HISTOGRAM_BINS
    index = histogram.bin.astype(np.int64) * 2 + histogram.label.astype(np.int64)
    count = np.zeros(cells, dtype=np.int64)
    count[index] = histogram.count
    out = count.tolist()
    for sums in [histogram.score_sum, *(histogram.column_sums[n] for n in names)]:
        dense = np.zeros(cells)
        dense[index] = sums
        out += [fixed(v) if v else 0 for v in dense]
    return out


def histogram_from_integers(totals: Sequence[int], names: Sequence[str]) -> ScoreHistogram:
    cells = 2 * SECURE_HISTOGRAM_BINS
    parts = [totals[i * cells : (i + 1) * cells] for i in range(2 + len(names))]
    count = np.asarray(parts[0], dtype=np.int64)
    keep = np.flatnonzero(count)

    def floats(part: Sequence[int]) -> np.ndarray:
        return np.asarray([unfixed(part[int(i)]) for i in keep], dtype=np.float64)

    return ScoreHistogram(
        keep // 2, keep % 2, count[keep], floats(parts[1]), {n: floats(parts[2 + j]) for j, n in enumerate(names)}
    )
