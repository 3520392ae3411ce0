"""Quality metrics: AUPRC first (defects are rare), AUROC, and F1 / MCC at a decision threshold
tuned on training data only.

The threshold is the one that maximises F1 on the evaluated model's scores on *its own training
rows* (the core passes them as ``train=(y, p)``; the vertical sets ``tunes_on_train``): no test
label ever moves it. Without training scores F1, MCC and the threshold are NaN.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve

from consortia.evaluation import metrics as m


def f1_threshold(y_train: np.ndarray, p_train: np.ndarray) -> float:
    """The score threshold with the best F1 on training rows (0.5 if they hold one class)."""
    y_train = np.asarray(y_train).astype(int)
    if len(np.unique(y_train)) < 2:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_train, p_train)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[np.argmax(f1[:-1])])


def manufacturing_metrics(
    y: np.ndarray, p: np.ndarray, train: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    threshold = f1_threshold(*train) if train is not None else float("nan")
    tuned = not np.isnan(threshold)
    curve = m.RankCurve.of(y, p)  # one sort for both ranking metrics
    return {
        "auprc": m.auprc(y, p, curve),
        "auroc": m.auroc(y, p, curve),
        "f1": m.f1_at(y, p, threshold) if tuned else float("nan"),
        "mcc": m.mcc_at(y, p, threshold) if tuned else float("nan"),
        "threshold": threshold,
    }
