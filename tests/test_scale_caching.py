"""Speed without new numbers: cached arrays at any federation size, one-sort metrics equal to
scikit-learn's, and the fast transform equal to the row-by-row definition."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from consortia import ExperimentConfig
from consortia.data.consortium import RUN_ARRAYS, federation_arrays, institution_arrays, load_federation
from consortia.data.preprocessing import FrameColumns, Preprocessor, merge_summaries
from consortia.evaluation import metrics as m
from consortia.experiment import run_experiment
from consortia.experiment.baselines import (
    compare_baselines,
    mean_ignoring_nan,
    predictor,
    score,
    train_centralized,
    train_local,
)
from consortia.logs import set_flower_verbosity
from consortia.verticals import get_vertical


def reference_transform(pre: Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    """The transform's definition, row by row (the code before it was made fast)."""
    blocks: list[np.ndarray] = []
    if pre.numeric:
        raw = frame[pre.numeric].to_numpy(dtype=float)
        blocks.append(np.nan_to_num((raw - np.asarray(pre.means)) / np.asarray(pre.stds), nan=0.0))
    if pre.missing_indicators:
        blocks.append(frame[pre.missing_indicators].isna().to_numpy(dtype=float))
    for column, vocab in pre.categories.items():
        values = frame[column].astype(str).to_numpy()
        blocks.append((values[:, None] == np.asarray(vocab)[None, :]).astype(float))
    if not blocks:
        return np.zeros((len(frame), 0), dtype=np.float32)
    return np.clip(np.hstack(blocks), -10.0, 10.0).astype(np.float32)


def reference_tpr_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    allowed = fpr <= max_fpr + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


@pytest.mark.parametrize("seed", range(40))
def test_one_sort_metrics_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    y = (rng.random(n) < rng.uniform(0.005, 0.6)).astype(int)
    p = rng.random(n)
    if seed % 3 == 0:
        p = np.round(p, int(rng.integers(1, 3)))  # many ties
    if seed % 4 == 0:
        p = p.astype(np.float32).astype(float)
    if len(np.unique(y)) < 2:
        assert np.isnan(m.auroc(y, p)) and np.isnan(m.auprc(y, p)) and np.isnan(m.tpr_at_fpr(y, p, 0.01))
        return
    curve = m.RankCurve.of(y, p)
    assert curve is not None
    assert m.auroc(y, p, curve) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m.auprc(y, p, curve) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    for max_fpr in (0.0, 0.01, 0.1, 0.5):
        assert m.tpr_at_fpr(y, p, max_fpr, curve) == pytest.approx(reference_tpr_at_fpr(y, p, max_fpr), abs=1e-12)


def test_metrics_outside_the_fast_path_behave_as_scikit_learn() -> None:
    y, p = np.array([0, 2, 2, 0]), np.array([0.1, 0.8, 0.6, 0.3])
    assert m.RankCurve.of(y, p) is None
    assert m.auroc(y, p) == roc_auc_score(y, p)  # labels {0, 2}: scikit-learn decides
    with pytest.raises(ValueError):
        m.auroc(np.array([0, 1, 1]), np.array([0.2, np.nan, 0.4]))  # scikit-learn rejects NaN scores


FRAMES = {
    "str_with_missing": pd.Series(["a", "b", None, "nan", "c"] * 8, dtype="str"),
    "string_dtype": pd.Series(["a", "b", None, "nan", "c"] * 8, dtype="string"),
    "categorical": pd.Series(["a", "b", None, "c", "a"] * 8, dtype="category"),
    "mixed_objects": pd.Series([1, 1.0, True, "1", None, np.nan, "a", "b"] * 5, dtype=object),
    "signed_zeros": pd.Series([0.0, -0.0, 1.5, np.nan, 2.0] * 8),
    "integers": pd.Series([0, 1, 2, 1, 0] * 8),
}


@pytest.mark.parametrize("kind", sorted(FRAMES))
def test_fast_transform_equals_the_row_by_row_definition(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = np.where(rng.random(40) < 0.3, np.nan, rng.normal(0, 30, 40))
    frame = pd.DataFrame({"x": x, "c": FRAMES[kind]})
    for vocab in (["a", "b", "nan", "1", "1.0", "True"], ["0.0", "-0.0", "1.5", "nan"], ["0", "1", "2"], ["a", "a"]):
        pre = Preprocessor(["x"], [0.5], [0.2], ["x"], {"c": vocab})
        expected = reference_transform(pre, frame)
        assert np.array_equal(pre.transform(frame), expected), vocab
        assert np.array_equal(pre.transform(FrameColumns(frame)), expected), vocab


def test_fast_transform_on_a_vertical_with_chunks() -> None:
    config = ExperimentConfig.build(vertical="finance", institutions=3, rows=30_000, rounds=1, seed=3)
    federation = load_federation(config, get_vertical("finance"))
    schema = federation.schema
    pre = merge_summaries([i.summary(schema) for i in federation.institutions.values()], schema)
    frame = pd.concat([i.train for i in federation.institutions.values()], ignore_index=True)
    assert len(frame) > 8192  # more than one chunk of rows
    got = pre.transform(frame)
    assert got.flags.c_contiguous and got.dtype == np.float32
    assert np.array_equal(got, reference_transform(pre, frame))


def test_every_institution_is_transformed_once_past_64_institutions() -> None:
    config = ExperimentConfig.build(vertical="synthetic", institutions=65, rows=3_250, rounds=1, seed=5)
    vertical = get_vertical("synthetic")
    federation = load_federation(config, vertical)
    schema = federation.schema
    pre = merge_summaries([i.summary(schema) for i in federation.institutions.values()], schema).to_json()
    RUN_ARRAYS.clear()
    first = {name: institution_arrays(config, vertical, name, pre) for name in federation.names}
    again = {name: institution_arrays(config, vertical, name, pre) for name in reversed(federation.names)}
    assert RUN_ARRAYS.misses == 65 and RUN_ARRAYS.hits == 65
    assert all(first[name] is again[name] for name in federation.names)


def test_run_reuses_node_arrays_for_baselines_and_times_every_phase() -> None:
    set_flower_verbosity(False)
    RUN_ARRAYS.clear()
    config = ExperimentConfig.build(vertical="finance", institutions=3, rows=3_000, rounds=2, seed=7)
    result = run_experiment(config)
    assert RUN_ARRAYS.misses == 3  # each institution transformed once: nodes, centralized and baselines
    for key in ("data_s", "federated_s", "centralized_s", "local_only_s", "baselines_scoring_s", "total_s"):
        assert key in result.timings


def test_baselines_on_cached_arrays_equal_baselines_on_rows() -> None:
    config = ExperimentConfig.build(vertical="finance", institutions=3, rows=4_000, rounds=2, seed=11)
    vertical = get_vertical("finance")
    federation = load_federation(config, vertical)
    schema = federation.schema
    pre = merge_summaries([i.summary(schema) for i in federation.institutions.values()], schema)
    arrays = federation_arrays(config, vertical, pre)
    central, _ = train_centralized(federation, vertical, config, pre, arrays)
    on_rows, _ = train_centralized(federation, vertical, config, pre)
    assert np.array_equal(central.get_parameters()[0], on_rows.get_parameters()[0])
    scorer = predictor(central, pre)
    fast = compare_baselines(federation, vertical, config, scorer, {}, None, arrays)
    on_rows_only = functools.partial(score, central, pre)  # a plain function of rows: no arrays to reuse
    slow = compare_baselines(federation, vertical, config, on_rows_only, {})
    assert fast == slow


@pytest.mark.parametrize("spread", [50, 5_000, 1 << 17])
def test_key_groups_equal_unique_then_bincount_bit_for_bit(spread: int) -> None:
    from consortia.evaluation.pooled import KeyGroups

    rng = np.random.default_rng(spread)
    for n in (1, 7, 300, 20_000):
        keys = rng.integers(1_000, 1_000 + spread, n)
        weights = rng.normal(0, 1e3, n)
        unique, inverse = np.unique(keys, return_inverse=True)
        groups = KeyGroups(keys)
        assert np.array_equal(groups.unique, unique)
        assert np.array_equal(groups.count(), np.bincount(inverse, minlength=unique.size))
        assert np.array_equal(groups.sum(weights), np.bincount(inverse, weights=weights, minlength=unique.size))


def test_histograms_of_many_institutions_merge_to_the_histogram_of_all_rows() -> None:
    from consortia.evaluation.pooled import ScoreHistogram, merge_histograms

    rng = np.random.default_rng(3)
    y = (rng.random(30_000) < 0.05).astype(int)
    p = 1 / (1 + np.exp(-rng.normal(-3, 2, 30_000)))
    amount = rng.gamma(2, 50, 30_000)
    whole = ScoreHistogram.from_scores(y, p, {"amount": amount})
    parts = [ScoreHistogram.from_scores(y[i::7], p[i::7], {"amount": amount[i::7]}) for i in range(7)]
    merged = merge_histograms(parts)
    assert np.array_equal(merged.bin, whole.bin) and np.array_equal(merged.label, whole.label)
    assert np.array_equal(merged.count, whole.count) and merged.n_rows == 30_000
    assert np.allclose(merged.score_sum, whole.score_sum, rtol=1e-12)
    assert np.allclose(merged.column_sums["amount"], whole.column_sums["amount"], rtol=1e-12)


def test_generated_data_is_validated_once_and_each_share_still_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from consortia.data.institutions import split_institution
    from consortia.data.schema import TabularSchema
    from consortia.errors import DataValidationError

    calls: list[int] = []
    validate = TabularSchema.validate

    def counted(self: TabularSchema, frame: pd.DataFrame, *args: object, **kwargs: object) -> pd.DataFrame:
        calls.append(len(frame))
        return validate(self, frame, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TabularSchema, "validate", counted)
    config = ExperimentConfig.build(vertical="synthetic", institutions=6, rows=1_213, rounds=1, seed=17)
    vertical = get_vertical("synthetic")
    federation = load_federation(config, vertical)
    assert calls == [1_213] and len(federation.names) == 6  # the whole frame, once
    part = pd.concat([federation.institutions[federation.names[0]].train])
    target = federation.schema.target
    with pytest.raises(DataValidationError, match="single class"):
        split_institution("x", part.assign(**{target: 0}), vertical, federation.schema, config, validated=True)
    with pytest.raises(DataValidationError, match="at least 4"):
        split_institution("x", part.head(3), vertical, federation.schema, config, validated=True)


def test_blocked_linear_scores_equal_the_whole_matrix_product() -> None:
    from consortia.learners.logistic import BLOCKED_ABOVE, linear_scores

    rng = np.random.default_rng(2)
    for n in (BLOCKED_ABOVE, BLOCKED_ABOVE + 1, 3 * BLOCKED_ABOVE + 77):
        x = rng.normal(0, 3, (n, 25)).astype(np.float32)
        coef, intercept = rng.normal(size=25), 0.25
        whole = x.astype(np.float64) @ coef + intercept
        got = linear_scores(x, coef, intercept)
        if n <= BLOCKED_ABOVE:
            assert np.array_equal(got, whole)
        assert np.allclose(got, whole, rtol=0, atol=1e-12)


def test_a_node_fingerprints_its_run_config_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from consortia.federation.client import run_fingerprint

    config = ExperimentConfig.build(vertical="synthetic", institutions=2, rows=400, rounds=1, seed=23)
    expected = config.fingerprint()
    calls: list[int] = []
    fingerprint = ExperimentConfig.fingerprint
    monkeypatch.setattr(ExperimentConfig, "fingerprint", lambda self: calls.append(1) or fingerprint(self))
    assert [run_fingerprint(config) for _ in range(5)] == [expected] * 5
    assert len(calls) == 1
    other = config.model_copy(update={"seed": 24})
    assert run_fingerprint(other) == fingerprint(other) != expected


def test_one_frame_columns_serves_preprocessors_of_different_columns() -> None:
    """The pooled test rows are read once for every local model: each preprocessor (its own numeric
    columns, indicators, scaling, even a hand-written std of 0 or a mean of inf) still gets exactly
    the matrix of its own definition, with and without missing values among the rows."""
    rng = np.random.default_rng(4)
    n = 20_000  # more than one chunk of rows
    frame = pd.DataFrame({"a": rng.normal(0, 5, n), "b": rng.normal(3, 1, n), "c": rng.choice(["x", "y", "z"], n)})
    holes = frame.assign(a=np.where(rng.random(n) < 0.2, np.nan, frame["a"]))
    holes.loc[:2, "b"] = [np.inf, -np.inf, 1e308]
    preprocessors = [
        Preprocessor(["a", "b"], [0.1, 3.0], [5.0, 1.0], ["a"], {"c": ["x", "z"]}),
        Preprocessor(["b", "a"], [2.9, -0.2], [1.1, 4.0], [], {"c": ["y"]}),
        Preprocessor(["b"], [3.0], [0.0], ["b"], {}),  # std 0: scaling itself makes NaN
        Preprocessor(["a"], [float("inf")], [1.0], [], {"c": ["x", "y", "z"]}),
        Preprocessor([], [], [], [], {"c": ["z", "x"]}),
    ]
    for rows in (frame, holes):
        shared = FrameColumns(rows)
        for pre in preprocessors:
            with np.errstate(divide="ignore", invalid="ignore"):  # the hand-written std of 0
                expected = reference_transform(pre, rows)
                assert np.array_equal(pre.transform(shared), expected), pre
                assert np.array_equal(pre.transform(rows), expected), pre


def test_local_only_scores_equal_each_model_on_its_own_rows() -> None:
    """A local model's own test rows are its slice of the pooled matrix; the metrics are those of
    transforming and scoring each split by itself, and the pooled scoring has its own timing."""
    config = ExperimentConfig.build(vertical="finance", institutions=3, rows=6_000, rounds=2, seed=13)
    vertical = get_vertical("finance")
    federation = load_federation(config, vertical)
    schema = federation.schema
    pre = merge_summaries([i.summary(schema) for i in federation.institutions.values()], schema)
    central, _ = train_centralized(federation, vertical, config, pre)
    timings: dict[str, float] = {}
    per_institution, pooled = compare_baselines(federation, vertical, config, predictor(central, pre), timings)
    assert {"local_only_s", "local_on_pooled_s", "baselines_scoring_s"} <= set(timings)
    target = schema.target
    pooled_test = pd.concat([i.test for i in federation.institutions.values()], ignore_index=True)
    on_pooled = []
    for name, inst in federation.institutions.items():
        local = train_local(federation, vertical, config, name)
        own = inst.train[target].to_numpy(dtype=int), local.learner.predict_proba(local.x_train)
        y = inst.test[target].to_numpy(dtype=int)
        alone = vertical.evaluate(y, score(local.learner, local.preprocessor, inst.test), frame=inst.test, train=own)
        assert per_institution[name]["local_only"] == alone
        p = score(local.learner, local.preprocessor, pooled_test)
        on_pooled.append(vertical.evaluate(pooled_test[target].to_numpy(dtype=int), p, frame=pooled_test, train=own))
    assert pooled["local_only"] == {k: mean_ignoring_nan([m[k] for m in on_pooled]) for k in on_pooled[0]}


def test_generated_string_columns_are_joined_into_one_chunk_with_the_same_values() -> None:
    """Taking rows from a many-chunked pyarrow column costs the whole column: partitioning 1,000
    institutions out of a frame built piece by piece was institutions x rows. ``one_chunk`` joins
    the pieces; values, missing values, dtypes and order stay as they were."""
    from consortia.data.consortium import one_chunk

    pieces = [
        pd.DataFrame({"s": pd.Series(["a", None, f"b{i}"], dtype="str"), "x": [float(i), np.nan, 1.0]})
        for i in range(50)
    ]
    frame = pd.concat(pieces, ignore_index=True)
    assert frame["s"].array.__arrow_array__().num_chunks == 50
    joined = one_chunk(frame)
    assert joined["s"].array.__arrow_array__().num_chunks == 1
    assert joined.equals(frame) and (joined.dtypes == frame.dtypes).all()
    assert joined["s"].isna().tolist() == frame["s"].isna().tolist()
    rows = np.array([0, 2, 77, 149])
    assert joined.iloc[rows].equals(frame.iloc[rows])
