"""How ``model='xgboost'`` is wired: its federation mode picks the Flower strategy.

* ``bagging`` -> Flower's ``FedXgbBagging`` (strategy ``fedxgb_bagging``)
* ``cyclic``  -> Flower's ``FedXgbCyclic`` (strategy ``fedxgb_cyclic``)
* ``histogram`` -> no Flower strategy: one booster trained with XGBoost's federated
  communicator (``consortia.experiment.histogram``)

The learner learns the mode through ``model_params['xgb_mode']``, set here from the config's
``xgb_mode`` so that every place that builds a learner (apps, baselines, predict) agrees.
The default strategy (``fedavg``) is replaced; any other strategy is a config error.
"""

from __future__ import annotations

from typing import Any

XGB_MODES = ("bagging", "cyclic", "histogram")
#: the mode of a config (and of a learner) that names none: Flower's FedXgbBagging
DEFAULT_XGB_MODE = "bagging"
XGB_STRATEGIES = {"bagging": "fedxgb_bagging", "cyclic": "fedxgb_cyclic"}
_DEFAULT_STRATEGY = "fedavg"


def wire_xgboost(values: dict[str, Any]) -> dict[str, Any]:
    """Raw config values -> values with a consistent model/strategy/xgb_mode (ValueError if not)."""
    if "xgb_mode" in values and values["xgb_mode"] is None:  # "not given" (e.g. a CLI option left out)
        values = {k: v for k, v in values.items() if k != "xgb_mode"}
    model = str(values.get("model", "")).strip().lower()
    strategy = values.get("strategy")
    strategy = None if strategy is None else str(strategy).strip().lower()
    if model != "xgboost":
        if strategy in XGB_STRATEGIES.values():
            raise ValueError(f"strategy '{strategy}' combines XGBoost trees: use it with model 'xgboost'")
        return values
    params = dict(values.get("model_params") or {})
    mode, in_params = values.get("xgb_mode"), params.get("xgb_mode")
    if mode is not None and in_params is not None and str(mode).lower() != str(in_params).lower():
        raise ValueError(f"xgb_mode '{mode}' and model_params.xgb_mode '{in_params}' disagree")
    mode = str(mode if mode is not None else in_params if in_params is not None else DEFAULT_XGB_MODE).strip().lower()
    if mode not in XGB_MODES:
        raise ValueError(f"xgb_mode must be one of {', '.join(XGB_MODES)} (got {mode!r})")
    wanted = XGB_STRATEGIES.get(mode)
    if strategy not in (None, _DEFAULT_STRATEGY, wanted):
        if wanted is None:
            raise ValueError(
                f"xgb_mode 'histogram' trains one booster with XGBoost's federated communicator, "
                f"not a Flower strategy: leave the strategy unset (got '{strategy}')"
            )
        raise ValueError(
            f"model 'xgboost' with xgb_mode '{mode}' runs on Flower's strategy '{wanted}' (got '{strategy}'); "
            f"leave the strategy unset or use --xgb-mode"
        )
    if mode == "bagging" and (int(values.get("local_epochs", 1)) != 1 or int(params.get("trees_per_epoch", 1)) != 1):
        raise ValueError(
            "xgb_mode 'bagging' adds one tree per institution per round (Flower's FedXgbBagging): "
            "local_epochs and trees_per_epoch must be 1; use more rounds for more trees"
        )
    params["xgb_mode"] = mode
    return {**values, "model_params": params, "xgb_mode": mode, "strategy": wanted or _DEFAULT_STRATEGY}
