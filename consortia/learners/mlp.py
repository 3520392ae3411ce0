"""A PyTorch multilayer perceptron for tabular data, device-aware.

Runs on CUDA when asked (``device='cuda'`` or ``'auto'``) and available. Supports FedProx's
proximal term and class imbalance (positive-class weighting or focal loss).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from consortia.errors import ConfigError
from consortia.learners.base import (
    EvaluateMixin,
    Params,
    balanced_positive_weight,
    choice,
    number,
)


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' (error if absent) or 'auto' (CUDA when present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(device)


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


class MLPLearner(EvaluateMixin):
    """Fully connected ReLU network with a single logit output."""

    supports_proximal = True

    def __init__(self, n_features: int, params: Params | None = None, seed: int = 0, device: str = "cpu") -> None:
        params = dict(params or {})
        self.hidden = _hidden_sizes(params.pop("hidden", "32,16"))
        self.lr = number(params, "lr", 0.01, lo=0, lo_open=True)
        self.batch_size = number(params, "batch_size", 64, kind=int, lo=1)
        self.weight_decay = number(params, "weight_decay", 1e-4, lo=0)
        self.dropout = number(params, "dropout", 0.0, lo=0, hi=1)
        self.class_weight = choice(params, "class_weight", None, (None, "balanced", "none"))
        self.loss_name = choice(params, "loss", "bce", ("bce", "focal"))
        self.focal_gamma = number(params, "focal_gamma", 2.0, lo=0)
        # Small tabular batches run fastest on one thread; more threads only spin and fight
        # other institutions' processes for the same cores. 0 = leave torch's setting alone.
        # Set only around this learner's own work (see ``_torch_state``), never process-wide.
        self.threads = number(params, "threads", 1, kind=int, lo=0)
        if params:
            raise ConfigError(f"unknown mlp model_params: {', '.join(params)}")
        self.device = resolve_device(device)
        self.n_features = n_features
        with self._torch_state(seed):  # seeded initial weights, the caller's RNG untouched
            layers: list[nn.Module] = []
            width = n_features
            for size in self.hidden:
                layers += [nn.Linear(width, size), nn.ReLU()]
                if self.dropout:
                    layers.append(nn.Dropout(self.dropout))
                width = size
            layers.append(nn.Linear(width, 1))
            self.model = nn.Sequential(*layers).to(self.device)

    @contextlib.contextmanager
    def _torch_state(self, seed: int | None = None) -> Iterator[None]:
        """This learner's thread count (and, given a seed, a seeded RNG) for the block only.

        torch's thread count and global RNG are process-wide: setting them for good would change
        every other model in the caller's process. Both are restored on the way out.
        """
        threads = torch.get_num_threads()
        change = self.device.type == "cpu" and self.threads > 0 and self.threads != threads
        with contextlib.ExitStack() as stack:
            if seed is not None:
                cuda = [self.device.index or 0] if self.device.type == "cuda" else []
                stack.enter_context(torch.random.fork_rng(devices=cuda))
                torch.manual_seed(seed)
            if change:
                torch.set_num_threads(self.threads)
            try:
                yield
            finally:
                if change:
                    torch.set_num_threads(threads)

    # -- parameters ----------------------------------------------------------------------------
    def get_parameters(self) -> list[np.ndarray]:
        return [v.detach().cpu().numpy().copy() for v in self.model.state_dict().values()]

    def set_parameters(self, parameters: list[np.ndarray]) -> None:
        keys = list(self.model.state_dict().keys())
        state = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in zip(keys, parameters, strict=True)}
        self.model.load_state_dict(state)

    # -- training ------------------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, proximal_mu: float = 0.0
    ) -> dict[str, float]:
        with self._torch_state(seed):  # dropout draws from the (forked, seeded) global RNG
            return self._fit(X, y, epochs=epochs, seed=seed, proximal_mu=proximal_mu)

    def _fit(self, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, proximal_mu: float) -> dict[str, float]:
        generator = torch.Generator().manual_seed(seed)
        features = torch.as_tensor(X, dtype=torch.float32, device=self.device)
        labels = torch.as_tensor(np.array(y, dtype=np.float32), device=self.device)
        pos_weight = None
        if self.class_weight == "balanced":
            pos_weight = torch.tensor(balanced_positive_weight(y), device=self.device)
        anchor = [p.detach().clone() for p in self.model.parameters()] if proximal_mu else None
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.model.train()
        total, batches = 0.0, 0
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator).to(self.device)
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                logits = self.model(features[idx]).squeeze(-1)
                loss = self._loss(logits, labels[idx], pos_weight)
                if anchor is not None:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(self.model.parameters(), anchor))
                    loss = loss + 0.5 * proximal_mu * prox
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
        return {"train_loss": total / max(batches, 1)}

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight, reduction="none")
        if self.loss_name == "focal":  # down-weights easy examples (rare-event detection)
            p_true = torch.exp(-nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none"))
            bce = bce * (1 - p_true) ** self.focal_gamma
        return bce.mean()

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self._torch_state():
            features = torch.as_tensor(X, dtype=torch.float32, device=self.device)
            return torch.sigmoid(self.model(features).squeeze(-1)).cpu().numpy().astype(np.float64)


def build(n_features: int, params: Params, seed: int, device: str) -> MLPLearner:
    return MLPLearner(n_features, params, seed, device)
