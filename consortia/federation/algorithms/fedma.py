"""FedMA's local update: train the layers above the ones already matched.

The train config says how many hidden layers the server has matched so far (``fedma-frozen``):
those stay exactly as received (their parameters take no gradient) and the layers above are
trained on this institution's rows. In the first round (``fedma-init``) the institution starts
from its own initialisation, seeded by its own name, as FedMA's local models do: matching is what
lines their units up, which a shared starting point would mostly do by itself.
"""

from __future__ import annotations

from torch import nn

from consortia.federation.algorithms.task import LocalResult, LocalTask
from consortia.learners import require

FROZEN_KEY = "fedma-frozen"
INIT_KEY = "fedma-init"


def train_fedma(task: LocalTask) -> LocalResult:
    require(task.learner, ["supports_layer_matching", "supports_torch_module"], feature="FedMA (matched averaging)")
    learner = task.learner
    frozen = int(task.config.get(FROZEN_KEY, 0))  # type: ignore[arg-type]
    module: nn.Module = learner.torch_module()  # type: ignore[attr-defined]
    if bool(task.config.get(INIT_KEY, False)):
        with learner.step_context(task.seed):  # type: ignore[attr-defined]
            for layer in module.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
    names = {name for pair in learner.layers()[:frozen] for name in pair}  # type: ignore[attr-defined]
    held = [p for name, p in module.named_parameters() if name in names]
    for p in held:
        p.requires_grad_(False)
    try:
        info = learner.fit(task.x, task.y, epochs=task.epochs, seed=task.seed)
    finally:
        for p in held:
            p.requires_grad_(True)
    return LocalResult(info)
