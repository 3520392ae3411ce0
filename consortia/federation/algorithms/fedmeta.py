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
#: the inner step when the strategy sends none (consortia.federation.strategies.fedmeta: why 0.2)
DEFAULT_INNER_LR = 0.2


def train_fedmeta(task: LocalTask) -> LocalResult:
    require(task.learner, "supports_torch_module", feature="FedMeta (first-order MAML steps)")
    inner_lr = float(task.config.get(INNER_LR_KEY, DEFAULT_INNER_LR))  # type: ignore[arg-type]
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


def adapt_steps(
    learner: TorchModuleLearner, x: np.ndarray, y: np.ndarray, *, steps: int, seed: int, sgd_lr: float | None = None
) -> list[float]:
    """``steps`` mini-batch steps on an institution's rows (not epochs): how a meta-learned model
    is judged, "good after k local steps". The learner's own optimizer, fresh as in ``fit``
    (``sgd_lr`` None), or plain SGD of that step size (the inner step FOMAML meta-trains for)."""
    if steps <= 0:
        return []
    module = learner.torch_module()
    per_epoch = max(1, -(-len(y) // int(learner.batch_size)))
    with learner.step_context(seed):
        learner.start_fit(y)
        if sgd_lr is not None:
            learner.optimizer = torch.optim.SGD(module.parameters(), lr=float(sgd_lr))
        batches = learner.batches(x, y, seed=seed, epochs=-(-steps // per_epoch))
        return [learner.train_step(xb, yb) for _, (xb, yb) in zip(range(steps), batches, strict=False)]
