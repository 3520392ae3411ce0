"""Fraud metrics: ranking quality under rarity (AUPRC first), an alert-budget operating point,
and money.

Recall at 1 % FPR is the ROC point on the evaluated rows (a ranking measure, no threshold to
deploy). Money saved instead needs a threshold a bank could actually set before seeing the test
labels: the alert threshold is the score above which 1 % (``alert_fpr``) of the legitimate
transactions in the evaluated model's *own training rows* fall (the core passes them as
``train=(y, p)``; the vertical sets ``tunes_on_train``), so no test label ever moves it. At that
threshold, on the evaluated rows::

    money_saved = sum(amount of flagged fraud) - review_cost x (number of flagged legitimate)

``alert_threshold`` is that threshold and ``alert_fpr`` the share of the evaluated legitimate
transactions it actually flags (drift makes it differ from the 1 % budget).
``review_cost`` (currency units per false alarm an analyst reviews, default 10) and ``alert_fpr``
(default 0.01) are parameters: ``make_metrics(review_cost=25.0)`` builds a variant.
``money_saved_share`` divides by the total fraud amount among the evaluated rows, so it can be
compared across banks of different size. Money saved and its share are NaN when the rows carry no
``amount`` or no training scores are given; the threshold and ``alert_fpr`` are NaN without
training scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from consortia.evaluation import metrics as m

REVIEW_COST = 10.0
ALERT_FPR = 0.01
AMOUNT_COLUMN = "amount"


def alert_threshold(y_train: np.ndarray, p_train: np.ndarray, max_fpr: float) -> float:
    """Score above which ``max_fpr`` of the training legitimate transactions fall.

    The training negatives' score with floor(``max_fpr`` x n) of them strictly above it (about
    their (1 - ``max_fpr``) quantile); rows score strictly above it to be flagged, so the alerts
    stay within budget on the training rows. NaN without training negatives.
    """
    y_train = np.asarray(y_train).astype(int)
    negatives = np.asarray(p_train, dtype=float)[y_train == 0]
    if negatives.size == 0:
        return float("nan")
    allowed = int(np.floor(max_fpr * negatives.size + 1e-9))
    if allowed >= negatives.size:
        return float("-inf")
    # the (allowed+1)-th largest score: a partition, not a full sort (the same value)
    kth = negatives.size - 1 - allowed
    return float(np.partition(negatives, kth)[kth])


def flagged_at(p: np.ndarray, threshold: float) -> np.ndarray:
    """Rows the alert threshold sends to review."""
    return np.asarray(p, dtype=float) > threshold


def false_positive_rate(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Share of the legitimate rows flagged at ``threshold`` (NaN without legitimate rows)."""
    legit = np.asarray(y).astype(int) == 0
    if np.isnan(threshold) or not legit.any():
        return float("nan")
    return float(flagged_at(p, threshold)[legit].mean())


def money_saved(
    y: np.ndarray, p: np.ndarray, amount: np.ndarray, review_cost: float, threshold: float
) -> tuple[float, float]:
    """(money saved, its share of all fraud money) on these rows at a given alert threshold."""
    if np.isnan(threshold):
        return float("nan"), float("nan")
    flagged = flagged_at(p, threshold)
    fraud = np.asarray(y).astype(int) == 1
    saved = float(amount[flagged & fraud].sum() - review_cost * (flagged & ~fraud).sum())
    at_stake = float(amount[fraud].sum())
    return saved, saved / at_stake if at_stake > 0 else float("nan")


def make_metrics(review_cost: float = REVIEW_COST, alert_fpr: float = ALERT_FPR) -> Callable[..., dict[str, float]]:
    """Finance metrics with a given review cost per false alarm and alert budget."""

    def finance_metrics(
        y: np.ndarray,
        p: np.ndarray,
        frame: pd.DataFrame | None = None,
        train: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, float]:
        y = np.asarray(y).astype(int)
        p = np.asarray(p, dtype=float)
        threshold = alert_threshold(*train, alert_fpr) if train is not None else float("nan")
        saved, share = float("nan"), float("nan")
        if frame is not None and AMOUNT_COLUMN in frame.columns:
            amount = frame[AMOUNT_COLUMN].to_numpy(dtype=float)
            saved, share = money_saved(y, p, np.nan_to_num(amount), review_cost, threshold)
        curve = m.RankCurve.of(y, p)  # one sort for the three ranking metrics
        return {
            "auprc": m.auprc(y, p, curve),
            "auroc": m.auroc(y, p, curve),
            f"recall_at_{alert_fpr * 100:g}pct_fpr": m.tpr_at_fpr(y, p, alert_fpr, curve),
            "money_saved": saved,
            "money_saved_share": share,
            "alert_threshold": threshold,
            "alert_fpr": false_positive_rate(y, p, threshold),
        }

    return finance_metrics


finance_metrics = make_metrics()
