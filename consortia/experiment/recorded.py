"""A run with its run folder: config first, a checkpoint per round, then result and model card."""

from __future__ import annotations

from pathlib import Path

from consortia.data.consortium import load_federation
from consortia.errors import ConfigError
from consortia.experiment import run_experiment
from consortia.runs.folder import CONFIG, RunFolder
from consortia.runs.model_card import write_model_card
from consortia.verticals import get_vertical


def run_recorded(config, *, on_round=None):  # -> tuple[RunResult, RunFolder]
    """``run_experiment`` with its run folder: config first, checkpoints per round, then result
    and model card. A folder that already holds a run is only continued with ``resume``."""
    if not config.run_dir:
        raise ConfigError("run_recorded needs config.run_dir")
    folder = RunFolder(config.run_dir)
    if config.resume:
        if folder.latest_checkpoint() is None and not (folder.path / CONFIG).is_file():
            raise ConfigError(f"nothing to resume in {folder.path}")
    elif (folder.path / CONFIG).is_file():
        raise ConfigError(f"{folder.path} already holds a run; use --resume {folder.path} or another --run-dir")
    folder.write_config(config.model_copy(update={"resume": False}))
    result = run_experiment(config, on_round=on_round)
    folder.write_result(result)
    write_model_card(folder, config, result, load_federation(config, get_vertical(config.vertical)).schema)
    return result, folder


def resume_config(run_dir: str | Path):  # -> ExperimentConfig
    """The stored config of ``run_dir``, set to continue from its newest checkpoint."""
    folder = RunFolder(run_dir)
    config = folder.read_config()
    return config.model_copy(update={"resume": True, "run_dir": str(folder.path)})
