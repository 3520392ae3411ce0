"""Pooled metrics from score histograms equal the exact per-row computation (every vertical)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consortia.catalog import VERTICALS
from consortia.evaluation.pooled import ScoreHistogram, merge_histograms, score_bins
from consortia.verticals import get_vertical

#: sums (money) are compared relative to their size, every other metric absolutely
RELATIVE = {"money_saved"}


def _scores(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    logit = -4.0 + 3.0 * y + rng.normal(0, 1.2, size=y.size)
    return 1 / (1 + np.exp(-logit))


def _close(name: str, exact: float, pooled: float) -> bool:
    if math.isnan(exact) or math.isnan(pooled):
        return math.isnan(exact) and math.isnan(pooled)
    if name in RELATIVE:
        return abs(pooled - exact) <= 1e-3 * max(1.0, abs(exact))
    return abs(pooled - exact) <= 1e-3


@pytest.mark.parametrize("name", VERTICALS.names())
def test_histogram_pooled_metrics_equal_exact(name: str) -> None:
    vertical = get_vertical(name)
    frame = vertical.generate(4, 4_000, 7)
    target = vertical.schema.target
    institution = vertical.schema.institution_column
    rng = np.random.default_rng(0)
    frame = frame.assign(_p=_scores(frame[target].to_numpy(dtype=int), rng))
    train_mask = rng.random(len(frame)) < 0.6
    test, train = frame[~train_mask], frame[train_mask]
    columns = [c for c in vertical.metric_columns if c in frame.columns]

    def histograms(part):  # one histogram per institution, as each node would send it
        return [
            ScoreHistogram.from_scores(
                rows[target].to_numpy(dtype=int), rows["_p"].to_numpy(), {c: rows[c].to_numpy() for c in columns}
            )
            for _, rows in part.groupby(institution)
        ]

    exact = vertical.evaluate(
        test[target].to_numpy(dtype=int),
        test["_p"].to_numpy(),
        frame=test[columns].reset_index(drop=True),
        train=(train[target].to_numpy(dtype=int), train["_p"].to_numpy()),
    )
    y, p, pseudo = merge_histograms(histograms(test)).pseudo_rows()
    y_train, p_train, _ = merge_histograms(histograms(train)).pseudo_rows()
    pooled = vertical.evaluate(y, p, frame=pseudo, train=(y_train, p_train))
    assert set(pooled) == set(exact)
    far = {k: (exact[k], pooled[k]) for k in exact if not _close(k, exact[k], pooled[k])}
    assert far == {}


def test_histograms_add_up() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = rng.random(500)
    amount = rng.exponential(50, 500)
    whole = ScoreHistogram.from_scores(y, p, {"amount": amount})
    parts = merge_histograms(
        [ScoreHistogram.from_scores(y[s], p[s], {"amount": amount[s]}) for s in (slice(0, 200), slice(200, 500))]
    )
    for key, values in whole.to_arrays().items():
        np.testing.assert_allclose(parts.to_arrays()[key], values)
    assert parts.n_rows == 500
    assert ScoreHistogram.from_arrays(whole.to_arrays()).n_rows == 500


def test_bins_resolve_rare_event_scores() -> None:
    """Scores of 0.001 and 0.0011 fall in different bins (fraud models score most rows near 0)."""
    a, b = score_bins(np.array([0.001, 0.0011, 0.5, 0.999]))[:2]
    assert a != b
    assert score_bins(np.array([0.0, 1.0])).tolist() == [0, (1 << 16) - 1]
