"""Transfer to a new institution: the consortium's model fine-tuned on few labels versus alone.

One tiny healthcare run (3 hospitals, 3 rounds) and one newly generated hospital serve every
test; budgets 10 and 40, two seeds. The 0-epoch check scores the run's global model through
``consortia predict``'s own path, so a consortium start that silently began from scratch (or
from any other model) fails it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from consortia.errors import ConfigError, DataValidationError
from consortia.experiment.transfer import (
    CURVE_PNG,
    RESULT_JSON,
    TransferSettings,
    check_output_dir,
    fine_tune,
    freeze_features,
    newcomer_frame,
    transfer_curve,
    write_outputs,
)

LABELS = (10, 40)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from consortia import ExperimentConfig
    from consortia.experiment.recorded import run_recorded

    folder = tmp_path_factory.mktemp("transfer") / "run"
    config = ExperimentConfig.build(
        vertical="healthcare", institutions=3, rows=1500, rounds=3, seed=7, run_dir=str(folder)
    )
    run_recorded(config)
    return folder


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    path = tmp_path_factory.mktemp("newcomer") / "new_hospital.csv"
    newcomer_frame("healthcare", 400, seed=1234).to_csv(path, index=False)
    return path


def _settings(**overrides) -> TransferSettings:
    return TransferSettings(**{"labels": LABELS, "seeds": 2, **overrides})


def test_curve_has_one_point_per_budget_and_seed_and_repeats(run_dir, newcomer):
    result = transfer_curve(run_dir, newcomer, _settings())
    assert result.labels == list(LABELS) and result.metric == "auroc"
    assert sorted((p.labels, p.seed) for p in result.points) == [(n, s) for n in LABELS for s in range(2)]
    assert all(p.positives >= 1 and p.positives < p.labels for p in result.points)  # both classes labelled
    assert [row["labels"] for row in result.curve()] == list(LABELS)
    assert len(result.as_is) == 2 and len(result.test_split) == 2
    assert all(len(rows) == result.test_rows == 100 for rows in result.test_split)
    assert result.test_split[0] != result.test_split[1]  # one test split per seed
    again = transfer_curve(run_dir, newcomer, _settings())
    assert again.points == result.points  # same seed, same numbers
    assert "| 10 |" in result.table_markdown() and "| 40 |" in result.table_markdown()


def test_zero_epochs_from_consortium_is_the_runs_global_model(run_dir, newcomer, tmp_path):
    """With nothing to fine-tune, the consortium start must score exactly as `consortia predict`'s model."""
    from consortia.runs.predict import predict_file
    from consortia.verticals import get_vertical

    result = transfer_curve(run_dir, newcomer, _settings(finetune_epochs=0))
    scored = predict_file(run_dir, newcomer)
    vertical = get_vertical("healthcare")
    for seed, rows in enumerate(result.test_split):
        test = scored.iloc[np.asarray(rows) - 1]
        want = vertical.evaluate(test["disease"].to_numpy(dtype=int), test["score"].to_numpy())["auroc"]
        assert result.as_is[seed] == pytest.approx(want, abs=1e-12)
        for point in (p for p in result.points if p.seed == seed):
            assert point.consortium == pytest.approx(want, abs=1e-12)
            assert point.alone != pytest.approx(point.consortium, abs=1e-6)  # alone is another model
    tuned = transfer_curve(run_dir, newcomer, _settings(finetune_epochs=20, prior_strength=0.0))
    assert any(p.consortium != pytest.approx(result.as_is[p.seed], abs=1e-6) for p in tuned.points)


def test_prior_keeps_fine_tuning_near_the_consortium_model():
    """The anchor to the global parameters: the stronger it is, the less ten labels move them."""
    from consortia.learners import make_learner

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 4)).astype(np.float32)
    y = np.array([0, 1] * 5)
    start = [rng.normal(size=4), np.array([0.3])]
    moved = {}
    for name in ("logistic", "logistic_torch"):
        for strength in (0.0, 1e3):
            learner = make_learner(name, 4, seed=0)
            learner.set_parameters([a.copy() for a in start])
            fine_tune(learner, X, y, epochs=20, seed=0, strength=strength)
            moved[name, strength] = float(
                np.abs(np.concatenate(learner.get_parameters()) - np.concatenate(start)).max()
            )
        assert moved[name, 1e3] < moved[name, 0.0] / 10, moved


def test_head_trains_only_the_mlp_output_layer():
    from consortia.learners import make_learner

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 5)).astype(np.float32), np.array([0, 1] * 20)
    learner = make_learner("mlp", 5, {"hidden": "8"}, seed=0)
    before = dict(zip(learner.layer_names(), learner.get_parameters(), strict=True))
    freeze_features(learner, "mlp")
    fine_tune(learner, X, y, epochs=5, seed=0, strength=0.0)
    after = dict(zip(learner.layer_names(), learner.get_parameters(), strict=True))
    assert np.array_equal(before["hidden.0.weight"], after["hidden.0.weight"])
    assert np.array_equal(before["hidden.0.bias"], after["hidden.0.bias"])
    assert not np.array_equal(before["out.weight"], after["out.weight"])
    with pytest.raises(ConfigError, match="frozen features"):
        freeze_features(make_learner("logistic", 5), "logistic")


def test_xgboost_keeps_boosting_from_the_global_booster():
    from consortia.learners import make_learner

    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(200, 3)), (rng.random(200) < 0.4).astype(int)
    consortium = make_learner("xgboost", 3, {"xgb_mode": "cyclic"}, seed=0)
    consortium.fit(X, y, epochs=5, seed=0)
    learner = make_learner("xgboost", 3, {"xgb_mode": "cyclic"}, seed=0)
    learner.set_parameters(consortium.get_parameters())
    fine_tune(learner, X[:20], y[:20], epochs=2, seed=0, strength=20.0)
    assert learner.num_rounds == consortium.num_rounds + 2
    first = consortium._load()[:5].predict(__import__("xgboost").DMatrix(X))
    assert np.allclose(learner._load()[:5].predict(__import__("xgboost").DMatrix(X)), first)


def test_bad_inputs_are_one_clear_error(run_dir, newcomer, tmp_path):
    frame = pd.read_csv(newcomer)
    no_age = tmp_path / "no_age.csv"
    frame.drop(columns=["age"]).to_csv(no_age, index=False)
    with pytest.raises(DataValidationError, match=r"no_age\.csv, column 'age'"):
        transfer_curve(run_dir, no_age, _settings())
    one_class = tmp_path / "one_class.csv"
    frame.assign(disease=0).to_csv(one_class, index=False)
    with pytest.raises(DataValidationError, match=r"one_class\.csv, column 'disease'.*single class"):
        transfer_curve(run_dir, one_class, _settings())
    with pytest.raises(ConfigError, match=r"--labels 500: .*400 rows, of which 300 can be labelled"):
        transfer_curve(run_dir, newcomer, _settings(labels=(10, 500)))
    with pytest.raises(ConfigError, match="at least 2"):
        _settings(labels=(1, 10))
    with pytest.raises(ConfigError, match="--seeds"):
        _settings(seeds=0)
    with pytest.raises(ConfigError, match=r"frozen features.*'logistic'"):
        transfer_curve(run_dir, newcomer, _settings(method="head"))
    with pytest.raises(ConfigError, match="not a run folder"):
        transfer_curve(tmp_path, newcomer, _settings())
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(newcomer)
    with pytest.raises(ConfigError, match="is an input"):
        check_output_dir(tmp_path, [tmp_path / RESULT_JSON])


def test_cli_prints_the_curve_and_writes_the_png_without_touching_inputs(run_dir, newcomer, tmp_path):
    from consortia.cli import app

    runner = CliRunner()
    data_before = newcomer.read_bytes()
    run_files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    out = tmp_path / "curve"
    done = runner.invoke(app, ["transfer", str(run_dir), "--data", str(newcomer), "--labels", "10,40",
                               "--seeds", "2", "--out", str(out)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert re.search(r"│\s+40 │ 0\.\d{4} ± 0\.\d{4} │ 0\.\d{4} ± 0\.\d{4} │", done.output)
    assert (out / CURVE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / RESULT_JSON).read_text())
    assert [row["labels"] for row in saved["curve"]] == [10, 40]
    assert newcomer.read_bytes() == data_before
    assert all(p.read_bytes() == b for p, b in run_files.items())

    bad = runner.invoke(app, ["transfer", str(run_dir), "--data", str(newcomer), "--labels", "10,x"])
    assert bad.exit_code == 2 and "error: --labels expects whole numbers" in bad.output
    assert "Traceback" not in bad.output
    into_file = runner.invoke(app, ["transfer", str(run_dir), "--data", str(newcomer), "--out", str(newcomer)])
    assert into_file.exit_code == 2 and "is a file" in into_file.output
    assert newcomer.read_bytes() == data_before


def test_write_outputs_makes_the_folder(run_dir, newcomer, tmp_path):
    result = transfer_curve(run_dir, newcomer, _settings(labels=(10,), seeds=1))
    written = write_outputs(result, tmp_path / "a" / "b")
    assert written["png"].is_file() and written["json"].is_file()


def test_demo_tab_draws_this_settings_curve():
    """The vertical page's New institution tab: the button's curve is the public API's curve."""
    from streamlit.testing.v1 import AppTest

    from consortia import ExperimentConfig
    from consortia.demo import APP_SCRIPT
    from consortia.demo.views.transfer import CHART_TITLE, measure

    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=180)
    at.run()
    at.switch_page("views/healthcare.py").run()
    at.number_input(key="healthcare:institutions").set_value(3)
    at.number_input(key="healthcare:rows").set_value(900)
    at.number_input(key="healthcare:rounds").set_value(2)
    at.run()
    at.button(key="healthcare:transfer").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    config = ExperimentConfig.build(
        vertical="healthcare", institutions=3, rows=900, rounds=2, partition={"kind": "natural", "alpha": 0.5}
    )
    fingerprint, shown = at.session_state["healthcare:transfer_result"]
    assert fingerprint == config.fingerprint()
    expected = measure(config)
    assert shown.points == expected.points
    titles = [json.loads(e.proto.spec).get("title") for e in at.get("vega_lite_chart")]
    assert any(CHART_TITLE in json.dumps(t) for t in titles)
    (table,) = [d.value for d in at.dataframe if "alone, from scratch" in d.value.columns]
    want = {row["labels"]: row["alone_mean"] for row in expected.curve()}
    np.testing.assert_allclose(table["alone, from scratch"], [want[n] for n in table["labels"]], rtol=1e-12)
