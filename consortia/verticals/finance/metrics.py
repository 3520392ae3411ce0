"""Fraud metrics: ranking quality under rarity (AUPRC first), an alert-budget operating point,
and money.

Money saved is measured at the same operating point as recall at 1 % FPR (the alert threshold
that flags 1 % of legitimate transactions, the budget of a review team)::

    money_saved = sum(amount of flagged fraud) - review_cost x (number of flagged legitimate)

``review_cost`` (currency units per false alarm an analyst reviews, default 10) and ``alert_fpr``
(default 0.01) are parameters: ``make_metrics(review_cost=25.0)`` builds a variant.
``money_saved_share`` divides by the total fraud amount among the evaluated rows, so it can be
compared across banks of different size. Both are NaN when the rows carry no ``amount``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from consortia import metrics as m

REVIEW_COST = 10.0
ALERT_FPR = 0.01
AMOUNT_COLUMN = "amount"


def alert_threshold(y: np.ndarray, p: np.ndarray, max_fpr: float) -> float:
    """Lowest score threshold whose false-positive rate stays within ``max_fpr``."""
    fpr, _, thresholds = roc_curve(y, p)
    allowed = np.flatnonzero(fpr <= max_fpr + 1e-12)
    return float(thresholds[allowed[-1]])


def money_saved(
    y: np.ndarray, p: np.ndarray, amount: np.ndarray, review_cost: float, max_fpr: float
) -> tuple[float, float]:
    """(money saved, its share of all fraud money) at the ``max_fpr`` alert threshold."""
    flagged = p >= alert_threshold(y, p, max_fpr)
    fraud = y == 1
    saved = float(amount[flagged & fraud].sum() - review_cost * (flagged & ~fraud).sum())
    at_stake = float(amount[fraud].sum())
    return saved, saved / at_stake if at_stake > 0 else float("nan")


def make_metrics(
    review_cost: float = REVIEW_COST, alert_fpr: float = ALERT_FPR
) -> Callable[..., dict[str, float]]:
    """Finance metrics with a given review cost per false alarm and alert budget."""

    def finance_metrics(y: np.ndarray, p: np.ndarray, frame: pd.DataFrame | None = None) -> dict[str, float]:
        y = np.asarray(y).astype(int)
        p = np.asarray(p, dtype=float)
        saved, share = float("nan"), float("nan")
        if frame is not None and AMOUNT_COLUMN in frame.columns and len(np.unique(y)) == 2:
            amount = frame[AMOUNT_COLUMN].to_numpy(dtype=float)
            saved, share = money_saved(y, p, np.nan_to_num(amount), review_cost, alert_fpr)
        return {
            "auprc": m.auprc(y, p),
            "auroc": m.auroc(y, p),
            f"recall_at_{alert_fpr * 100:g}pct_fpr": m.tpr_at_fpr(y, p, alert_fpr),
            "money_saved": saved,
            "money_saved_share": share,
        }

    return finance_metrics


finance_metrics = make_metrics()
