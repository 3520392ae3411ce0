"""The run folder: config, a checkpoint of the global model after every round, result, model card.

Layout of ``RUN_DIR``::

    config.json                  the ExperimentConfig (enough to re-run or resume)
    checkpoints/round-0003.npz   global parameters after round 3 (+ server-optimizer state)
    checkpoints/round-0003.json  round history so far and the agreed preprocessor
    outcome.json                 the ServerApp's outcome: final model and per-institution metrics
    result.json                  the RunResult (written when the run ends)
    model_card.md / .json        what the model is, what it was trained on, how well it does

Checkpoints are written by the ServerApp (``consortia.federation.server``), so they exist in every
engine, deployment included. Files are written to a temporary name and renamed, so an
interrupted run never leaves half a checkpoint. ``resume`` continues from the newest one:
the client seeds depend on (seed, institution, round), so the remaining rounds are the very
rounds an uninterrupted run would have trained.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from consortia.data.preprocessing import Preprocessor
from consortia.errors import ConfigError

CONFIG = "config.json"
RESULT = "result.json"
CARD_MD = "model_card.md"
CARD_JSON = "model_card.json"
OUTCOME = "outcome.json"
#: what left each institution: message types, record fields, bytes (never values)
DISCLOSURE = "disclosure.json"


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
        #: damaged checkpoints the last ``latest_checkpoint`` call passed over, newest first
        self.skipped_checkpoints: list[str] = []

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    # -- config and result ---------------------------------------------------------------------
    def write_config(self, config) -> None:  # config: ExperimentConfig
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / CONFIG, config.model_dump_json(indent=2) + "\n")

    def read_config(self):  # -> ExperimentConfig
        from consortia.config import ExperimentConfig

        file = self.path / CONFIG
        if not file.is_file():
            raise ConfigError(f"{self.path} is not a run folder (no {CONFIG})")
        try:
            values = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{file}: unreadable run config ({str(exc).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{file}: unreadable run config (not a JSON object)")
        return ExperimentConfig.build(**values)

    def write_result(self, result) -> None:  # result: RunResult
        atomic_write(self.path / RESULT, result.to_json() + "\n")

    def write_outcome(self, outcome) -> None:  # outcome: FederatedOutcome
        """The ServerApp's own record: final model, preprocessor, per-institution metrics."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / OUTCOME, outcome.to_json() + "\n")

    def read_outcome(self):  # -> FederatedOutcome | None
        from consortia.runs.results import FederatedOutcome

        file = self.path / OUTCOME
        return FederatedOutcome.from_json(file.read_text()) if file.is_file() else None

    def write_disclosure(self, log: dict[str, Any]) -> None:
        """Per institution and message type: replies, record fields and bytes that left it."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / DISCLOSURE, json.dumps(log, indent=2) + "\n")

    def read_disclosure(self) -> dict[str, Any] | None:
        file = self.path / DISCLOSURE
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(
        self,
        round_: int,
        parameters: list[np.ndarray],
        preprocessor: Preprocessor,
        rounds: list[dict[str, Any]],
        strategy_state: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write round ``round_``'s checkpoint; ``strategy_state`` maps a name to a dict or list
        of arrays (a server optimizer's moments)."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        stem = self.checkpoints / f"round-{round_:04d}"
        arrays = {f"param_{i:03d}": np.asarray(p) for i, p in enumerate(parameters)}
        for attr, value in (strategy_state or {}).items():
            if isinstance(value, dict):
                arrays |= {f"state.{attr}.dict.{k}": np.asarray(v) for k, v in value.items()}
            elif isinstance(value, list):
                arrays |= {f"state.{attr}.list.{i:03d}": np.asarray(v) for i, v in enumerate(value)}
        tmp = stem.with_suffix(".npz.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, stem.with_suffix(".npz"))
        meta = {"round": round_, "rounds": rounds, "preprocessor": asdict(preprocessor)}
        atomic_write(stem.with_suffix(".json"), json.dumps(meta) + "\n")
        return stem.with_suffix(".npz")

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest readable checkpoint (both files present and intact), or None.

        A damaged one (a truncated file after a crash, a hand edit) is skipped for the one
        before it; ``skipped_checkpoints`` says which and why, so a resume can tell the user.
        """
        self.skipped_checkpoints = []
        if not self.checkpoints.is_dir():
            return None
        for npz in sorted(self.checkpoints.glob("round-*.npz"), reverse=True):
            meta_file = npz.with_suffix(".json")
            if not meta_file.is_file():
                continue
            try:
                return self._read(npz, meta_file)
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.skipped_checkpoints.append(f"{npz.name}: unreadable ({reason})")
        return None

    def model_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of the model the run kept: its best round when it selected one by federated
        validation (``outcome.json``'s ``selection``; consortia.config.selection), else the newest
        readable one. A kept round that cannot be read is None, never another round's model."""
        kept = self.kept_round()
        if kept is None:
            return self.latest_checkpoint()
        checkpoint = self.checkpoint(kept)
        self.skipped_checkpoints = [] if checkpoint else [f"round-{kept:04d}.npz: the round the run kept is unreadable"]
        return checkpoint

    def kept_round(self) -> int | None:
        """The round early stopping kept, if the run selected one."""
        file = self.path / OUTCOME
        try:
            selection = json.loads(file.read_text()).get("selection") if file.is_file() else None
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(selection, dict) or not selection.get("best_round"):
            return None
        return int(selection["best_round"])

    def checkpoint(self, round_: int) -> Checkpoint | None:
        """Round ``round_``'s checkpoint, or None if it is missing or unreadable."""
        stem = self.checkpoints / f"round-{round_:04d}"
        try:
            return self._read(stem.with_suffix(".npz"), stem.with_suffix(".json"))
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError):
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


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
