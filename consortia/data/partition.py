"""Spread pooled rows over institutions: natural, IID, Dirichlet label skew, quantity skew.

Re-splits come from Flower Datasets' partitioners (the ones Flower's own simulations use);
this module adapts them to pandas frames and checks the result: every row lands in exactly
one institution and no institution is empty. The natural split is a plain group-by.

A Dirichlet split then gives every institution at least ``MIN_CLASS_ROWS`` rows of each class
(``ensure_class_floor``): with alpha 0.3 or less an institution often draws a single class, and
such an institution can neither train nor be evaluated (the data layer refuses it). Splits that
already meet the floor are left exactly as the partitioner made them.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from consortia.config import PartitionConfig
from consortia.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # partitioning never needs the network

#: rows of each class every institution of a Dirichlet split keeps (fewer where a class has fewer than
#: this many rows per institution): enough for a stratified train/test split and a temporal one's history
MIN_CLASS_ROWS = 5


def partition_frame(
    frame: pd.DataFrame,
    config: PartitionConfig,
    *,
    num_institutions: int,
    target: str,
    natural_column: str | None,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Return ``{institution name: rows}``; the union of the values is exactly ``frame``."""
    if config.kind == "natural":
        column = config.column or natural_column
        if column is None or column not in frame.columns:
            raise ConfigError(f"partition 'natural' needs a column to split by; '{column}' is not in the data")
        indices = _natural_indices(frame, column)
    else:
        if num_institutions > len(frame):
            raise ConfigError(f"cannot split {len(frame)} rows over {num_institutions} institutions")
        indices = {
            name: np.asarray(idx, dtype=int)
            for name, idx in _resplit_indices(frame, config, num_institutions, target, seed).items()
        }
    parts: dict[str, pd.DataFrame] = {}
    for name, idx in indices.items():
        if len(idx) == 0:
            raise ConfigError(f"institution '{name}' received no rows; use fewer institutions")
        parts[name] = frame.iloc[np.sort(np.asarray(idx, dtype=int))].reset_index(drop=True)
    return parts


def _natural_indices(frame: pd.DataFrame, column: str) -> dict[str, np.ndarray]:
    # The data's own institution column: a group-by, no need for a partitioner (and its
    # seconds of Hugging Face import) on the default path.
    groups = frame.groupby(frame[column].astype(str), sort=True).indices
    return {str(name): idx for name, idx in groups.items()}


def _resplit_indices(
    frame: pd.DataFrame, config: PartitionConfig, n: int, target: str, seed: int
) -> dict[str, list[int]]:
    from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, SizePartitioner

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))  # Iid/Size partitioners slice contiguously: shuffle first
    if config.kind == "iid":
        partitioner = IidPartitioner(num_partitions=n)
        partitioner.dataset = _as_dataset(pd.DataFrame({"row": order}))
        ids = {i: partitioner.load_partition(i).to_pandas()["row"].to_numpy() for i in range(n)}
    elif config.kind == "quantity":
        sizes = quantity_skew_sizes(len(frame), n, config.alpha, config.min_rows, rng)
        partitioner = SizePartitioner(partition_sizes=sizes)
        partitioner.dataset = _as_dataset(pd.DataFrame({"row": order}))
        ids = {i: partitioner.load_partition(i).to_pandas()["row"].to_numpy() for i in range(n)}
    elif config.kind == "dirichlet":
        if target not in frame.columns:
            raise ConfigError(f"dirichlet partition needs the target column '{target}'")
        partitioner = DirichletPartitioner(
            num_partitions=n,
            partition_by=target,
            alpha=config.alpha,
            min_partition_size=min(config.min_rows, len(frame) // n),
            self_balancing=False,
            shuffle=True,
            seed=seed,
        )
        partitioner.dataset = _as_dataset(
            pd.DataFrame({target: frame[target].astype(int).to_numpy(), "row": np.arange(len(frame))})
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ids = {i: partitioner.load_partition(i).to_pandas()["row"].to_numpy() for i in range(n)}
            except ValueError as exc:
                raise ConfigError(
                    f"dirichlet partition with alpha={config.alpha} could not give every "
                    f"institution {config.min_rows} rows ({exc}); raise alpha or use fewer institutions"
                ) from None
        ids = ensure_class_floor(ids, frame[target].astype(int).to_numpy(), MIN_CLASS_ROWS, rng)
    else:  # pragma: no cover - PartitionConfig restricts kind
        raise ConfigError(f"unknown partition kind '{config.kind}'")
    width = len(str(n))
    return {f"inst-{i + 1:0{width}d}": list(map(int, ids[i])) for i in range(n)}


def ensure_class_floor(
    ids: dict[int, np.ndarray], labels: np.ndarray, floor: int, rng: np.random.Generator
) -> dict[int, np.ndarray]:
    """Move rows so that every institution holds at least ``min(floor, class rows // institutions)``
    rows of each class, each taken at random from the institution holding most of that class.

    Institutions already at the floor lose nothing but rows of a class they hold most of; a split
    that meets the floor everywhere is returned unchanged (the same arrays)."""
    out = dict(ids)
    for label in np.unique(labels):
        need = min(floor, int(np.sum(labels == label)) // len(out))
        for i in sorted(out):
            short = need - int(np.sum(labels[out[i]] == label))
            while short > 0:
                counts = {j: int(np.sum(labels[out[j]] == label)) for j in sorted(out)}
                donor = max(counts, key=lambda j: counts[j])  # the first of the largest: deterministic
                rows = np.asarray(out[donor])[labels[out[donor]] == label]
                take = rng.choice(rows, size=min(short, counts[donor] - need), replace=False)
                out[donor] = np.setdiff1d(out[donor], take)
                out[i] = np.concatenate([np.asarray(out[i], dtype=int), take])
                short -= len(take)
    return out


def quantity_skew_sizes(total: int, n: int, alpha: float, min_rows: int, rng: np.random.Generator) -> list[int]:
    """Institution sizes drawn from Dirichlet(alpha); each gets at least ``min_rows``."""
    floor = min(min_rows, total // n)
    spare = total - floor * n
    shares = rng.dirichlet(np.full(n, alpha))
    extra = np.floor(shares * spare).astype(int)
    extra[np.argmax(shares)] += spare - int(extra.sum())  # rounding leftovers to the largest
    return [int(floor + e) for e in extra]


def _as_dataset(frame: pd.DataFrame):
    from datasets import Dataset

    return Dataset.from_pandas(frame.reset_index(drop=True), preserve_index=False)
