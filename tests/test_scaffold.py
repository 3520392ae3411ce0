"""SCAFFOLD: control variates pull non-IID institutions' training back towards the pooled optimum."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from consortia import ExperimentConfig
from consortia.data.consortium import institution_arrays
from consortia.errors import ConfigError
from consortia.federation.engines.inprocess import run
from consortia.verticals import get_vertical


def _config(strategy: str, **overrides) -> ExperimentConfig:
    values = {
        "vertical": "synthetic", "institutions": 4, "rows": 2000, "rounds": 10, "seed": 3,
        "model": "logistic_torch", "strategy": strategy, "local_epochs": 5, "finetune_epochs": 0,
        "partition": {"kind": "dirichlet", "alpha": 0.5},  # label skew: local optima far apart
    }  # fmt: skip
    values.update(overrides)
    return ExperimentConfig.build(**values)


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([a.ravel() for a in arrays])


def _pooled_optimum(config: ExperimentConfig, outcome) -> np.ndarray:
    """The centralized optimum: unpenalised logistic regression on every institution's training rows."""
    vertical = get_vertical(config.vertical)
    parts = [institution_arrays(config, vertical, n, outcome.preprocessor.to_json()) for n in outcome.institution_sizes]
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    model = LogisticRegression(C=1e8, max_iter=10_000, tol=1e-10).fit(x, y)
    return np.concatenate([model.coef_.ravel(), model.intercept_])


def test_scaffold_corrects_client_drift_towards_the_pooled_optimum():
    fedavg = run(_config("fedavg"))
    scaffold = run(_config("scaffold"))
    optimum = _pooled_optimum(_config("fedavg"), fedavg)
    avg_gap = np.linalg.norm(_flat(fedavg.final_parameters) - optimum)
    scaffold_gap = np.linalg.norm(_flat(scaffold.final_parameters) - optimum)
    assert not np.allclose(_flat(fedavg.final_parameters), _flat(scaffold.final_parameters), atol=1e-3)
    assert scaffold_gap < 0.5 * avg_gap, (scaffold_gap, avg_gap)


def test_scaffold_is_reproducible():
    first, second = run(_config("scaffold", rounds=3)), run(_config("scaffold", rounds=3))
    assert np.array_equal(_flat(first.final_parameters), _flat(second.final_parameters))


def test_scaffold_refuses_a_model_without_gradient_steps():
    with pytest.raises(ConfigError, match="model 'logistic' cannot be used with SCAFFOLD"):
        run(_config("scaffold", model="logistic", rounds=1))


def test_scaffold_refuses_a_bad_option():
    with pytest.raises(ConfigError, match="option must be 1 or 2"):
        run(_config("scaffold", rounds=1, strategy_params={"option": 3}))
