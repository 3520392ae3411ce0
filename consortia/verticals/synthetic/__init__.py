"""Synthetic: a neutral tabular task for benchmarks and smoke tests, with no industry detail.

``n`` rows of 30 numeric features; each institution's features are shifted (covariate shift)
and the label follows one shared logistic model, so pooling helps and federation can match it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from consortia.data.schema import Feature, TabularSchema
from consortia.evaluation import metrics as m
from consortia.verticals.base import Vertical

N_FEATURES = 30
SCHEMA = TabularSchema(
    features=tuple(Feature(f"x{i:02d}", "numeric") for i in range(N_FEATURES)),
    target="label",
    institution_column="institution",
    description="30 standard-normal features, one shared logistic ground truth.",
)


def generate(n_institutions: int = 10, rows: int = 50_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 1, N_FEATURES) / np.sqrt(N_FEATURES) * 3
    shares = rng.dirichlet(np.full(n_institutions, 3.0))
    sizes = np.maximum(rng.multinomial(rows, shares), 20)
    frames = []
    for i, size in enumerate(sizes):
        shift = rng.normal(0, 0.5, N_FEATURES)
        x = rng.normal(0, 1, (size, N_FEATURES)) + shift
        y = rng.random(size) < 1 / (1 + np.exp(-(x @ weights - shift @ weights)))
        frame = pd.DataFrame(x, columns=SCHEMA.feature_names)
        frame[SCHEMA.target] = y.astype(int)
        frame.insert(0, "institution", f"inst-{i + 1:02d}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def synthetic_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    curve = m.RankCurve.of(y, p)  # one sort for both ranking metrics
    return {"auroc": m.auroc(y, p, curve), "auprc": m.auprc(y, p, curve), "accuracy": m.accuracy(y, p)}


VERTICAL = Vertical(
    name="synthetic",
    title="Synthetic: a neutral benchmark task",
    description="30 numeric features with per-institution covariate shift; for benchmarks.",
    # XGBoost's own eta 0.3 / depth 6 trailed (benchmarks/model_selection.py: AUPRC 0.765 vs 0.837)
    model_defaults={"xgboost": {"eta": 0.1, "max_depth": 4}},
    institution_noun="institution",
    schema=SCHEMA,
    generate=generate,
    metrics=synthetic_metrics,
    primary_metric="auroc",
    default_rows=50_000,
    default_institutions=10,
)
