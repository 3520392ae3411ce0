"""Baselines with the same learner and the same training budget as the federation.

* centralized: one model on the pooled training rows (what federation tries to approach);
  it uses the same preprocessor the federation agreed on.
* local-only: each institution alone, with only its own rows and its own statistics.

Budget (``training_budget``, the one place that sets it): each baseline's model is as large as
the federated global model.

* most learners: ``rounds x local_epochs`` epochs, the local training each federated
  institution did (cyclic and histogram XGBoost: that many boosting rounds of
  ``trees_per_epoch`` trees, the size of their global model);
* XGBoost bagging: ``rounds x institutions per round`` trees, since Flower's FedXgbBagging appends
  every trained institution's new tree each round. Local-only gets the same number: the fair
  comparison is a model of the same size, and one institution can afford to grow it alone
  (the trees are cheap; what it lacks is the others' rows, which is what the comparison shows).

``RunResult.budget`` records the size each mode's model actually has (``model_size``).

``compare_baselines`` is the one loop that scores both baselines on every institution's test
split and on the pooled one; every mode (Flower strategies, histogram XGBoost) calls it with its
own centralized model.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.institutions import Federation, institution_seed
from consortia.data.preprocessing import FeatureSummary, Preprocessor, merge_summaries
from consortia.federation.strategies import train_sample_size
from consortia.learners import Learner, make_learner
from consortia.verticals import Vertical
from consortia.verticals.base import TrainScores

#: a trained model as a function of raw rows: probability of the positive class per row
Predict = Callable[[pd.DataFrame], np.ndarray]
Metrics = dict[str, float]


def training_budget(config: ExperimentConfig) -> int:
    """Epochs a baseline trains for: as many trees (or epochs) as the federated global model gets."""
    if config.model == "xgboost" and config.xgb_mode == "bagging":  # one tree per trained institution a round
        return config.rounds * train_sample_size(config.institutions, config.fraction_train, config.min_institutions)
    return config.rounds * config.local_epochs


def model_size(learner: Learner, config: ExperimentConfig) -> dict[str, float]:
    """A mode's model size for ``RunResult.budget``: the trees it has, or the epochs it trained."""
    trees = getattr(learner, "num_rounds", None)
    if trees is not None:
        return {"trees": float(trees)}
    return {"epochs": float(config.rounds * config.local_epochs)}


def sizes_over_institutions(sizes: list[dict[str, float]]) -> dict[str, float]:
    """Local-only's size: the common value, or the mean with its range when institutions differ."""
    out: dict[str, float] = {}
    for key in sizes[0]:
        values = [s[key] for s in sizes]
        out[key] = float(np.mean(values))
        if min(values) != max(values):  # early stopping cut some institutions short
            out |= {f"{key}_min": float(min(values)), f"{key}_max": float(max(values))}
    return out


def budget_note(budget: dict[str, dict[str, float]]) -> str:
    """One line for ``RunResult.notes``: every mode's model size."""
    parts = []
    for mode in ("federated", "federated_finetuned", "centralized", "local_only"):
        if mode in budget:
            size = ", ".join(f"{v:g} {k}" for k, v in budget[mode].items() if "_" not in k)
            parts.append(f"{mode} {size}")
    return "model size per mode: " + "; ".join(parts) + " (local_only: each institution's own model)"


def federated_budget(
    config: ExperimentConfig, vertical: Vertical, n_features: int, parameters: list[np.ndarray]
) -> dict[str, dict[str, float]]:
    """The federated global model's size and the fine-tuned one's (fine-tuning adds to it)."""
    learner = _learner(config, vertical, n_features)
    learner.set_parameters(parameters)
    federated = model_size(learner, config)
    per_epoch = float(getattr(learner, "trees_per_epoch", 1))
    tuned = {k: v + config.finetune_epochs * (per_epoch if k == "trees" else 1) for k, v in federated.items()}
    return {"federated": federated, "federated_finetuned": tuned}


def _learner(config: ExperimentConfig, vertical: Vertical, n_features: int) -> Learner:
    params = vertical.model_params(config.model, config.model_params)
    return make_learner(config.model, n_features, params, seed=config.seed, device=config.device)


def train_centralized(
    federation: Federation, vertical: Vertical, config: ExperimentConfig, preprocessor: Preprocessor
) -> tuple[Learner, float]:
    started = time.perf_counter()
    pooled = pd.concat([inst.train for inst in federation.institutions.values()], ignore_index=True)
    learner = _learner(config, vertical, preprocessor.n_features)
    learner.fit(
        preprocessor.transform(pooled),
        pooled[federation.schema.target].to_numpy(dtype=int),
        epochs=training_budget(config),
        seed=institution_seed(config.seed, "centralized"),
    )
    return learner, time.perf_counter() - started


def train_local_only(
    federation: Federation, vertical: Vertical, config: ExperimentConfig
) -> tuple[dict[str, tuple[Learner, Preprocessor]], float]:
    started = time.perf_counter()
    models = {}
    for name, inst in federation.institutions.items():
        own = merge_summaries([FeatureSummary.from_frame(inst.train, federation.schema)], federation.schema)
        learner = _learner(config, vertical, own.n_features)
        learner.fit(
            own.transform(inst.train),
            inst.train[federation.schema.target].to_numpy(dtype=int),
            epochs=training_budget(config),
            seed=institution_seed(config.seed, name, 0),
        )
        models[name] = (learner, own)
    return models, time.perf_counter() - started


def score(learner: Learner, preprocessor: Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    return learner.predict_proba(preprocessor.transform(frame))


def predictor(learner: Learner, preprocessor: Preprocessor) -> Predict:
    """A learner and the preprocessor it was trained behind, as a function of raw rows."""
    return lambda frame: score(learner, preprocessor, frame)


def compare_baselines(
    federation: Federation,
    vertical: Vertical,
    config: ExperimentConfig,
    centralized: Predict,
    timings: dict[str, float],
    budget: dict[str, dict[str, float]] | None = None,
) -> tuple[dict[str, dict[str, Metrics]], dict[str, Metrics]]:
    """Centralized (given) and local-only (trained here) on every test split and the pooled one.

    Returns ``(per_institution, pooled)``: institution -> mode -> metrics, mode -> metrics.
    Pooled local-only is the mean over institutions of each local model on all test rows.
    ``budget`` (if given) gets local-only's model size.
    """
    target = federation.schema.target
    institutions = federation.institutions
    pooled_test = pd.concat([i.test for i in institutions.values()], ignore_index=True)
    pooled_train = pd.concat([i.train for i in institutions.values()], ignore_index=True)
    y_pooled = pooled_test[target].to_numpy(dtype=int)

    def train_scores(predict: Predict, frame: pd.DataFrame) -> TrainScores | None:
        # only for verticals that tune an operating point on the model's own training rows
        if not vertical.tunes_on_train:
            return None
        return frame[target].to_numpy(dtype=int), predict(frame)

    central_train = train_scores(centralized, pooled_train)
    pooled: dict[str, Metrics] = {
        "centralized": vertical.evaluate(y_pooled, centralized(pooled_test), frame=pooled_test, train=central_train)
    }
    local_models, timings["local_only_s"] = train_local_only(federation, vertical, config)
    if budget is not None:
        budget["local_only"] = sizes_over_institutions([model_size(m, config) for m, _ in local_models.values()])
    per_institution: dict[str, dict[str, Metrics]] = {}
    local_on_pooled = []
    for name, inst in institutions.items():
        y = inst.test[target].to_numpy(dtype=int)
        local = predictor(*local_models[name])
        own_train = train_scores(local, inst.train)
        per_institution[name] = {
            "centralized": vertical.evaluate(y, centralized(inst.test), frame=inst.test, train=central_train),
            "local_only": vertical.evaluate(y, local(inst.test), frame=inst.test, train=own_train),
        }
        local_on_pooled.append(vertical.evaluate(y_pooled, local(pooled_test), frame=pooled_test, train=own_train))
    pooled["local_only"] = {key: mean_ignoring_nan([m[key] for m in local_on_pooled]) for key in local_on_pooled[0]}
    return per_institution, pooled


def mean_ignoring_nan(values: list[float]) -> float:
    """Mean over institutions; NaN (a metric the data cannot support) only if all are NaN."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
