"""How the Flower apps run: in this process (default), Flower's Ray simulation, or deployment.

An engine is a function ``run(config, hooks) -> FederatedOutcome`` that starts the very same
ClientApp and ServerApp (``consortia.federation.server``) under a different runtime.
"""

from __future__ import annotations

from collections.abc import Callable

from consortia.catalog import ENGINES
from consortia.config import ExperimentConfig
from consortia.runs.results import FederatedOutcome

EngineFn = Callable[..., FederatedOutcome]


def run_engine(config: ExperimentConfig, hooks=None) -> FederatedOutcome:
    return ENGINES.get(config.engine)(config, hooks)


__all__ = ["ENGINES", "run_engine"]
