"""One contract every learner must satisfy (the check_estimator idea, for federated learners)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from consortia.core.learners import LEARNERS, make_learner


def _data(seed: int = 0, n: int = 600, d: int = 6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = (X @ w + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y


LEARNER_NAMES = LEARNERS.names()


@pytest.fixture(params=LEARNER_NAMES)
def name(request):
    return request.param


def test_parameters_round_trip(name):
    X, y = _data()
    a = make_learner(name, X.shape[1], seed=1)
    a.fit(X, y, epochs=3, seed=1)
    b = make_learner(name, X.shape[1], seed=2)
    b.set_parameters(a.get_parameters())
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=0, atol=1e-7)


def test_get_parameters_returns_copies(name):
    X, y = _data()
    learner = make_learner(name, X.shape[1], seed=1)
    learner.fit(X, y, epochs=1, seed=1)  # tree learners have no parameters before a fit
    params = learner.get_parameters()
    for p in params:
        p += 100 if p.dtype.kind == "f" else 1  # (a booster travels as uint8 bytes)
    assert not np.allclose(learner.get_parameters()[0], params[0])


def test_fit_learns_and_predicts_probabilities(name):
    X, y = _data()
    learner = make_learner(name, X.shape[1], seed=0)
    learner.fit(X, y, epochs=10, seed=0)
    proba = learner.predict_proba(X)
    assert proba.shape == (len(y),)
    assert np.all((proba >= 0) & (proba <= 1))
    assert roc_auc_score(y, proba) > 0.9
    metrics = learner.evaluate(X, y)
    assert metrics["auroc"] > 0.9 and metrics["loss"] < 0.6


def test_same_seed_same_model(name):
    X, y = _data()
    runs = []
    for _ in range(2):
        learner = make_learner(name, X.shape[1], seed=3)
        learner.fit(X, y, epochs=2, seed=5)
        runs.append(learner.predict_proba(X))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_more_epochs_reduce_training_loss(name):
    X, y = _data()
    short = make_learner(name, X.shape[1], seed=0)
    short.fit(X, y, epochs=1, seed=0)
    long = make_learner(name, X.shape[1], seed=0)
    long.fit(X, y, epochs=15, seed=0)
    assert long.evaluate(X, y)["loss"] < short.evaluate(X, y)["loss"]


def test_proximal_term_is_honoured_or_refused(name):
    from consortia.errors import ConfigError

    X, y = _data()
    learner = make_learner(name, X.shape[1], seed=0)
    if not learner.supports_proximal:
        with pytest.raises(ConfigError):
            learner.fit(X, y, epochs=1, seed=0, proximal_mu=0.5)
        return
    start = [p.copy() for p in learner.get_parameters()]
    free = make_learner(name, X.shape[1], seed=0)
    free.set_parameters(start)
    free.fit(X, y, epochs=5, seed=0)
    held = make_learner(name, X.shape[1], seed=0)
    held.set_parameters(start)
    held.fit(X, y, epochs=5, seed=0, proximal_mu=50.0)

    def drift(learner):
        return sum(float(np.sum((a - b) ** 2)) for a, b in zip(learner.get_parameters(), start))

    assert drift(held) < drift(free)


def test_unknown_model_param_is_a_config_error(name):
    from consortia.errors import ConfigError

    with pytest.raises(ConfigError):
        make_learner(name, 4, {"no_such_option": 1})
