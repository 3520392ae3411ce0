"""Export a run's global model to the formats other tools load: scikit-learn, XGBoost, TorchScript, ONNX.

The exported model is the one ``consortia predict`` scores with: the newest readable checkpoint
of the run folder and the preprocessor the institutions agreed on. Fine-tuned models never
leave their institution (each fine-tunes the global model at its node and reports metrics
only), so a run folder holds no fine-tuned model to export.

* ``sklearn``: a ``Pipeline`` (``RunPreprocessor`` -> ``RunClassifier``, see
  ``consortia.runs.estimators``) saved with joblib; its ``predict_proba`` takes a DataFrame of
  the model's input columns (named as the run's schema names them) and works for every model family.
* ``xgboost``: the booster's JSON (``xgboost.Booster(model_file=PATH)``); xgboost runs only.
* ``torchscript`` / ``onnx``: the PyTorch module with a sigmoid on top, ``(rows, features)``
  float32 in, P(positive) out; mlp and logistic_torch runs only.

The non-scikit-learn artefacts take the preprocessed matrix and carry the preprocessor as JSON
(booster attribute, TorchScript extra file, ONNX metadata, all under ``consortia_preprocessor``)
so ``Preprocessor.from_json(text).transform(frame)`` rebuilds their input from raw rows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from consortia.data.preprocessing import Preprocessor
from consortia.errors import ConfigError
from consortia.learners import make_learner
from consortia.runs.folder import Checkpoint, RunFolder

FORMATS = ("sklearn", "xgboost", "torchscript", "onnx")
#: where every non-scikit-learn artefact keeps the preprocessor (and the model's description)
PREPROCESSOR_KEY = "consortia_preprocessor"
MODEL_KEY = "consortia_model"
TORCH_MODELS = ("mlp", "logistic_torch")
SUFFIXES = {"sklearn": ".joblib", "xgboost": ".json", "torchscript": ".pt", "onnx": ".onnx"}


@dataclass
class RunModel:
    """A run's global model as ``consortia predict`` builds it."""

    folder: RunFolder
    config: Any  # ExperimentConfig
    checkpoint: Checkpoint
    model_params: dict[str, Any]
    learner: Any  # Learner

    @property
    def preprocessor(self) -> Preprocessor:
        return self.checkpoint.preprocessor

    def describe(self) -> dict[str, Any]:
        """What the artefact is, stored next to it (metadata) so it explains itself."""
        return {
            "model": self.config.model,
            "vertical": self.config.vertical,
            "round": self.checkpoint.round,
            "feature_names": self.preprocessor.feature_names,
            "output": "probability of the positive class",
        }


def load_run_model(run_dir: str | Path) -> RunModel:
    """The global model of ``run_dir`` (newest readable checkpoint), refused in one line if absent."""
    from consortia.verticals import get_vertical

    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path}: {'is a file, not' if path.exists() else 'no such'} run folder")
    folder = RunFolder(path)
    config = folder.read_config()
    if config.data.protocol == "flamby":
        raise ConfigError("runs with --protocol flamby normalise per centre and cannot score new rows")
    checkpoint = folder.model_checkpoint()
    if checkpoint is None:
        raise ConfigError(f"{folder.path} has no readable checkpoint to export")
    params = get_vertical(config.vertical).model_params(config.model, config.model_params)
    learner = make_learner(config.model, checkpoint.preprocessor.n_features, params, seed=config.seed)
    learner.set_parameters(checkpoint.parameters)
    return RunModel(folder, config, checkpoint, params, learner)


def check_format(fmt: str, model: str) -> None:
    """Refuse, in one line, a format that does not fit the run's model."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if fmt == "xgboost" and model != "xgboost":
        raise ConfigError(f"--format xgboost needs an xgboost run (this run's model is {model}); use --format sklearn")
    if fmt in ("torchscript", "onnx") and model not in TORCH_MODELS:
        other = " or xgboost" if model == "xgboost" else ""
        raise ConfigError(
            f"--format {fmt} exports PyTorch models ({', '.join(TORCH_MODELS)}); this run's model is {model}: "
            f"use --format sklearn{other}"
        )


def export_model(run_dir: str | Path, fmt: str, out: str | Path, *, force: bool = False) -> Path:
    """Write the global model of ``run_dir`` to ``out`` in format ``fmt``; returns ``out``.

    An existing ``out`` is only replaced with ``force``; ``out`` may not be inside the run folder.
    """
    out = Path(out)
    if fmt not in FORMATS:
        check_format(fmt, "")
    run = load_run_model(run_dir)
    check_format(fmt, run.config.model)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name, e.g. {out / ('model' + SUFFIXES[fmt])}")
    if out.exists() and not force:
        raise ConfigError(f"--out {out} exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    if run.folder.path.resolve() in out.resolve().parents:
        raise ConfigError(f"--out {out} is inside the run folder {run.folder.path}; write the export elsewhere")
    writer = {"sklearn": _sklearn, "xgboost": _xgboost, "torchscript": _torchscript, "onnx": _onnx}[fmt]
    tmp = out.with_name(out.name + ".tmp")
    try:
        writer(run, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# -- scikit-learn -------------------------------------------------------------------------------
def sklearn_pipeline(run: RunModel):  # -> sklearn.pipeline.Pipeline
    """The run's global model behind its preprocessor, as one scikit-learn estimator."""
    from sklearn.pipeline import Pipeline

    from consortia.runs.estimators import RunClassifier, RunPreprocessor

    model = RunClassifier.of(
        run.config.model, run.preprocessor.n_features, run.model_params, run.checkpoint.parameters, run.config.seed
    )
    return Pipeline([("preprocess", RunPreprocessor.of(run.preprocessor)), ("model", model)])


def _sklearn(run: RunModel, path: Path) -> None:
    import joblib

    joblib.dump(sklearn_pipeline(run), path)


# -- XGBoost ------------------------------------------------------------------------------------
def _xgboost(run: RunModel, path: Path) -> None:
    import xgboost as xgb

    (raw,) = run.checkpoint.parameters
    booster = xgb.Booster(model_file=bytearray(np.asarray(raw, dtype=np.uint8).tobytes()))  # a copy to annotate
    booster.set_attr(**{PREPROCESSOR_KEY: run.preprocessor.to_json(), MODEL_KEY: json.dumps(run.describe())})
    path.write_bytes(bytes(booster.save_raw("json")))


def xgboost_inputs(booster, frame: pd.DataFrame) -> np.ndarray:
    """The matrix an exported booster scores: its preprocessor, then its bin edges (histogram runs)."""
    from consortia.learners.xgboost.learner import BIN_EDGES_ATTR, bin_with_edges

    X = Preprocessor.from_json(booster.attr(PREPROCESSOR_KEY)).transform(frame).astype(np.float64)
    edges = booster.attr(BIN_EDGES_ATTR)
    return bin_with_edges(X, [np.asarray(e, dtype=np.float64) for e in json.loads(edges)]) if edges else X


# -- PyTorch ------------------------------------------------------------------------------------
def probability_module(run: RunModel):  # -> torch.nn.Module
    """The learner's module with a sigmoid on top, in eval mode (no dropout), on the CPU."""
    import copy

    import torch

    class Probability(torch.nn.Module):
        """Rows of preprocessed features -> P(positive)."""

        def __init__(self, logits: torch.nn.Module) -> None:
            super().__init__()
            self.logits = logits

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.logits(x))

    return Probability(copy.deepcopy(run.learner.torch_module()).cpu()).eval()


def _example(run: RunModel):  # -> torch.Tensor
    import torch

    return torch.zeros((2, run.preprocessor.n_features), dtype=torch.float32)


def _torchscript(run: RunModel, path: Path) -> None:
    import torch

    module = probability_module(run)
    extra = {f"{PREPROCESSOR_KEY}.json": run.preprocessor.to_json(), f"{MODEL_KEY}.json": json.dumps(run.describe())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.x but still loads anywhere
        try:
            scripted = torch.jit.script(module)
        except Exception:
            scripted = torch.jit.trace(module, _example(run))
        torch.jit.save(scripted, str(path), _extra_files=extra)


def load_torchscript(path: str | Path):  # -> (module, Preprocessor)
    """An exported TorchScript model and the preprocessor stored inside it."""
    import torch

    extra = {f"{PREPROCESSOR_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), _extra_files=extra)
    return module, Preprocessor.from_json(extra[f"{PREPROCESSOR_KEY}.json"])


def _onnx(run: RunModel, path: Path) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx.export's exporter needs it)
    except ImportError as exc:
        raise ConfigError(
            f"--format onnx needs the onnx and onnxscript packages ({exc.name} is missing): pip install onnx onnxscript"
        ) from None
    import torch

    with _quiet_onnx_exporter():
        torch.onnx.export(
            probability_module(run), (_example(run),), str(path), input_names=["features"],
            output_names=["probability"], dynamic_shapes=({0: torch.export.Dim("rows")},), dynamo=True,
            verbose=False,
        )  # fmt: skip
    model = onnx.load(str(path))
    for key, value in ((PREPROCESSOR_KEY, run.preprocessor.to_json()), (MODEL_KEY, json.dumps(run.describe()))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet_onnx_exporter() -> Iterator[None]:
    """torch's ONNX exporter prints its steps and warns about torchvision ops: keep the terminal clean."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def onnx_preprocessor(path: str | Path) -> Preprocessor:
    """The preprocessor stored in an exported ONNX model's metadata."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return Preprocessor.from_json(props[PREPROCESSOR_KEY])


def scoring_rows(run_dir: str | Path, data: str | Path) -> pd.DataFrame:
    """The rows of ``data`` as exported models take them: through the run's mapping and the
    vertical's schema checks, as ``consortia predict`` reads them."""
    from consortia.data.loaders import load_file
    from consortia.data.sources import mapping_of
    from consortia.verticals import get_vertical

    config = RunFolder(run_dir).read_config()
    loaded = load_file(
        data, get_vertical(config.vertical).schema, mapping_of(config), target=config.data.target, min_rows=1,
        require_target=False, allow_undeclared=True,
    )  # fmt: skip
    return loaded.frame
