"""Tests leave the checkout alone: conftest starts each one in a temporary folder of its own.

``consortia run`` without ``--run-dir`` writes ``runs/<vertical>-<time>`` into the current
directory, so a test that forgets ``--run-dir`` must still not write into the working tree.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from consortia.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_without_run_dir_writes_into_the_test_folder():
    cwd = Path.cwd().resolve()
    assert not cwd.is_relative_to(ROOT), f"tests start in {cwd}, inside the checkout"
    args = ["run", "healthcare", "--institutions", "2", "--rows", "400", "--rounds", "1", "--finetune-epochs", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (folder,) = (cwd / "runs").iterdir()
    assert folder.name.startswith("healthcare-") and (folder / "config.json").is_file()
