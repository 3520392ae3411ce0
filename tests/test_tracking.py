"""``consortia run --mlflow URI``: params, per-round metrics, final tables and the model, read back with MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import joblib
import pytest
from typer.testing import CliRunner

from consortia.cli import app

runner = CliRunner()


@pytest.fixture
def file_store_env():
    """``track_run`` allows MLflow's file store for a file: URI; leave the variable as it was found."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    yield
    if before is None:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
    else:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def test_run_is_logged_to_a_local_file_store(tmp_path, file_store_env):
    mlflow = pytest.importorskip("mlflow")
    uri = f"file:{tmp_path / 'mlruns'}"
    args = ["run", "healthcare", "--institutions", "3", "--rows", "1500", "--rounds", "3", "--seed", "7"]
    out = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "run"), "--json", str(tmp_path / "r.json"),
                              "--mlflow", uri])  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "r.json").read_text())

    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("consortia").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id in out.output
    params = run.data.params
    assert params["vertical"] == "healthcare" and params["rounds"] == "3" and params["model"] == "logistic"
    assert params["partition.kind"] == "natural"
    history = client.get_metric_history(run.info.run_id, "pooled.auroc")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
    assert sorted(history, key=lambda m: m.step)[-1].value == pytest.approx(
        result["rounds"][-1]["metrics"]["pooled.auroc"]
    )
    metrics = run.data.metrics
    assert metrics["final.pooled.federated.auroc"] == pytest.approx(result["summary"]["pooled"]["federated"])
    assert metrics["final.hospital-01.local_only.auroc"] == pytest.approx(
        result["per_institution"]["hospital-01"]["local_only"]["auroc"]
    )
    assert "timings.total_s" in metrics

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "tables", "result.json", "report.html"} <= artifacts
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert {"tables/per_institution.json", "tables/pooled.json", "tables/comparison_auroc.csv"} <= tables
    local = client.download_artifacts(run.info.run_id, "model/model.joblib", str(tmp_path))
    assert hasattr(joblib.load(local), "predict_proba")


def test_mlflow_is_not_imported_unless_asked_for():
    code = (
        "import sys, consortia.cli, consortia.cli.run, consortia.runs.tracking, consortia.experiment.recorded; "
        "assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_bad_tracking_uri_is_one_line_before_training(tmp_path):
    out = runner.invoke(app, ["run", "healthcare", "--rounds", "2", "--run-dir", str(tmp_path / "r"), "--mlflow", " "])
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1 and "--mlflow needs a tracking URI" in lines[0], out.output
    assert not (tmp_path / "r").exists()
