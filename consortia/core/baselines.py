"""Baselines with the same learner and the same training budget as the federation.

* centralized: one model on the pooled training rows (what federation tries to approach);
  it uses the same preprocessor the federation agreed on.
* local-only: each institution alone, with only its own rows and its own statistics.

Budget: ``rounds x local_epochs`` epochs, the local training each federated institution did.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.core.institutions import Federation, institution_seed
from consortia.core.learners import Learner, make_learner
from consortia.datasets.preprocessing import FeatureSummary, Preprocessor, merge_summaries


def training_budget(config: ExperimentConfig) -> int:
    return config.rounds * config.local_epochs


def _learner(config: ExperimentConfig, federation: Federation, n_features: int) -> Learner:
    params = federation.vertical.model_params(config.model, config.model_params)
    return make_learner(config.model, n_features, params, seed=config.seed, device=config.device)


def train_centralized(
    federation: Federation, config: ExperimentConfig, preprocessor: Preprocessor
) -> tuple[Learner, float]:
    started = time.perf_counter()
    pooled = pd.concat([inst.train for inst in federation.institutions.values()], ignore_index=True)
    learner = _learner(config, federation, preprocessor.n_features)
    learner.fit(
        preprocessor.transform(pooled),
        pooled[federation.schema.target].to_numpy(dtype=int),
        epochs=training_budget(config),
        seed=institution_seed(config.seed, "centralized"),
    )
    return learner, time.perf_counter() - started


def train_local_only(
    federation: Federation, config: ExperimentConfig
) -> tuple[dict[str, tuple[Learner, Preprocessor]], float]:
    started = time.perf_counter()
    models = {}
    for name, inst in federation.institutions.items():
        own = merge_summaries([FeatureSummary.from_frame(inst.train, federation.schema)], federation.schema)
        learner = _learner(config, federation, own.n_features)
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
