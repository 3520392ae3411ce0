"""Model families behind one Learner contract, chosen by name.

Register a new family with one ``LEARNERS.register_lazy("name", "module:build")`` line in
``consortia/catalog.py``, where ``build`` has the signature
``build(n_features, params, seed, device) -> LearnerClass``: the return annotation is how
``capabilities(name)`` finds the class's flags without building a learner.
"""

from __future__ import annotations

from typing import Any

from consortia.catalog import LEARNERS
from consortia.learners.base import (
    CAPABILITIES,
    AggregatableLearner,
    BatchStepLearner,
    LayerMatchingLearner,
    Learner,
    LearnerCapabilities,
    TorchModuleLearner,
    capabilities_of,
    learner_class,
    models_with,
    require,
)


def make_learner(
    name: str, n_features: int, params: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu"
) -> Learner:
    """Build a fresh learner; the same arguments always give the same initial parameters."""
    learner: Learner = LEARNERS.get(name)(n_features, dict(params or {}), seed, device)
    return learner


def capabilities(name: str) -> LearnerCapabilities:
    """What model ``name`` can take part in, read from its class (imported, not built or trained)."""
    return capabilities_of(learner_class(name))


__all__ = [
    "CAPABILITIES",
    "LEARNERS",
    "AggregatableLearner",
    "BatchStepLearner",
    "LayerMatchingLearner",
    "Learner",
    "LearnerCapabilities",
    "TorchModuleLearner",
    "capabilities",
    "capabilities_of",
    "learner_class",
    "make_learner",
    "models_with",
    "require",
]
