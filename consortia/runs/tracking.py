"""Optional experiment tracking with MLflow: ``consortia run ... --mlflow URI``.

A finished run is logged as one MLflow run: the config as params (nested keys joined by dots),
every round's metrics with ``step = round``, the final tables as metrics and as JSON/CSV
artifacts, the timings, and the model (the scikit-learn export, which works for every model
family) with ``result.json`` and ``report.html`` as artifacts. Logging happens after the run,
from what the run folder holds, so tracking can never change the numbers.

MLflow (``mlflow-skinny`` is enough) is imported only here and only when asked for, so runs
without ``--mlflow`` never import it. ``file:./mlruns`` is the local default to suggest:
MLflow 3 refuses a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set, so for a ``file:``
URI (or a bare path) this module sets it, since the user asked for exactly that store.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from consortia.errors import ConfigError

EXPERIMENT = "consortia"
#: MLflow's limits per ``log_batch`` call and per param value
_MAX_PARAMS, _MAX_METRICS, _MAX_VALUE = 100, 1000, 6000


def check_tracking(uri: str) -> str:
    """Refuse an empty URI, or MLflow not installed, before a run is trained (without importing MLflow)."""
    import importlib.util

    uri = uri.strip()
    if not uri:
        raise ConfigError("--mlflow needs a tracking URI, e.g. --mlflow file:./mlruns or --mlflow http://host:5000")
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("--mlflow needs MLflow: pip install mlflow-skinny")
    return uri


def track_run(uri: str, result: Any, run_dir: str | Path | None = None, *, experiment: str = EXPERIMENT) -> str:
    """Log ``result`` (a RunResult) and the run folder's model and report to MLflow; returns the MLflow run id."""
    client = _client(check_tracking(uri))
    from mlflow.entities import Metric, Param, RunTag

    data = result.to_dict()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    name = Path(run_dir).name if run_dir else f"{data['vertical']}-{data['config'].get('model', '')}"
    run = client.create_run(experiment_id, run_name=name)
    run_id = run.info.run_id
    try:
        tags = {"consortia.vertical": data["vertical"], "consortia.primary_metric": data["primary_metric"]}
        if run_dir:
            tags["consortia.run_dir"] = str(Path(run_dir).resolve())
        params = [Param(k, v) for k, v in flatten_params(data["config"]).items()]
        for chunk in _chunks(params, _MAX_PARAMS):
            client.log_batch(run_id, params=chunk)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        metrics = [Metric(k, v, 0, step) for k, v, step in run_metrics(data)]
        for chunk in _chunks(metrics, _MAX_METRICS):
            client.log_batch(run_id, metrics=chunk)
        _log_artifacts(client, run_id, result, data, run_dir)
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _client(uri: str):  # -> mlflow.MlflowClient
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError("--mlflow needs MLflow: pip install mlflow-skinny") from None
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores otherwise
    return MlflowClient(tracking_uri=uri)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"partition": {"kind": "iid"}}`` -> ``{"partition.kind": "iid"}``, values as text MLflow accepts."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flatten_params(value, f"{name}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[_key(name)] = text[:_MAX_VALUE]
    return out


def run_metrics(data: Mapping[str, Any]) -> Iterator[tuple[str, float, int]]:
    """(key, value, step): each round's metrics at step = round, then the final tables and timings at step 0."""
    for record in data.get("rounds") or []:
        step = int(record["round"])
        for key, value in record["metrics"].items():
            if _number(value):
                yield _key(key), float(value), step
        if _number(record.get("seconds")):
            yield "round_seconds", float(record["seconds"]), step
    for mode, metrics in (data.get("pooled") or {}).items():
        for key, value in metrics.items():
            if _number(value):
                yield _key(f"final.pooled.{mode}.{key}"), float(value), 0
    for name, modes in (data.get("per_institution") or {}).items():
        for mode, metrics in modes.items():
            for key, value in metrics.items():
                if _number(value):
                    yield _key(f"final.{name}.{mode}.{key}"), float(value), 0
    for key, value in (data.get("timings") or {}).items():
        if _number(value):
            yield _key(f"timings.{key}"), float(value), 0
    epsilon: Any = (data.get("privacy") or {}).get("epsilon")
    if _number(epsilon):
        yield "privacy.epsilon_spent", float(epsilon), 0


def _log_artifacts(client, run_id: str, result: Any, data: Mapping[str, Any], run_dir: str | Path | None) -> None:
    """Final tables (JSON and CSV), the result, the report and the model."""
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="consortia-mlflow-") as tmp:
        tables = Path(tmp) / "tables"
        tables.mkdir()
        (tables / "per_institution.json").write_text(json.dumps(data["per_institution"], indent=2) + "\n")
        (tables / "pooled.json").write_text(json.dumps(data["pooled"], indent=2) + "\n")
        pd.DataFrame(result.table_rows()).to_csv(tables / f"comparison_{data['primary_metric']}.csv", index=False)
        client.log_artifacts(run_id, str(tables), "tables")
        if run_dir is None:
            return
        folder = Path(run_dir)
        for name in ("result.json", "report.html", "model_card.md", "config.json"):
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name))
        if (folder / "checkpoints").is_dir():
            from consortia.runs.export import export_model

            model = Path(tmp) / "model.joblib"
            try:
                export_model(folder, "sklearn", model)
            except ConfigError:  # e.g. a FLamby run: no model that scores new rows
                return
            client.log_artifact(run_id, str(model), "model")


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _key(name: str) -> str:
    """MLflow keys take letters, digits, ``_ - . / `` and spaces: anything else becomes ``_``."""
    return re.sub(r"[^\w\-./ ]", "_", name)


def _number(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
