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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.consortium import validation_arrays
from consortia.data.institutions import Federation, institution_seed
from consortia.data.preprocessing import FrameColumns, Preprocessor
from consortia.federation.local_baseline import LocalModel, fit_selected, train_local_model
from consortia.federation.strategies import training_budget
from consortia.learners import Learner, make_learner
from consortia.learners.early_stopping import ValidationPart, validation_scorer
from consortia.verticals import Vertical
from consortia.verticals.base import TrainScores

#: a trained model as a function of raw rows: probability of the positive class per row
Predict = Callable[[pd.DataFrame], np.ndarray]
Metrics = dict[str, float]
#: one institution's preprocessed (x_train, y_train, x_test, y_test)
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def model_size(learner: Learner, config: ExperimentConfig) -> dict[str, float]:
    """A mode's model size for ``RunResult.budget``: the trees it has, or the epochs it trained."""
    trees = getattr(learner, "num_rounds", None)
    if trees is not None:
        return {"trees": float(trees)}
    kept = getattr(learner, "epochs_kept", None)  # early stopping (fit_selected)
    return {"epochs": float(kept if kept is not None else config.rounds * config.local_epochs)}


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
    config: ExperimentConfig,
    vertical: Vertical,
    n_features: int,
    parameters: list[np.ndarray],
    selection: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """The federated global model's size and the fine-tuned one's (fine-tuning adds to it)."""
    learner = _learner(config, vertical, n_features)
    learner.set_parameters(parameters)
    if selection is not None:  # early stopping kept an earlier round's model
        learner.epochs_kept = int(selection["best_round"]) * config.local_epochs  # type: ignore[attr-defined]
    federated = model_size(learner, config)
    per_epoch = float(getattr(learner, "trees_per_epoch", 1))
    tuned = {k: v + config.finetune_epochs * (per_epoch if k == "trees" else 1) for k, v in federated.items()}
    return {"federated": federated, "federated_finetuned": tuned}


def _learner(config: ExperimentConfig, vertical: Vertical, n_features: int) -> Learner:
    params = vertical.model_params(config.model, config.model_params)
    return make_learner(config.model, n_features, params, seed=config.seed, device=config.device)


def train_centralized(
    federation: Federation,
    vertical: Vertical,
    config: ExperimentConfig,
    preprocessor: Preprocessor,
    arrays: Mapping[str, Arrays] | None = None,
) -> tuple[Learner, float]:
    """One model on the pooled training rows; ``arrays``: each institution's rows already
    transformed by ``preprocessor`` (the run's cached arrays), stacked instead of transformed again."""
    started = time.perf_counter()
    if arrays is not None:  # the same matrix as transforming the pooled rows: the transform is row-wise
        x = np.concatenate([arrays[name][0] for name in federation.names])
        y = np.concatenate([arrays[name][1] for name in federation.names])
    else:
        pooled = pd.concat([inst.train for inst in federation.institutions.values()], ignore_index=True)
        x, y = preprocessor.transform(pooled), pooled[federation.schema.target].to_numpy(dtype=int)
    learner = _learner(config, vertical, preprocessor.n_features)
    seed = institution_seed(config.seed, "centralized")
    if config.selects_round:  # the federation's rule on the same validation rows (consortia.config.selection)
        parts = [
            ValidationPart(*validation_arrays(config, vertical, name, preprocessor.to_json()),
                           federation.institutions[name].validation, *_fit_arrays(arrays, name))
            for name in federation.names
        ]  # fmt: skip
        fit_selected(learner, x, y, config, seed, validation_scorer(parts, vertical))
    else:
        learner.fit(x, y, epochs=training_budget(config), seed=seed)
    return learner, time.perf_counter() - started


def _fit_arrays(arrays: Mapping[str, Arrays] | None, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    return (arrays[name][0], arrays[name][1]) if arrays is not None else (None, None)


def train_local(federation: Federation, vertical: Vertical, config: ExperimentConfig, name: str) -> LocalModel:
    """Institution ``name`` alone: its own statistics, its own rows, the federation's budget."""
    return train_local_model(config, vertical, federation.schema, federation.institutions[name])


def train_local_only(
    federation: Federation, vertical: Vertical, config: ExperimentConfig
) -> tuple[dict[str, tuple[Learner, Preprocessor]], float]:
    started = time.perf_counter()
    models = {}
    for name in federation.names:
        local = train_local(federation, vertical, config, name)
        models[name] = (local.learner, local.preprocessor)
    return models, time.perf_counter() - started


def score(learner: Learner, preprocessor: Preprocessor, frame: pd.DataFrame | FrameColumns) -> np.ndarray:
    return learner.predict_proba(preprocessor.transform(frame))


@dataclass(frozen=True)
class Scorer:
    """A learner and the preprocessor it was trained behind: a ``Predict`` whose parts the
    baselines can reach, to score the run's cached arrays instead of transforming rows again."""

    learner: Learner
    preprocessor: Preprocessor

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        return score(self.learner, self.preprocessor, frame)


def predictor(learner: Learner, preprocessor: Preprocessor) -> Scorer:
    """A learner and the preprocessor it was trained behind, as a function of raw rows."""
    return Scorer(learner, preprocessor)


@dataclass
class CentralScores:
    """The centralized model's scores, each split scored once."""

    per_institution: dict[str, np.ndarray]
    pooled_test: np.ndarray
    pooled_train: np.ndarray | None  # only for verticals that tune on training rows


def central_scores(
    federation: Federation,
    centralized: Predict,
    pooled_test: pd.DataFrame,
    tunes_on_train: bool,
    arrays: Mapping[str, Arrays] | None,
) -> CentralScores:
    """Score the centralized model on every test split, the pooled one and (if needed) the pooled
    training rows; with a ``Scorer``, on transformed arrays (``arrays``, or each institution
    transformed once here) rather than on raw rows transformed again for every split."""
    names = federation.names
    institutions = federation.institutions
    if not isinstance(centralized, Scorer):  # a plain function of raw rows
        pooled_train = pd.concat([institutions[n].train for n in names], ignore_index=True) if tunes_on_train else None
        return CentralScores(
            {name: centralized(institutions[name].test) for name in names},
            centralized(pooled_test),
            None if pooled_train is None else centralized(pooled_train),
        )
    if arrays is None:
        target = federation.schema.target
        arrays = {name: institutions[name].arrays(centralized.preprocessor, target) for name in names}
    predict = centralized.learner.predict_proba
    return CentralScores(
        {name: predict(arrays[name][2]) for name in names},
        predict(np.concatenate([arrays[name][2] for name in names])),
        predict(np.concatenate([arrays[name][0] for name in names])) if tunes_on_train else None,
    )


def compare_baselines(
    federation: Federation,
    vertical: Vertical,
    config: ExperimentConfig,
    centralized: Predict,
    timings: dict[str, float],
    budget: dict[str, dict[str, float]] | None = None,
    arrays: Mapping[str, Arrays] | None = None,
) -> tuple[dict[str, dict[str, Metrics]], dict[str, Metrics]]:
    """Centralized (given) and local-only (trained here) on every test split and the pooled one.

    Returns ``(per_institution, pooled)``: institution -> mode -> metrics, mode -> metrics.
    Pooled local-only is the mean over institutions of each local model on all test rows.
    ``budget`` (if given) gets local-only's model size. ``arrays``: the run's cached arrays under
    the centralized model's preprocessor (``consortia.data.consortium.federation_arrays``).

    Each model scores each split once, and each split is read into arrays once: the pooled test
    rows' columns are extracted once (``FrameColumns``, its numeric columns as one row-major
    matrix) for every local model's preprocessor, and a local model's own test rows are its slice
    of the pooled matrix, not transformed again. ``timings`` gets ``local_only_s`` (training the
    local models), ``local_on_pooled_s`` (each local model transforming, scoring and measuring the
    pooled test rows: institutions x pooled rows, the part that grows fastest) and
    ``baselines_scoring_s`` (the rest of both baselines' scoring and metrics).
    """
    scoring_started = time.perf_counter()
    target = federation.schema.target
    institutions = federation.institutions
    pooled_test = pd.concat([i.test for i in institutions.values()], ignore_index=True)
    y_pooled = pooled_test[target].to_numpy(dtype=int)
    # what the vertical's metrics read of the pooled rows, sliced once rather than per model
    metric_frame = pooled_test[[c for c in vertical.metric_columns if c in pooled_test.columns]]
    pooled_columns = FrameColumns(pooled_test)  # read once for every local model's preprocessor

    central = central_scores(federation, centralized, pooled_test, vertical.tunes_on_train, arrays)
    central_train: TrainScores | None = None
    if central.pooled_train is not None:  # only for verticals that tune on training rows
        y_pooled_train = np.concatenate([i.train[target].to_numpy(dtype=int) for i in institutions.values()])
        central_train = y_pooled_train, central.pooled_train
    pooled: dict[str, Metrics] = {
        "centralized": vertical.evaluate(y_pooled, central.pooled_test, frame=metric_frame, train=central_train)
    }
    training_s = on_pooled_s = 0.0
    offsets = np.cumsum([0] + [len(i.test) for i in institutions.values()])  # each one's rows in pooled_test
    sizes = []
    per_institution: dict[str, dict[str, Metrics]] = {}
    local_on_pooled = []
    for k, (name, inst) in enumerate(institutions.items()):
        t0 = time.perf_counter()
        local = train_local(federation, vertical, config, name)
        training_s += time.perf_counter() - t0
        sizes.append(model_size(local.learner, config))
        y = inst.test[target].to_numpy(dtype=int)
        own_train: TrainScores | None = None
        if vertical.tunes_on_train:  # its own training rows, already transformed for fitting
            own_train = inst.train[target].to_numpy(dtype=int), local.learner.predict_proba(local.x_train)
        t1 = time.perf_counter()
        x_pooled = local.preprocessor.transform(pooled_columns)  # the transform is row-wise: own rows are a slice
        on_pooled = local.learner.predict_proba(x_pooled)
        local_on_pooled.append(vertical.evaluate(y_pooled, on_pooled, frame=metric_frame, train=own_train))
        on_pooled_s += time.perf_counter() - t1
        x_own = x_pooled[offsets[k] : offsets[k + 1]].copy()  # a fresh matrix, as transforming inst.test gave
        del x_pooled
        per_institution[name] = {
            "centralized": vertical.evaluate(y, central.per_institution[name], frame=inst.test, train=central_train),
            "local_only": vertical.evaluate(y, local.learner.predict_proba(x_own), frame=inst.test, train=own_train),
        }
    if budget is not None:
        budget["local_only"] = sizes_over_institutions(sizes)
    pooled["local_only"] = {key: mean_ignoring_nan([m[key] for m in local_on_pooled]) for key in local_on_pooled[0]}
    timings["local_only_s"] = training_s
    timings["local_on_pooled_s"] = on_pooled_s
    timings["baselines_scoring_s"] = time.perf_counter() - scoring_started - training_s - on_pooled_s
    return per_institution, pooled


def mean_ignoring_nan(values: list[float]) -> float:
    """Mean over institutions; NaN (a metric the data cannot support) only if all are NaN."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
