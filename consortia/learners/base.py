"""The Learner contract every model family implements.

A learner is a model whose state can leave the institution as a list of numpy arrays
(``get_parameters``) and come back averaged (``set_parameters``), and that trains for a given
number of local epochs on the institution's own rows. Tree models whose "parameters" are a
serialized booster fit the same contract with a one-element uint8 array.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from consortia.errors import ConfigError

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


def number(
    params: Params,
    key: str,
    default: float,
    *,
    kind: type = float,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> Any:
    """Pop ``params[key]`` as a checked ``kind`` (float or int) in ``[lo, hi]`` (``(lo, hi]`` when
    ``lo_open``), so a bad option is one ConfigError line instead of a library traceback mid-run."""
    value = params.pop(key, default)
    bound = ""
    if lo is not None:
        bound = f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        bound += f"{' and' if bound else ''} <= {hi:g}"
    what = "an integer" if kind is int else "a number"
    message = f"model_params.{key} must be {what}{bound} (got {value!r})"
    if isinstance(value, bool):
        raise ConfigError(message)
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise ConfigError(message) from None
    if not math.isfinite(parsed) or (kind is int and parsed != int(parsed)):
        raise ConfigError(message)
    if lo is not None and (parsed < lo or (lo_open and parsed == lo)):
        raise ConfigError(message)
    if hi is not None and parsed > hi:
        raise ConfigError(message)
    return int(parsed) if kind is int else parsed


def choice(params: Params, key: str, default: str | None, allowed: tuple[str | None, ...]) -> str | None:
    """Pop ``params[key]`` as one of ``allowed`` (case-sensitive: a near miss is refused, not ignored)."""
    value = params.pop(key, default)
    if value not in allowed:
        shown = " or ".join(repr(a) for a in allowed if a is not None)
        raise ConfigError(f"model_params.{key} must be {shown} (got {value!r})")
    return value


def binary_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean log loss; plain numpy because it runs in every local training step's report."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def balanced_positive_weight(y: np.ndarray) -> float:
    """Weight of a positive example so both classes weigh the same (rare fraud, defects)."""
    positives = float(np.sum(y == 1))
    negatives = float(np.sum(y == 0))
    return negatives / positives if positives > 0 else 1.0
