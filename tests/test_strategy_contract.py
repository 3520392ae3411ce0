"""Every strategy in the catalog, on one small fixed problem: none may quietly be FedAvg.

Each non-FedAvg strategy's final model after two rounds must differ from FedAvg's on the same
institutions, model and seed (two rounds: SCAFFOLD's and FedAvgM's first round is FedAvg's by
design). Strategies that need options or another model get them from ``SETUP``; strategies for
other models (XGBoost's) are listed in ``NOT_FOR_ARRAYS`` and must really be for them.
"""

from __future__ import annotations

import numpy as np
import pytest

from consortia import ExperimentConfig
from consortia.catalog import STRATEGIES
from consortia.federation.engines.inprocess import run

#: what a strategy needs beyond the defaults (any config field; strategy_params included)
SETUP: dict[str, dict] = {
    "fedprox": {"strategy_params": {"proximal_mu": 0.5}},
    # Flower's defaults (server_momentum 0, server_learning_rate 1) make FedAvgM exactly FedAvg
    "fedavgm": {"strategy_params": {"server_momentum": 0.9}},
    "qfedavg": {"strategy_params": {"client_learning_rate": 0.01, "q": 1.0}},
    "fedma": {"model": "mlp", "model_params": {"hidden": "6"}},
}
#: tree strategies: their models are booster bytes, not arrays to average
NOT_FOR_ARRAYS = {"fedxgb_bagging", "fedxgb_cyclic"}
BASE = {
    "vertical": "synthetic", "institutions": 4, "rows": 800, "rounds": 2, "seed": 11, "local_epochs": 1,
    "finetune_epochs": 0, "model": "logistic_torch", "partition": {"kind": "dirichlet", "alpha": 1.0},
}  # fmt: skip


def _final(strategy: str, **setup) -> np.ndarray:
    outcome = run(ExperimentConfig.build(**{**BASE, "strategy": strategy, **setup}))
    return np.concatenate([a.ravel() for a in outcome.final_parameters])


_FEDAVG: dict[str, np.ndarray] = {}


def _fedavg(model: str, setup: dict) -> np.ndarray:
    keep = {k: v for k, v in setup.items() if k in ("model", "model_params")}
    if model not in _FEDAVG:
        _FEDAVG[model] = _final("fedavg", **keep)
    return _FEDAVG[model]


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if n != "fedavg" and n not in NOT_FOR_ARRAYS])
def test_strategy_is_not_fedavg(name):
    setup = SETUP.get(name, {})
    result = _final(name, **setup)
    reference = _fedavg(setup.get("model", BASE["model"]), setup)
    assert np.all(np.isfinite(result))
    assert result.shape == reference.shape
    assert not np.allclose(result, reference, rtol=0, atol=1e-4), f"{name} gave FedAvg's model"


def test_tree_strategies_are_for_trees():
    for name in NOT_FOR_ARRAYS:
        assert name.startswith("fedxgb_"), name  # a new array strategy must not hide in this list
