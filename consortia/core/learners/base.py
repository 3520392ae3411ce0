"""The Learner contract every model family implements.

A learner is a model whose state can leave the institution as a list of numpy arrays
(``get_parameters``) and come back averaged (``set_parameters``), and that trains for a given
number of local epochs on the institution's own rows. Tree models whose "parameters" are a
serialized booster fit the same contract with a one-element uint8 array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

Params = dict[str, Any]


@runtime_checkable
class Learner(Protocol):
    """What the federated core needs from a model family."""

    #: whether ``fit`` honours ``proximal_mu`` (FedProx's proximal term)
    supports_proximal: bool

    def get_parameters(self) -> list[np.ndarray]: ...

    def set_parameters(self, parameters: list[np.ndarray]) -> None: ...

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, proximal_mu: float = 0.0
    ) -> dict[str, float]: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class, shape ``(n,)``."""
        ...

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]: ...


class EvaluateMixin:
    """Model-independent evaluation shared by every learner (log loss and AUROC)."""

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        proba = self.predict_proba(X)  # type: ignore[attr-defined]
        metrics = {"loss": float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1]))}
        if len(np.unique(y)) == 2:
            metrics["auroc"] = float(roc_auc_score(y, proba))
        return metrics


@dataclass(frozen=True)
class LearnerSpec:
    """How to build a learner: ``factory(n_features, params, seed, device)``."""

    name: str
    factory: Callable[[int, Params, int, str], Learner]
    description: str = ""


def binary_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean log loss; plain numpy because it runs in every local training step's report."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def balanced_positive_weight(y: np.ndarray) -> float:
    """Weight of a positive example so both classes weigh the same (rare fraud, defects)."""
    positives = float(np.sum(y == 1))
    negatives = float(np.sum(y == 0))
    return negatives / positives if positives > 0 else 1.0
