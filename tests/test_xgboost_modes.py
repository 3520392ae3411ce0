"""XGBoost in every vertical: bagging/cyclic through the Flower apps, histogram mode end to end."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import xgboost as xgb
from processes import spawned_children
from typer.testing import CliRunner

from consortia.cli import app
from consortia.config import ExperimentConfig
from consortia.errors import FederationError
from consortia.experiment import run_experiment
from consortia.experiment.histogram import run_histogram
from consortia.federation.engines import run_engine
from consortia.federation.server import ServerHooks
from consortia.runs.results import MODES
from consortia.verticals import VERTICALS

#: every vertical these tests cover; one that is not registered is a failure, never a skip
VERTICAL_NAMES = ["healthcare", "finance", "manufacturing"]
SMALL = {"institutions": 3, "rows": 1500, "rounds": 3, "seed": 5, "finetune_epochs": 1}


def _config(vertical: str, mode: str, **extra) -> ExperimentConfig:
    return ExperimentConfig.build(vertical=vertical, model="xgboost", xgb_mode=mode, **{**SMALL, **extra})


def test_every_vertical_used_here_is_registered():
    missing = [v for v in VERTICAL_NAMES if v not in VERTICALS]
    assert not missing, f"verticals not registered: {missing} (registered: {VERTICALS.names()})"


# ------------------------------------------------------------------ bagging / cyclic over Flower


@pytest.mark.parametrize("vertical", VERTICAL_NAMES)
@pytest.mark.parametrize("mode, trees_per_round", [("bagging", 3), ("cyclic", 2)])
def test_tree_modes_run_through_the_flower_apps(vertical, mode, trees_per_round):
    extra = {"local_epochs": 2} if mode == "cyclic" else {}
    config = _config(vertical, mode, selection={"early_stopping": False}, **extra)  # every round's trees
    outcome = run_engine(config, ServerHooks(report_scores=True))
    booster = xgb.Booster(model_file=bytearray(outcome.final_parameters[0].tobytes()))
    # bagging: every institution appends one tree per round; cyclic: one institution boosts
    # local_epochs trees per round on top of the model it was handed
    assert booster.num_boosted_rounds() == SMALL["rounds"] * trees_per_round
    assert len(outcome.rounds) == SMALL["rounds"]
    assert set(outcome.per_institution) and all(
        set(m) == {"global", "finetuned"} for m in outcome.per_institution.values()
    )
    primary = VERTICALS.get(vertical).primary_metric
    assert np.isfinite(outcome.pooled["global"][primary])


def test_bagging_run_is_reproducible_and_reports_every_mode(small_config):
    config = small_config(model="xgboost", rounds=3)
    first, second = run_experiment(config), run_experiment(config)
    assert first.config["strategy"] == "fedxgb_bagging"
    assert first.pooled == second.pooled
    assert set(first.pooled) == set(MODES)
    assert first.pooled["federated"]["auroc"] > 0.7


def test_cyclic_run_is_reproducible(small_config):
    config = small_config(model="xgboost", xgb_mode="cyclic", rounds=4)
    assert run_experiment(config, baselines=False).pooled == run_experiment(config, baselines=False).pooled


# ------------------------------------------------------------------ histogram (lossless)


@pytest.mark.timeout(600)
def test_histogram_run_equals_centralized_on_pooled_test():
    # finance: rare positives weighted from global label counts, early stopping on each
    # bank's own validation rows; still the pooled model, prediction for prediction
    config = _config(
        "finance", "histogram", rounds=40, rows=3000, model_params={"early_stopping_rounds": 4, "eta": 0.3}
    )
    run = run_histogram(config)
    assert run.max_pred_diff <= 1e-6
    _, p_fed, p_cen = run.pooled_test
    assert np.max(np.abs(p_fed - p_cen)) <= 1e-6 and p_cen.std() > 0.01
    assert run.federated.num_boosted_rounds() == run.centralized.num_boosted_rounds() <= 40
    result = run.result
    assert set(result.pooled) == set(MODES)
    primary = result.primary_metric
    assert result.pooled["federated"][primary] == pytest.approx(result.pooled["centralized"][primary], abs=1e-9)
    assert len(result.rounds) >= 1 and f"pooled.{primary}" in result.rounds[-1].metrics
    assert result.config["xgb_mode"] == "histogram"
    trees = float(run.federated.num_boosted_rounds())
    assert result.budget["federated"] == result.budget["centralized"] == {"trees": trees}
    # the same per-metric aggregation as the Flower path: money adds up, thresholds only pooled
    last = result.rounds[-1].metrics
    assert result.round_metric_aggregation["money_saved"] == "sum" and "money_saved" in last
    assert "alert_threshold" not in last and "pooled.alert_threshold" in last
    assert last["num-examples"] == sum(s["test"] for s in result.institution_sizes.values())


@pytest.mark.timeout(600)
def test_cli_runs_histogram_mode_and_writes_the_usual_json(tmp_path):
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        app,
        [
            "run", "healthcare", "--model", "xgboost", "--xgb-mode", "histogram", "--institutions", "3",
            "--rows", "1500", "--rounds", "5", "--run-dir", str(tmp_path / "run"), "--json", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    pooled = data["summary"]["pooled"]
    assert pooled["federated"] == pytest.approx(pooled["centralized"], abs=1e-9)
    assert any("max |federated - centralized|" in n for n in data["notes"])
    assert (tmp_path / "run" / "checkpoints").is_dir()  # `consortia predict` can use the model


@pytest.mark.timeout(600)
def test_histogram_worker_loss_stops_cleanly_with_a_clear_error():
    config = _config("healthcare", "histogram", rounds=5000, rows=1500)
    before = spawned_children()
    killed: list[float] = []

    def kill_rank_1(rank: int, rnd: int) -> None:
        if rank == 1 and rnd >= 2 and not killed:
            (worker,) = [p for p in mp.active_children() if p.name == "consortia-xgb-worker-1"]
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(time.monotonic())

    with pytest.raises(FederationError, match=r"rank 1\).*stopped.*aborted") as err:
        run_histogram(config, on_worker_round=kill_rank_1, timeout_s=20)
    assert killed, "training ended before the institution could be stopped"
    assert time.monotonic() - killed[0] < 15  # detected, not waited out
    assert "hospital" in str(err.value)  # names the institution, not just a rank
    assert spawned_children() - before == set()
