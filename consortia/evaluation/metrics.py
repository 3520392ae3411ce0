"""Binary-classification metrics shared by the verticals, with scikit-learn's definitions.

Why not call scikit-learn directly: a round at 100 institutions evaluates hundreds of times, and
each ``roc_auc_score`` / ``average_precision_score`` / ``roc_curve`` call re-validates its
parameters, runs ``np.unique`` on the labels and sorts the scores again (about 11 ms per
finance-metrics call, most of it overhead). ``RankCurve`` sorts once per (labels, scores) and
computes AUROC, AUPRC and the ROC operating points from that one sort, with scikit-learn 1.9's
own formulas step by step (``confusion_matrix_at_thresholds``, ``roc_curve`` with
``drop_intermediate``, ``auc``'s trapezoid, ``average_precision_score``'s step sum), so the
values are those scikit-learn gives (``tests/test_scale_caching.py`` checks to 1e-12).
Inputs outside the fast path (labels other than 0/1, non-finite scores, mismatched lengths)
go to scikit-learn itself, which gives its usual answer or error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sklearn
from scipy.integrate import trapezoid
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    matthews_corrcoef,
    roc_auc_score,
    roc_curve,
)


def _both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def _binary_labels(y: np.ndarray, p: np.ndarray) -> np.ndarray | None:
    """``y`` as int64 0/1 labels when (y, p) is in the fast path, else None."""
    if y.ndim != 1 or p.ndim != 1 or y.shape != p.shape or y.size == 0:
        return None
    if y.dtype == bool:
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        return None
    if np.count_nonzero(y == 1) + np.count_nonzero(y == 0) != y.size:
        return None
    if p.dtype.kind != "f" or not np.isfinite(p).all():
        return None
    return y


@dataclass(frozen=True)
class RankCurve:
    """The scores sorted once: true and false positives at each distinct threshold (descending).

    ``fps``/``tps``/``thresholds`` are scikit-learn's ``confusion_matrix_at_thresholds`` output
    (counts as float64: exact, since they are integers below 2**53).
    """

    fps: np.ndarray
    tps: np.ndarray
    thresholds: np.ndarray

    @classmethod
    def of(cls, y: np.ndarray, p: np.ndarray) -> RankCurve | None:
        """The curve of labels ``y`` (0/1) and scores ``p``; None when the fast path does not apply
        (then the metric functions below fall back to scikit-learn)."""
        y, p = np.asarray(y), np.asarray(p)
        labels = _binary_labels(y, p)
        if labels is None:
            return None
        # descending scores, cut at each distinct value: row i of the sorted scores is the last
        # of its run of ties at index threshold_idxs[k], so idx + 1 rows score >= thresholds[k]
        scores = np.sort(p)[::-1]
        distinct = np.nonzero(np.diff(scores))[0]
        threshold_idxs = np.concatenate([distinct, np.asarray([labels.size - 1])])
        thresholds = scores[threshold_idxs]
        # true positives at each threshold: positives scoring >= it (scikit-learn takes the same
        # integers from a cumulative sum over an argsort; sorting only the positives is cheaper)
        positives = np.sort(p[labels == 1])
        tps = (positives.size - np.searchsorted(positives, thresholds, side="left")).astype(np.float64)
        fps = 1 + threshold_idxs.astype(np.float64) - tps
        return cls(fps, tps, thresholds)

    @property
    def both_classes(self) -> bool:
        return bool(self.tps[-1] > 0 and self.fps[-1] > 0)

    @cached_property
    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr, tpr)`` as ``sklearn.metrics.roc_curve`` returns them (collinear points dropped)."""
        fps, tps = self.fps, self.tps
        if fps.shape[0] > 2:
            keep = np.where(np.concatenate([[True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]]))[0]
            fps, tps = fps[keep], tps[keep]
        tps = np.concatenate([np.asarray([0.0]), tps])
        fps = np.concatenate([np.asarray([0.0]), fps])
        fpr = np.full(fps.shape, np.nan) if fps[-1] <= 0 else fps / fps[-1]
        tpr = np.full(tps.shape, np.nan) if tps[-1] <= 0 else tps / tps[-1]
        return fpr, tpr

    def auroc(self) -> float:
        if not self.both_classes:
            return float("nan")
        fpr, tpr = self.roc
        return float(trapezoid(tpr, fpr))  # fpr never decreases: auc()'s direction is +1

    def auprc(self) -> float:
        """Average precision (the uninterpolated step sum of ``average_precision_score``)."""
        if not self.both_classes:
            return float("nan")
        tps, fps = self.tps, self.fps
        precision = tps / (tps + fps)  # tps + fps = rows at or above the threshold, never 0
        recall = tps / tps[-1]
        precision = np.concatenate((precision[::-1], np.asarray([1.0])))
        recall = np.concatenate((recall[::-1], np.asarray([0.0])))
        return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))

    def tpr_at_fpr(self, max_fpr: float) -> float:
        if not self.both_classes:
            return float("nan")
        fpr, tpr = self.roc
        allowed = fpr <= max_fpr + 1e-12
        return float(tpr[allowed].max()) if allowed.any() else 0.0


def _curve(y: np.ndarray, p: np.ndarray, curve: RankCurve | None) -> RankCurve | None:
    return curve if curve is not None else RankCurve.of(y, p)


def auroc(y: np.ndarray, p: np.ndarray, curve: RankCurve | None = None) -> float:
    """Area under the ROC curve; ``curve``: the (y, p) curve when the caller already has it."""
    fast = _curve(y, p, curve)
    if fast is not None:
        return fast.auroc()
    return float(roc_auc_score(y, p)) if _both_classes(y) else float("nan")


def auprc(y: np.ndarray, p: np.ndarray, curve: RankCurve | None = None) -> float:
    fast = _curve(y, p, curve)
    if fast is not None:
        return fast.auprc()
    return float(average_precision_score(y, p)) if _both_classes(y) else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    with sklearn.config_context(skip_parameter_validation=True):
        return float(brier_score_loss(y, p))


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    with sklearn.config_context(skip_parameter_validation=True):
        return float(accuracy_score(y, p >= threshold))


def tpr_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float, curve: RankCurve | None = None) -> float:
    """Highest true-positive rate with false-positive rate <= ``max_fpr`` (ROC interpolation-free)."""
    fast = _curve(y, p, curve)
    if fast is not None:
        return fast.tpr_at_fpr(max_fpr)
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    allowed = fpr <= max_fpr + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def sensitivity_at_specificity(
    y: np.ndarray, p: np.ndarray, specificity: float, curve: RankCurve | None = None
) -> float:
    return tpr_at_fpr(y, p, 1.0 - specificity, curve)


def f1_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    with sklearn.config_context(skip_parameter_validation=True):
        return float(f1_score(y, p >= threshold, zero_division=0))


def mcc_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    with sklearn.config_context(skip_parameter_validation=True):
        return float(matthews_corrcoef(y, p >= threshold))
