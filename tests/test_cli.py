"""The command line: a small run with JSON output, and one clear line for bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from consortia.cli import app

runner = CliRunner()


def test_run_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "r.json"
    args = ["run", "healthcare", "--institutions", "3", "--rows", "1200", "--rounds", "3", "--json", str(out)]
    result = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "hospital-01" in result.output and "pooled" in result.output
    data = json.loads(out.read_text())
    pooled = data["summary"]["pooled"]
    assert all(0.5 < pooled[k] <= 1.0 for k in pooled)
    assert data["config"]["rounds"] == 3 and len(data["rounds"]) == 3


def _one_clear_line(result) -> str:
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_bad_values_exit_nonzero_with_one_line():
    line = _one_clear_line(runner.invoke(app, ["run", "healthcare", "--rounds", "0"]))
    assert "rounds" in line
    line = _one_clear_line(runner.invoke(app, ["run", "healthcare", "--model", "forest"]))
    assert "forest" in line and "logistic" in line
    line = _one_clear_line(runner.invoke(app, ["run", "banking"]))
    assert "banking" in line and "healthcare" in line
    line = _one_clear_line(runner.invoke(app, ["run", "healthcare", "--strategy-param", "mu"]))
    assert "key=value" in line
    line = _one_clear_line(
        runner.invoke(app, ["run", "healthcare", "--strategy", "fedprox", "--strategy-param", "nonsense=1"])
    )
    assert "nonsense" in line and "proximal_mu" in line
