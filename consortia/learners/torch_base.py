"""What the PyTorch learners share: device and threads, named parameters, and one training step.

``fit`` is ``start_fit`` and then ``train_step`` over ``batches``; features that must drive
training themselves (DP-SGD wraps the module, optimizer and data loader; Reptile runs k local
steps) call the same three and get the same model for the same seed and batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from consortia.errors import ConfigError
from consortia.learners.base import EvaluateMixin, Params, balanced_positive_weight, choice, number


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' (error if absent) or 'auto' (CUDA when present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(device)


class TorchLearner(EvaluateMixin):
    """A binary classifier whose ``torch_module()`` maps rows to one logit each.

    Subclasses parse their own options, call ``__init__`` here and then ``_adopt`` their module
    (built inside ``step_context(seed)`` so that initial weights follow the seed alone).
    """

    aggregatable = True
    supports_proximal = True
    supports_batch_steps = True
    supports_torch_module = True
    supports_layer_matching = False
    parameter_format = "float32 weight and bias arrays"

    model: nn.Module

    def __init__(
        self,
        n_features: int,
        *,
        device: str,
        lr: float,
        batch_size: int,
        weight_decay: float,
        class_weight: str | None,
        threads: int,
    ) -> None:
        self.n_features = n_features
        self.device = resolve_device(device)
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        # Small tabular batches run fastest on one thread; more threads only spin and fight
        # other institutions' processes for the same cores. 0 = leave torch's setting alone.
        # Set only around this learner's own work (see ``step_context``), never process-wide.
        self.threads = threads
        self._layout: dict[str, tuple[int, ...]] = {}
        self._optimizer: torch.optim.Optimizer | None = None
        self._pos_weight: torch.Tensor | None = None
        self._proximal_mu = 0.0
        self._anchor: list[torch.Tensor] | None = None
        self._correction: list[torch.Tensor] | None = None
        self._correct_after_step = False

    @staticmethod
    def common_params(params: Params, *, lr: float, batch_size: int, weight_decay: float) -> dict[str, Any]:
        """Pop the options every PyTorch learner takes (with this learner's defaults)."""
        return {
            "lr": number(params, "lr", lr, lo=0, lo_open=True),
            "batch_size": number(params, "batch_size", batch_size, kind=int, lo=1),
            "weight_decay": number(params, "weight_decay", weight_decay, lo=0),
            "class_weight": choice(params, "class_weight", None, (None, "balanced", "none")),
            "threads": number(params, "threads", 1, kind=int, lo=0),
        }

    def _adopt(self, module: nn.Module, layout: dict[str, tuple[int, ...]] | None = None) -> None:
        """Use ``module``; ``layout`` (public name -> shape per parameter, in order) defaults to
        the module's own parameter names and shapes."""
        self.model = module.to(self.device)
        params = list(self.model.named_parameters())
        self._layout = layout or {name: tuple(p.shape) for name, p in params}
        if len(self._layout) != len(params):
            raise ValueError("a layout names every parameter of the module, in order")

    @contextlib.contextmanager
    def step_context(self, seed: int | None = None) -> Iterator[None]:
        """This learner's thread count (and, given a seed, a seeded RNG) for the block only.

        torch's thread count and global RNG are process-wide: setting them for good would change
        every other model in the caller's process. Both are restored on the way out. Callers that
        drive ``train_step`` themselves wrap their loop in it to get ``fit``'s dropout draws.
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
    def layer_names(self) -> list[str]:
        return list(self._layout)

    def get_parameters(self) -> list[np.ndarray]:
        return [
            p.detach().cpu().numpy().reshape(shape).copy()
            for p, shape in zip(self.model.parameters(), self._layout.values(), strict=True)
        ]

    def set_parameters(self, parameters: list[np.ndarray]) -> None:
        arrays = [np.asarray(a) for a in parameters]
        if len(arrays) != len(self._layout):
            raise ValueError(f"expected {len(self._layout)} arrays ({', '.join(self._layout)}), got {len(arrays)}")
        with torch.no_grad():  # in place: an optimizer or a DP wrapper keeps pointing at the same tensors
            for p, (name, shape), a in zip(self.model.parameters(), self._layout.items(), arrays, strict=True):
                if a.shape != shape:
                    raise ValueError(f"parameter {name} must have shape {shape}, got {a.shape}")
                p.copy_(torch.as_tensor(a, dtype=torch.float32).reshape(p.shape))

    # -- PyTorch access (DP-SGD, meta-learning) ------------------------------------------------
    def torch_module(self) -> nn.Module:
        """The live module: ``get_parameters`` reads its parameters and ``train_step`` calls it, so
        wrappers that hook its layers in place (Opacus's GradSampleModule) take effect as they are."""
        return self.model

    def _param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model.parameters()), "weight_decay": self.weight_decay}]

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A fresh Adam with this learner's learning rate and weight decay (not installed)."""
        return torch.optim.Adam(self._param_groups(), lr=self.lr)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """What ``train_step`` steps: set by ``start_fit``, or replaced (Opacus's DPOptimizer)."""
        if self._optimizer is None:
            self._optimizer = self.make_optimizer()
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self._optimizer = optimizer

    # -- training ------------------------------------------------------------------------------
    def start_fit(self, y: np.ndarray, *, proximal_mu: float = 0.0) -> None:
        """Per-fit state, as every local fit starts: a fresh optimizer, the positive-class weight
        from all of this fit's labels (a batch has too few to judge), FedProx's anchor here."""
        self._optimizer = self.make_optimizer()
        self._pos_weight = None
        if self.class_weight == "balanced":
            self._pos_weight = torch.tensor(balanced_positive_weight(np.asarray(y)), device=self.device)
        self._proximal_mu = float(proximal_mu)
        self._anchor = [p.detach().clone() for p in self.model.parameters()] if proximal_mu else None

    def set_gradient_correction(self, correction: list[np.ndarray] | None, *, after_step: bool = False) -> None:
        """Correct every optimizer step by ``correction`` (one array per parameter, in
        ``get_parameters``' shapes) until cleared with ``None``: SCAFFOLD's ``c - c_i``.

        Added to the gradient before the step, or (``after_step``) subtracted from the
        parameters after it, scaled by ``lr``: the same for plain SGD, and for Adam the form in
        which a correction estimated from parameter changes stays in the units it was measured in.
        """
        if correction is None:
            self._correction = None
            return
        shapes = [tuple(p.shape) for p in self.model.parameters()]
        if len(correction) != len(shapes):
            raise ValueError(f"a gradient correction needs {len(shapes)} arrays, got {len(correction)}")
        self._correction = [
            torch.as_tensor(np.asarray(c), dtype=torch.float32, device=self.device).reshape(shape)
            for c, shape in zip(correction, shapes, strict=True)
        ]
        self._correct_after_step = after_step

    def batches(
        self, X: np.ndarray, y: np.ndarray, *, seed: int, epochs: int = 1, batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled ``(xb, yb)`` tensors on the learner's device, ``epochs`` passes, ``fit``'s order."""
        size = self.batch_size if batch_size is None else int(batch_size)
        generator = torch.Generator().manual_seed(seed)
        features = torch.as_tensor(X, dtype=torch.float32, device=self.device)
        labels = torch.as_tensor(np.array(y, dtype=np.float32), device=self.device)
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator).to(self.device)
            for start in range(0, len(order), size):
                idx = order[start : start + size]
                yield features[idx], labels[idx]

    def data_loader(
        self, X: np.ndarray, y: np.ndarray, *, seed: int, batch_size: int | None = None
    ) -> torch.utils.data.DataLoader:
        """The rows as a shuffled ``DataLoader`` of CPU tensors, for wrappers that need one (Opacus
        swaps in Poisson sampling); ``train_step`` moves its batches to the device."""
        dataset = torch.utils.data.TensorDataset(
            torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(np.array(y, dtype=np.float32))
        )
        generator = torch.Generator().manual_seed(seed)
        size = self.batch_size if batch_size is None else int(batch_size)
        return torch.utils.data.DataLoader(dataset, batch_size=size, shuffle=True, generator=generator)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training objective on one batch: the data term, plus FedProx's proximal term."""
        loss = self._data_loss(logits, labels)
        if self._anchor is not None:
            prox = sum(((p - a) ** 2).sum() for p, a in zip(self.model.parameters(), self._anchor, strict=True))
            loss = loss + 0.5 * self._proximal_mu * prox
        return loss

    def _data_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._per_row_loss(logits, labels).mean()

    def _per_row_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits
        return bce(logits, labels, pos_weight=self._pos_weight, reduction="none")

    def train_step(self, xb: torch.Tensor | np.ndarray, yb: torch.Tensor | np.ndarray) -> float:
        """One optimizer step on one batch; returns the batch's loss (proximal term included)."""
        features = torch.as_tensor(xb, dtype=torch.float32, device=self.device)
        labels = torch.as_tensor(yb, dtype=torch.float32, device=self.device)
        self.model.train()  # a predict between steps leaves the module in eval mode
        loss = self.loss(self.model(features), labels)
        optimizer = self.optimizer
        optimizer.zero_grad()
        loss.backward()
        correction = self._correction
        if correction is not None and not self._correct_after_step:
            for p, c in zip(self.model.parameters(), correction, strict=True):
                if p.grad is not None:
                    p.grad.add_(c)
        optimizer.step()
        if correction is not None and self._correct_after_step:
            with torch.no_grad():
                for p, c in zip(self.model.parameters(), correction, strict=True):
                    p.sub_(self.lr * c)
        return float(loss.detach())

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, proximal_mu: float = 0.0
    ) -> dict[str, float]:
        with self.step_context(seed):  # dropout draws from the (forked, seeded) global RNG
            self.start_fit(y, proximal_mu=proximal_mu)
            losses = [self.train_step(xb, yb) for xb, yb in self.batches(X, y, seed=seed, epochs=epochs)]
        return {"train_loss": sum(losses) / max(len(losses), 1)}

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self.step_context():
            features = torch.as_tensor(X, dtype=torch.float32, device=self.device)
            return torch.sigmoid(self.model(features)).cpu().numpy().astype(np.float64)
