"""`consortia run --example/--data-dir/--data`, `consortia examples`, `consortia predict` from the CLI."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from typer.testing import CliRunner

from consortia.cli import app
from consortia.examples import get_example

runner = CliRunner()
FAST = ["--rounds", "2", "--finetune-epochs", "1"]


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_examples_lists_the_shipped_heart_data():
    result = _run("examples")
    assert result.exit_code == 0
    assert "uci-heart" in result.output and "CC BY 4.0" in result.output


def test_example_runs_and_writes_a_run_folder(tmp_path):
    result = _run("run", "healthcare", "--example", "uci-heart", *FAST, "--run-dir", tmp_path / "run",
                  "--json", tmp_path / "r.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["per_institution"]) == {"cleveland", "hungary", "switzerland", "va_long_beach"}
    assert (tmp_path / "run" / "model_card.md").is_file()
    scored = _run("predict", tmp_path / "run", "--data", get_example("uci-heart").files[0], "--out", tmp_path / "s.csv")
    assert scored.exit_code == 0, scored.output
    assert len(pd.read_csv(tmp_path / "s.csv")) == 303


def test_data_dir_of_original_uci_files_finds_the_mapping(tmp_path):
    for path in get_example("uci-heart").files:  # a copy without mapping.yaml beside it
        shutil.copy(path, tmp_path / path.name)
    result = _run("run", "healthcare", "--data-dir", tmp_path, "--target", "num", *FAST, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "using its mapping" in result.output


def test_bad_file_fails_before_training_with_file_column_rows(tmp_path):
    files = get_example("uci-heart").files
    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(files[0], dtype=str, keep_default_na=False)
    frame.loc[[2, 5], "trestbps"] = "n.d."
    frame.to_csv(bad, index=False)
    mapping = get_example("uci-heart").mapping_path
    result = _run("run", "healthcare", "--data", bad, "--data", files[1], "--map", mapping,
                  *FAST, "--run-dir", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 2
    assert str(bad) in result.output and "trestbps" in result.output and "rows 3, 6" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_target_that_is_not_binary_asks_for_a_rule(tmp_path):
    files = get_example("uci-heart").files
    result = _run("run", "healthcare", "--data", files[0], "--data", files[1], "--target", "num",
                  "--map", tmp_path / "none.yaml", *FAST)  # fmt: skip
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "m.yaml").write_text("columns: {trestbps: systolic_bp}\n")
    result = _run("run", "healthcare", "--data", files[0], "--data", files[1], "--target", "num",
                  "--map", tmp_path / "m.yaml", *FAST, "--run-dir", tmp_path / "run")  # fmt: skip
    assert result.exit_code == 2 and "positive" in result.output and "'num'" in result.output


def test_flamby_protocol_option(tmp_path):
    result = _run("run", "healthcare", "--example", "uci-heart", "--protocol", "flamby", *FAST,
                  "--run-dir", tmp_path / "run", "--json", tmp_path / "r.json")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["institution_sizes"] == {
        "cleveland": {"train": 199, "test": 104}, "hungary": {"train": 172, "test": 89},
        "switzerland": {"train": 30, "test": 16}, "va_long_beach": {"train": 85, "test": 45},
    }  # fmt: skip
    assert data["config"]["model"] == "mlp" and data["config"]["model_params"]["hidden"] == ""
    assert "ACCURACY" in result.output
