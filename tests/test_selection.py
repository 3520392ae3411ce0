"""Model selection by federated validation: held-out rows, the best round kept, the same rule for baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consortia.config.selection import VALIDATION_PREFIX
from consortia.data.consortium import load_federation
from consortia.errors import ConfigError
from consortia.evaluation.selection import BestRound, validation_score
from consortia.experiment.recorded import run_recorded
from consortia.learners import make_learner
from consortia.learners.early_stopping import fit_early_stopping
from consortia.verticals import get_vertical


def test_auto_selection_is_on_for_mlp_and_xgboost_only(small_config):
    assert small_config(model="mlp").selects_round
    assert small_config(model="xgboost").selects_round
    assert not small_config(model="logistic").selects_round
    assert not small_config(model="xgboost", xgb_mode="histogram").selects_round
    assert small_config(model="logistic", selection={"early_stopping": True}).selects_round
    assert not small_config(model="mlp", selection={"early_stopping": False}).selects_round
    with pytest.raises(ConfigError, match="histogram"):
        small_config(model="xgboost", xgb_mode="histogram", selection={"early_stopping": True})


def test_validation_rows_are_held_out_of_the_training_rows(small_config):
    vertical = get_vertical("healthcare")
    plain = load_federation(small_config(model="mlp", selection={"early_stopping": False}), vertical)
    held = load_federation(small_config(model="mlp", selection={"validation_fraction": 0.2}), vertical)
    for name, inst in held.institutions.items():
        whole = plain.institutions[name].train
        assert inst.validation is not None and plain.institutions[name].validation is None
        assert len(inst.train) + len(inst.validation) == len(whole)
        assert abs(len(inst.validation) - 0.2 * len(whole)) <= 2  # stratified: rounded per class
        rows = lambda frame: {tuple(r) for r in frame.astype(str).itertuples(index=False)}  # noqa: E731
        assert rows(inst.train).isdisjoint(rows(inst.validation))
        assert rows(inst.train) | rows(inst.validation) == rows(whole)
        assert inst.test.equals(plain.institutions[name].test)  # test rows untouched


def test_best_round_rule():
    best: BestRound[str] = BestRound(patience=2, min_delta=0.01)
    for round_, score in enumerate([0.5, 0.7, 0.705, math.nan, 0.6], start=1):
        best.observe(round_, score, f"model-{round_}")
    assert (best.best_round, best.best_model, best.should_stop()) == (2, "model-2", True)  # 0.705: within min_delta
    votes = [
        {"validation.auroc": 0.8, "validation.num-examples": 30},
        {"validation.auroc": 0.5, "validation.num-examples": 10},
        {"validation.num-examples": 0.0},  # single-class validation rows: no vote
    ]
    weighted = validation_score(votes, "auroc")
    assert weighted == pytest.approx((0.8 * 30 + 0.5 * 10) / 40)


def test_the_run_keeps_its_best_round_and_stops_after_patience(small_config, tmp_path):
    # a large learning rate over-fits small hospitals quickly: the validation curve peaks, then falls
    config = small_config(
        model="mlp", model_params={"lr": 0.05, "hidden": "64,64"}, rounds=25, local_epochs=3,
        selection={"patience": 2}, run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    result, folder = run_recorded(config)
    key = VALIDATION_PREFIX + "auroc"
    scores = [r.metrics[key] for r in result.rounds]
    best = BestRound(patience=2, min_delta=config.selection.min_delta)
    for i, score in enumerate(scores, start=1):
        best.observe(i, score, i)
    assert best.best_round < len(scores) == best.best_round + 2 < 25, scores  # stopped, 2 rounds after the best
    outcome = folder.read_outcome()
    assert outcome.selection["best_round"] == best.best_round
    kept = folder.checkpoint(best.best_round).parameters
    last = folder.latest_checkpoint().parameters
    for a, b in zip(outcome.final_parameters, kept, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(outcome.final_parameters, last, strict=True))
    assert result.budget["federated"]["epochs"] == best.best_round * 3
    assert any(note.startswith(f"early stopping: kept round {best.best_round} of") for note in result.notes)
    # the baselines stopped by the same rule within the same budget (75 epochs)
    assert result.budget["centralized"]["epochs"] < 75 and result.budget["local_only"]["epochs"] < 75


def test_baseline_early_stopping_equals_fit_up_to_the_kept_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)

    def learner():
        return make_learner("mlp", 5, {"hidden": "8"}, seed=3, device="cpu")

    scripted = iter([0.6, 0.8, 0.7, 0.75, 0.79, 0.9])  # best at epoch 2, stop after 3 more
    stopped = learner()
    kept, _ = fit_early_stopping(stopped, x, y, epochs=6, seed=11, score=lambda _: next(scripted), patience=3)
    reference = learner()
    reference.fit(x, y, epochs=2, seed=11)
    assert kept == 2
    for a, b in zip(stopped.get_parameters(), reference.get_parameters(), strict=True):
        np.testing.assert_array_equal(a, b)

    rising = iter(range(10))  # never stops: the model is fit(epochs=4)'s
    unstopped = learner()
    assert fit_early_stopping(unstopped, x, y, epochs=4, seed=11, score=lambda _: next(rising), patience=2)[0] == 4
    reference = learner()
    reference.fit(x, y, epochs=4, seed=11)
    for a, b in zip(unstopped.get_parameters(), reference.get_parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bagging_xgboost_keeps_the_trees_of_its_best_round(small_config, tmp_path):
    config = small_config(
        model="xgboost", model_params={"eta": 0.8, "max_depth": 6}, rounds=12, selection={"patience": 2},
        run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    result, folder = run_recorded(config)
    best_round = int(folder.read_outcome().selection["best_round"])
    assert result.budget["federated"]["trees"] == best_round * 3  # one tree per hospital per round
    assert len(result.rounds) <= 12


def test_learning_rate_search_trains_with_the_rate_that_validates_best(small_config, tmp_path):
    # a rate too small to learn in two rounds must lose; if nodes ignored the searched rate, both would tie
    config = small_config(
        model="mlp", rounds=3, run_dir=str(tmp_path / "run"),
        selection={"learning_rates": [1e-6, 0.02], "search_rounds": 2},
    )  # fmt: skip
    result, folder = run_recorded(config)
    selection = folder.read_outcome().selection
    scores = selection["learning_rate_scores"]
    assert selection["learning_rate"] == 0.02 and scores["0.02"] > scores["1e-06"] + 0.01
    assert any(note.startswith("learning rate 0.02 chosen by federated validation") for note in result.notes)
    assert len(result.rounds) <= 3  # the search rounds are not the run's rounds
    with pytest.raises(ConfigError, match="no learning rate"):
        small_config(model="logistic", selection={"early_stopping": True, "learning_rates": [0.1]})


def test_baseline_early_stopping_keeps_the_whole_booster_of_the_best_epoch():
    # bagging's get_parameters is only the newest tree: the kept model must still have every tree up to the best
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(int)
    learner = make_learner("xgboost", 4, {"max_depth": 2}, seed=0, device="cpu")
    scripted = iter([0.5, 0.6, 0.7, 0.65, 0.66, 0.67, 0.9])
    kept, _ = fit_early_stopping(learner, x, y, epochs=7, seed=3, score=lambda _: next(scripted), patience=3)
    assert kept == 3 and learner.num_rounds == 3
