"""Logistic regression in PyTorch (``nn.Linear`` + sigmoid): the logistic model for features
that need a module, an optimizer and per-batch steps (DP-SGD with Opacus, Reptile).

Parameters are laid out as scikit-learn's ``logistic`` learner lays them out,
``[coef (d,), intercept (1,)]``, so either learner reads the other's. Training starts, as
scikit-learn's does, from zero coefficients; one local epoch is one pass of mini-batch Adam over
the institution's rows. Weight decay (an L2 penalty) applies to the coefficients only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from consortia.errors import ConfigError
from consortia.learners.base import Params
from consortia.learners.torch_base import TorchLearner


class LogisticModule(nn.Module):
    """One ``nn.Linear(d, 1)``; returns logits ``(n,)``."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1)
        with torch.no_grad():  # the convex problem's usual start, and scikit-learn's
            self.linear.weight.zero_()
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class LogisticTorchLearner(TorchLearner):
    """Binary logistic regression trained by mini-batch Adam; ``[coef (d,), intercept (1,)]``."""

    parameter_format = "real-valued arrays [coef (d,), intercept (1,)]"

    def __init__(self, n_features: int, params: Params | None = None, seed: int = 0, device: str = "cpu") -> None:
        params = dict(params or {})
        common = self.common_params(params, lr=0.01, batch_size=64, weight_decay=0.0)
        if params:
            raise ConfigError(f"unknown logistic_torch model_params: {', '.join(params)}")
        super().__init__(n_features, device=device, **common)
        with self.step_context(seed):
            module = LogisticModule(n_features)
        self._linear = module.linear  # (moved to the device in place by ``_adopt``)
        self._adopt(module, {"coef": (n_features,), "intercept": (1,)})

    def _param_groups(self) -> list[dict[str, Any]]:
        linear = self._linear
        return [
            {"params": [linear.weight], "weight_decay": self.weight_decay},
            {"params": [linear.bias], "weight_decay": 0.0},  # scikit-learn does not penalise it either
        ]


def build(n_features: int, params: Params, seed: int, device: str) -> LogisticTorchLearner:
    return LogisticTorchLearner(n_features, params, seed, device)
