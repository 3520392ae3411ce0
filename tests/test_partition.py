"""Partitioner properties: every row in exactly one institution, none empty, alpha -> IID."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.config import PartitionConfig
from consortia.data.partition import MIN_CLASS_ROWS, ensure_class_floor, partition_frame
from consortia.errors import ConfigError


def _frame(n: int, positive_rate: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row_id": np.arange(n),
            "y": (rng.random(n) < positive_rate).astype(int),
            "site": rng.integers(0, 4, n),
        }
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["iid", "dirichlet", "quantity", "natural"]),
    n=st.integers(200, 1500),
    institutions=st.integers(2, 8),
    alpha=st.floats(0.3, 100.0),
    seed=st.integers(0, 10_000),
)
def test_every_row_lands_in_exactly_one_nonempty_institution(kind, n, institutions, alpha, seed):
    frame = _frame(n, 0.3, seed)
    config = PartitionConfig(kind=kind, alpha=alpha, min_rows=5)
    try:
        parts = partition_frame(
            frame, config, num_institutions=institutions, target="y", natural_column="site", seed=seed
        )
    except ConfigError:
        # Refusing an impossible split (e.g. dirichlet cannot reach min_rows) is allowed;
        # silently producing an empty institution is not.
        assert kind == "dirichlet"
        return
    ids = np.concatenate([p["row_id"].to_numpy() for p in parts.values()])
    assert sorted(ids.tolist()) == list(range(n))
    assert all(len(p) > 0 for p in parts.values())
    expected = frame["site"].nunique() if kind == "natural" else institutions
    assert len(parts) == expected


def _label_rate_spread(alpha: float, seed: int) -> float:
    frame = _frame(4000, 0.3, seed)
    parts = partition_frame(
        frame, PartitionConfig(kind="dirichlet", alpha=alpha, min_rows=5),
        num_institutions=5, target="y", natural_column=None, seed=seed,
    )  # fmt: skip
    return float(np.std([p["y"].mean() for p in parts.values()]))


def test_large_alpha_approaches_iid():
    skewed = np.mean([_label_rate_spread(0.3, s) for s in range(3)])
    near_iid = np.mean([_label_rate_spread(1000.0, s) for s in range(3)])
    assert near_iid < 0.03 < skewed


def test_quantity_skew_makes_unequal_sizes_and_respects_min_rows():
    frame = _frame(2000, 0.3, 0)
    parts = partition_frame(
        frame, PartitionConfig(kind="quantity", alpha=0.3, min_rows=50),
        num_institutions=6, target="y", natural_column=None, seed=1,
    )  # fmt: skip
    sizes = sorted(len(p) for p in parts.values())
    assert sizes[0] >= 50 and sizes[-1] > 3 * sizes[0]


def test_same_seed_same_partition_and_different_seed_differs():
    frame = _frame(1000, 0.3, 0)
    config = PartitionConfig(kind="dirichlet", alpha=0.5)

    def split(seed):
        parts = partition_frame(frame, config, num_institutions=4, target="y", natural_column=None, seed=seed)
        return [tuple(p["row_id"]) for p in parts.values()]

    assert split(3) == split(3)
    assert split(3) != split(4)


def test_too_many_institutions_is_a_config_error():
    with pytest.raises(ConfigError, match="institutions"):
        partition_frame(
            _frame(10, 0.5, 0), PartitionConfig(kind="iid"), num_institutions=20,
            target="y", natural_column=None, seed=0,
        )  # fmt: skip


def test_dirichlet_keeps_a_floor_of_each_class_in_every_institution():
    """alpha 0.1 alone gives some institutions a single class (unusable); the floor fixes that."""
    frame = _frame(3000, 0.05, 0)
    config = PartitionConfig(kind="dirichlet", alpha=0.1, min_rows=5)
    for seed in range(5):
        parts = partition_frame(frame, config, num_institutions=6, target="y", natural_column=None, seed=seed)
        ids = np.concatenate([p["row_id"].to_numpy() for p in parts.values()])
        assert sorted(ids.tolist()) == list(range(len(frame)))
        for part in parts.values():
            assert (part["y"] == 1).sum() >= MIN_CLASS_ROWS and (part["y"] == 0).sum() >= MIN_CLASS_ROWS


def test_class_floor_moves_only_what_is_short_and_leaves_a_split_that_meets_it():
    labels = np.array([0] * 40 + [1] * 20)
    met = {0: np.r_[0:20, 40:50], 1: np.r_[20:40, 50:60]}
    kept = ensure_class_floor(met, labels, 5, np.random.default_rng(0))
    assert all(np.array_equal(kept[i], met[i]) for i in met)
    short = {0: np.r_[0:20, 40:42], 1: np.r_[20:40, 42:60]}  # institution 0: 2 positives of 5
    fixed = ensure_class_floor(short, labels, 5, np.random.default_rng(0))
    assert sorted(np.concatenate(list(fixed.values())).tolist()) == list(range(60))
    assert (labels[fixed[0]] == 1).sum() == 5 and (labels[fixed[1]] == 1).sum() == 15
    assert np.array_equal(np.sort(fixed[0][labels[fixed[0]] == 0]), np.r_[0:20])  # negatives untouched
    rare = ensure_class_floor(short, np.r_[labels[:59], 0], 50, np.random.default_rng(0))  # floor capped: 19 // 2
    assert min((np.r_[labels[:59], 0][rows] == 1).sum() for rows in rare.values()) == 9
