"""The XGBoost learner and its wiring onto Flower's FedXgbBagging / FedXgbCyclic (no processes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb
from flwr.serverapp.strategy.strategy_utils import aggregate_bagging

from consortia.config import ExperimentConfig
from consortia.errors import ConfigError
from consortia.federation.strategies import build_strategy
from consortia.learners import make_learner
from consortia.learners.xgboost.histogram import GlobalBinning
from consortia.learners.xgboost.learner import BIN_EDGES_ATTR


def _data(seed: int = 0, n: int = 800, d: int = 5, positive_rate: float = 0.5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    logit = X[:, 0] - X[:, 1] * X[:, 2] + np.log(positive_rate / (1 - positive_rate))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _booster(params: list[np.ndarray]) -> xgb.Booster:
    return xgb.Booster(model_file=bytearray(params[0].tobytes()))


def _margin(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(X), output_margin=True)


def test_unfitted_learner_sends_empty_bytes_and_predicts_half():
    learner = make_learner("xgboost", 5, {"xgb_mode": "bagging"})
    (raw,) = learner.get_parameters()
    assert raw.dtype == np.uint8 and raw.size == 0  # FedXgbBagging's "no global model yet"
    np.testing.assert_array_equal(learner.predict_proba(np.zeros((3, 5))), 0.5)


def test_bagging_sends_only_new_trees_and_flower_appends_them():
    X, y = _data()
    parts = [(X[:400], y[:400]), (X[400:], y[400:])]
    start = make_learner("xgboost", 5, {"xgb_mode": "cyclic"})
    start.fit(X, y, epochs=2, seed=0)
    global_bytes = start.get_parameters()[0].tobytes()

    merged, new_margins = global_bytes, []
    for i, (Xi, yi) in enumerate(parts):
        learner = make_learner("xgboost", 5, {"xgb_mode": "bagging"})
        learner.set_parameters([np.frombuffer(global_bytes, dtype=np.uint8)])
        learner.fit(Xi, yi, epochs=1, seed=i)
        sent = learner.get_parameters()
        assert _booster(sent).num_boosted_rounds() == 1  # only the tree added this round
        full = _booster([np.frombuffer(learner._model, dtype=np.uint8)])
        new_margins.append(_margin(full, X) - _margin(_booster([np.frombuffer(global_bytes, np.uint8)]), X))
        merged = aggregate_bagging(merged, sent[0].tobytes())  # what FedXgbBagging does

    merged_bst = xgb.Booster(model_file=bytearray(merged))
    assert merged_bst.num_boosted_rounds() == 4
    expected = _margin(_booster([np.frombuffer(global_bytes, np.uint8)]), X) + sum(new_margins)
    np.testing.assert_allclose(_margin(merged_bst, X), expected, atol=1e-5)


def test_bagging_refuses_to_send_more_than_one_round():
    X, y = _data()
    learner = make_learner("xgboost", 5, {"xgb_mode": "bagging"})
    learner.fit(X, y, epochs=2, seed=0)
    with pytest.raises(ConfigError, match="one boosting round"):
        learner.get_parameters()


def test_cyclic_continues_the_global_model_and_sends_all_of_it():
    X, y = _data()
    first = make_learner("xgboost", 5, {"xgb_mode": "cyclic", "trees_per_epoch": 2})
    first.fit(X[:400], y[:400], epochs=1, seed=0)
    second = make_learner("xgboost", 5, {"xgb_mode": "cyclic", "trees_per_epoch": 2})
    second.set_parameters(first.get_parameters())
    second.fit(X[400:], y[400:], epochs=3, seed=1)
    sent = _booster(second.get_parameters())
    assert sent.num_boosted_rounds() == 2 + 6
    # the first institution's trees are kept unchanged at the front
    head = sent[:2]
    np.testing.assert_allclose(head.predict(xgb.DMatrix(X)), first.predict_proba(X).astype(np.float32), atol=1e-6)


def test_balanced_weight_uses_the_institutions_own_labels():
    X, y = _data(positive_rate=0.05, n=2000)
    plain = make_learner("xgboost", 5, {"xgb_mode": "cyclic"})
    weighted = make_learner("xgboost", 5, {"xgb_mode": "cyclic", "scale_pos_weight": "balanced"})
    plain.fit(X, y, epochs=5, seed=0)
    weighted.fit(X, y, epochs=5, seed=0)
    config = json.loads(_booster(weighted.get_parameters()).save_config())
    spw = float(config["learner"]["objective"]["reg_loss_param"]["scale_pos_weight"])
    assert spw == pytest.approx((y == 0).sum() / (y == 1).sum(), rel=1e-6)
    # weighting positives up raises every predicted probability of the rare class
    assert weighted.predict_proba(X)[y == 1].mean() > plain.predict_proba(X)[y == 1].mean() + 0.1


def test_early_stopping_holds_out_rows_and_keeps_the_best_round():
    X, y = _data(seed=3, n=600)
    y = np.random.default_rng(0).permutation(y)  # pure noise: validation loss rises at once
    params = {"xgb_mode": "cyclic", "early_stopping_rounds": 3, "eta": 0.8, "max_depth": 6}
    learner = make_learner("xgboost", 5, params)
    learner.fit(X, y, epochs=200, seed=0)
    assert learner.num_rounds < 50
    # never cuts into the model it started from
    start = learner.num_rounds
    learner.fit(X, y, epochs=50, seed=1)
    assert learner.num_rounds >= start


def test_histogram_model_bins_raw_features_with_its_own_edges():
    X, y = _data()
    binning = GlobalBinning(edges=[np.quantile(X[:, j], np.linspace(0.1, 0.9, 9)) for j in range(5)])
    booster = xgb.train(
        {"objective": "binary:logistic", "tree_method": "hist", "max_bin": binning.n_bins},
        xgb.DMatrix(binning.transform(X), label=y),
        5,
    )
    learner = make_learner("xgboost", 5, {"xgb_mode": "histogram"})
    learner.set_booster(booster, binning.edges)
    expected = booster.predict(xgb.DMatrix(binning.transform(X)))
    np.testing.assert_allclose(learner.predict_proba(X), expected, atol=1e-7)
    copy = make_learner("xgboost", 5, {"xgb_mode": "histogram"})
    copy.set_parameters(learner.get_parameters())  # the edges travel inside the model
    assert _booster(copy.get_parameters()).attr(BIN_EDGES_ATTR)
    np.testing.assert_allclose(copy.predict_proba(X), expected, atol=1e-7)
    copy.fit(X, y, epochs=2, seed=0)  # local fine-tuning on top keeps binning
    assert copy.num_rounds == 7 and _booster(copy.get_parameters()).attr(BIN_EDGES_ATTR)


@pytest.mark.parametrize(
    "params",
    [{"xgb_mode": "boosting"}, {"max_dept": 3}, {"scale_pos_weight": "lots"}, {"trees_per_epoch": 0}],
)
def test_bad_model_params_are_config_errors(params):
    with pytest.raises(ConfigError):
        make_learner("xgboost", 4, params)


# ------------------------------------------------------------------ config -> Flower strategy


def test_xgb_mode_picks_the_flower_strategy_and_reaches_the_learner():
    for mode, strategy in [("bagging", "fedxgb_bagging"), ("cyclic", "fedxgb_cyclic"), ("histogram", "fedavg")]:
        config = ExperimentConfig.build(model="xgboost", xgb_mode=mode)
        assert config.strategy == strategy and config.model_params["xgb_mode"] == mode
        again = ExperimentConfig.from_run_config(config.to_run_config())  # what Flower nodes see
        assert again == config
    assert ExperimentConfig.build(model="xgboost").xgb_mode == "bagging"
    assert (
        ExperimentConfig.build(model="xgboost", strategy="fedxgb_cyclic", xgb_mode="cyclic").strategy == "fedxgb_cyclic"
    )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": "xgboost", "xgb_mode": "bagging", "strategy": "fedprox"}, "fedxgb_bagging"),
        ({"model": "xgboost", "xgb_mode": "cyclic", "strategy": "fedxgb_bagging"}, "fedxgb_cyclic"),
        ({"model": "xgboost", "xgb_mode": "histogram", "strategy": "krum"}, "not a Flower strategy"),
        ({"model": "logistic", "strategy": "fedxgb_bagging"}, "model 'xgboost'"),
        ({"model": "xgboost", "xgb_mode": "bagging", "local_epochs": 3}, "local_epochs"),
        ({"model": "xgboost", "xgb_mode": "cyclic", "model_params": {"xgb_mode": "bagging"}}, "disagree"),
    ],
)
def test_inconsistent_xgboost_settings_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.build(**values)


def test_cyclic_strategy_visits_institutions_in_node_order():
    strategy = build_strategy("fedxgb_cyclic", {}, num_institutions=4)
    assert strategy._reorder_nodes([40, 10, 30, 20]) == [10, 20, 30, 40]
    assert strategy._reorder_nodes([30, 50, 10]) == [10, 30, 50]  # a newcomer goes last


def test_learner_default_mode_is_the_config_default():
    from consortia.config.xgboost import DEFAULT_XGB_MODE

    assert make_learner("xgboost", 4).mode == DEFAULT_XGB_MODE == ExperimentConfig.build(model="xgboost").xgb_mode


@pytest.mark.parametrize("params, device", [({"device": "cuda"}, "cuda"), ({"device": "cpu"}, None), ({}, None)])
def test_device_model_param_reaches_xgboost(params, device):
    learner = make_learner("xgboost", 4, params)  # (only configured here: no GPU needed)
    assert learner.xgb_params.get("device") == device
