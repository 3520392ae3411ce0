"""Strategy names -> Flower's own strategies (``flwr.serverapp.strategy``).

Every entry is a Flower class; Consortia only maps a name and the user's ``strategy_params``
(dashes or underscores) onto its constructor, and fills the node counts from the federation.

``fedprox`` needs ``proximal_mu > 0``: Flower's default 0.0 makes it FedAvg with a warning in the
log, which is a silent FedAvg for anyone who reads only the results. Flower's FedProx sends the
value to the clients in every train message's config (``proximal-mu``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flwr.serverapp import strategy as fl

from consortia.catalog import STRATEGIES
from consortia.config import ExperimentConfig
from consortia.errors import ConfigError

#: strategy options that Consortia sets itself and users may not override
_MANAGED = {
    "fraction_train", "fraction_evaluate", "min_train_nodes", "min_evaluate_nodes",
    "min_available_nodes", "weighted_by_key", "arrayrecord_key", "configrecord_key",
    "train_metrics_aggr_fn", "evaluate_metrics_aggr_fn",
}  # fmt: skip


def min_train_nodes(num_institutions: int, fraction_train: float = 1.0, min_available: int | None = None) -> int:
    """The ``min_train_nodes`` a strategy gets: the rounded fraction, at most the minimum available."""
    return max(1, min(min_available or num_institutions, round(fraction_train * num_institutions)))


def train_sample_size(num_institutions: int, fraction_train: float = 1.0, min_available: int | None = None) -> int:
    """Institutions a round trains when all are connected (what Flower's FedAvg draws:
    ``max(int(n * fraction_train), min_train_nodes)``); e.g. the trees a bagging round adds."""
    minimum = min_train_nodes(num_institutions, fraction_train, min_available)
    return max(int(num_institutions * fraction_train), minimum)


def training_budget(config: ExperimentConfig) -> int:
    """Epochs (or boosting rounds) a baseline trains for: as many trees (or epochs) as the federated
    global model gets. The one rule, for the simulated baselines and those trained at the nodes."""
    if config.model == "xgboost" and config.xgb_mode == "bagging":  # one tree per trained institution a round
        return config.rounds * train_sample_size(config.institutions, config.fraction_train, config.min_institutions)
    return config.rounds * config.local_epochs


def build_strategy(
    name: str,
    params: dict[str, Any],
    *,
    num_institutions: int,
    fraction_train: float = 1.0,
    min_available: int | None = None,
    evaluate_metrics_aggr_fn: Callable | None = None,
    train_metrics_aggr_fn: Callable | None = None,
) -> fl.Strategy:
    """Instantiate the Flower strategy ``name`` for a federation of ``num_institutions``."""
    cls = STRATEGIES.get(name)
    signature = inspect.signature(cls.__init__).parameters
    accepted = set(signature) - {"self"}
    options = {key.replace("-", "_"): value for key, value in params.items()}
    unknown = sorted(set(options) - (accepted - _MANAGED))
    if unknown:
        allowed = ", ".join(sorted(accepted - _MANAGED)) or "none"
        raise ConfigError(f"strategy '{name}' has no option {', '.join(unknown)}; its options: {allowed}")
    options = {key: _checked(name, key, value, signature[key].default) for key, value in options.items()}
    if name == "fedprox" and not options.get("proximal_mu", 0.0) > 0:
        raise ConfigError(
            "strategy 'fedprox' without a proximal term is FedAvg: set --strategy-param proximal-mu=0.1 "
            f"(any value > 0; got {options.get('proximal_mu', 'none')})"
        )
    plain_momentum = not options.get("server_momentum", 0.0) > 0 and options.get("server_learning_rate", 1.0) == 1.0
    if name == "fedavgm" and plain_momentum:
        # Flower's defaults (momentum 0, server learning rate 1) make it exactly FedAvg (the strategy
        # contract test found it): momentum 0.9, the value of Hsu et al. 2019, unless one is given
        options["server_momentum"] = 0.9
    sampled = train_sample_size(num_institutions, fraction_train, min_available)
    malicious = options.get("num_malicious_nodes", 0)
    if name == "bulyan" and sampled < 4 * malicious + 3:  # Flower's Bulyan would skip every round, with a log line only
        raise ConfigError(f"strategy 'bulyan' with num_malicious_nodes={malicious} needs {4 * malicious + 3} "
                          f"institutions a round (4f + 3); a round trains {sampled}")  # fmt: skip
    available = min_available or num_institutions
    managed: dict[str, Any] = {
        "fraction_train": fraction_train,
        "fraction_evaluate": 1.0,
        "min_available_nodes": available,
        "min_train_nodes": min_train_nodes(num_institutions, fraction_train, min_available),
        "min_evaluate_nodes": available,
        "evaluate_metrics_aggr_fn": evaluate_metrics_aggr_fn,
    }
    if train_metrics_aggr_fn is not None:  # else Flower's default (its weighted mean)
        managed["train_metrics_aggr_fn"] = train_metrics_aggr_fn
    kwargs = {k: v for k, v in managed.items() if k in accepted}
    try:
        return cls(**kwargs, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy '{name}': {exc}") from None


def _checked(strategy: str, key: str, value: Any, default: Any) -> Any:
    """A value of the type of the Flower constructor's numeric default (an int where a float is
    expected is widened): a string there would only fail rounds later, inside Flower's logging."""
    if isinstance(default, bool) or not isinstance(default, int | float):
        return value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, float) and numeric:
        return float(value)
    if isinstance(default, int) and numeric and float(value).is_integer():
        return int(value)
    what = "a number" if isinstance(default, float) else "an integer"
    raise ConfigError(f"strategy '{strategy}': strategy_params.{key} must be {what} (got {value!r})")
