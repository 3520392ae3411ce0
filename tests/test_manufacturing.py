"""Manufacturing vertical: generator properties, the train-tuned threshold, a small run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from consortia.config import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.experiment import run_experiment
from consortia.verticals import get_vertical
from consortia.verticals.manufacturing.generator import DEFECT_RATE_BOUNDS, factory_profiles, generate
from consortia.verticals.manufacturing.metrics import f1_threshold, manufacturing_metrics
from consortia.verticals.manufacturing.schema import FAILURE_COLUMN, FAILURE_MODES, SCHEMA, TIME_COLUMN

FACTORIES = 6


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(FACTORIES, 30_000, seed=21)


def test_defect_rate_is_within_bounds_at_every_factory(frame) -> None:
    rates = frame.groupby("factory")["defect"].mean()
    low, high = DEFECT_RATE_BOUNDS
    assert len(rates) == FACTORIES
    assert ((rates >= low) & (rates <= high)).all(), rates.to_dict()
    assert low >= 0.01 and high <= 0.08  # the 1-8 %
    profiles = factory_profiles(FACTORIES, np.random.default_rng(21))
    np.testing.assert_allclose(rates.to_numpy(), profiles["defect_rate"].to_numpy(), atol=1e-3)


def test_defects_follow_the_documented_rules(frame) -> None:
    defects = frame[frame["defect"] == 1]
    modes = defects[FAILURE_COLUMN]
    assert set(modes) <= set(FAILURE_MODES)
    assert (frame.loc[frame["defect"] == 0, FAILURE_COLUMN] == "none").all()
    assert modes.value_counts().min() >= 3, modes.value_counts().to_dict()  # every rule fires somewhere
    power = defects["torque_nm"] * defects["rotational_speed_rpm"] * 2 * np.pi / 60
    power_rows = modes == "power"
    assert ((power[power_rows] < 3600) | (power[power_rows] > 8900)).mean() > 0.8
    assert (defects.loc[modes == "tool_wear", "tool_wear_min"] > 190).mean() > 0.9
    gap = defects["process_temp_k"] - defects["ambient_temp_k"]
    assert gap[modes == "overheating"].mean() < gap[modes != "overheating"].mean() - 1.0
    ok = frame[frame["defect"] == 0]
    strain = lambda rows: (rows["tool_wear_min"] * rows["torque_nm"]).mean()  # noqa: E731
    assert strain(defects[modes == "overstrain"]) > 2 * strain(ok)


def test_factories_differ(frame) -> None:
    mix = pd.crosstab(frame["factory"], frame["machine_type"], normalize="index")
    assert (mix.max() - mix.min()).max() > 0.1
    gap = (frame["process_temp_k"] - frame["ambient_temp_k"]).groupby(frame["factory"]).mean()
    assert gap.max() - gap.min() > 0.3  # calibration offsets
    sizes = frame["factory"].value_counts()
    assert sizes.max() / sizes.min() > 1.3


def test_production_drifts_within_a_factory(frame) -> None:
    """Tool policy, coolant pressure and sensors move between the earlier and the later rows."""
    shifts = []
    for _, rows in frame.groupby("factory"):
        late = rows[TIME_COLUMN] > rows[TIME_COLUMN].quantile(0.75)
        early = rows[TIME_COLUMN] < rows[TIME_COLUMN].quantile(0.25)
        shifts.append(
            abs(rows.loc[late, "tool_wear_min"].max() - rows.loc[early, "tool_wear_min"].max())
            + abs(rows.loc[late, "coolant_pressure_bar"].mean() - rows.loc[early, "coolant_pressure_bar"].mean()) * 20
        )
    assert sum(s > 10 for s in shifts) >= FACTORIES // 2, shifts


def test_time_and_ground_truth_are_not_features() -> None:
    assert TIME_COLUMN not in SCHEMA.feature_names and FAILURE_COLUMN not in SCHEMA.feature_names
    assert get_vertical("manufacturing").split == "temporal"


def test_split_is_temporal_per_factory() -> None:
    config = ExperimentConfig.build(vertical="manufacturing", institutions=3, rows=3_000, rounds=2, seed=5)
    for inst in load_federation(config, get_vertical(config.vertical)).institutions.values():
        assert inst.train[TIME_COLUMN].max() <= inst.test[TIME_COLUMN].min()


# -- the threshold is tuned on training data only -----------------------------------------------
def test_threshold_is_the_best_f1_on_training_scores() -> None:
    rng = np.random.default_rng(0)
    y_train = (rng.random(3_000) < 0.05).astype(int)
    p_train = np.clip(rng.normal(0.2 + 0.3 * y_train, 0.15), 0, 1)
    threshold = f1_threshold(y_train, p_train)
    best = max(f1_score(y_train, p_train >= t) for t in np.unique(p_train)[::10])
    assert f1_score(y_train, p_train >= threshold) >= best - 1e-9


def test_test_labels_never_move_the_threshold() -> None:
    rng = np.random.default_rng(1)
    y_train = (rng.random(2_000) < 0.05).astype(int)
    p_train = np.clip(rng.normal(0.2 + 0.3 * y_train, 0.15), 0, 1)
    y_test = (rng.random(500) < 0.05).astype(int)
    p_test = np.clip(rng.normal(0.2 + 0.3 * y_test, 0.15), 0, 1)
    a = manufacturing_metrics(y_test, p_test, train=(y_train, p_train))
    b = manufacturing_metrics(1 - y_test, p_test, train=(y_train, p_train))
    assert a["threshold"] == b["threshold"] == f1_threshold(y_train, p_train)
    assert a["f1"] == pytest.approx(f1_score(y_test, p_test >= a["threshold"]))


def test_without_training_scores_threshold_metrics_are_nan() -> None:
    out = manufacturing_metrics(np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6]))
    assert math.isnan(out["f1"]) and math.isnan(out["mcc"]) and out["auprc"] == pytest.approx(1.0)


def test_small_run_reports_f1_and_mcc_for_every_mode() -> None:
    config = ExperimentConfig.build(vertical="manufacturing", institutions=3, rows=3_000, rounds=4, seed=5)
    result = run_experiment(config)
    for mode in ("federated", "federated_finetuned", "centralized", "local_only"):
        metrics = result.pooled[mode]
        assert math.isfinite(metrics["f1"]) and math.isfinite(metrics["mcc"]), (mode, metrics)
        assert 0 < metrics["threshold"] < 1
    for record in result.rounds:
        assert "pooled.f1" in record.metrics
