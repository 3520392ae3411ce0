"""Logistic regression with scikit-learn, federated by parameter averaging.

Local training warm-starts scikit-learn's L-BFGS solver from the global coefficients; one
local "epoch" is one solver iteration over the institution's rows (a full-batch pass).
``model_params.solver='newton-cholesky'`` makes each iteration a Newton step instead: it keeps
no memory between calls, so restarting it every round (as federation does) costs nothing, while
a restarted L-BFGS forgets its curvature estimate (verticals with rare positives choose it).
scikit-learn has no proximal term and no per-batch step, so FedProx is refused for this learner
(see ``supports_proximal``) and so are DP-SGD and meta-learning (``supports_batch_steps``); the
PyTorch ``logistic_torch`` learner has the same parameter layout and does all three.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from consortia.errors import ConfigError
from consortia.learners.base import (
    EvaluateMixin,
    Params,
    balanced_positive_weight,
    binary_log_loss,
    choice,
    number,
)


class LogisticLearner(EvaluateMixin):
    """Binary logistic regression; parameters are ``[coef (d,), intercept (1,)]``."""

    aggregatable = True
    supports_proximal = False
    supports_batch_steps = False
    supports_torch_module = False
    supports_layer_matching = False  # no hidden neurons to match; coef is (d,), not (out, in)
    parameter_format = "real-valued arrays [coef (d,), intercept (1,)]"

    def __init__(self, n_features: int, params: Params | None = None, seed: int = 0) -> None:
        params = dict(params or {})
        self.n_features = n_features
        self.C = number(params, "C", 1.0, lo=0, lo_open=True)
        self.class_weight = choice(params, "class_weight", None, (None, "balanced", "none"))
        self.solver = choice(params, "solver", "lbfgs", ("lbfgs", "newton-cholesky"))
        params.pop("device", None)
        if params:
            raise ConfigError(f"unknown logistic model_params: {', '.join(params)}")
        self.seed = seed
        self.coef = np.zeros(n_features, dtype=np.float64)
        self.intercept = np.zeros(1, dtype=np.float64)

    def layer_names(self) -> list[str]:
        return ["coef", "intercept"]

    def get_parameters(self) -> list[np.ndarray]:
        return [self.coef.copy(), self.intercept.copy()]

    def set_parameters(self, parameters: list[np.ndarray]) -> None:
        coef, intercept = parameters
        self.coef = np.asarray(coef, dtype=np.float64).reshape(self.n_features).copy()
        self.intercept = np.asarray(intercept, dtype=np.float64).reshape(1).copy()

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, proximal_mu: float = 0.0
    ) -> dict[str, float]:
        if proximal_mu:
            raise ConfigError(
                "the logistic learner has no proximal term; use --model logistic_torch or mlp for FedProx"
            )
        model = LogisticRegression(C=self.C, max_iter=epochs, warm_start=True, solver=self.solver, random_state=seed)
        model.coef_ = self.coef.reshape(1, -1).copy()
        model.intercept_ = self.intercept.copy()
        weights = None
        if self.class_weight == "balanced":
            weights = np.where(y == 1, balanced_positive_weight(y), 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y, sample_weight=weights)
        self.coef = model.coef_.reshape(-1).astype(np.float64)
        self.intercept = model.intercept_.reshape(1).astype(np.float64)
        return {"train_loss": binary_log_loss(y, self.predict_proba(X))}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        logits = X.astype(np.float64) @ self.coef + self.intercept[0]
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -35, 35)))


def build(n_features: int, params: Params, seed: int, device: str) -> LogisticLearner:
    return LogisticLearner(n_features, params, seed)
