"""SCAFFOLD's local update (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging").

Each institution keeps a control variate ``c_i`` (an estimate of its own gradient) in its node
state; the server sends the global ``c`` (their average). Every local step's gradient is corrected
by ``c - c_i``, so the local model follows the federation's gradient instead of drifting towards
the institution's own optimum. After the local steps the institution updates ``c_i``:

* option I: ``c_i+ = grad f_i(x)``, the full gradient of its loss at the global model ``x``
  (one more pass over its rows); it matches the corrected gradient whatever the optimizer;
* option II: ``c_i+ = c_i - c + (x - y) / (K lr)`` from the ``K`` steps it took (no extra pass).
  That estimate is in the units of a parameter change per step, not of a gradient: with Adam
  (Consortia's optimizer) a gradient correction in those units is rescaled away, so option II
  corrects each step's parameter change instead, ``y <- y - lr (c - c_i)`` after the optimizer's
  step, as NVIDIA FLARE's SCAFFOLD does (for plain SGD the two are the same update).

The reply carries the new model ``y`` (``arrays``) and ``c_i+ - c_i`` (``scaffold-dc``).

``c_i`` lives in ``context.state``, which persists between messages of one run: in process, under
Ray, and in a deployment (the SuperNode keeps each run's context and hands it to every new
ClientApp process). It is not in the run folder's checkpoints: a resumed run, or a SuperNode that
restarts, starts its ``c_i`` again from zero (SCAFFOLD then re-learns it within a few rounds).
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord

from consortia.errors import ConfigError
from consortia.federation.algorithms.task import LocalResult, LocalTask
from consortia.learners import TorchModuleLearner, require

#: the server's control variate in a train message, and the change of ``c_i`` in the reply
GLOBAL_KEY = "scaffold-c"
DELTA_KEY = "scaffold-dc"
#: this institution's control variate in its node state
STATE_KEY = "scaffold-ci"
#: the train config entry choosing how ``c_i`` is updated (1 or 2)
OPTION_KEY = "scaffold-option"
#: rows per batch when computing option I's full gradient (memory only: the mean is the same)
_GRADIENT_BATCH = 4096


def train_scaffold(task: LocalTask) -> LocalResult:
    """Corrected local steps from the global model; the reply's ``c_i`` change and metrics."""
    require(task.learner, "supports_torch_module", feature="SCAFFOLD (corrected gradient steps)")
    learner: TorchModuleLearner = task.learner  # type: ignore[assignment]
    if GLOBAL_KEY not in task.message.content.array_records:
        raise ConfigError("a SCAFFOLD train message must carry the server's control variate ('scaffold-c')")
    option = int(task.config.get(OPTION_KEY, 1))  # type: ignore[arg-type]
    x = learner.get_parameters()
    c = task.message.content.array_records[GLOBAL_KEY].to_numpy_ndarrays()
    c_i = _own_variate(task, x)
    if [a.shape for a in c] != [a.shape for a in x]:
        raise ConfigError("SCAFFOLD: the server's control variate does not match the model's shapes")
    with learner.step_context(task.seed):
        learner.start_fit(task.y)
        if option == 1:
            c_new = full_gradient(learner, task.x, task.y)
        correction = [cg - ci for cg, ci in zip(c, c_i, strict=True)]
        learner.set_gradient_correction(correction, after_step=option == 2)  # type: ignore[attr-defined]
        try:
            losses = [
                learner.train_step(xb, yb)
                for xb, yb in learner.batches(task.x, task.y, seed=task.seed, epochs=task.epochs)
            ]
        finally:
            learner.set_gradient_correction(None)  # type: ignore[attr-defined]
    y = learner.get_parameters()
    if option == 2:
        scale = 1.0 / (max(len(losses), 1) * float(learner.lr))  # type: ignore[attr-defined]
        c_new = [ci - cg + (xa - ya) * scale for ci, cg, xa, ya in zip(c_i, c, x, y, strict=True)]
    task.context.state[STATE_KEY] = ArrayRecord([a.astype(np.float32) for a in c_new])
    delta = [(new - old).astype(np.float32) for new, old in zip(c_new, c_i, strict=True)]
    info = {"train_loss": sum(losses) / max(len(losses), 1)}
    return LocalResult(info, {DELTA_KEY: ArrayRecord(delta)})


def _own_variate(task: LocalTask, like: list[np.ndarray]) -> list[np.ndarray]:
    """This institution's ``c_i`` from its node state; zeros the first time (and after a restart)."""
    stored = task.context.state.array_records.get(STATE_KEY)
    if stored is None:
        return [np.zeros_like(a, dtype=np.float32) for a in like]
    arrays = stored.to_numpy_ndarrays()
    if [a.shape for a in arrays] != [a.shape for a in like]:  # another model in the same node state
        return [np.zeros_like(a, dtype=np.float32) for a in like]
    return arrays


def full_gradient(learner: TorchModuleLearner, X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The gradient of the learner's training loss over all rows at its current parameters
    (``start_fit`` must have run: class weights), in ``get_parameters``' shapes."""
    module = learner.torch_module()
    module.train()
    params = list(module.parameters())
    total = [torch.zeros_like(p) for p in params]
    n = len(y)
    for xb, yb in learner.batches(X, y, seed=0, epochs=1, batch_size=_GRADIENT_BATCH):
        loss = learner.loss(module(xb), yb) * (len(yb) / n)  # type: ignore[attr-defined]
        grads = torch.autograd.grad(loss, params)
        for t, g in zip(total, grads, strict=True):
            t.add_(g)
    shapes = [a.shape for a in learner.get_parameters()]
    return [t.detach().cpu().numpy().reshape(s).astype(np.float32) for t, s in zip(total, shapes, strict=True)]
