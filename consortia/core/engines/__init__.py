"""How the Flower apps run: in this process (default), Flower's Ray simulation, or deployment.

An engine is a function ``run(config, hooks) -> FederatedOutcome`` that starts the very same
ClientApp and ServerApp (``consortia.core.apps``) under a different runtime.
"""

from __future__ import annotations

from collections.abc import Callable

from consortia.config import ExperimentConfig
from consortia.core.results import FederatedOutcome
from consortia.registry import Registry

EngineFn = Callable[..., FederatedOutcome]

ENGINES: Registry = Registry("engine")
ENGINES.register_lazy("inprocess", "consortia.core.engines.inprocess:run")
ENGINES.register_lazy("ray", "consortia.core.engines.ray:run")


def run_engine(config: ExperimentConfig, hooks=None) -> FederatedOutcome:
    return ENGINES.get(config.engine)(config, hooks)


__all__ = ["ENGINES", "run_engine"]
