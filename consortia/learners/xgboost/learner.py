"""Gradient-boosted trees with XGBoost, federated as a serialized booster.

Parameters travel as ``[np.uint8 array of the booster's JSON bytes]`` (empty = no model yet),
the contract of Flower's ``FedXgbBagging`` / ``FedXgbCyclic`` strategies. ``fit`` continues
boosting ``epochs * trees_per_epoch`` new rounds on top of the current (global) model. The
mode (model param ``xgb_mode``, set by the experiment config) decides what ``get_parameters``
returns after a fit:

* ``bagging``: only the newly added trees (``booster[n_before:n_after]``); the server appends
  every institution's new tree to the global model (``aggregate_bagging``). Flower's bagging
  keeps ONE boosting round per institution per round, so a fit that added more is refused.
* ``cyclic`` and ``histogram``: the whole model (cyclic passes it on to the next institution;
  histogram uses this learner only for baselines and fine-tuning).

A histogram-mode model carries its global bin edges as a booster attribute
(``consortia_bin_edges``): its trees split on bin indices, so ``predict_proba`` and ``fit``
bin raw features with those edges first and the model stays usable on its own.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from consortia.config.xgboost import DEFAULT_XGB_MODE, XGB_MODES
from consortia.errors import ConfigError
from consortia.learners.base import (
    EvaluateMixin,
    Params,
    balanced_positive_weight,
    binary_log_loss,
)

BIN_EDGES_ATTR = "consortia_bin_edges"

#: XGBoost booster parameters that may be passed through ``model_params`` unchanged
BOOSTER_PARAMS = {
    "eta", "learning_rate", "max_depth", "min_child_weight", "gamma", "min_split_loss",
    "subsample", "colsample_bytree", "colsample_bylevel", "colsample_bynode", "lambda",
    "reg_lambda", "alpha", "reg_alpha", "max_delta_step", "max_bin", "max_leaves",
    "grow_policy", "nthread", "eval_metric", "base_score", "tree_method", "sampling_method",
}  # fmt: skip
#: Consortia's own options (not XGBoost's)
OWN_PARAMS = {
    "xgb_mode", "trees_per_epoch", "scale_pos_weight", "early_stopping_rounds",
    "validation_fraction", "n_bins", "device",
}  # fmt: skip


def split_params(params: Params) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model_params`` -> (Consortia options, XGBoost booster params); unknown keys refused."""
    params = dict(params)
    unknown = sorted(set(params) - BOOSTER_PARAMS - OWN_PARAMS)
    if unknown:
        raise ConfigError(
            f"unknown xgboost model_params: {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(BOOSTER_PARAMS | OWN_PARAMS))}"
        )
    own = {k: params.pop(k) for k in list(params) if k in OWN_PARAMS}
    mode = str(own.get("xgb_mode", DEFAULT_XGB_MODE)).lower()
    if mode not in XGB_MODES:
        raise ConfigError(f"model_params.xgb_mode must be one of {', '.join(XGB_MODES)} (got {mode!r})")
    own["xgb_mode"] = mode
    device = own.get("device")
    if device is not None and device not in ("cpu", "cuda"):
        raise ConfigError(f"model_params.device must be 'cpu' or 'cuda' (got {device!r})")
    for key in ("trees_per_epoch", "early_stopping_rounds", "n_bins"):
        if key in own:
            value = own[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
                raise ConfigError(f"model_params.{key} must be an integer (got {value!r})")
            own[key] = int(value)
    if own.setdefault("trees_per_epoch", 1) < 1:
        raise ConfigError("model_params.trees_per_epoch must be at least 1")
    if own.setdefault("early_stopping_rounds", 0) < 0:
        raise ConfigError("model_params.early_stopping_rounds must be >= 0 (0 = off)")
    if own.setdefault("n_bins", 64) < 2:
        raise ConfigError("model_params.n_bins must be at least 2")
    fraction = float(own.setdefault("validation_fraction", 0.2))
    if not 0 < fraction < 0.9:
        raise ConfigError("model_params.validation_fraction must be in (0, 0.9)")
    own["validation_fraction"] = fraction
    spw = own.get("scale_pos_weight")
    if spw is not None and spw != "balanced":
        try:
            own["scale_pos_weight"] = float(spw)
        except (TypeError, ValueError):
            raise ConfigError("model_params.scale_pos_weight must be 'balanced' or a number") from None
        if own["scale_pos_weight"] <= 0:
            raise ConfigError("model_params.scale_pos_weight must be positive")
    return own, params


def booster_params(xgb_params: dict[str, Any], y: np.ndarray | None, scale_pos_weight: Any, seed: int) -> dict:
    """The dict handed to ``xgb.train``: binary logistic, hist, the imbalance weight resolved."""
    params: dict[str, Any] = {"objective": "binary:logistic", "tree_method": "hist", "seed": seed}
    params.update(xgb_params)
    if scale_pos_weight == "balanced":
        params["scale_pos_weight"] = balanced_positive_weight(np.asarray(y)) if y is not None else 1.0
    elif scale_pos_weight is not None:
        params["scale_pos_weight"] = float(scale_pos_weight)
    return params


def check_booster_params(xgb_params: dict[str, Any]) -> None:
    """Let XGBoost judge the booster params now (on two rows), so a bad value is a ConfigError
    at construction rather than an XGBoostError in the middle of a federated round."""
    items = tuple(sorted((k, v) for k, v in xgb_params.items() if k != "device"))
    try:
        _check_items(items)  # every round builds learners with the same params: judge them once
    except TypeError:  # an unhashable value: XGBoost will refuse it anyway
        _check_items.__wrapped__(items)


@functools.lru_cache(maxsize=32)
def _check_items(items: tuple[tuple[str, Any], ...]) -> None:
    import xgboost as xgb

    params = booster_params(dict(items), None, None, 0)
    try:
        dmatrix = xgb.DMatrix(np.zeros((2, 1)), label=np.array([0.0, 1.0]), nthread=1)
        xgb.Booster(params, [dmatrix]).save_config()  # save_config forces XGBoost to configure
    except (xgb.core.XGBoostError, TypeError, ValueError) as exc:
        raise ConfigError(f"xgboost model_params: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    """XGBoost errors carry a source location and a stack; the reason is the first line."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return line.split(": ", 1)[1] if line.startswith("[") and ": " in line else line


def edges_to_attr(edges: list[np.ndarray]) -> str:
    return json.dumps([np.asarray(e, dtype=np.float64).tolist() for e in edges])


def bin_with_edges(X: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """The same mapping as ``GlobalBinning.transform`` (bin index = number of edges <= x)."""
    from consortia.learners.xgboost.binning import GlobalBinning

    return GlobalBinning(edges=edges).transform(X)


class XGBoostLearner(EvaluateMixin):
    """Binary XGBoost classifier behind the Learner contract (see the module docstring)."""

    supports_proximal = False
    aggregatable = supports_batch_steps = supports_torch_module = supports_layer_matching = False
    parameter_format = "serialized trees (booster bytes)"

    def __init__(self, n_features: int, params: Params | None = None, seed: int = 0, device: str = "cpu") -> None:
        own, xgb_params = split_params(params or {})
        self.n_features = n_features
        self.mode: str = own["xgb_mode"]
        self.trees_per_epoch: int = own["trees_per_epoch"]
        self.early_stopping_rounds: int = own["early_stopping_rounds"]
        self.validation_fraction: float = own["validation_fraction"]
        self.n_bins: int = own["n_bins"]
        self.scale_pos_weight = own.get("scale_pos_weight")
        # model_params.device overrides the run's device for this model only
        if own.get("device", device) == "cuda":
            xgb_params["device"] = "cuda"
        # one thread by default: simulated institutions share the machine's cores, and OpenMP
        # threads that wait for each other on a busy machine cost more than they gain
        xgb_params["nthread"] = xgb_params.get("nthread", 1)
        check_booster_params(xgb_params)
        xgb_params["nthread"] = int(xgb_params["nthread"])
        self.xgb_params = xgb_params
        self.seed = seed
        self._model: bytes = b""
        self._booster: Any = None  # cached xgb.Booster of _model
        self._new_rounds: tuple[int, int] | None = None  # rounds the last fit added

    # -- parameters ------------------------------------------------------------------------------
    def get_parameters(self) -> list[np.ndarray]:
        if self.mode == "bagging" and self._new_rounds is not None:
            start, stop = self._new_rounds
            if stop - start != 1:
                raise ConfigError(
                    f"bagging sends one boosting round per institution per round, but this fit added "
                    f"{stop - start}; use local_epochs=1 and trees_per_epoch=1 (more rounds = more trees)"
                )
            new = self._load()[start:stop]
            return [np.frombuffer(bytes(new.save_raw("json")), dtype=np.uint8).copy()]
        return [np.frombuffer(self._model, dtype=np.uint8).copy()]

    def model_state(self) -> list[np.ndarray]:
        """The whole booster, whatever the mode (bagging's ``get_parameters`` is only the new tree):
        what early stopping keeps of its best epoch and restores with ``set_parameters``."""
        return [np.frombuffer(self._model, dtype=np.uint8).copy()]

    def set_parameters(self, parameters: list[np.ndarray]) -> None:
        (raw,) = parameters
        self._model = np.asarray(raw, dtype=np.uint8).tobytes()
        self._booster = None
        self._new_rounds = None

    @property
    def num_rounds(self) -> int:
        return 0 if not self._model else self._load().num_boosted_rounds()

    def _load(self):
        if self._booster is None and self._model:
            self._booster = _parse_booster(self._model, self.xgb_params["nthread"])
        return self._booster

    def _edges(self) -> list[np.ndarray] | None:
        booster = self._load()
        attr = booster.attr(BIN_EDGES_ATTR) if booster is not None else None
        return [np.asarray(e, dtype=np.float64) for e in json.loads(attr)] if attr else None

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {X.shape}")
        edges = self._edges()
        return bin_with_edges(X, edges) if edges is not None else X

    def set_booster(self, booster, edges: list[np.ndarray] | None = None) -> None:
        """Adopt a trained booster (histogram mode), recording the bin edges it expects."""
        if edges is not None:
            booster.set_attr(**{BIN_EDGES_ATTR: edges_to_attr(edges)})
        self.set_parameters([np.frombuffer(bytes(booster.save_raw("json")), dtype=np.uint8)])

    # -- training --------------------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, proximal_mu: float = 0.0
    ) -> dict[str, float]:
        """Add ``epochs * trees_per_epoch`` boosting rounds on this institution's rows.

        With ``early_stopping_rounds`` and more new rounds than that, a stratified
        ``validation_fraction`` of these rows is held out and the model keeps the best round.
        """
        import xgboost as xgb

        if proximal_mu:
            raise ConfigError("the xgboost learner has no proximal term; use --model mlp for FedProx")
        y = np.asarray(y).ravel()
        Xin = self._inputs(X)
        n_new = int(epochs) * self.trees_per_epoch
        before = self._load()
        n_before = self.num_rounds
        params = booster_params(self.xgb_params, y, self.scale_pos_weight, seed)
        train_idx, valid_idx = np.arange(len(y)), np.empty(0, dtype=int)
        if self.early_stopping_rounds and n_new > self.early_stopping_rounds:
            from consortia.data.split import validation_split  # not at import: histogram workers stay light

            train_idx, valid_idx = validation_split(y, self.validation_fraction, seed)
        nthread = self.xgb_params["nthread"]
        dtrain = xgb.DMatrix(Xin[train_idx], label=y[train_idx], missing=np.nan, nthread=nthread)
        evals, es = [], None
        if len(valid_idx):
            evals = [(xgb.DMatrix(Xin[valid_idx], label=y[valid_idx], missing=np.nan, nthread=nthread), "valid")]
            es = self.early_stopping_rounds
            params.setdefault("eval_metric", "logloss")
        edges_attr = before.attr(BIN_EDGES_ATTR) if before is not None else None
        booster = xgb.train(
            params, dtrain, n_new, evals=evals, early_stopping_rounds=es, verbose_eval=False, xgb_model=before
        )
        keep = max(booster.best_iteration + 1, n_before) if es is not None else booster.num_boosted_rounds()
        if booster.num_boosted_rounds() > keep:  # never cut into the global model's trees
            booster = booster[:keep]
        if edges_attr is not None:
            booster.set_attr(**{BIN_EDGES_ATTR: edges_attr})
        self._model = bytes(booster.save_raw("json"))
        self._booster = booster
        self._new_rounds = (n_before, booster.num_boosted_rounds())
        return {"train_loss": binary_log_loss(y, self.predict_proba(X)), "trees": float(booster.num_boosted_rounds())}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        Xin = self._inputs(X)
        booster = self._load()
        if booster is None:
            return np.full(len(Xin), 0.5)
        dmatrix = xgb.DMatrix(Xin, missing=np.nan, nthread=self.xgb_params["nthread"])
        return booster.predict(dmatrix).astype(np.float64)


@functools.lru_cache(maxsize=8)
def _parse_booster(raw: bytes, nthread: int):
    """Parsing a booster's JSON dominates small rounds, and every institution receives the same
    global model: parse it once per process. Callers never modify the returned booster
    (``xgb.train(xgb_model=...)`` and slicing copy it)."""
    import xgboost as xgb

    booster = xgb.Booster(model_file=bytearray(raw))
    booster.set_param({"nthread": nthread})  # not stored in the model
    return booster


def build(n_features: int, params: Params, seed: int, device: str) -> XGBoostLearner:
    return XGBoostLearner(n_features, params, seed, device)
