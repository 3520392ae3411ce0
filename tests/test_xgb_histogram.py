"""Federated XGBoost over XGBoost's communicator: lossless vs pooled, and no hangs on failure."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import time

import numpy as np
import pytest
import xgboost as xgb
from processes import spawned_children

from consortia.learners.xgboost.histogram import (
    FederatedTrainingError,
    GlobalBinning,
    local_quantile_summary,
    merge_quantile_summaries,
    train_centralized,
    train_histogram_federated,
)

N_BINS = 64
PARAMS = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 7}


def make_institution(seed: int, n: int, shift: float, nan_rate: float = 0.0):
    """Synthetic institution: own size, feature location/scale, optional missing values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=shift, scale=1.0 + 0.3 * seed, size=(n, 8))
    X[:, 7] = rng.integers(0, 3, size=n)  # a discrete feature
    Z = X.copy()
    if nan_rate:
        X[rng.random(X.shape) < nan_rate] = np.nan
    logit = Z[:, 0] - 0.5 * Z[:, 1] * Z[:, 2] + 0.3 * Z[:, 3] + 0.4 * Z[:, 7] - 0.3 * shift
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    return X, y


@pytest.fixture(scope="module")
def federation():
    parts = [
        make_institution(1, 300, -0.8),
        make_institution(2, 700, 0.0, nan_rate=0.05),
        make_institution(3, 1500, 0.9),
    ]
    summaries = [local_quantile_summary(X, N_BINS) for X, _ in parts]
    binning = merge_quantile_summaries(summaries, N_BINS)
    return parts, binning


# ------------------------------------------------------------------ binning (no processes)


def test_transform_maps_to_bin_index_and_keeps_nan():
    b = GlobalBinning(edges=[np.array([0.0, 1.0]), np.array([])])
    X = np.array([[-1.0, 5.0], [0.0, np.nan], [0.5, -3.0], [1.0, 0.0], [np.nan, 1.0]])
    out = b.transform(X)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], [0, 1, 1, 2, np.nan])
    np.testing.assert_array_equal(out[:, 1], [0, np.nan, 0, 0, 0])
    assert b.n_bins == 3
    with pytest.raises(ValueError):
        GlobalBinning(edges=[np.array([1.0, 0.0])])
    with pytest.raises(ValueError):
        b.transform(np.zeros((2, 3)))


def test_summary_reveals_only_counts_and_interior_quantiles(federation):
    parts, _ = federation
    X = parts[1][0]
    s = local_quantile_summary(X, N_BINS)
    json.dumps(s)  # plain data, shareable as is
    assert set(s) == {"format", "n_rows", "resolution", "features"}
    assert s["n_rows"] == len(X) and s["resolution"] == N_BINS  # what the bin count needs, no finer
    for j, feat in enumerate(s["features"]):
        assert set(feat) == {"count", "quantiles"}
        col = X[:, j][~np.isnan(X[:, j])]
        assert feat["count"] == col.size
        assert len(feat["quantiles"]) == min(s["resolution"], col.size // 5) - 1
        if j < 7:  # continuous: no extreme value is disclosed
            assert col.min() < min(feat["quantiles"]) and max(feat["quantiles"]) < col.max()


def test_small_institution_shares_coarse_quantiles():
    """A 300-row site shares at most one quantile per 5 values, never (nearly) every value."""
    X = np.random.default_rng(3).normal(size=(300, 2))
    s = local_quantile_summary(X, 512)
    for feat in s["features"]:
        assert len(feat["quantiles"]) <= 300 // 5 - 1
        assert len(set(feat["quantiles"]) & set(X[:, 0]) | set(feat["quantiles"]) & set(X[:, 1])) < 60
    tiny = local_quantile_summary(np.arange(8, dtype=float).reshape(-1, 1), 64)
    assert tiny["features"][0]["quantiles"] == []  # 8 values: too few to share any quantile


def test_merged_edges_approximate_pooled_quantiles(federation):
    parts, binning = federation
    pooled = np.concatenate([X for X, _ in parts])
    assert binning.n_bins == N_BINS and binning.n_features == 8
    targets = np.arange(1, N_BINS) / N_BINS
    for j in range(7):
        col = np.sort(pooled[:, j][~np.isnan(pooled[:, j])])
        e = binning.edges[j]
        assert len(e) == N_BINS - 1 and np.all(np.diff(e) > 0)
        cdf_at_edges = np.searchsorted(col, e, side="right") / col.size
        assert np.max(np.abs(cdf_at_edges - targets)) < 0.02
    # discrete feature {0, 1, 2}: edges separate the three values, nothing more
    Xb = binning.transform(pooled)
    assert len(np.unique(Xb[:, 7][~np.isnan(Xb[:, 7])])) == 3
    for j in range(8):
        assert len(np.unique(Xb[:, j][~np.isnan(Xb[:, j])])) <= N_BINS


def test_params_that_would_break_exactness_are_rejected(federation):
    parts, binning = federation
    with pytest.raises(ValueError, match="max_bin"):
        train_centralized(parts, {**PARAMS, "max_bin": 16}, 2, binning=binning)
    with pytest.raises(ValueError, match="tree_method"):
        train_centralized(parts, {**PARAMS, "tree_method": "approx"}, 2, binning=binning)


def test_busy_port_is_reported_before_any_process_starts(federation):
    parts, binning = federation
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(FederatedTrainingError, match="already in use"):
            train_histogram_federated(parts, PARAMS, 2, binning=binning, port=port)


# ------------------------------------------------------------------ federated (processes)


@pytest.mark.timeout(300)
def test_federated_equals_centralized(federation):
    parts, binning = federation
    before = spawned_children()
    fed = train_histogram_federated(parts, PARAMS, 30, binning=binning, timeout_s=60, startup_timeout_s=120)
    cen = train_centralized(parts, PARAMS, 30, binning=binning)
    X_test = np.concatenate([make_institution(s, 400, sh)[0] for s, sh in [(11, -0.8), (12, 0.9)]])
    d = xgb.DMatrix(binning.transform(X_test))
    p_fed, p_cen = fed.predict(d), cen.predict(d)
    assert fed.num_boosted_rounds() == cen.num_boosted_rounds() == 30
    assert np.max(np.abs(p_fed - p_cen)) <= 1e-6
    assert p_cen.std() > 0.05  # a real model, not a constant
    again = train_centralized(parts, PARAMS, 30, binning=binning)
    np.testing.assert_array_equal(again.predict(d), p_cen)  # deterministic for a seed
    assert spawned_children() - before == set()


@pytest.mark.timeout(300)
def test_federated_early_stopping_matches_centralized(federation):
    parts, binning = federation
    valid = [make_institution(20 + i, 200, sh) for i, sh in enumerate([-0.8, 0.0, 0.9])]
    params = {**PARAMS, "eta": 0.8, "max_depth": 6, "eval_metric": "logloss"}
    kw = {"binning": binning, "valid_parts": valid, "early_stopping_rounds": 3}
    with socket.socket() as probe:  # also covers a caller-chosen port
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    fed = train_histogram_federated(parts, params, 200, port=port, startup_timeout_s=120, **kw)
    cen = train_centralized(parts, params, 200, **kw)
    assert fed.best_iteration == cen.best_iteration < 100
    d = xgb.DMatrix(binning.transform(valid[0][0]))
    assert np.max(np.abs(fed.predict(d) - cen.predict(d))) <= 1e-6


@pytest.mark.timeout(300)
def test_killed_institution_aborts_federation_quickly(federation):
    parts, binning = federation
    before = spawned_children()
    killed_at: list[float] = []

    def kill_rank_2(rank: int, rnd: int) -> None:
        if rank == 2 and rnd >= 2 and not killed_at:
            (worker,) = [p for p in mp.active_children() if p.name == "consortia-xgb-worker-2"]
            os.kill(worker.pid, signal.SIGKILL)
            killed_at.append(time.monotonic())

    with pytest.raises(FederatedTrainingError, match=r"rank 2\).*SIGKILL") as err:
        train_histogram_federated(
            parts,
            PARAMS,
            5000,
            binning=binning,
            timeout_s=20,
            startup_timeout_s=120,
            on_round=kill_rank_2,
        )
    assert killed_at, "training ended before the worker could be killed"
    assert time.monotonic() - killed_at[0] < 10  # detected at once, not after a timeout
    assert err.value.rank == 2 and err.value.last_round >= 2
    assert spawned_children() - before == set()


@pytest.mark.timeout(300)
def test_institution_that_raises_aborts_federation(federation):
    parts, binning = federation
    X, y = parts[1]
    y = y.copy()
    y[3] = 2.0  # invalid label for binary:logistic: rank 1 raises inside xgboost
    bad = [parts[0], (X, y), parts[2]]
    before = spawned_children()
    start = time.monotonic()
    with pytest.raises(FederatedTrainingError, match=r"rank 1\) failed.*label") as err:
        train_histogram_federated(bad, PARAMS, 30, binning=binning, timeout_s=20, startup_timeout_s=120)
    assert time.monotonic() - start < 120
    assert err.value.rank == 1 and "Traceback" in err.value.detail
    assert spawned_children() - before == set()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hung_institution_hits_timeout(federation):
    parts, binning = federation
    before = spawned_children()
    stopped: list[float] = []

    def freeze_rank_0(rank: int, rnd: int) -> None:
        if rank == 0 and rnd >= 2 and not stopped:
            (worker,) = [p for p in mp.active_children() if p.name == "consortia-xgb-worker-0"]
            os.kill(worker.pid, signal.SIGSTOP)  # alive but silent: only the timeout can tell
            stopped.append(time.monotonic())

    with pytest.raises(FederatedTrainingError, match="stalled"):
        train_histogram_federated(
            parts,
            PARAMS,
            5000,
            binning=binning,
            timeout_s=5,
            startup_timeout_s=60,
            on_round=freeze_rank_0,
        )
    assert stopped and time.monotonic() - stopped[0] < 5 + 8
    assert spawned_children() - before == set()
