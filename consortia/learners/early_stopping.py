"""Train one model epoch by epoch and keep its best epoch: the baselines' half of model selection.

The federation keeps its best round by federated validation (``consortia.config.selection``);
the centralized and local-only baselines get the same rule with the same budget: at most
``epochs`` epochs, a score after each (the caller's ``score``: the weighted validation metric over
the institutions' validation rows), stop after ``patience`` epochs without a gain, restore the best.

PyTorch learners train as one ``fit`` would (one optimizer, one shuffled stream of batches), so
without a stop the model is ``fit(epochs=...)``'s; other learners (XGBoost) add one epoch's trees
per ``fit`` call on top of the last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from consortia.config.selection import VALIDATION_PREFIX, VALIDATION_ROWS_KEY
from consortia.evaluation.selection import BestRound, validation_score
from consortia.learners.base import Learner
from consortia.verticals import Vertical

Score = Callable[[Learner], float]


def fit_early_stopping(
    learner: Learner,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    seed: int,
    score: Score,
    patience: int,
    min_delta: float = 0.0,
) -> tuple[int, dict[str, float]]:
    """Fit at most ``epochs`` epochs, keep the best-scoring one; returns (epochs kept, fit info)."""
    best: BestRound[list[np.ndarray]] = BestRound(patience, min_delta)
    if getattr(learner, "supports_batch_steps", False):
        info = _torch_epochs(learner, X, y, epochs=epochs, seed=seed, score=score, best=best)
    else:
        info = {}
        for epoch in range(1, epochs + 1):
            info = learner.fit(X, y, epochs=1, seed=seed)
            best.observe(epoch, score(learner), _state(learner))
            if best.should_stop():
                break
    if best.best_model is not None and best.best_round != best.last_round:
        learner.set_parameters(best.best_model)
    kept = best.best_round if best.judged else best.last_round
    return kept, {**info, "epochs_kept": float(kept), "best_validation": best.best_score if best.judged else math.nan}


def _state(learner: Learner) -> list[np.ndarray]:
    """The whole model: ``model_state`` where ``get_parameters`` is only what a round sends (bagging's new tree)."""
    state = getattr(learner, "model_state", None)
    return state() if callable(state) else learner.get_parameters()


def _torch_epochs(
    learner: Learner, X: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, score: Score, best: BestRound
) -> dict[str, float]:
    torch_learner = learner  # TorchLearner: start_fit / batches / train_step / step_context
    per_epoch = max(1, math.ceil(len(y) / int(torch_learner.batch_size)))  # type: ignore[attr-defined]
    losses: list[float] = []
    with torch_learner.step_context(seed):  # type: ignore[attr-defined]
        torch_learner.start_fit(y)  # type: ignore[attr-defined]
        stream = torch_learner.batches(X, y, seed=seed, epochs=epochs)  # type: ignore[attr-defined]
        for epoch in range(1, epochs + 1):
            for _ in range(per_epoch):
                xb, yb = next(stream)
                losses.append(torch_learner.train_step(xb, yb))  # type: ignore[attr-defined]
            best.observe(epoch, score(learner), learner.get_parameters())
            if best.should_stop():
                break
    return {"train_loss": sum(losses) / max(len(losses), 1)}


@dataclass(frozen=True)
class ValidationPart:
    """One institution's validation rows as a model sees them, and its fit rows (for verticals that
    set an operating point on the model's training scores)."""

    x: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame | None
    x_fit: np.ndarray | None = None
    y_fit: np.ndarray | None = None


def validation_scorer(parts: Sequence[ValidationPart], vertical: Vertical) -> Score:
    """The federation's rule (``consortia.evaluation.selection.validation_score``) for one model:
    the primary metric on each part, weighted by its rows; single-class parts have no vote."""
    metric = vertical.primary_metric
    voting = [p for p in parts if len(np.unique(p.y)) >= 2]

    def score(learner: Learner) -> float:
        per_part = []
        for part in voting:
            train = None
            if vertical.tunes_on_train and part.x_fit is not None and part.y_fit is not None:
                train = (part.y_fit, learner.predict_proba(part.x_fit))
            value = vertical.evaluate(part.y, learner.predict_proba(part.x), frame=part.frame, train=train)[metric]
            per_part.append({VALIDATION_PREFIX + metric: float(value), VALIDATION_ROWS_KEY: float(len(part.y))})
        return validation_score(per_part, metric)

    return score
