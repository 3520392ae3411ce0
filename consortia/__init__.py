"""Consortia: federated learning between institutions that may not pool their data.

Public API::

    from consortia import ExperimentConfig, run_experiment
    result = run_experiment(ExperimentConfig(vertical="healthcare"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from consortia.config import ExperimentConfig
    from consortia.experiment import run_experiment
    from consortia.runs.results import RunResult

_LAZY = {
    "ExperimentConfig": "consortia.config",
    "run_experiment": "consortia.experiment",
    "RunResult": "consortia.runs.results",
}


def __getattr__(name: str) -> Any:  # keeps `import consortia` cheap (no torch, no flwr)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["ExperimentConfig", "RunResult", "__version__", "run_experiment"]
