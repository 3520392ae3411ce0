"""A PyTorch multilayer perceptron for tabular data, device-aware.

Runs on CUDA when asked (``device='cuda'`` or ``'auto'``) and available. Supports FedProx's
proximal term and class imbalance (positive-class weighting or focal loss). Its layers are named
(``hidden.0`` ... ``out``) so that matched averaging (FedMA) can line up their neurons; training
goes through ``TorchLearner.train_step`` (see ``consortia.learners.torch_base``).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from consortia.errors import ConfigError
from consortia.learners.base import Params, choice, number
from consortia.learners.torch_base import TorchLearner, resolve_device

__all__ = ["MLPLearner", "MLPModule", "build", "resolve_device"]


def _hidden_sizes(value: object) -> list[int]:
    """'64,32' -> [64, 32]; '' means no hidden layer (a logistic regression trained by SGD)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = str(value).replace(" ", "")
    try:
        sizes = [int(v) for v in text.split(",") if v]
    except ValueError:
        sizes = [0]
    if isinstance(value, bool) or (text and (not sizes or min(sizes) < 1)):
        raise ConfigError(f"model_params.hidden must look like '64,32' (positive widths, '' for none; got {value!r})")
    return sizes


class MLPModule(nn.Module):
    """ReLU layers ``hidden.0``, ``hidden.1`` ... then one logit ``out``; returns logits ``(n,)``."""

    def __init__(self, n_features: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        widths = [n_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.dropout = nn.Dropout(dropout) if dropout else None
        self.out = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        return self.out(x).squeeze(-1)


class MLPLearner(TorchLearner):
    """Fully connected ReLU network with a single logit output."""

    supports_layer_matching = True

    def __init__(self, n_features: int, params: Params | None = None, seed: int = 0, device: str = "cpu") -> None:
        params = dict(params or {})
        self.hidden = _hidden_sizes(params.pop("hidden", "32,16"))
        common = self.common_params(params, lr=0.01, batch_size=64, weight_decay=1e-4)
        self.dropout = number(params, "dropout", 0.0, lo=0, hi=1)
        self.loss_name = choice(params, "loss", "bce", ("bce", "focal"))
        self.focal_gamma = number(params, "focal_gamma", 2.0, lo=0)
        if params:
            raise ConfigError(f"unknown mlp model_params: {', '.join(params)}")
        super().__init__(n_features, device=device, **common)
        with self.step_context(seed):  # seeded initial weights, the caller's RNG untouched
            self._adopt(MLPModule(n_features, self.hidden, self.dropout))

    def layers(self) -> list[tuple[str, str]]:
        """``(weight, bias)`` per layer, input to output; weights are ``(out_units, in_units)``."""
        names = [f"hidden.{i}" for i in range(len(self.hidden))] + ["out"]
        return [(f"{n}.weight", f"{n}.bias") for n in names]

    def _per_row_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        bce = super()._per_row_loss(logits, labels)
        if self.loss_name == "focal":  # down-weights easy examples (rare-event detection)
            p_true = torch.exp(-nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none"))
            bce = bce * (1 - p_true) ** self.focal_gamma
        return bce


def build(n_features: int, params: Params, seed: int, device: str) -> MLPLearner:
    return MLPLearner(n_features, params, seed, device)
