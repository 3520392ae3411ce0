"""The run folder: config, a checkpoint of the global model after every round, result, model card.

Layout of ``RUN_DIR``::

    config.json                  the ExperimentConfig (enough to re-run or resume)
    checkpoints/round-0003.npz   global parameters after round 3 (+ server-optimizer state)
    checkpoints/round-0003.json  round history so far and the agreed preprocessor
    outcome.json                 the ServerApp's outcome: final model and per-institution metrics
    result.json                  the RunResult (written when the run ends)
    model_card.md / .json        what the model is, what it was trained on, how well it does

Checkpoints are written by the ServerApp (``consortia.core.apps``), so they exist in every
engine, deployment included. Files are written to a temporary name and renamed, so an
interrupted run never leaves half a checkpoint. ``resume`` continues from the newest one:
the client seeds depend on (seed, institution, round), so the remaining rounds are the very
rounds an uninterrupted run would have trained.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from consortia.datasets.preprocessing import Preprocessor
from consortia.errors import ConfigError

CONFIG = "config.json"
RESULT = "result.json"
CARD_MD = "model_card.md"
CARD_JSON = "model_card.json"
OUTCOME = "outcome.json"
#: server-side strategy state (FedOpt moments, FedAvgM momentum) that a resume must restore
STRATEGY_STATE = ("m_t", "v_t", "momentum_vector")


@dataclass
class Checkpoint:
    """The global model after ``round`` rounds, and what the server knew at that point."""

    round: int
    parameters: list[np.ndarray]
    preprocessor: Preprocessor
    rounds: list[dict[str, Any]]
    strategy_state: dict[str, Any]


def default_run_dir(vertical: str, root: str | Path = "runs") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{vertical}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{vertical}-{stamp}-{suffix}"
    return path


class RunFolder:
    """Reads and writes one run's folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    # -- config and result ---------------------------------------------------------------------
    def write_config(self, config) -> None:  # config: ExperimentConfig
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / CONFIG, config.model_dump_json(indent=2) + "\n")

    def read_config(self):  # -> ExperimentConfig
        from consortia.config import ExperimentConfig

        file = self.path / CONFIG
        if not file.is_file():
            raise ConfigError(f"{self.path} is not a run folder (no {CONFIG})")
        return ExperimentConfig.build(**json.loads(file.read_text()))

    def write_result(self, result) -> None:  # result: RunResult
        _atomic_write(self.path / RESULT, result.to_json() + "\n")

    def write_outcome(self, outcome) -> None:  # outcome: FederatedOutcome
        """The ServerApp's own record: final model, preprocessor, per-institution metrics."""
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / OUTCOME, outcome.to_json() + "\n")

    def read_outcome(self):  # -> FederatedOutcome | None
        from consortia.core.results import FederatedOutcome

        file = self.path / OUTCOME
        return FederatedOutcome.from_json(file.read_text()) if file.is_file() else None

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(
        self,
        round_: int,
        parameters: list[np.ndarray],
        preprocessor: Preprocessor,
        rounds: list[dict[str, Any]],
        strategy: object | None = None,
    ) -> Path:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        stem = self.checkpoints / f"round-{round_:04d}"
        arrays = {f"param_{i:03d}": np.asarray(p) for i, p in enumerate(parameters)}
        for attr in STRATEGY_STATE:
            value = getattr(strategy, attr, None) if strategy is not None else None
            if isinstance(value, dict):
                arrays |= {f"state.{attr}.dict.{k}": np.asarray(v) for k, v in value.items()}
            elif isinstance(value, list):
                arrays |= {f"state.{attr}.list.{i:03d}": np.asarray(v) for i, v in enumerate(value)}
        tmp = stem.with_suffix(".npz.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, stem.with_suffix(".npz"))
        meta = {"round": round_, "rounds": rounds, "preprocessor": asdict(preprocessor)}
        _atomic_write(stem.with_suffix(".json"), json.dumps(meta) + "\n")
        return stem.with_suffix(".npz")

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest complete checkpoint (both files present), or None."""
        if not self.checkpoints.is_dir():
            return None
        for npz in sorted(self.checkpoints.glob("round-*.npz"), reverse=True):
            meta_file = npz.with_suffix(".json")
            if meta_file.is_file():
                return self._read(npz, meta_file)
        return None

    def _read(self, npz: Path, meta_file: Path) -> Checkpoint:
        meta = json.loads(meta_file.read_text())
        with np.load(npz) as data:
            keys = sorted(data.files)
            params = [data[k] for k in keys if k.startswith("param_")]
            state: dict[str, Any] = {}
            for key in keys:
                if not key.startswith("state."):
                    continue
                _, attr, kind, name = key.split(".", 3)
                if kind == "dict":
                    state.setdefault(attr, {})[name] = data[key]
                else:
                    state.setdefault(attr, []).append(data[key])
        return Checkpoint(meta["round"], params, Preprocessor(**meta["preprocessor"]), meta["rounds"], state)

    # -- model card ----------------------------------------------------------------------------
    def write_model_card(self, config, result, schema=None) -> None:
        card = model_card(config, result, schema, self.latest_checkpoint())
        _atomic_write(self.path / CARD_JSON, json.dumps(card, indent=2) + "\n")
        _atomic_write(self.path / CARD_MD, render_model_card(card))


def restore_strategy_state(strategy: object, state: dict[str, Any]) -> None:
    for attr, value in state.items():
        setattr(strategy, attr, value)


def offset_rounds(strategy: object, offset: int) -> None:
    """Make a strategy see rounds ``offset + 1, ...``: a resumed run continues the numbering
    that seeds local training (``server-round``) and that server optimizers use."""
    if not offset:
        return
    for name in ("configure_train", "aggregate_train", "configure_evaluate", "aggregate_evaluate"):
        method = getattr(strategy, name)

        def shifted(server_round: int, *args: Any, _method=method, **kwargs: Any) -> Any:
            return _method(server_round + offset, *args, **kwargs)

        setattr(strategy, name, shifted)


def model_card(config, result, schema, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """Facts about the model: task, data, schema and mapping, metrics, privacy, provenance."""
    data = config.data
    mapping = json.loads(data.mapping) if data.mapping and data.mapping.lstrip().startswith("{") else data.mapping
    privacy = {
        k: v for k, v in config.model_dump(mode="json").items()
        if any(w in k for w in ("privacy", "dp", "secagg", "secure", "encrypt", "clip", "noise"))
    }  # fmt: skip
    features = []
    if schema is not None:
        features = [
            {"name": f.name, "kind": f.kind, "min": f.min, "max": f.max,
             "categories": list(f.categories) if f.categories else None,
             "extra": f.name in schema.extra_columns}
            for f in schema.features
        ]  # fmt: skip
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vertical": config.vertical,
        "task": f"binary prediction of '{schema.target if schema else 'target'}'",
        "model": {"family": config.model, "params": config.model_params},
        "training": {
            "strategy": config.strategy, "strategy_params": config.strategy_params,
            "rounds": config.rounds, "local_epochs": config.local_epochs,
            "finetune_epochs": config.finetune_epochs, "seed": config.seed, "engine": config.engine,
            "rounds_checkpointed": checkpoint.round if checkpoint else 0,
        },  # fmt: skip
        "data": {
            "source": "files" if data.files else "synthetic generator",
            "files": data.files,
            "protocol": data.protocol,
            "target_column": data.target,
            "mapping_source": data.mapping_source,
            "mapping": mapping,
            "institution_sizes": result.institution_sizes,
        },
        "schema": {"target": schema.target if schema else None, "features": features},
        "model_inputs": checkpoint.preprocessor.feature_names if checkpoint else None,
        "metrics": {
            "primary": result.primary_metric,
            "pooled": result.pooled,
            "per_institution": result.per_institution,
        },
        "privacy": privacy or "none: plain federated averaging (model updates are visible to the server)",
        "limitations": [
            "metrics are on each institution's held-out split of the same data, not an external cohort",
            "the global model is the last round's; fine-tuned models stay at the institutions",
        ],
    }


def render_model_card(card: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"

    primary = card["metrics"]["primary"]
    lines = [
        f"# Model card: {card['vertical']} ({card['model']['family']}, {card['training']['strategy']})",
        "",
        f"Created {card['created']}. Task: {card['task']}.",
        "",
        "## Training",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in card["training"].items()]
    lines += ["", "## Data", ""]
    data = card["data"]
    lines += [f"- source: {data['source']}" + (f" ({data['protocol']} protocol)" if data["files"] else "")]
    if data["files"]:
        lines += [f"- files: {', '.join(data['files'])}"]
    if data["mapping_source"]:
        lines += [f"- mapping: {data['mapping_source']}"]
    lines += ["", "| institution | train rows | test rows |", "|---|---|---|"]
    lines += [f"| {n} | {s.get('train')} | {s.get('test')} |" for n, s in data["institution_sizes"].items()]
    lines += ["", "## Schema", ""]
    for f in card["schema"]["features"]:
        detail = f" categories {', '.join(f['categories'])}" if f["categories"] else ""
        rng = f" range [{f['min']}, {f['max']}]" if f["min"] is not None or f["max"] is not None else ""
        lines.append(f"- {f['name']}: {f['kind']}{rng}{detail}{' (extra)' if f['extra'] else ''}")
    lines += ["", f"## Metrics ({primary}, each institution's test split)", ""]
    modes = ["local_only", "federated", "federated_finetuned", "centralized"]
    lines += ["| institution | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for name, per in card["metrics"]["per_institution"].items():
        lines.append(f"| {name} | " + " | ".join(num(per.get(m, {}).get(primary)) for m in modes) + " |")
    pooled = card["metrics"]["pooled"]
    lines.append("| pooled | " + " | ".join(num(pooled.get(m, {}).get(primary)) for m in modes) + " |")
    lines += ["", "## Privacy", "", f"{card['privacy']}", "", "## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_recorded(config, *, on_round=None):  # -> tuple[RunResult, RunFolder]
    """``run_experiment`` with its run folder: config first, checkpoints per round, then result
    and model card. A folder that already holds a run is only continued with ``resume``."""
    from consortia.core.experiment import run_experiment
    from consortia.core.institutions import load_federation

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
    folder.write_model_card(config, result, load_federation(config).schema)
    return result, folder


def resume_config(run_dir: str | Path):  # -> ExperimentConfig
    """The stored config of ``run_dir``, set to continue from its newest checkpoint."""
    folder = RunFolder(run_dir)
    config = folder.read_config()
    return config.model_copy(update={"resume": True, "run_dir": str(folder.path)})
