"""Early stopping by validation, the one rule for the federation and its baselines.

``validation_score`` combines the institutions' validation metric (a mean weighted by
validation rows; an institution whose validation rows hold one class has no vote);
``BestRound`` keeps the best round's model and says when ``patience`` rounds brought nothing.
Both the ServerApp (rounds of global models) and the centralized and local-only baselines
(epochs of one model) use them, so every mode stops by the same rule (``consortia.config.selection``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from consortia.config.selection import VALIDATION_PREFIX, VALIDATION_ROWS_KEY

Model = TypeVar("Model")


def validation_score(per_institution: Sequence[Mapping[str, float]], metric: str) -> float:
    """The weighted mean of ``validation.<metric>`` over the institutions that have one (NaN if none)."""
    key = VALIDATION_PREFIX + metric
    votes = [
        (float(m[key]), float(m.get(VALIDATION_ROWS_KEY, 0.0)))
        for m in per_institution
        if key in m and math.isfinite(float(m[key])) and float(m.get(VALIDATION_ROWS_KEY, 0.0)) > 0
    ]
    total = sum(weight for _, weight in votes)
    if not votes or total <= 0:
        return math.nan
    return sum(value * weight for value, weight in votes) / total


@dataclass
class BestRound(Generic[Model]):
    """The best (highest-scoring) round seen so far, and whether to stop.

    A round counts as better only if it beats the best by more than ``min_delta``; NaN scores
    (no institution could judge) never count. Round 0 is the starting model."""

    patience: int
    min_delta: float = 0.0
    best_round: int = 0
    best_score: float = -math.inf
    best_model: Model | None = None
    last_round: int = 0
    scores: dict[int, float] = field(default_factory=dict)

    def observe(self, round_: int, score: float, model: Model) -> None:
        self.last_round = round_
        self.scores[round_] = score
        if math.isfinite(score) and (self.best_model is None or score > self.best_score + self.min_delta):
            self.best_round, self.best_score, self.best_model = round_, score, model

    @property
    def judged(self) -> bool:
        """Whether any round had a finite score."""
        return math.isfinite(self.best_score)

    def should_stop(self) -> bool:
        return self.judged and self.last_round - self.best_round >= self.patience

    def summary(self, metric: str) -> dict[str, float | str]:
        """For RunResult / the model card: which round was kept and why."""
        return {
            "metric": metric,
            "best_round": float(self.best_round),
            "rounds_run": float(self.last_round),
            "best_validation": float(self.best_score) if self.judged else math.nan,
        }
