"""The shadow-model (LiRA-style) membership attack of Carlini et al. (2022), online variant.

K shadow models, each trained on a random half of an institution's rows, tell what a model's
confidence on an example looks like when the example was trained on ("in") and when it was not
("out"). A target model's confidence on the example is then scored by the likelihood ratio of
the two Gaussians. Confidences are logit-scaled (``log p / (1 - p)`` of the true label), where
they are close to Gaussian. With few shadows each Gaussian gets its own mean per example but
both share one variance over all examples (the paper's "fixed variance", more stable below ~64
shadows). A shared variance also keeps the score monotone in the target's confidence, so a target
more confident than every shadow (a federated model that saw more rows) still ranks sensibly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from consortia.learners import Learner

#: probabilities are clipped this far from 0 and 1 before the logit (float64 sigmoid saturates)
EPS = 1e-15
#: smallest standard deviation a Gaussian may have (identical confidences in every shadow)
MIN_STD = 1e-6


def logit_confidence(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log(p_true / (1 - p_true))`` where ``p_true`` is the model's probability of the true label."""
    p = np.clip(np.asarray(proba, dtype=np.float64), EPS, 1 - EPS)
    logit = np.log(p) - np.log1p(-p)
    return np.where(np.asarray(y) == 1, logit, -logit)


def shadow_membership(n_rows: int, n_shadows: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_shadows, n_rows)`` booleans: row j is in exactly ``n_shadows // 2`` shadows' training sets.

    Balanced per row (not per shadow) so that every row has "in" and "out" models to compare.
    """
    if n_shadows < 2:
        raise ValueError("the shadow attack needs at least 2 shadow models")
    order = np.argsort(rng.uniform(size=(n_shadows, n_rows)), axis=0)
    return order < n_shadows // 2


def train_shadows(
    make_learner: Callable[[int], Learner],
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    *,
    epochs: int,
    seeds: list[int],
) -> np.ndarray:
    """Logit confidences ``(n_shadows, n_rows)`` of shadow models on every row.

    Shadow ``i`` is ``make_learner(seeds[i])`` trained for ``epochs`` on the rows ``keep[i]``
    selects (the same learner and budget as the run's local training).
    """
    confidences = np.empty(keep.shape, dtype=np.float64)
    for i, (rows, seed) in enumerate(zip(keep, seeds, strict=True)):
        learner = make_learner(seed)
        learner.fit(x[rows], y[rows], epochs=epochs, seed=seed)
        confidences[i] = logit_confidence(learner.predict_proba(x), y)
    return confidences


def lira_scores(target: np.ndarray, shadow: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-row log likelihood ratio "in" vs "out"; higher = more likely a training row.

    ``target``: the attacked model's logit confidences ``(n_rows,)``; ``shadow`` and ``keep``
    as ``train_shadows`` and ``shadow_membership`` give them.
    """
    mean_in, sq_in, dof_in = _means(shadow, keep)
    mean_out, sq_out, dof_out = _means(shadow, ~keep)
    dof = dof_in + dof_out
    # one shadow per side leaves no within-row spread to measure: fall back to the spread over rows
    std = float(np.sqrt((sq_in + sq_out) / dof)) if dof > 0 else float(np.std(shadow))
    std = max(std, MIN_STD)
    # log N(t; mean_in, std) - log N(t; mean_out, std)
    return ((target - mean_out) ** 2 - (target - mean_in) ** 2) / (2 * std**2)


def _means(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Per-row mean over the masked shadows, the sum of squared residuals and its degrees of freedom."""
    counts = mask.sum(axis=0)
    if counts.min() < 1:
        raise ValueError("every row needs at least one shadow on each side")
    means = np.where(mask, values, 0.0).sum(axis=0) / counts
    squares = float((np.where(mask, values - means, 0.0) ** 2).sum())
    return means, squares, int((counts - 1).sum())
