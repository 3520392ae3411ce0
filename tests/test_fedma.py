"""FedMA: matched averaging lines up hidden units that plain averaging mixes."""

from __future__ import annotations

import numpy as np
import pytest

from consortia import ExperimentConfig
from consortia.errors import ConfigError
from consortia.federation.algorithms.matching import average, matched_average, permute_layer
from consortia.federation.engines.inprocess import run
from consortia.learners.mlp import MLPLearner

WEIGHTS = np.array([0.4, 0.35, 0.25])


@pytest.fixture(scope="module")
def trained():
    """Three institutions' MLPs, each from its own initialisation (seed), on its own rows."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=8)
    x = rng.normal(size=(1500, 8)).astype(np.float32)
    y = ((np.sin(x @ truth) + 0.3 * rng.normal(size=1500)) > 0).astype(np.float32)  # needs the hidden layers
    models = []
    for seed, rows in zip((1, 2, 3), np.array_split(np.arange(1500), 3), strict=True):
        learner = MLPLearner(8, {"hidden": "12,6", "lr": 0.02}, seed=seed)
        learner.fit(x[rows], y[rows], epochs=30, seed=seed)
        models.append(learner.get_parameters())
    return x, y, models


def _loss(parameters, x, y) -> float:
    learner = MLPLearner(8, {"hidden": "12,6"})
    learner.set_parameters(parameters)
    return learner.evaluate(x, y)["loss"]


def test_matched_average_beats_plain_average_of_independent_models(trained):
    x, y, models = trained
    plain, matched = _loss(average(models, WEIGHTS), x, y), _loss(matched_average(models, WEIGHTS), x, y)
    assert matched < plain - 0.02, (matched, plain)


def test_matching_ignores_how_an_institution_numbers_its_units(trained):
    x, y, models = trained
    rng = np.random.default_rng(5)
    shuffled = permute_layer(models[1], 0, rng.permutation(12))
    shuffled = permute_layer(shuffled, 1, rng.permutation(6))
    renumbered = [models[0], shuffled, models[2]]
    # the same function for that institution ...
    assert _loss(shuffled, x, y) == pytest.approx(_loss(models[1], x, y), abs=1e-6)
    # ... the same FedMA result, but another FedAvg result
    for a, b in zip(matched_average(models, WEIGHTS), matched_average(renumbered, WEIGHTS), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert not all(
        np.allclose(a, b) for a, b in zip(average(models, WEIGHTS), average(renumbered, WEIGHTS), strict=True)
    )


def _config(strategy: str, **overrides) -> ExperimentConfig:
    values = {
        "vertical": "synthetic", "institutions": 3, "rows": 1500, "rounds": 3, "seed": 3, "model": "mlp",
        "model_params": {"hidden": "8,4"}, "strategy": strategy, "local_epochs": 2, "finetune_epochs": 0,
    }  # fmt: skip
    values.update(overrides)
    return ExperimentConfig.build(**values)


def test_fedma_federation_differs_from_fedavg_and_repeats():
    fedavg, fedma, again = run(_config("fedavg")), run(_config("fedma")), run(_config("fedma"))
    flat = [np.concatenate([a.ravel() for a in o.final_parameters]) for o in (fedavg, fedma, again)]
    assert not np.allclose(flat[0], flat[1], atol=1e-3)
    assert np.array_equal(flat[1], flat[2])
    assert len(fedma.rounds) == 3  # two matching rounds, then FedAvg


def test_fedma_refuses_a_model_without_layers_of_units():
    with pytest.raises(ConfigError, match="FedMA"):
        run(_config("fedma", model="logistic_torch", model_params={}, rounds=1))


def test_fedma_refuses_partial_participation():
    with pytest.raises(ConfigError, match="fraction_train 1"):
        run(_config("fedma", fraction_train=0.5, rounds=1))
