"""Paths that used to run and give a quietly wrong answer: each is refused or fixed, and checked.

* histogram XGBoost on the Flower ServerApp (a deployment) fell through to FedAvg over booster bytes
  (it now trains the joint booster, tests/test_xgb_histogram_deployment.py; the one-node-at-a-time
  in-process grid, where it would wait out a timeout, refuses it);
* bagging's global model had ``institutions`` times the trees of the baselines it was compared with;
* ``fedprox`` without ``proximal-mu`` was FedAvg;
* random node ids (Ray, deployments) changed the sampled institutions and the cyclic order for a seed;
* a round's money saved and thresholds were weighted means over institutions.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import xgboost as xgb
from flwr.app import ConfigRecord, Context, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from recording import Recording, run_recorded

from consortia import ExperimentConfig, run_experiment
from consortia.data.consortium import load_federation
from consortia.errors import ConfigError
from consortia.experiment.baselines import training_budget
from consortia.federation.engines import inprocess, run_engine
from consortia.federation.engines.inprocess import InProcessGrid, start_server_task
from consortia.federation.server import ServerHooks, run_federation
from consortia.federation.strategies import build_strategy
from consortia.runs.results import aggregate_over_institutions, metric_aggregation
from consortia.verticals import get_vertical


def _grid(config: ExperimentConfig, app: Recording) -> InProcessGrid:
    nodes = [{"partition-id": i, "num-partitions": config.institutions} for i in range(config.institutions)]
    grid = InProcessGrid(app, nodes, config.to_run_config())
    start_server_task(grid)
    return grid


def _trees(parameters: list[np.ndarray]) -> int:
    return xgb.Booster(model_file=bytearray(parameters[0].tobytes())).num_boosted_rounds()


# ------------------------------------------------------------------ 1. histogram on the ServerApp


def test_histogram_xgboost_is_refused_by_the_server_app_before_any_node_is_asked():
    config = ExperimentConfig.build(model="xgboost", xgb_mode="histogram", institutions=3, rows=1500, rounds=2)
    recording = Recording()
    with pytest.raises(ConfigError, match="xgb_mode 'histogram' needs every node training at once") as err:
        run_federation(_grid(config, recording), config, ServerHooks(report_scores=False))
    assert "\n" not in str(err.value) and "bagging" in str(err.value)
    assert recording.calls == []

    # the very object `flwr run` loads, with the experiment in the run config as a deployment sends it
    from consortia.federation.engines.deployment.app import server_app

    context = Context(
        run_id=1, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(), run_config=config.to_run_config()
    )
    with pytest.raises(ConfigError, match="histogram"):
        server_app(_grid(config, recording), context)
    assert recording.calls == []


# ------------------------------------------------------------------ 2. the same model size for every mode


def test_bagging_baselines_get_as_many_trees_as_the_global_model(small_config):
    # a fixed budget (early stopping would keep each mode's best size: tests/test_selection.py)
    config = small_config(model="xgboost", institutions=3, rounds=3, selection={"early_stopping": False})
    result = run_experiment(config)
    assert result.budget["federated"] == {"trees": 9.0}  # FedXgbBagging: 3 rounds x 3 institutions
    assert result.budget["centralized"] == result.budget["local_only"] == result.budget["federated"]
    assert result.budget["federated_finetuned"] == {"trees": 9.0 + config.finetune_epochs}
    assert training_budget(config) == 9
    assert any(n.startswith("model size per mode: federated 9 trees") for n in result.notes)


@pytest.mark.parametrize(
    "values, trees",
    [
        ({"xgb_mode": "bagging", "institutions": 5, "fraction_train": 0.6}, 3 * 3),  # 3 of 5 train a round
        ({"xgb_mode": "cyclic", "local_epochs": 2}, 3 * 2),  # one institution boosts 2 trees a round
    ],
)
def test_training_budget_is_the_size_of_the_federated_model(small_config, values, trees):
    config = small_config(model="xgboost", rounds=3, selection={"early_stopping": False}, **values)
    assert _trees(run_engine(config).final_parameters) == training_budget(config) == trees


# ------------------------------------------------------------------ 3. fedprox


@pytest.mark.parametrize("params", [{}, {"proximal-mu": 0}, {"proximal_mu": -1.0}])
def test_fedprox_without_a_proximal_term_is_a_one_line_config_error(params):
    with pytest.raises(ConfigError, match=r"--strategy-param proximal-mu=0\.1") as err:
        build_strategy("fedprox", params, num_institutions=3)
    assert "\n" not in str(err.value)


def test_fedprox_without_a_proximal_term_stops_a_run_before_any_node_is_asked(small_config):
    recording = Recording()
    with pytest.raises(ConfigError, match="proximal-mu"):
        inprocess.run(small_config(strategy="fedprox", model="mlp"), client_app=recording)
    assert recording.calls == []


def test_fedprox_mu_reaches_every_training_institution_and_changes_the_model(small_config):
    config = small_config(strategy="fedprox", strategy_params={"proximal-mu": 0.5}, model="mlp", rounds=2)
    outcome, recording = run_recorded(config)
    train = recording.of_type("train")
    assert len(train) == config.rounds * config.institutions
    assert all(call.config["proximal-mu"] == 0.5 for call in train)
    fedavg = run_engine(small_config(model="mlp", rounds=2))
    gap = max(
        float(np.max(np.abs(a - b))) for a, b in zip(outcome.final_parameters, fedavg.final_parameters, strict=True)
    )
    assert gap > 1e-9


# ------------------------------------------------------------------ 4. institutions, not node ids

RANDOM_IDS = random.Random(1).sample(range(1, 2**62), 5)


def test_sampling_and_the_model_depend_on_institutions_not_on_node_ids(small_config):
    config = small_config(institutions=5, rows=2000, rounds=3, fraction_train=0.6)
    reference, recorded = run_recorded(config)  # consecutive ids, in partition order
    trained = recorded.trained()
    assert list(trained) == [1, 2, 3] and all(len(p) == 3 for p in trained.values())  # a subset each round
    for ids in (RANDOM_IDS, sorted(RANDOM_IDS, reverse=True)):  # ids whose order is not the partitions'
        outcome, other = run_recorded(config, node_ids=ids)
        assert other.trained() == trained
        for a, b in zip(reference.final_parameters, outcome.final_parameters, strict=True):
            np.testing.assert_array_equal(a, b)


def test_cyclic_turns_follow_the_institutions_not_the_node_ids(small_config):
    config = small_config(model="xgboost", xgb_mode="cyclic", institutions=3, rounds=4)
    names = load_federation(config, get_vertical(config.vertical)).names
    turns = sorted(range(3), key=lambda p: names[p])  # institution (name) order
    expected = {r: [turns[(r - 1) % 3]] for r in range(1, 5)}
    finals = []
    for ids in (None, [30, 10, 20], RANDOM_IDS[:3]):
        outcome, recording = run_recorded(config, node_ids=ids)
        assert recording.trained() == expected, ids
        finals.append(outcome.final_parameters[0])
    assert all(np.array_equal(finals[0], f) for f in finals[1:])


# ------------------------------------------------------------------ 5. what a round reports


def test_round_metrics_sum_money_and_counts_and_leave_thresholds_to_the_pooled_rows():
    config = ExperimentConfig.build(vertical="finance", institutions=3, rows=4000, rounds=2, seed=5)
    outcome, recording = run_recorded(config)
    replies = [dict(c.reply.content["metrics"]) for c in recording.of_type("evaluate") if c.server_round == 2]
    assert len(replies) == 3
    metrics = outcome.rounds[-1].metrics
    assert metrics["num-examples"] == sum(r["num-examples"] for r in replies)
    assert metrics["money_saved"] == pytest.approx(sum(r["money_saved"] for r in replies))
    weights = [r["num-examples"] for r in replies]
    assert metrics["auprc"] == pytest.approx(np.average([r["auprc"] for r in replies], weights=weights))
    for name in ("alert_threshold", "alert_fpr", "money_saved_share"):
        assert name not in metrics and f"pooled.{name}" in metrics

    result = run_experiment(config, baselines=False)
    rules = result.round_metric_aggregation
    assert rules["money_saved"] == rules["num-examples"] == "sum"
    assert rules["alert_threshold"] == rules["money_saved_share"] == "pooled_only"
    assert rules["auprc"] == "weighted_mean"


def test_weighted_means_keep_flowers_arithmetic_to_the_last_bit():
    rng = np.random.default_rng(0)
    per = [{"num-examples": int(n), "auroc": float(a), "brier": float(b)} for n, a, b in rng.random((4, 3)) * 100]
    records = [RecordDict({"metrics": MetricRecord(m), "config": ConfigRecord()}) for m in per]
    flower = aggregate_metricrecords(records, "num-examples")
    ours = aggregate_over_institutions(per, [m["num-examples"] for m in per], metric_aggregation(per[0]))
    assert ours["auroc"] == flower["auroc"] and ours["brier"] == flower["brier"]
    assert ours["num-examples"] == sum(m["num-examples"] for m in per)
