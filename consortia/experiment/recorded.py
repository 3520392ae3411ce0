"""A run with its run folder: config first, a checkpoint per round, then result, model card and report."""

from __future__ import annotations

from pathlib import Path

from consortia.data.consortium import load_federation
from consortia.errors import ConfigError, ConsortiaError
from consortia.experiment import run_experiment
from consortia.runs.folder import CONFIG, RunFolder
from consortia.runs.model_card import write_model_card
from consortia.runs.report import overview_png, read_result, write_report
from consortia.verticals import get_vertical


def run_recorded(config, *, on_round=None):  # -> tuple[RunResult, RunFolder]
    """``run_experiment`` with its run folder: config first, checkpoints per round, then result,
    model card and ``report.html``. A folder that already holds a run is only continued with ``resume``."""
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
    federation = load_federation(config, get_vertical(config.vertical))
    write_model_card(folder, config, result, federation.schema)
    write_report(folder.path, result, label_rates=label_rates(federation))
    return result, folder


def label_rates(federation) -> dict[str, dict[str, float]]:  # federation: Federation
    """Per institution, the share of positive labels in its train and test rows (for the report)."""
    target = federation.schema.target
    return {
        name: {part: float(frame[target].mean()) if len(frame) else float("nan")
               for part, frame in (("train", inst.train), ("test", inst.test))}
        for name, inst in federation.institutions.items()
    }  # fmt: skip


def rebuild_report(run_dir: str | Path, *, png: str | Path | None = None) -> Path:
    """``consortia report RUN_DIR``: write the run folder's report again from its result.json
    (with label rates when the run's data can still be read here); ``png``: its charts as one picture."""
    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise ConfigError(f"{folder.path}: {'is a file, not' if folder.path.exists() else 'no such'} run folder")
    if png is not None and not Path(png).parent.is_dir():
        raise ConfigError(f"--png {png}: folder {Path(png).parent} does not exist")
    config = folder.read_config()
    try:
        rates = label_rates(load_federation(config, get_vertical(config.vertical)))
    except (ConsortiaError, OSError):
        rates = None  # the data moved or is elsewhere (a deployment): the report says the rates are unknown
    path = write_report(folder.path, label_rates=rates)
    if png is not None:
        Path(png).write_bytes(overview_png(read_result(folder.path), rates))
    return path


def resume_config(run_dir: str | Path):  # -> ExperimentConfig
    """The stored config of ``run_dir``, set to continue from its newest checkpoint."""
    folder = RunFolder(run_dir)
    config = folder.read_config()
    return config.model_copy(update={"resume": True, "run_dir": str(folder.path)})
