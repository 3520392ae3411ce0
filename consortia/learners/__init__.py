"""Model families behind one Learner contract, chosen by name.

Register a new family with one ``LEARNERS.register_lazy("name", "module:build")`` line in
``consortia/catalog.py``, where ``build``
has the signature ``build(n_features, params, seed, device) -> Learner``.
"""

from __future__ import annotations

from typing import Any

from consortia.catalog import LEARNERS
from consortia.learners.base import Learner


def make_learner(
    name: str, n_features: int, params: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu"
) -> Learner:
    """Build a fresh learner; the same arguments always give the same initial parameters."""
    learner: Learner = LEARNERS.get(name)(n_features, dict(params or {}), seed, device)
    return learner


__all__ = ["LEARNERS", "Learner", "make_learner"]
