"""What a Flower node reads back from run_config is the very config the run was given."""

from __future__ import annotations

from consortia.config import ExperimentConfig
from consortia.federation.engines import run_engine


def test_empty_string_model_params_survive_flowers_run_config() -> None:
    """``hidden=""`` (an MLP without hidden layers, FLamby's model) is a value, not "unset"."""
    config = ExperimentConfig.build(model="mlp", model_params={"hidden": "", "lr": 0.01}, strategy_params={})
    flat = config.to_run_config()
    assert flat["model_params.hidden"] == ""
    assert ExperimentConfig.from_run_config(flat).model_params == {"hidden": "", "lr": 0.01}
    assert ExperimentConfig.from_run_config({**flat, "run_dir": ""}).run_dir is None  # own keys: "" = unset


def test_nodes_train_the_model_the_config_names() -> None:
    """The federation's model has no hidden layer when the config says so (before the fix the
    nodes silently trained the vertical's default hidden layers: 6 arrays instead of 2)."""
    config = ExperimentConfig.build(
        institutions=3, rows=600, rounds=1, finetune_epochs=0, model="mlp", model_params={"hidden": ""}
    )
    outcome = run_engine(config)
    assert [a.shape for a in outcome.final_parameters] == [(1, outcome.preprocessor.n_features), (1,)]


def test_every_engine_is_registered_by_name_and_the_deployment_one_needs_files() -> None:
    import pytest

    from consortia.catalog import ENGINES
    from consortia.errors import ConfigError

    assert {"inprocess", "ray", "deployment"} <= set(ENGINES.names())
    with pytest.raises(ConfigError, match="one SuperNode per institution file"):
        ENGINES.get("deployment")(ExperimentConfig.build(engine="deployment"), None)
