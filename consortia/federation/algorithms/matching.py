"""Matched averaging of fully connected layers (FedMA, Wang et al. 2020; PFNM's FC case).

Hidden units of a network can be permuted without changing its function, so two institutions'
unit ``j`` need not compute the same thing: averaging them coordinate-wise (FedAvg) mixes
unrelated units. Matching pairs each institution's units with the global units they resemble
(Hungarian assignment on the squared distance of their incoming weights and bias,
``scipy.optimize.linear_sum_assignment``), permutes each model accordingly, and averages the
matched units. The number of units stays the model's (no new global units, unlike PFNM's
nonparametric version), so the global model keeps the shapes every institution trains.

A model is a list of arrays ``[W_0, b_0, W_1, b_1, ..., W_out, b_out]`` with ``W_l`` of shape
``(out_units, in_units)``: what ``LayerMatchingLearner.layers`` promises, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from consortia.errors import ConfigError

Model = list[np.ndarray]


def layer_count(model: Sequence[np.ndarray]) -> int:
    """Number of (weight, bias) layers, checked: weights 2-D, biases their rows, layers chained."""
    if len(model) < 2 or len(model) % 2:
        raise ConfigError("FedMA needs a model of (weight, bias) layers (e.g. the mlp model)")
    for i in range(0, len(model), 2):
        w, b = model[i], model[i + 1]
        chained = i == 0 or (w.ndim == 2 and w.shape[1] == model[i - 2].shape[0])
        if w.ndim != 2 or b.shape != (w.shape[0],) or not chained:
            raise ConfigError("FedMA needs a model of (weight, bias) layers (e.g. the mlp model)")
    return len(model) // 2


def match_units(
    neurons: Sequence[np.ndarray], weights: np.ndarray, iterations: int = 5
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Global units and one permutation per institution: ``perm[j]`` is that institution's unit
    matched to global unit ``j``. ``neurons[i]`` is ``(units, features)``; ``weights`` sum to one.

    Starts from the largest institution's units and alternates assignment and averaging (the
    paper's iterative matching); the reference is fixed, so the result does not depend on how
    the other institutions happen to number their units.
    """
    reference = int(np.argmax(weights))
    centre = np.asarray(neurons[reference], dtype=np.float64)
    perms = [np.arange(len(centre)) for _ in neurons]
    for _ in range(iterations):
        new = []
        for units in neurons:
            cost = ((centre[:, None, :] - np.asarray(units, dtype=np.float64)[None, :, :]) ** 2).sum(-1)
            rows, cols = linear_sum_assignment(cost)
            perm = np.empty(len(rows), dtype=np.int64)
            perm[rows] = cols
            new.append(perm)
        updated = sum(w * np.asarray(u, dtype=np.float64)[p] for w, u, p in zip(weights, neurons, new, strict=True))
        converged = all(np.array_equal(a, b) for a, b in zip(new, perms, strict=True))
        perms, centre = new, updated
        if converged:
            break
    return centre, perms


def permute_layer(model: Sequence[np.ndarray], layer: int, perm: np.ndarray) -> Model:
    """``model`` with layer ``layer``'s units reordered by ``perm`` (its rows, and the next layer's
    columns): the same function, the units in the global order."""
    out = [np.array(a, copy=True) for a in model]
    w, b = 2 * layer, 2 * layer + 1
    out[w], out[b] = out[w][perm], out[b][perm]
    if w + 2 < len(out):
        out[w + 2] = out[w + 2][:, perm]
    return out


def match_layer(models: Sequence[Sequence[np.ndarray]], weights: np.ndarray, layer: int) -> list[Model]:
    """Every model with layer ``layer`` matched: its units permuted into the global order and
    replaced by the matched averages (the layers below must already be aligned)."""
    neurons = [np.hstack([m[2 * layer], m[2 * layer + 1][:, None]]) for m in models]
    centre, perms = match_units(neurons, weights)
    aligned = [permute_layer(m, layer, p) for m, p in zip(models, perms, strict=True)]
    for m in aligned:
        m[2 * layer] = centre[:, :-1].astype(m[2 * layer].dtype)
        m[2 * layer + 1] = centre[:, -1].astype(m[2 * layer + 1].dtype)
    return aligned


def average(models: Sequence[Sequence[np.ndarray]], weights: np.ndarray) -> Model:
    """FedAvg's coordinate-wise weighted mean."""
    return [
        sum(w * np.asarray(m[k], dtype=np.float64) for w, m in zip(weights, models, strict=True)).astype(
            models[0][k].dtype
        )
        for k in range(len(models[0]))
    ]


def matched_average(models: Sequence[Sequence[np.ndarray]], weights: np.ndarray) -> Model:
    """One-shot matched averaging: every hidden layer matched in turn, input to output, then the
    output layer averaged (FedMA without the retraining between layers)."""
    aligned = [list(m) for m in models]
    for layer in range(layer_count(aligned[0]) - 1):
        aligned = match_layer(aligned, weights, layer)
    return average(aligned, weights)
