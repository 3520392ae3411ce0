"""Partitioner properties: every row in exactly one institution, none empty, alpha -> IID."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.config import PartitionConfig
from consortia.data.partition import partition_frame
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
