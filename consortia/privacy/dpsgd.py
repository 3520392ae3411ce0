"""Record-level differential privacy inside an institution: DP-SGD with Opacus.

Each institution trains its local epochs with per-example gradient clipping (``max_grad_norm``)
and Gaussian noise (``noise_multiplier`` x ``max_grad_norm``) on Poisson-sampled batches, the
DP-SGD of Abadi et al. as Opacus implements it. The guarantee is about one *row* (one patient,
one transaction) of that institution: whatever the server and the other institutions see of the
models it releases over the whole run is (ε, δ)-indistinguishable with or without that row.

The noise is the institution's own decision: it derives the noise multiplier from the run's
budget (ε, δ), its own row count and the whole run's number of steps, so that its ε after the
last round is at most the target (``consortia.privacy.accounting``). Any PyTorch learner with
batch steps (``supports_batch_steps``) can be trained this way; others are refused.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from consortia.privacy.accounting import record_level_epsilon, record_level_noise


@dataclass(frozen=True)
class DpSgdPlan:
    """How one institution trains privately for the whole run."""

    noise_multiplier: float
    max_grad_norm: float
    batch_size: int
    sample_rate: float
    steps_per_round: int
    delta: float

    def epsilon_after(self, rounds: int) -> float:
        """ε spent after ``rounds`` rounds of local DP-SGD (what this institution has released)."""
        steps = rounds * self.steps_per_round
        return record_level_epsilon(self.noise_multiplier, self.sample_rate, steps, self.delta) if steps else 0.0


def plan_dp_sgd(
    *,
    n_rows: int,
    batch_size: int,
    local_epochs: int,
    rounds: int,
    epsilon: float | None,
    delta: float,
    max_grad_norm: float,
    noise_multiplier: float | None = None,
) -> DpSgdPlan:
    """The noise that keeps this institution's ε after ``rounds`` rounds at most ``epsilon``
    (or ``noise_multiplier`` as given: then ``epsilon_after`` says what it spends)."""
    batch = max(1, min(batch_size, n_rows))
    sample_rate = batch / n_rows
    steps_per_round = local_epochs * math.ceil(1 / sample_rate)
    if noise_multiplier is not None:
        noise = float(noise_multiplier)
    elif epsilon is None:
        raise ValueError("DP-SGD needs epsilon or a noise multiplier")
    else:
        noise = _noise(epsilon, delta, sample_rate, rounds * steps_per_round)
    return DpSgdPlan(noise, max_grad_norm, batch, sample_rate, steps_per_round, delta)


@functools.lru_cache(maxsize=256)
def _noise(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    return record_level_noise(epsilon, delta, sample_rate, steps)


def fit_dp_sgd(
    learner: Any, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, plan: DpSgdPlan
) -> dict[str, float]:
    """``epochs`` of DP-SGD on (X, y) for a batch-step learner (its module and optimizer wrapped by
    Opacus for this fit only); returns the mean batch loss."""
    import torch
    from opacus import GradSampleModule
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer

    losses: list[float] = []
    with learner.step_context(seed), warnings.catch_warnings():
        # Opacus's per-sample hooks on a module whose inputs need no gradient: expected, harmless
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        learner.start_fit(y)
        wrapped = GradSampleModule(learner.torch_module())  # hooks on the live module's layers
        try:
            learner.optimizer = DPOptimizer(
                learner.optimizer,
                noise_multiplier=plan.noise_multiplier,
                max_grad_norm=plan.max_grad_norm,
                expected_batch_size=plan.batch_size,
                generator=torch.Generator().manual_seed(seed + 1),
            )
            loader = DPDataLoader.from_data_loader(
                learner.data_loader(X, y, seed=seed, batch_size=plan.batch_size),
                generator=torch.Generator().manual_seed(seed),
            )
            for _ in range(epochs):
                for xb, yb in loader:
                    if len(yb) == 0:  # Poisson sampling can draw an empty batch: no step, no release
                        continue
                    losses.append(learner.train_step(xb, yb))
        finally:
            wrapped._close()  # remove Opacus's hooks: the learner's module is plain again
            learner.optimizer = learner.make_optimizer()
    return {"train_loss": float(np.mean(losses)) if losses else float("nan")}
