"""One contract every learner must satisfy (the check_estimator idea, for federated learners)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from consortia.learners import LEARNERS, make_learner


def _data(seed: int = 0, n: int = 600, d: int = 6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = (X @ w + 0.5 * rng.normal(size=n) > 0).astype(int)
    return X, y


LEARNER_NAMES = LEARNERS.names()
#: xgboost's default mode (bagging) sends only a fit's new trees; its whole-model mode is cyclic
CONTRACT_PARAMS = {"xgboost": {"xgb_mode": "cyclic"}}


def _make(name: str, n_features: int, seed: int):
    return make_learner(name, n_features, CONTRACT_PARAMS.get(name), seed=seed)


@pytest.fixture(params=LEARNER_NAMES)
def name(request):
    return request.param


def test_parameters_round_trip(name):
    X, y = _data()
    a = _make(name, X.shape[1], seed=1)
    a.fit(X, y, epochs=3, seed=1)
    b = _make(name, X.shape[1], seed=2)
    b.set_parameters(a.get_parameters())
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=0, atol=1e-7)


def test_get_parameters_returns_copies(name):
    X, y = _data()
    learner = _make(name, X.shape[1], seed=1)
    learner.fit(X, y, epochs=1, seed=1)  # tree learners have no parameters before a fit
    params = learner.get_parameters()
    for p in params:
        p += 100 if p.dtype.kind == "f" else 1  # (a booster travels as uint8 bytes)
    assert not np.allclose(learner.get_parameters()[0], params[0])


def test_fit_learns_and_predicts_probabilities(name):
    X, y = _data()
    learner = _make(name, X.shape[1], seed=0)
    learner.fit(X, y, epochs=10, seed=0)
    proba = learner.predict_proba(X)
    assert proba.shape == (len(y),)
    assert np.all((proba >= 0) & (proba <= 1))
    assert roc_auc_score(y, proba) > 0.9
    metrics = learner.evaluate(X, y)
    assert metrics["auroc"] > 0.9 and metrics["loss"] < 0.6


def test_same_seed_same_model(name):
    X, y = _data()
    runs = []
    for _ in range(2):
        learner = _make(name, X.shape[1], seed=3)
        learner.fit(X, y, epochs=2, seed=5)
        runs.append(learner.predict_proba(X))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_more_epochs_reduce_training_loss(name):
    X, y = _data()
    short = _make(name, X.shape[1], seed=0)
    short.fit(X, y, epochs=1, seed=0)
    long = _make(name, X.shape[1], seed=0)
    long.fit(X, y, epochs=15, seed=0)
    assert long.evaluate(X, y)["loss"] < short.evaluate(X, y)["loss"]


def test_proximal_term_is_honoured_or_refused(name):
    from consortia.errors import ConfigError

    X, y = _data()
    learner = _make(name, X.shape[1], seed=0)
    if not learner.supports_proximal:
        with pytest.raises(ConfigError):
            learner.fit(X, y, epochs=1, seed=0, proximal_mu=0.5)
        return
    start = [p.copy() for p in learner.get_parameters()]
    free = _make(name, X.shape[1], seed=0)
    free.set_parameters(start)
    free.fit(X, y, epochs=5, seed=0)
    held = _make(name, X.shape[1], seed=0)
    held.set_parameters(start)
    held.fit(X, y, epochs=5, seed=0, proximal_mu=50.0)

    def drift(learner):
        return sum(float(np.sum((a - b) ** 2)) for a, b in zip(learner.get_parameters(), start))

    assert drift(held) < drift(free)


def test_unknown_model_param_is_a_config_error(name):
    from consortia.errors import ConfigError

    with pytest.raises(ConfigError):
        make_learner(name, 4, {"no_such_option": 1})


# ------------------------------------------------------------------ option checking


@pytest.mark.parametrize(
    "model, params, message",
    [
        ("logistic", {"C": "abc"}, "model_params.C must be a number > 0 (got 'abc')"),
        ("logistic", {"C": -1}, "model_params.C must be a number > 0"),
        ("logistic", {"C": True}, "model_params.C"),
        ("logistic", {"solver": "saga"}, "model_params.solver"),
        ("mlp", {"batch_size": 0}, "model_params.batch_size must be an integer >= 1"),
        ("mlp", {"batch_size": 2.5}, "model_params.batch_size must be an integer"),
        ("mlp", {"lr": "fast"}, "model_params.lr must be a number > 0 (got 'fast')"),
        ("mlp", {"lr": float("nan")}, "model_params.lr"),
        ("mlp", {"dropout": 1.5}, "model_params.dropout"),
        ("mlp", {"class_weight": "Balanced"}, "model_params.class_weight"),
        ("mlp", {"loss": "hinge"}, "model_params.loss"),
        ("mlp", {"hidden": "32,0"}, "model_params.hidden"),
        ("mlp", {"threads": -1}, "model_params.threads"),
        ("xgboost", {"max_depth": -2}, "max_depth"),
        ("xgboost", {"eta": "abc"}, "learning_rate"),
        ("xgboost", {"subsample": 2}, "subsample"),
        ("xgboost", {"eval_metric": "no_such_metric"}, "no_such_metric"),
        ("xgboost", {"device": "gpu"}, "model_params.device"),
    ],
)
def test_bad_option_values_are_config_errors_at_construction(model, params, message):
    from consortia.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_learner(model, 4, params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)  # one line, no library stack


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("fedadam", {"eta": "abc"}, "strategy_params.eta must be a number (got 'abc')"),
        ("fedadam", {"beta_1": True}, "strategy_params.beta_1"),
        ("krum", {"num_malicious_nodes": 1.5}, "strategy_params.num_malicious_nodes must be an integer"),
    ],
)
def test_bad_strategy_values_are_config_errors(name, params, message):
    from consortia.errors import ConfigError
    from consortia.federation.strategies import build_strategy

    with pytest.raises(ConfigError) as info:
        build_strategy(name, params, num_institutions=3)
    assert message in str(info.value)


def test_numeric_strategy_values_are_accepted_and_widened():
    from consortia.federation.strategies import build_strategy

    strategy = build_strategy("fedadam", {"eta": 1, "tau": 1e-3}, num_institutions=3)
    assert strategy.eta == 1.0 and isinstance(strategy.eta, float)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model-param", "C=abc"], "model_params.C"),
        (["--strategy", "fedadam", "--strategy-param", "eta=abc"], "strategy_params.eta"),
        (["--model", "xgboost", "--model-param", "max_depth=-2"], "max_depth"),
    ],
)
def test_cli_reports_bad_option_values_in_one_line(args, needle):
    from typer.testing import CliRunner

    from consortia.cli import app

    result = CliRunner().invoke(
        app, ["run", "healthcare", "--institutions", "2", "--rows", "400", "--rounds", "1", *args]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output


# ------------------------------------------------------------------ process-wide torch state


def test_mlp_leaves_torch_threads_and_global_rng_alone():
    import torch

    X, y = _data()
    before_threads = torch.get_num_threads()
    want = 2 if before_threads != 2 else 3
    torch.set_num_threads(want)
    try:
        torch.manual_seed(1234)
        rng_before = torch.random.get_rng_state().clone()
        learner = make_learner("mlp", X.shape[1], {"threads": 1, "dropout": 0.1}, seed=7)
        learner.fit(X, y, epochs=2, seed=7)
        learner.predict_proba(X)
        assert torch.get_num_threads() == want
        assert torch.equal(torch.random.get_rng_state(), rng_before)
    finally:
        torch.set_num_threads(before_threads)


def test_mlp_results_do_not_depend_on_the_callers_rng():
    import torch

    X, y = _data()
    runs = []
    for outside_seed in (0, 99):
        torch.manual_seed(outside_seed)
        learner = make_learner("mlp", X.shape[1], {"dropout": 0.2}, seed=3)
        learner.fit(X, y, epochs=2, seed=5)
        runs.append(learner.predict_proba(X))
    np.testing.assert_array_equal(runs[0], runs[1])
