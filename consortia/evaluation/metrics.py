"""Binary-classification metrics shared by the verticals (all from scikit-learn)."""

from __future__ import annotations

import numpy as np
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


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if _both_classes(y) else float("nan")


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    return float(average_precision_score(y, p)) if _both_classes(y) else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(brier_score_loss(y, p))


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(accuracy_score(y, p >= threshold))


def tpr_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float) -> float:
    """Highest true-positive rate with false-positive rate <= ``max_fpr`` (ROC interpolation-free)."""
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    allowed = fpr <= max_fpr + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def sensitivity_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float) -> float:
    return tpr_at_fpr(y, p, 1.0 - specificity)


def f1_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    return float(f1_score(y, p >= threshold, zero_division=0))


def mcc_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    return float(matthews_corrcoef(y, p >= threshold))
