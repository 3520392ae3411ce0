"""FedMeta: first-order MAML steps over institutions give another global model than FedAvg."""

from __future__ import annotations

import numpy as np
import pytest

from consortia import ExperimentConfig
from consortia.errors import ConfigError
from consortia.federation.algorithms.fedmeta import meta_steps
from consortia.federation.engines.inprocess import run
from consortia.learners.logistic_torch import LogisticTorchLearner


def _config(strategy: str, **overrides) -> ExperimentConfig:
    values = {
        "vertical": "synthetic", "institutions": 3, "rows": 900, "rounds": 2, "seed": 5, "model": "mlp",
        "model_params": {"hidden": "8"}, "strategy": strategy, "finetune_epochs": 1,
    }  # fmt: skip
    values.update(overrides)
    return ExperimentConfig.build(**values)


def _flat(outcome) -> np.ndarray:
    return np.concatenate([a.ravel() for a in outcome.final_parameters])


def test_fedmeta_global_model_differs_from_fedavg_and_repeats():
    fedavg, meta, again = run(_config("fedavg")), run(_config("fedmeta")), run(_config("fedmeta"))
    assert not np.allclose(_flat(fedavg), _flat(meta), atol=1e-4)
    assert np.array_equal(_flat(meta), _flat(again))
    assert set(meta.per_institution) == set(fedavg.per_institution)  # the fine-tuning phase reports


def test_meta_steps_take_the_gradient_at_the_adapted_point():
    """With a huge inner step the outer gradient is taken far from the start: another update
    than with a tiny one, from the same start and batches."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    results = []
    for inner in (1e-6, 5.0):
        learner = LogisticTorchLearner(4)
        meta_steps(learner, x, y, epochs=1, seed=1, inner_lr=inner)
        results.append(np.concatenate([a.ravel() for a in learner.get_parameters()]))
    assert not np.allclose(results[0], results[1], atol=1e-4)


def test_reptile_with_unit_server_step_is_refused_as_fedavg():
    with pytest.raises(ConfigError, match="is FedAvg"):
        run(_config("fedmeta", strategy_params={"meta": "reptile"}))
    reptile = _flat(run(_config("fedmeta", strategy_params={"meta": "reptile", "server_lr": 0.5})))
    assert np.all(np.isfinite(reptile))
    assert not np.allclose(reptile, _flat(run(_config("fedavg"))), atol=1e-4)  # a server step of 0.5 is not FedAvg


def test_fedmeta_refuses_scikit_learn_logistic():
    with pytest.raises(ConfigError, match="model 'logistic' cannot be used with FedMeta"):
        run(_config("fedmeta", model="logistic", model_params={}, rounds=1))
