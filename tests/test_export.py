"""``consortia export``: every artefact, loaded back by its own library, scores as ``consortia predict`` does."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from consortia import ExperimentConfig
from consortia.cli import app
from consortia.cli.data_options import data_options
from consortia.errors import ConfigError
from consortia.experiment.recorded import run_recorded
from consortia.runs.export import (
    SUFFIXES,
    export_model,
    load_torchscript,
    onnx_preprocessor,
    scoring_rows,
    xgboost_inputs,
)
from consortia.runs.predict import predict_file

runner = CliRunner()


@pytest.fixture(scope="module")
def heart(tmp_path_factory):
    """The shipped UCI heart data (a mapping renames its columns) and 40 new rows to score."""
    data, _ = data_options("healthcare", example="uci-heart")
    new = tmp_path_factory.mktemp("rows") / "new.csv"
    pd.read_csv(data["files"][0]).head(40).drop(columns=["num"]).to_csv(new, index=False)
    return data, new


def _run(data, folder, model: str, **extra) -> None:
    run_recorded(
        ExperimentConfig.build(data=data, model=model, rounds=2, finetune_epochs=0, run_dir=str(folder), **extra)
    )


def _sklearn(path, rows):
    return joblib.load(path).predict_proba(rows)[:, 1]


def _xgboost(path, rows):
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(path))
    return booster.predict(xgb.DMatrix(xgboost_inputs(booster, rows)))


def _torchscript(path, rows):
    import torch

    module, preprocessor = load_torchscript(path)
    with torch.no_grad():
        return module(torch.from_numpy(preprocessor.transform(rows))).numpy()


def _onnx(path, rows):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": onnx_preprocessor(path).transform(rows)})[0]


LOADERS = {"sklearn": _sklearn, "xgboost": _xgboost, "torchscript": _torchscript, "onnx": _onnx}
TOLERANCE = {"sklearn": 1e-6, "xgboost": 1e-6, "torchscript": 1e-6, "onnx": 1e-5}


@pytest.mark.parametrize(
    ("model", "extra", "formats"),
    [
        ("logistic", {}, ["sklearn"]),
        ("logistic_torch", {}, ["sklearn", "torchscript"]),
        ("mlp", {}, ["sklearn", "torchscript", "onnx"]),
        ("xgboost", {}, ["sklearn", "xgboost"]),
        # bin edges travel inside the booster; slow: the XGBoost federated workers start as processes
        pytest.param("xgboost", {"xgb_mode": "histogram"}, ["xgboost"], marks=pytest.mark.slow),
    ],
    ids=["logistic", "logistic_torch", "mlp", "xgboost-bagging", "xgboost-histogram"],
)
def test_every_export_scores_as_predict(heart, tmp_path, model, extra, formats):
    data, new = heart
    _run(data, tmp_path / "run", model, **extra)
    expected = predict_file(tmp_path / "run", new)["score"].to_numpy()
    rows = scoring_rows(tmp_path / "run", new)
    for fmt in formats:
        out = export_model(tmp_path / "run", fmt, tmp_path / f"model{SUFFIXES[fmt]}")
        scores = np.asarray(LOADERS[fmt](out, rows), dtype=np.float64).ravel()
        assert scores.shape == expected.shape
        assert np.max(np.abs(scores - expected)) <= TOLERANCE[fmt], fmt


@pytest.fixture(scope="module")
def logistic_run(heart, tmp_path_factory):
    folder = tmp_path_factory.mktemp("logistic") / "run"
    _run(heart[0], folder, "logistic")
    return folder


def test_sklearn_pipeline_fine_tunes_behind_the_agreed_preprocessing(heart, logistic_run, tmp_path):
    from sklearn.base import clone

    new = heart[1]
    pipeline = joblib.load(export_model(logistic_run, "sklearn", tmp_path / "m.joblib"))
    rows = scoring_rows(logistic_run, new)
    before = pipeline.predict_proba(rows)[:, 1]
    means = list(pipeline.named_steps["preprocess"].preprocessor_.means)
    y = (np.arange(len(rows)) % 2).astype(int)  # labels the global model never saw: fitting must move it
    tuned = clone(pipeline).set_params(model__epochs=5).fit(rows, y)
    assert tuned.named_steps["preprocess"].preprocessor_.means == means  # the federation's statistics kept
    assert not np.allclose(tuned.predict_proba(rows)[:, 1], before)
    assert np.array_equal(pipeline.predict_proba(rows)[:, 1], before)  # the original is untouched
    assert set(np.unique(tuned.predict(rows))) <= {0, 1}


def test_export_refuses_misfits_in_one_line(logistic_run, tmp_path):
    with pytest.raises(ConfigError, match="needs an xgboost run"):
        export_model(logistic_run, "xgboost", tmp_path / "m.json")
    with pytest.raises(ConfigError, match=r"exports PyTorch models.*use --format sklearn"):
        export_model(logistic_run, "onnx", tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="--format must be one of"):
        export_model(logistic_run, "pmml", tmp_path / "m.pmml")
    with pytest.raises(ConfigError, match="no such run folder"):
        export_model(tmp_path / "absent", "sklearn", tmp_path / "m.joblib")
    with pytest.raises(ConfigError, match="inside the run folder"):
        export_model(logistic_run, "sklearn", logistic_run / "m.joblib")

    out = tmp_path / "m.joblib"
    out.write_text("keep me")
    result = runner.invoke(app, ["export", str(logistic_run), "--format", "sklearn", "--out", str(out)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "--force" in lines[0], result.output
    assert out.read_text() == "keep me"
    result = runner.invoke(app, ["export", str(logistic_run), "--format", "sklearn", "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert joblib.load(out).predict_proba(scoring_rows(logistic_run, _rows_file(tmp_path))).shape == (3, 2)
    result = runner.invoke(app, ["export", str(logistic_run), "--format", "torchscript", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "Traceback" not in result.output and "logistic" in result.output


def _rows_file(tmp_path):
    data, _ = data_options("healthcare", example="uci-heart")
    path = tmp_path / "three.csv"
    pd.read_csv(data["files"][0]).head(3).drop(columns=["num"]).to_csv(path, index=False)
    return path
