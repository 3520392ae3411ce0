"""``consortia export`` and ``consortia report``: a finished run's model and report, for use elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from consortia.cli.output import console, friendly_errors


@friendly_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `consortia run`")],
    fmt: Annotated[
        str, typer.Option("--format", help="sklearn (every model) | xgboost | torchscript | onnx (mlp, logistic_torch)")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="file to write, e.g. model.joblib, model.json, model.pt, model.onnx")
    ],
    force: Annotated[bool, typer.Option("--force", help="replace --out if it exists")] = False,
) -> None:
    """Export the run's global model (the one `consortia predict` scores with) for other tools."""
    from consortia.runs.export import export_model

    path = export_model(run_dir, fmt.strip().lower(), out, force=force)
    console.print(f"{fmt} model of {escape(str(run_dir))} -> {escape(str(path))}", highlight=False)


@friendly_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `consortia run`")],
    png: Annotated[Path | None, typer.Option("--png", help="also write the report's four charts as one PNG")] = None,
) -> None:
    """(Re)build RUN_DIR/report.html: rounds, per-institution comparison, data, privacy and cost."""
    from consortia.experiment.recorded import rebuild_report

    path = rebuild_report(run_dir, png=png)
    console.print(f"report written to {escape(str(path))}", highlight=False)
    if png is not None:
        console.print(f"charts written to {escape(str(png))}", highlight=False)
