"""``consortia transfer RUN_DIR --data new.csv``: a new institution, from the consortium's model or alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from consortia.cli.output import console, err_console, friendly_errors, note
from consortia.errors import ConfigError


def parse_labels(text: str) -> tuple[int, ...]:
    """'10,25,50' -> (10, 25, 50); anything else is one clear line."""
    try:
        labels = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(f"--labels expects whole numbers separated by commas, e.g. 10,25,50 (got {text!r})") from None
    if not labels:
        raise ConfigError("--labels needs at least one label budget, e.g. --labels 10,25,50")
    return labels


@friendly_errors
def transfer(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `consortia run` (the consortium)")],
    data: Annotated[Path, typer.Option("--data", help="the new institution's CSV/Parquet (labelled rows)")],
    labels: Annotated[str, typer.Option(help="label budgets to measure, comma-separated")] = "10,25,50,100,200",
    seeds: Annotated[int, typer.Option(help="seeds per budget (label draws and test splits)")] = 3,
    method: Annotated[str, typer.Option(help="finetune (all layers) or head (MLP: frozen features, output layer)")] = (
        "finetune"
    ),
    epochs: Annotated[
        int | None, typer.Option(help="fine-tuning epochs from the consortium's model (default: the run's)")
    ] = None,
    prior: Annotated[
        float, typer.Option(help="pull of fine-tuning back to the consortium's parameters (0 = none)")
    ] = 20.0,
    out: Annotated[
        Path | None, typer.Option("--out", help="folder for transfer_curve.png and transfer.json (RUN_DIR/transfer)")
    ] = None,
) -> None:
    """A new institution with few labels: start from the consortium's model, or train alone? Prints the curve."""
    from consortia.experiment.transfer import (
        ConsortiumModel,
        TransferSettings,
        check_output_dir,
        transfer_curve,
        write_outputs,
    )

    settings = TransferSettings(
        labels=parse_labels(labels), seeds=seeds, method=method,  # type: ignore[arg-type]
        finetune_epochs=epochs, prior_strength=prior,
    )  # fmt: skip
    model = ConsortiumModel.from_run(run_dir, on_note=note)
    folder = check_output_dir(out if out is not None else run_dir / "transfer", [data, *model.config.data.files])
    with err_console.status("training") as status:
        result = transfer_curve(
            model, data, settings, on_note=note,
            on_point=lambda p: status.update(f"seed {p.seed + 1}/{seeds}: {p.labels} labels done"),
        )  # fmt: skip
    table = Table(
        title=f"{result.vertical}: a new institution, {result.metric} on its held-out rows "
        f"(mean ± std over {result.seeds} seeds)",
        caption=f"{result.rows} rows, {result.test_rows} held out; model {result.model}, "
        f"fine-tuned {result.finetune_epochs} epochs ({result.method}), alone {result.alone_epochs} epochs",
    )
    table.add_column("labels", justify="right")
    table.add_column("from consortium", justify="right")
    table.add_column("alone", justify="right")
    table.add_row("0", f"{sum(result.as_is) / len(result.as_is):.4f}", "", end_section=True)
    for row in result.curve():
        table.add_row(
            f"{row['labels']:.0f}",
            f"{row['consortium_mean']:.4f} ± {row['consortium_std']:.4f}",
            f"{row['alone_mean']:.4f} ± {row['alone_std']:.4f}",
        )
    console.print(table)
    written = write_outputs(result, folder)
    console.print(
        f"curve -> {escape(str(written['png']))}; points -> {escape(str(written['json']))}; {result.seconds:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
