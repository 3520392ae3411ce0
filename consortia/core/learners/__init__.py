"""Model families behind one Learner contract, chosen by name.

Register a new family with ``LEARNERS.register_lazy("name", "module:build")`` where ``build``
has the signature ``build(n_features, params, seed, device) -> Learner``.
"""

from __future__ import annotations

from typing import Any

from consortia.core.learners.base import Learner
from consortia.registry import Registry

LEARNERS: Registry = Registry("model")
LEARNERS.register_lazy("logistic", "consortia.core.learners.logistic:build")
LEARNERS.register_lazy("mlp", "consortia.core.learners.mlp:build")
LEARNERS.register_lazy("xgboost", "consortia.core.learners.xgboost:build")


def make_learner(
    name: str, n_features: int, params: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu"
) -> Learner:
    """Build a fresh learner; the same arguments always give the same initial parameters."""
    return LEARNERS.get(name)(n_features, dict(params or {}), seed, device)


__all__ = ["LEARNERS", "Learner", "make_learner"]
