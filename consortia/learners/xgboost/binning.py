"""Global bin edges for histogram XGBoost, agreed from per-institution quantile summaries.

Every institution maps its features onto the same edges, so XGBoost's ``hist`` sketch is exact
and identical everywhere: that is what makes histogram training lossless. Only the summaries
of :func:`local_quantile_summary` leave an institution; what they reveal is documented there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SUMMARY_FORMAT = "consortia.xgb_quantile_summary/1"
#: fewest non-missing values one shared quantile may stand for (a privacy floor, see local_quantile_summary)
MIN_ROWS_PER_QUANTILE = 5


@dataclass
class GlobalBinning:
    """Global bin edges agreed from federated summaries; every institution bins with these.

    ``edges[j]`` holds the sorted unique cut points of feature ``j``; a value ``x`` falls in
    bin ``i`` = number of edges ``<= x``, so feature ``j`` takes at most ``len(edges[j]) + 1``
    values. ``n_bins`` is the ``max_bin`` XGBoost must use (derived from the edges if 0).
    """

    edges: list[np.ndarray]
    n_bins: int = 0

    def __post_init__(self) -> None:
        clean = []
        for j, e in enumerate(self.edges):
            arr = np.asarray(e, dtype=np.float64).ravel()
            if arr.size and (not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0)):
                raise ValueError(f"edges of feature {j} must be finite and strictly increasing")
            clean.append(arr)
        self.edges = clean
        needed = max([len(e) + 1 for e in clean], default=1)
        if self.n_bins == 0:
            self.n_bins = max(2, needed)
        if self.n_bins < needed:
            raise ValueError(f"n_bins={self.n_bins} but a feature has {needed} bins")
        if self.n_bins < 2:
            raise ValueError("n_bins must be at least 2 (XGBoost's smallest max_bin)")

    @property
    def n_features(self) -> int:
        return len(self.edges)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Map each value to its bin index (as float32, exact); NaN stays NaN."""
        X = as_2d_float(X, "X")
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, binning has {self.n_features}")
        out = np.empty(X.shape, dtype=np.float32)
        for j, e in enumerate(self.edges):
            col = X[:, j]
            binned = np.searchsorted(e, col, side="right").astype(np.float32)
            binned[np.isnan(col)] = np.nan
            out[:, j] = binned
        return out


def local_quantile_summary(
    X: np.ndarray,
    n_bins: int,
    *,
    resolution: int | None = None,
    min_rows_per_quantile: int = MIN_ROWS_PER_QUANTILE,
) -> dict[str, Any]:
    """What one institution shares to agree on bin edges: aggregates only, no rows.

    Reveals exactly: ``n_rows``; per feature, the number of non-missing values and at most
    ``resolution - 1`` interior empirical quantiles (numpy's linear interpolation between order
    statistics). The resolution is what the bin count needs (default ``n_bins``: one quantile per
    global bin edge), and never finer than one quantile per ``min_rows_per_quantile`` non-missing
    values, so a small institution shares fewer, coarser quantiles instead of nearly every value.
    Not revealed: which row has which value, the exact minimum and maximum (probabilities 0 and
    1 are left out), relations between features, labels. Plain ints, floats and lists (JSON).
    """
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    resolution = int(resolution or n_bins)
    if resolution < 2:
        raise ValueError("resolution must be at least 2")
    if min_rows_per_quantile < 1:
        raise ValueError("min_rows_per_quantile must be at least 1")
    X = as_2d_float(X, "X")
    features = []
    for j in range(X.shape[1]):
        col = X[:, j]
        col = col[~np.isnan(col)]
        if col.size and not np.all(np.isfinite(col)):
            raise ValueError(f"feature {j} has infinite values")
        steps = min(resolution, col.size // min_rows_per_quantile)
        quantiles: list[float] = []
        if steps >= 2:
            quantiles = [float(q) for q in np.quantile(col, np.arange(1, steps) / steps)]
        features.append({"count": int(col.size), "quantiles": quantiles})
    return {
        "format": SUMMARY_FORMAT,
        "n_rows": int(X.shape[0]),
        "resolution": resolution,
        "features": features,
    }


def merge_quantile_summaries(summaries: Sequence[dict[str, Any]], n_bins: int) -> GlobalBinning:
    """Server side: global edges = count-weighted quantiles of all institutions' quantiles.

    Each shared quantile stands for ``count / (resolution - 1)`` values of its institution, so
    large institutions pull the edges towards their distribution as in the pooled data.
    """
    if not summaries:
        raise ValueError("need at least one summary")
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    for s in summaries:
        if s.get("format") != SUMMARY_FORMAT:
            raise ValueError(f"unknown summary format {s.get('format')!r}")
    n_features = len(summaries[0]["features"])
    if any(len(s["features"]) != n_features for s in summaries):
        raise ValueError("summaries disagree on the number of features")
    targets = np.arange(1, n_bins) / n_bins
    edges: list[np.ndarray] = []
    for j in range(n_features):
        points, weights = [], []
        for s in summaries:
            feat = s["features"][j]
            q = np.asarray(feat["quantiles"], dtype=np.float64)
            if feat["count"] > 0 and q.size:
                points.append(q)
                weights.append(np.full(q.size, feat["count"] / q.size))
        if not points:
            edges.append(np.empty(0))
            continue
        p, w = np.concatenate(points), np.concatenate(weights)
        order = np.argsort(p, kind="stable")
        p, w = p[order], w[order]
        cdf = (np.cumsum(w) - 0.5 * w) / w.sum()  # mid-point plotting positions
        edges.append(np.unique(np.interp(targets, cdf, p)))
    return GlobalBinning(edges=edges, n_bins=n_bins)


def as_2d_float(X: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    return arr
