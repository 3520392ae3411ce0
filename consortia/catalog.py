"""Every name a user can choose, mapped to where it lives: verticals, models, strategies, engines.

Entries are ``module:attribute`` paths imported on first use, so that reading a config (which
checks names here) imports no learner, strategy or engine: the arrows keep pointing down.
A new vertical, model, strategy or engine is one new module plus one line here.
"""

from __future__ import annotations

from typing import Any

from consortia.registry import Registry

VERTICALS: Registry[Any] = Registry("vertical")
VERTICALS.register_lazy("healthcare", "consortia.verticals.healthcare:VERTICAL")
VERTICALS.register_lazy("finance", "consortia.verticals.finance:VERTICAL")
VERTICALS.register_lazy("manufacturing", "consortia.verticals.manufacturing:VERTICAL")
VERTICALS.register_lazy("synthetic", "consortia.verticals.synthetic:VERTICAL")

#: ``build(n_features, params, seed, device) -> Learner``
LEARNERS: Registry[Any] = Registry("model")
LEARNERS.register_lazy("logistic", "consortia.learners.logistic:build")
LEARNERS.register_lazy("logistic_torch", "consortia.learners.logistic_torch:build")
LEARNERS.register_lazy("mlp", "consortia.learners.mlp:build")
LEARNERS.register_lazy("xgboost", "consortia.learners.xgboost:build")

#: Flower strategy classes (``flwr.serverapp.strategy``) and Consortia's own, one per module
STRATEGIES: Registry[Any] = Registry("strategy")
for _name, _cls in {
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "fedadam": "FedAdam",
    "fedyogi": "FedYogi",
    "fedadagrad": "FedAdagrad",
    "fedavgm": "FedAvgM",
    "fedmedian": "FedMedian",
    "fedtrimmedavg": "FedTrimmedAvg",
    "krum": "Krum",
    "multikrum": "MultiKrum",
    "bulyan": "Bulyan",
    "qfedavg": "QFedAvg",  # fairness (Li et al. 2020): needs strategy_params.client_learning_rate
    "fedxgb_bagging": "FedXgbBagging",  # model xgboost, xgb_mode bagging: trees appended
}.items():
    STRATEGIES.register_lazy(_name, f"flwr.serverapp.strategy:{_cls}")
# model xgboost, xgb_mode cyclic: one institution a round (Flower's, in a reproducible order)
STRATEGIES.register_lazy("fedxgb_cyclic", "consortia.learners.xgboost.cyclic:FedXgbCyclicOrdered")
STRATEGIES.register_lazy("scaffold", "consortia.federation.strategies.scaffold:Scaffold")  # torch models
STRATEGIES.register_lazy("fedma", "consortia.federation.strategies.fedma:FedMA")  # model mlp
STRATEGIES.register_lazy("fedmeta", "consortia.federation.strategies.fedmeta:FedMeta")  # torch models

#: ``run(config, hooks) -> FederatedOutcome``
ENGINES: Registry[Any] = Registry("engine")
ENGINES.register_lazy("inprocess", "consortia.federation.engines.inprocess:run")
ENGINES.register_lazy("ray", "consortia.federation.engines.ray:run")
ENGINES.register_lazy("deployment", "consortia.federation.engines.deployment:run")

__all__ = ["ENGINES", "LEARNERS", "STRATEGIES", "VERTICALS"]
