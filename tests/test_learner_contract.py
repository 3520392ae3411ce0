"""One contract every learner must satisfy (the check_estimator idea, for federated learners)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from consortia.learners import LEARNERS, make_learner


def _data(seed: int = 0, n: int = 600, d: int = 6, noise: float = 0.5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = (X @ w + noise * rng.normal(size=n) > 0).astype(int)
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
    for array in params:
        np.add(array, 100 if array.dtype.kind == "f" else 1, out=array)  # (a booster travels as uint8 bytes)
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
        return sum(float(np.sum((a - b) ** 2)) for a, b in zip(learner.get_parameters(), start, strict=True))

    assert drift(held) < drift(free)


def test_unknown_model_param_is_a_config_error(name):
    from consortia.errors import ConfigError

    with pytest.raises(ConfigError):
        make_learner(name, 4, {"no_such_option": 1})


# ------------------------------------------------------------------ capabilities (DP, HE, FedMA, Reptile)


def _cls(name: str) -> type:
    return type(_make(name, 4, seed=0))


def test_capability_flags_are_class_attributes_of_the_right_type(name):
    from consortia.learners import CAPABILITIES, Learner, capabilities, capabilities_of

    cls = _cls(name)
    for flag in CAPABILITIES:
        assert isinstance(getattr(cls, flag), bool), (name, flag)
    assert isinstance(cls.parameter_format, str) and cls.parameter_format
    assert isinstance(_make(name, 4, seed=0), Learner)
    assert capabilities(name) == capabilities_of(cls) == capabilities_of(_make(name, 4, seed=0))


def test_capabilities_by_name_build_nothing(name, monkeypatch):
    from consortia.learners import capabilities

    cls = _cls(name)

    def refuse(*args, **kwargs):
        raise AssertionError("capabilities(name) must not build a learner")

    monkeypatch.setattr(cls, "__init__", refuse)
    assert capabilities(name).aggregatable is cls.aggregatable


def test_each_flag_brings_its_methods(name):
    from consortia.learners import (
        AggregatableLearner,
        BatchStepLearner,
        LayerMatchingLearner,
        TorchModuleLearner,
        capabilities,
    )

    caps = capabilities(name)
    learner = _make(name, 4, seed=0)
    for flag, protocol in [
        (caps.aggregatable, AggregatableLearner),
        (caps.supports_batch_steps, BatchStepLearner),
        (caps.supports_torch_module, TorchModuleLearner),
        (caps.supports_layer_matching, LayerMatchingLearner),
    ]:
        if flag:
            assert isinstance(learner, protocol), (name, protocol.__name__)
    if caps.supports_torch_module or caps.supports_layer_matching or caps.supports_batch_steps:
        assert caps.aggregatable  # each of them promises named real-valued arrays too


def test_layer_names_align_with_parameters(name):
    from consortia.learners import capabilities

    X, y = _data()
    learner = _make(name, X.shape[1], seed=0)
    if not capabilities(name).aggregatable:  # opaque parameters: the flag must be honest
        learner.fit(X, y, epochs=1, seed=0)
        assert any(p.dtype.kind != "f" for p in learner.get_parameters())
        return
    before = learner.get_parameters()
    names = learner.layer_names()
    assert len(names) == len(before) == len(set(names))
    assert all(isinstance(n, str) and n for n in names)
    learner.fit(X, y, epochs=1, seed=0)
    after = learner.get_parameters()
    assert [p.shape for p in after] == [p.shape for p in before]
    assert all(p.dtype.kind == "f" for p in after)
    other = _make(name, X.shape[1], seed=9)
    other.set_parameters(after)
    assert other.layer_names() == names
    with pytest.raises(ValueError):  # a wrong layout is refused, not silently reshaped
        other.set_parameters([*after[:-1], np.zeros(after[-1].size + 1, dtype=after[-1].dtype)])


def test_layers_describe_neurons_for_matching(name):
    from consortia.learners import capabilities

    if not capabilities(name).supports_layer_matching:
        return
    X, _ = _data()
    learner = make_learner(name, X.shape[1], {"hidden": "5,3"}, seed=0)
    shapes = dict(zip(learner.layer_names(), (p.shape for p in learner.get_parameters()), strict=True))
    layers = learner.layers()
    assert [n for pair in layers for n in pair] == learner.layer_names()  # every array, in order
    width = X.shape[1]
    for weight, bias in layers:
        out_units, in_units = shapes[weight]
        assert in_units == width and shapes[bias] == (out_units,)
        width = out_units
    assert width == 1  # one logit
    assert make_learner(name, 3, {"hidden": ""}).layers() == [layers[-1]]


def test_require_refuses_what_a_learner_cannot_do(name):
    from consortia.errors import ConfigError
    from consortia.learners import CAPABILITIES, capabilities, require

    caps = capabilities(name)
    instance = _make(name, 4, seed=0)
    for flag in CAPABILITIES:
        if getattr(caps, flag):
            assert require(name, flag, "the feature") == caps
            assert require(instance, flag, feature="the feature") == caps
            continue
        with pytest.raises(ConfigError) as by_name:
            require(name, flag, "the feature")
        message = str(by_name.value)
        assert message.startswith(f"model '{name}' cannot be used with the feature: ")
        assert "\n" not in message and "; use " in message
        with pytest.raises(ConfigError) as by_instance:
            require(instance, [flag], feature="the feature")
        assert str(by_instance.value) == message  # the instance's registered name, found


def test_require_names_the_reason_and_the_alternatives():
    from consortia.errors import ConfigError
    from consortia.learners import require

    with pytest.raises(ConfigError) as info:
        require("xgboost", "aggregatable", feature="secure aggregation")
    assert str(info.value) == (
        "model 'xgboost' cannot be used with secure aggregation: its parameters are serialized trees "
        "(booster bytes) that cannot be averaged, clipped, masked or encrypted; use logistic, logistic_torch or mlp"
    )
    with pytest.raises(
        ConfigError, match=r"^model 'logistic' cannot be used with DP-SGD: .*; use logistic_torch or mlp$"
    ):
        require("logistic", ["supports_torch_module", "supports_batch_steps"], feature="DP-SGD")
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        require("nope", "aggregatable", feature="FedMA")
    with pytest.raises(ValueError, match="unknown capability"):
        require("mlp", "supports_magic", feature="FedMA")


def _fit_by_steps(learner, X, y, *, epochs: int, seed: int, proximal_mu: float = 0.0) -> list[float]:
    """What a DP-SGD or Reptile loop does: the same three calls ``fit`` is made of."""
    with learner.step_context(seed):
        learner.start_fit(y, proximal_mu=proximal_mu)
        return [learner.train_step(xb, yb) for xb, yb in learner.batches(X, y, seed=seed, epochs=epochs)]


def test_train_steps_over_the_same_batches_give_fit(name):
    from consortia.learners import capabilities

    if not capabilities(name).supports_batch_steps:
        return
    X, y = _data()
    by_fit, by_steps = _make(name, X.shape[1], seed=1), _make(name, X.shape[1], seed=1)
    info = by_fit.fit(X, y, epochs=1, seed=7)
    losses = _fit_by_steps(by_steps, X, y, epochs=1, seed=7)
    assert len(losses) == -(-len(y) // by_steps.batch_size)
    assert info["train_loss"] == pytest.approx(np.mean(losses), rel=1e-12)
    for a, b in zip(by_fit.get_parameters(), by_steps.get_parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("params", [{"dropout": 0.3, "class_weight": "balanced"}, {"loss": "focal", "hidden": "4"}])
def test_mlp_steps_match_fit_with_dropout_weights_and_proximal_term(params):
    X, y = _data()
    y = np.where(np.arange(len(y)) % 4 == 0, y, 0)  # imbalanced: the class weight matters
    by_fit, by_steps = (make_learner("mlp", X.shape[1], params, seed=2) for _ in range(2))
    by_fit.fit(X, y, epochs=2, seed=4, proximal_mu=0.5)
    _fit_by_steps(by_steps, X, y, epochs=2, seed=4, proximal_mu=0.5)
    for a, b in zip(by_fit.get_parameters(), by_steps.get_parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_torch_module_and_optimizer_are_the_ones_train_step_uses(name):
    import torch

    from consortia.learners import capabilities

    if not capabilities(name).supports_torch_module:
        return
    X, y = _data()
    learner = _make(name, X.shape[1], seed=0)
    module = learner.torch_module()
    assert isinstance(module, torch.nn.Module)
    assert module(torch.as_tensor(X[:5])).shape == (5,)  # one logit per row
    optimizer = learner.make_optimizer()
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in module.parameters()}
    learner.start_fit(y)
    start = learner.get_parameters()
    learner.optimizer = torch.optim.SGD(module.parameters(), lr=0.0)  # as Opacus hands back its DPOptimizer
    loader = learner.data_loader(X, y, seed=0, batch_size=100)
    assert sum(len(yb) for _, yb in loader) == len(y)
    for xb, yb in loader:
        assert np.isfinite(learner.train_step(xb, yb))
    for a, b in zip(start, learner.get_parameters(), strict=True):
        np.testing.assert_array_equal(a, b)  # lr 0: the installed optimizer did the stepping
    learner.optimizer = learner.make_optimizer()
    learner.set_parameters(start)  # in place: the optimizer still steps the module's tensors
    learner.train_step(X[:64], y[:64])
    assert any(not np.array_equal(a, b) for a, b in zip(start, learner.get_parameters(), strict=True))


# ------------------------------------------------------------------ logistic in PyTorch


def test_logistic_learners_read_each_others_parameters():
    X, y = _data()
    sk, pt = make_learner("logistic", X.shape[1]), make_learner("logistic_torch", X.shape[1])
    assert sk.layer_names() == pt.layer_names() == ["coef", "intercept"]
    assert [p.shape for p in sk.get_parameters()] == [p.shape for p in pt.get_parameters()]
    np.testing.assert_array_equal(sk.predict_proba(X), pt.predict_proba(X))  # both start at zero
    sk.fit(X, y, epochs=20, seed=0)
    pt.set_parameters(sk.get_parameters())
    np.testing.assert_allclose(pt.predict_proba(X), sk.predict_proba(X), atol=1e-6)
    pt.fit(X, y, epochs=3, seed=0)
    sk.set_parameters(pt.get_parameters())
    np.testing.assert_allclose(sk.predict_proba(X), pt.predict_proba(X), atol=1e-6)


def test_logistic_torch_reaches_the_scikit_learn_optimum():
    X, y = _data(n=2000, noise=2.0)  # overlapping classes, as in the verticals: a finite optimum
    sk, pt = make_learner("logistic", X.shape[1]), make_learner("logistic_torch", X.shape[1])
    sk.fit(X, y, epochs=100, seed=0)
    pt.fit(X, y, epochs=30, seed=0)
    assert pt.evaluate(X, y)["auroc"] == pytest.approx(sk.evaluate(X, y)["auroc"], abs=1e-3)
    assert pt.evaluate(X, y)["loss"] == pytest.approx(sk.evaluate(X, y)["loss"], abs=2e-3)
    np.testing.assert_allclose(pt.get_parameters()[0], sk.get_parameters()[0], atol=0.1)


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
        ("logistic_torch", {"lr": 0}, "model_params.lr must be a number > 0"),
        ("logistic_torch", {"C": 1.0}, "unknown logistic_torch model_params: C"),
        ("logistic_torch", {"class_weight": "Balanced"}, "model_params.class_weight"),
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
