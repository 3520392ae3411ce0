"""The contract every registered vertical must pass (like scikit-learn's check_estimator).

Parametrised over ``VERTICALS.names()``, so a new vertical is checked by registering it.
Sizes are small: each federated run takes a few seconds on 2 cores.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from consortia.config import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.experiment import run_experiment
from consortia.verticals import VERTICALS, Vertical, get_vertical

NAMES = VERTICALS.names()
LEARNERS = ["logistic", "mlp"]
INSTITUTIONS = 3


def small_rows(vertical: Vertical) -> int:
    """Enough rows for rare positives (fraud) at every institution, still quick to train."""
    return max(1_500, vertical.default_rows // 25)


def small_frame(vertical: Vertical, seed: int = 3) -> pd.DataFrame:
    return vertical.generate(INSTITUTIONS, small_rows(vertical), seed)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {name: small_frame(get_vertical(name)) for name in NAMES}


# -- the generator ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_generator_is_seeded_and_deterministic(name: str, frames) -> None:
    vertical = get_vertical(name)
    again = small_frame(vertical)
    pd.testing.assert_frame_equal(frames[name], again)
    other = small_frame(vertical, seed=4)
    features = vertical.schema.feature_names
    assert not frames[name][features].equals(other[features]), "another seed gave the same rows"


@pytest.mark.parametrize("name", NAMES)
def test_schema_validates_its_own_output(name: str, frames) -> None:
    vertical = get_vertical(name)
    schema = vertical.schema
    frame = frames[name]
    valid = schema.validate(frame, source=name)
    assert len(valid) == len(frame)
    assert frame[schema.institution_column].nunique() == INSTITUTIONS
    for institution, rows in frame.groupby(schema.institution_column):
        assert set(rows[schema.target].unique()) == {0, 1}, f"{institution} lacks a class"
    # what models see is exactly the schema's features: never the label, site, time or ground truth
    not_features = {schema.target, schema.institution_column, schema.time_column}
    assert not not_features & set(schema.feature_names)


@pytest.mark.parametrize("name", NAMES)
def test_temporal_verticals_have_a_time_column(name: str, frames) -> None:
    vertical = get_vertical(name)
    if vertical.split != "temporal":
        pytest.skip("stratified split")
    time_column = vertical.schema.time_column
    assert time_column is not None and time_column in frames[name].columns
    assert frames[name][time_column].notna().all()


@pytest.mark.parametrize("name", NAMES)
def test_metrics_have_the_same_keys_with_or_without_extras(name: str, frames) -> None:
    """Local-only results are averaged key by key, so every call must return the same names."""
    vertical = get_vertical(name)
    frame = frames[name]
    y = frame[vertical.schema.target].to_numpy(dtype=int)
    p = np.random.default_rng(0).random(len(y)) * 0.5 + 0.5 * y
    full = vertical.evaluate(y, p, frame=frame, train=(y, p))
    bare = vertical.evaluate(y, p)
    assert vertical.primary_metric in full
    assert set(full) == set(bare)
    assert all(isinstance(v, float) for v in full.values())
    assert full[vertical.primary_metric] > 0.5


# -- models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", LEARNERS)
@pytest.mark.parametrize("name", NAMES)
def test_each_model_beats_a_constant_predictor(name: str, model: str) -> None:
    vertical = get_vertical(name)
    config = ExperimentConfig.build(
        vertical=name, institutions=INSTITUTIONS, rows=small_rows(vertical), rounds=5, model=model, seed=3
    )
    result = run_experiment(config, baselines=False)
    federation = load_federation(config, get_vertical(config.vertical))
    test = pd.concat([i.test for i in federation.institutions.values()], ignore_index=True)
    y = test[federation.schema.target].to_numpy(dtype=int)
    constant = vertical.evaluate(y, np.full(len(y), y.mean()), frame=test, train=(y, np.full(len(y), y.mean())))
    metric = vertical.primary_metric
    assert result.pooled["federated"][metric] > constant[metric] + 0.02, (result.pooled["federated"], constant)


# -- real data rarely has every column ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_pipeline_runs_on_a_feature_subset_with_extra_columns(name: str, monkeypatch) -> None:
    """Half of the schema's features, one extra numeric and one extra categorical column, and a
    target with the user's name: the whole run (federated and both baselines) must still work."""
    vertical = get_vertical(name)
    kept = vertical.schema.feature_names[::2]
    dropped = [c for c in vertical.schema.feature_names if c not in kept]
    schema = replace(
        vertical.schema.select(kept).with_extra(numeric=["site_score"], categorical=["site_ward"]),
        target="outcome",
    )

    def generate(n: int, rows: int, seed: int) -> pd.DataFrame:
        frame = vertical.generate(n, rows, seed).drop(columns=dropped)
        rng = np.random.default_rng(seed)
        frame["site_score"] = rng.normal(size=len(frame))
        frame["site_ward"] = rng.choice(["a", "b", "c"], len(frame))
        return frame.rename(columns={vertical.schema.target: "outcome"})

    subset = replace(vertical, name=f"{name}-subset", schema=schema, generate=generate)
    monkeypatch.setitem(VERTICALS._items, subset.name, subset)
    config = ExperimentConfig.build(
        vertical=subset.name, institutions=INSTITUTIONS, rows=small_rows(vertical), rounds=3, seed=3
    )
    result = run_experiment(config)
    for mode in ("federated", "federated_finetuned", "centralized", "local_only"):
        assert math.isfinite(result.pooled[mode][vertical.primary_metric]), mode
