"""FLamby's Fed-Heart-Disease protocol, for a like-for-like comparison with its published results.

Reproduces ``flamby/datasets/fed_heart_disease/dataset.py`` (see docs/flamby_heart_notes.md):
drop slope, ca and thal; keep complete rows only (740 of 920); label ``num > 0``; one-hot ``cp``
and ``restecg`` with the first level dropped (13 features); per centre a 66/34 train/test split
with ``random_state=43``, stratified only when both classes have more than 2 rows (Switzerland
is not); each centre z-scores all 13 columns with its own training split's mean and unbiased
standard deviation. Expected sizes (train/test): 199/104, 172/89, 30/16, 85/45.

Nothing here reads another centre's rows: every step is local to one file, so the protocol runs
unchanged on a SuperNode that holds one centre only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from consortia.data.schema import Feature, TabularSchema
from consortia.errors import DataValidationError

UCI_COLUMNS = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang",
               "oldpeak", "slope", "ca", "thal", "num"]  # fmt: skip
FEATURES = ["age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak",
            "cp_2", "cp_3", "cp_4", "restecg_1", "restecg_2"]  # fmt: skip
TARGET = "disease"
SPLIT_SEED = 43
TRAIN_SIZE = 0.66

SCHEMA = TabularSchema(
    features=tuple(Feature(name, "numeric") for name in FEATURES),
    target=TARGET,
    institution_column=None,
    description="FLamby Fed-Heart-Disease features (13, z-scored per centre)",
)

#: the model FLamby uses: Linear(13, 1) + sigmoid, Adam lr 1e-3, batch 4 (our MLP with no hidden layer)
MODEL = "mlp"
MODEL_PARAMS = {"hidden": "", "lr": 0.001, "batch_size": 4, "weight_decay": 0.0}


def complete_rows(path: str | Path) -> pd.DataFrame:
    """FLamby's cleaning: drop slope/ca/thal, then every row with a missing value."""
    if not Path(path).is_file():
        raise DataValidationError("file does not exist", source=str(path))
    try:
        frame = pd.read_csv(path, na_values=["?"], dtype=str)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"cannot be read as csv: {exc}", source=str(path)) from None
    missing = [c for c in UCI_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            "the FLamby protocol needs the UCI heart columns", source=str(path), column=missing[0]
        )
    kept = frame[UCI_COLUMNS].drop(columns=["slope", "ca", "thal"])
    numbers = kept.apply(lambda column: pd.to_numeric(column.str.strip(), errors="coerce"))
    for column in kept.columns:  # text in a numeric column is an error, not a silent drop
        bad = kept[column].notna() & numbers[column].isna()
        if bad.any():
            raise DataValidationError(
                f"expects numbers but has text (e.g. {kept[column][bad].iloc[0]!r})",
                source=str(path), column=column, rows=list(np.flatnonzero(bad.to_numpy()) + 1),
            )  # fmt: skip
    return numbers.dropna().reset_index(drop=True)


def features_and_labels(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    labels = (frame["num"].astype(float) > 0).astype(int).to_numpy()
    out = frame[["age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak"]].astype(float)
    for level in (2, 3, 4):
        out[f"cp_{level}"] = (frame["cp"].astype(float) == level).astype(float)
    for level in (1, 2):
        out[f"restecg_{level}"] = (frame["restecg"].astype(float) == level).astype(float)
    return out[FEATURES], labels


def split_centre(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One centre's train and test frames, normalised with its own training statistics."""
    features, labels = features_and_labels(complete_rows(path))
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if len(counts) == 2 and counts.min() > 2 else None
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=1 - TRAIN_SIZE, train_size=TRAIN_SIZE,
        random_state=SPLIT_SEED, shuffle=True, stratify=stratify,
    )  # fmt: skip
    train = features.iloc[train_idx]
    mean = train.mean()
    std = train.std(ddof=1)  # torch.std is unbiased
    frames = []
    for idx in (train_idx, test_idx):
        part = (features.iloc[idx] - mean) / (std + 1e-9)
        part[TARGET] = labels[idx]
        frames.append(part.reset_index(drop=True))
    return frames[0], frames[1]
