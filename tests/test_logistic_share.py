"""The logistic learner's L2 penalty is shared out by rows in a federation (C x N / n locally).

Without the share, each institution fits ``||w||^2 / 2 + C x (own losses)``: with 1/K of the rows it
is regularised K times harder than the pooled model, and the average of its optima is over-shrunk.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from consortia.config import ExperimentConfig
from consortia.data.consortium import institution_arrays
from consortia.errors import ConfigError
from consortia.federation.engines import run_engine
from consortia.learners.logistic import LogisticLearner
from consortia.verticals import get_vertical

EXACT = 500  # solver iterations: enough for the exact minimiser of these small problems


def _data(n: int = 3000, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) * 1.5
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w - 0.5)))).astype(int)
    return X, y


def _fit(X: np.ndarray, y: np.ndarray, consortium_rows: int | None, C: float = 0.02) -> np.ndarray:
    learner = LogisticLearner(X.shape[1], {"C": C})
    if consortium_rows is not None:
        learner.share_penalty(consortium_rows)
    learner.fit(X, y, epochs=EXACT, seed=0)
    return np.concatenate([learner.coef, learner.intercept])


def _fedavg_of_local_optima(X, y, shards: int, shared: bool) -> np.ndarray:
    parts = np.array_split(np.random.default_rng(1).permutation(len(y)), shards)
    optima = [_fit(X[p], y[p], len(y) if shared else None) for p in parts]
    return np.average(optima, axis=0, weights=[len(p) for p in parts])


def test_average_of_shared_local_optima_is_near_the_pooled_optimum_and_unshared_is_not():
    X, y = _data()
    pooled = _fit(X, y, None)
    shared = np.linalg.norm(_fedavg_of_local_optima(X, y, 20, shared=True) - pooled)
    unshared = np.linalg.norm(_fedavg_of_local_optima(X, y, 20, shared=False) - pooled)
    assert shared < 0.1 * unshared, (shared, unshared)
    assert shared < 0.05 * np.linalg.norm(pooled)


def test_outside_a_federation_the_penalty_is_scikit_learns_C():
    """Centralized and local-only fits (and a one-institution consortium) keep C unchanged."""
    X, y = _data(800)
    reference = LogisticRegression(C=0.02, max_iter=EXACT).fit(X, y)
    expected = np.concatenate([reference.coef_.ravel(), reference.intercept_])
    np.testing.assert_allclose(_fit(X, y, None), expected, atol=1e-4)
    np.testing.assert_allclose(_fit(X, y, len(y)), _fit(X, y, None), atol=1e-10)


def test_nonpositive_consortium_rows_is_a_config_error():
    with pytest.raises(ConfigError, match="consortium training rows"):
        LogisticLearner(3).share_penalty(0)


def test_the_train_handler_fits_each_institution_with_its_share_of_the_consortiums_rows():
    """One FedAvg round of exact local fits from zero: the global model is the size-weighted mean of
    the institutions' C x N / n optima, N the consortium's training rows the server sent."""
    config = ExperimentConfig.build(
        vertical="healthcare", institutions=4, rows=800, rounds=1, local_epochs=EXACT, finetune_epochs=0,
        partition={"kind": "iid"}, model_params={"C": 0.05}, seed=3,
    )  # fmt: skip
    outcome = run_engine(config)
    vertical = get_vertical("healthcare")
    arrays = {
        name: institution_arrays(config, vertical, name, outcome.preprocessor.to_json())
        for name in sorted(outcome.institution_sizes)
    }
    total = sum(len(a[1]) for a in arrays.values())
    assert total == sum(s["train"] for s in outcome.institution_sizes.values())
    weights = [len(a[1]) for a in arrays.values()]

    def mean_of_local_optima(consortium_rows: int | None) -> np.ndarray:
        optima = [_fit(x, y, consortium_rows, C=0.05) for x, y, _, _ in arrays.values()]
        return np.average(optima, axis=0, weights=weights)

    federated = np.concatenate([np.ravel(a) for a in outcome.final_parameters])
    np.testing.assert_allclose(federated, mean_of_local_optima(total), atol=1e-5)
    assert np.linalg.norm(federated - mean_of_local_optima(None)) > 0.1 * np.linalg.norm(federated)
