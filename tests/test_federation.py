"""The federated loop end to end on Flower: determinism, engines, strategies, quality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consortia import ExperimentConfig, run_experiment
from consortia.federation.engines import run_engine


def _final(outcome):
    return {name: modes["global"]["auroc"] for name, modes in outcome.per_institution.items()} | {
        "pooled": outcome.pooled["global"]["auroc"]
    }


def test_same_seed_same_numbers_and_other_seed_differs(small_config):
    a = run_engine(small_config())
    b = run_engine(small_config())
    assert _final(a) == _final(b)
    for x, y in zip(a.final_parameters, b.final_parameters):
        np.testing.assert_array_equal(x, y)
    c = run_engine(small_config(seed=8))
    assert _final(c) != _final(a)


def test_loop_has_every_round_and_finetuning(small_config):
    rounds = []
    outcome = run_engine(small_config(), hooks=None)
    result = run_experiment(small_config(), on_round=rounds.append)
    assert [r.round for r in rounds] == [1, 2, 3, 4]
    assert len(outcome.rounds) == 4
    for name, modes in result.per_institution.items():
        assert set(modes) == {"local_only", "federated", "federated_finetuned", "centralized"}
        assert modes["federated"]["auroc"] != modes["federated_finetuned"]["auroc"]
    assert set(result.pooled) == {"local_only", "federated", "federated_finetuned", "centralized"}


def test_inprocess_and_ray_give_the_same_metrics(small_config):
    config = small_config(institutions=3, rounds=3)
    inprocess = run_engine(config)
    ray = run_engine(config.model_copy(update={"engine": "ray"}))
    a, b = _final(inprocess), _final(ray)
    assert a.keys() == b.keys()
    for key in a:
        assert math.isclose(a[key], b[key], abs_tol=1e-6), (key, a[key], b[key])
    for x, y in zip(inprocess.final_parameters, ray.final_parameters):
        np.testing.assert_allclose(x, y, atol=1e-6)


@pytest.mark.parametrize(
    "strategy,params,model",
    [
        ("fedprox", {"proximal_mu": 0.1}, "mlp"),
        ("fedadam", {"eta": 0.05}, "logistic"),
        ("fedmedian", {}, "logistic"),
        ("fedtrimmedavg", {"beta": 0.2}, "logistic"),
    ],
)
def test_strategies_by_name_train_a_useful_model(small_config, strategy, params, model):
    result = run_experiment(
        small_config(strategy=strategy, strategy_params=params, model=model, institutions=4, rounds=3)
    )
    assert result.pooled["federated"]["auroc"] > 0.75


def test_healthcare_federation_matches_centralized_and_beats_local_only():
    config = ExperimentConfig.build(vertical="healthcare", institutions=5, rows=6000, rounds=15, seed=3)
    result = run_experiment(config)
    s = result.summary["pooled"]
    assert s["federated"] >= 0.97 * s["centralized"]
    assert s["federated"] > s["local_only_mean"]


def test_run_result_json_has_stable_summary(small_config, tmp_path):
    import json

    result = run_experiment(small_config())
    path = tmp_path / "r.json"
    result.to_json(path)
    data = json.loads(path.read_text())
    assert data["summary"]["metric"] == "auroc"
    assert set(data["summary"]["pooled"]) == {"local_only_mean", "federated", "federated_finetuned", "centralized"}
    assert len(data["rounds"]) == 4 and data["config"]["seed"] == 7
    assert data["timings"]["total_s"] > 0


def test_config_round_trips_through_flower_run_config(small_config):
    config = small_config(model="mlp", model_params={"hidden": "8,4"}, partition={"kind": "dirichlet", "alpha": 0.7})
    flat = config.to_run_config()
    assert flat["partition.kind"] == "dirichlet" and flat["model_params.hidden"] == "8,4"
    assert ExperimentConfig.from_run_config({**flat, "partition-id": 3}) == config


def test_partial_participation_is_reproducible(small_config):
    config = small_config(institutions=5, rows=2000, rounds=3, fraction_train=0.6)
    first, second = run_engine(config), run_engine(config)
    assert _final(first) == _final(second)


def test_natural_split_must_match_the_configured_institutions(small_config):
    from consortia.errors import ConfigError

    with pytest.raises(ConfigError, match="gives 2 institutions"):
        run_engine(small_config(institutions=4, partition={"kind": "natural", "column": "sex"}))


def test_temporal_split_with_a_single_training_class_is_a_clear_error():
    import pandas as pd

    from consortia.data.institutions import split_institution
    from consortia.errors import DataValidationError
    from consortia.verticals import get_vertical

    finance = get_vertical("finance")
    frame = finance.generate(2, 4000, 0)
    bank = frame[frame[finance.schema.institution_column] == frame[finance.schema.institution_column].iloc[0]]
    bank = bank.sort_values(finance.schema.time_column).reset_index(drop=True)
    target = finance.schema.target
    late = bank.index >= int(len(bank) * 0.8)  # inside the last 25 % = the test period
    bank[target] = 0
    bank.loc[bank.index[late][:3], target] = 1  # every fraud happens after the training period
    config = ExperimentConfig.build(vertical="finance", institutions=2, rows=4000)
    with pytest.raises(DataValidationError, match="single class"):
        split_institution("bank-x", pd.DataFrame(bank), finance, finance.schema, config)


def test_an_edited_input_file_is_read_again(tmp_path):
    from consortia.data.institutions import load_federation
    from consortia.verticals import get_vertical

    frame = get_vertical("healthcare").generate(2, 600, 3)
    paths = []
    for name, part in frame.groupby("hospital"):
        path = tmp_path / f"{name}.csv"
        part.drop(columns="hospital").to_csv(path, index=False)
        paths.append(str(path))
    config = ExperimentConfig.build(vertical="healthcare", data={"files": paths})
    before = load_federation(config, get_vertical(config.vertical))
    first = frame[frame["hospital"] == "hospital-01"].drop(columns="hospital")
    first.iloc[: len(first) // 2].to_csv(paths[0], index=False)  # the file shrinks
    after = load_federation(config, get_vertical(config.vertical))
    name = next(iter(before.institutions))
    assert len(after.institutions[name].train) < len(before.institutions[name].train)
