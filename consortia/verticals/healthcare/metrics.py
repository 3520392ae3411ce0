"""Clinical metrics: discrimination first (AUROC), then calibration and a screening operating point."""

from __future__ import annotations

import numpy as np

from consortia.evaluation import metrics as m


def healthcare_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    curve = m.RankCurve.of(y, p)  # one sort for the ranking metrics
    return {
        "auroc": m.auroc(y, p, curve),
        "auprc": m.auprc(y, p, curve),
        "brier": m.brier(y, p),
        "accuracy": m.accuracy(y, p),
        "sensitivity_at_90_specificity": m.sensitivity_at_specificity(y, p, 0.90, curve),
    }
