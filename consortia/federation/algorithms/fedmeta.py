"""FedMeta's local update: first-order MAML steps (Per-FedAvg's first-order variant).

FedAvg's global model minimises the average of the institutions' losses; FedMeta's minimises
the average loss AFTER one local adaptation step, ``L_i(theta - alpha grad L_i(theta))``, so that
each institution's own fine-tuning starts from a point that adapts quickly (Chen et al. 2018,
FedMeta; Fallah et al. 2020, Per-FedAvg). Each meta-step takes two batches: an inner SGD step of
size ``alpha`` (``fedmeta-inner-lr``) on the first, the gradient of the loss at that adapted point
on the second, and the learner's optimizer steps the UN-adapted parameters with that gradient
(the first-order approximation: no second derivatives).
"""

from __future__ import annotations

import numpy as np
import torch

from consortia.federation.algorithms.task import LocalResult, LocalTask
from consortia.learners import TorchModuleLearner, require

INNER_LR_KEY = "fedmeta-inner-lr"


def train_fedmeta(task: LocalTask) -> LocalResult:
    require(task.learner, "supports_torch_module", feature="FedMeta (first-order MAML steps)")
    inner_lr = float(task.config.get(INNER_LR_KEY, 0.05))  # type: ignore[arg-type]
    losses = meta_steps(task.learner, task.x, task.y, epochs=task.epochs, seed=task.seed, inner_lr=inner_lr)  # type: ignore[arg-type]
    return LocalResult({"train_loss": float(np.mean(losses)) if losses else 0.0})


def meta_steps(
    learner: TorchModuleLearner, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, inner_lr: float
) -> list[float]:
    """First-order MAML over ``epochs`` passes of (inner batch, outer batch) pairs; the outer losses."""
    module = learner.torch_module()
    losses = []
    with learner.step_context(seed):
        learner.start_fit(y)
        module.train()
        batches = list(learner.batches(x, y, seed=seed, epochs=epochs))
        pairs = list(zip(batches[0::2], batches[1::2], strict=False)) or [(batches[0], batches[0])]
        params = list(module.parameters())
        for (x_in, y_in), (x_out, y_out) in pairs:
            start = [p.detach().clone() for p in params]
            grads = torch.autograd.grad(learner.loss(module(x_in), y_in), params)  # type: ignore[attr-defined]
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.sub_(inner_lr * g)
            outer = learner.loss(module(x_out), y_out)  # type: ignore[attr-defined]
            optimizer = learner.optimizer
            optimizer.zero_grad()
            outer.backward()
            with torch.no_grad():  # the gradient was taken at the adapted point; step from the start
                for p, s in zip(params, start, strict=True):
                    p.copy_(s)
            optimizer.step()
            losses.append(float(outer.detach()))
    return losses
