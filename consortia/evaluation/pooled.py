"""Pooled metrics without per-row data: per-class score histograms that add up across institutions.

An institution sends, for each fine score bin and each class, the number of rows, the sum of
their scores and the sum of each column its vertical's metrics need (finance: the transaction
amount). The server adds the institutions' histograms and evaluates the vertical's own metric
function on *pseudo-rows*: one row per (bin, class), repeated ``count`` times, scored with the
bin's mean score and carrying the bin's mean column values. Rank metrics (AUROC, AUPRC, recall at
an FPR) then differ from the exact per-row computation only by the order of rows inside one bin,
thresholds by less than one bin's width, and sums (money saved) are exact except for rows in the
bin a threshold falls into.

Bins are uniform in logit space (``N_BINS`` bins over logits in ``[-LOGIT_RANGE, LOGIT_RANGE]``),
so that rare-event scores near 0 or 1 are as finely resolved as scores near 0.5.

What a histogram reveals: how many rows of each class an institution has per score bin and the
sums above, per bin. A bin holding a single row carries that row's score (to within a bin) and,
for finance, its amount; no row identifier, feature or raw value other than the declared metric
columns is ever included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

N_BINS = 1 << 16
LOGIT_RANGE = 16.0
#: array names in a histogram's flat form (an ArrayRecord on the wire)
_FIXED = ("bin", "label", "count", "score_sum")


def score_bins(p: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin index of each score: uniform in logit space, clipped at the range's ends."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-np.minimum(p, 1 - 1e-16))
    scaled = (np.clip(logit, -LOGIT_RANGE, LOGIT_RANGE) + LOGIT_RANGE) / (2 * LOGIT_RANGE)
    return np.minimum((scaled * n_bins).astype(np.int64), n_bins - 1)


@dataclass
class ScoreHistogram:
    """Sparse per-(bin, class) sums of a set of scored rows; ``+`` adds institutions."""

    bin: np.ndarray
    label: np.ndarray
    count: np.ndarray
    score_sum: np.ndarray
    column_sums: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_scores(
        cls,
        y: np.ndarray,
        p: np.ndarray,
        columns: Mapping[str, np.ndarray] | None = None,
        n_bins: int = N_BINS,
    ) -> ScoreHistogram:
        y = np.asarray(y).astype(np.int64)
        p = np.asarray(p, dtype=np.float64)
        keys = score_bins(p, n_bins) * 2 + y
        unique, inverse = np.unique(keys, return_inverse=True)
        count = np.bincount(inverse, minlength=unique.size).astype(np.int64)
        score_sum = np.bincount(inverse, weights=p, minlength=unique.size)
        sums = {
            name: np.bincount(
                inverse, weights=np.nan_to_num(np.asarray(values, dtype=np.float64)), minlength=unique.size
            )
            for name, values in (columns or {}).items()
        }
        return cls(unique // 2, unique % 2, count, score_sum, sums)

    @property
    def n_rows(self) -> int:
        return int(self.count.sum())

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        return merge_histograms([self, other])

    # -- wire form --------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"bin": self.bin, "label": self.label, "count": self.count, "score_sum": self.score_sum}
        arrays |= {f"column.{name}": values for name, values in self.column_sums.items()}
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ScoreHistogram:
        missing = [name for name in _FIXED if name not in arrays]
        if missing:
            raise ValueError(f"score histogram lacks {', '.join(missing)}")
        columns = {k.removeprefix("column."): np.asarray(v) for k, v in arrays.items() if k.startswith("column.")}
        bins, labels, counts, score_sums = (np.asarray(arrays[name]) for name in _FIXED)
        return cls(bins, labels, counts, score_sums, columns)

    # -- what the server evaluates --------------------------------------------------------------
    def pseudo_rows(self) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """``(y, p, frame)``: one row per (bin, class) and row it stands for, at the bin's means."""
        count = self.count.astype(np.int64)
        keep = count > 0
        mean_score = self.score_sum[keep] / count[keep]
        y = np.repeat(self.label[keep], count[keep]).astype(int)
        p = np.repeat(mean_score, count[keep])
        frame = pd.DataFrame(
            {name: np.repeat(values[keep] / count[keep], count[keep]) for name, values in self.column_sums.items()}
        )
        return y, p, frame


def merge_histograms(histograms: list[ScoreHistogram]) -> ScoreHistogram:
    """The consortium's histogram: every institution's counts and sums added per (bin, class)."""
    if not histograms:
        raise ValueError("no histograms to merge")
    columns = set(histograms[0].column_sums)
    for h in histograms[1:]:
        columns &= set(h.column_sums)  # a column some institution lacks cannot be pooled
    keys = np.concatenate([h.bin.astype(np.int64) * 2 + h.label.astype(np.int64) for h in histograms])
    unique, inverse = np.unique(keys, return_inverse=True)

    def add(values: list[np.ndarray]) -> np.ndarray:
        return np.bincount(inverse, weights=np.concatenate(values).astype(np.float64), minlength=unique.size)

    count = add([h.count for h in histograms]).round().astype(np.int64)
    return ScoreHistogram(
        unique // 2,
        unique % 2,
        count,
        add([h.score_sum for h in histograms]),
        {name: add([h.column_sums[name] for h in histograms]) for name in sorted(columns)},
    )
