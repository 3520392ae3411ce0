"""Train/test splits inside one institution: stratified by label, or temporal."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from consortia.errors import DataValidationError


def stratified_split(
    frame: pd.DataFrame, target: str, test_fraction: float, seed: int, source: str = "data"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded split that keeps the label rate equal in train and test."""
    counts = frame[target].value_counts()
    if counts.min() < 2 or len(counts) < 2:
        raise DataValidationError(
            f"needs at least 2 rows of each class to split into train and test; class counts: {counts.to_dict()}",
            source=source,
            column=target,
        )
    train, test = train_test_split(frame, test_size=test_fraction, random_state=seed, stratify=frame[target])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def temporal_split(
    frame: pd.DataFrame, time_column: str, test_fraction: float, source: str = "data"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on earlier rows, test on later ones: how a model meets the future in production."""
    ordered = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
    cut = round(len(ordered) * (1 - test_fraction))
    if cut < 1 or cut >= len(ordered):
        raise DataValidationError(f"{len(ordered)} rows are too few for a temporal split", source=source)
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def validation_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) row indices of one institution's own training rows.

    A class too small to give at least one row to each side stays whole in the fit rows."""
    rng = np.random.default_rng(seed)
    valid = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        take = round(fraction * len(rows))
        if 0 < take < len(rows):
            valid.append(rows[:take])
    valid_idx = np.sort(np.concatenate(valid)) if valid else np.empty(0, dtype=int)
    train_idx = np.setdiff1d(np.arange(len(y)), valid_idx)
    return train_idx, valid_idx


def holdout_split(
    frame: pd.DataFrame, target: str, fraction: float, seed: int, *, temporal: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, validation) rows of one institution's training rows, for model selection: stratified
    by label, or the latest ``fraction`` of rows when the training rows are in time order."""
    if temporal:
        cut = len(frame) - round(fraction * len(frame))
        fit_idx, valid_idx = np.arange(cut), np.arange(cut, len(frame))
    else:
        fit_idx, valid_idx = validation_split(frame[target].to_numpy(), fraction, seed)
    return frame.iloc[fit_idx].reset_index(drop=True), frame.iloc[valid_idx].reset_index(drop=True)
