"""``consortia run <vertical>``: federated vs centralized vs local-only, printed as a table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from consortia.cli.output import console, err_console, friendly_errors, note, parse_pairs
from consortia.logs import set_flower_verbosity


@friendly_errors
def run(
    vertical: Annotated[str, typer.Argument(help="healthcare, finance or manufacturing")],
    institutions: Annotated[int | None, typer.Option(help="number of institutions (default: the vertical's)")] = None,
    rows: Annotated[int | None, typer.Option(help="total synthetic rows (default: the vertical's)")] = None,
    rounds: Annotated[int, typer.Option(help="federated rounds")] = 20,
    local_epochs: Annotated[int, typer.Option(help="local epochs per round")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="local fine-tuning epochs after federation")] = 2,
    model: Annotated[str | None, typer.Option(help="logistic | mlp | xgboost (default: logistic)")] = None,
    model_param: Annotated[list[str] | None, typer.Option(help="model option key=value (repeatable)")] = None,
    strategy: Annotated[
        str, typer.Option(help="fedavg | fedprox | fedadam | fedyogi | fedmedian | krum ...")
    ] = "fedavg",
    strategy_param: Annotated[
        list[str] | None, typer.Option(help="strategy option key=value, e.g. proximal-mu=0.1")
    ] = None,
    xgb_mode: Annotated[
        str | None, typer.Option(help="--model xgboost: bagging | cyclic (Flower) | histogram (lossless)")
    ] = None,
    fraction_train: Annotated[float, typer.Option(help="share of institutions sampled per round")] = 1.0,
    partition: Annotated[str, typer.Option(help="natural | iid | dirichlet | quantity")] = "natural",
    alpha: Annotated[float, typer.Option(help="skew for dirichlet/quantity (smaller = more skew)")] = 0.5,
    engine: Annotated[str, typer.Option(help="inprocess | ray")] = "inprocess",
    device: Annotated[str, typer.Option(help="cpu | cuda | auto (PyTorch models)")] = "cpu",
    seed: Annotated[int, typer.Option(help="the same seed gives the same numbers")] = 42,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the RunResult JSON here")] = None,
    verbose: Annotated[bool, typer.Option(help="show Flower's own log")] = False,
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="one CSV/Parquet per institution (repeatable)")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder with one file per institution")] = None,
    target: Annotated[str | None, typer.Option(help="target column in the files")] = None,
    map_path: Annotated[Path | None, typer.Option("--map", help="mapping.yaml: file columns/labels -> schema")] = None,
    example: Annotated[str | None, typer.Option(help="a shipped data set (see `consortia examples`)")] = None,
    protocol: Annotated[
        str, typer.Option(help="consortia | flamby (FLamby's Fed-Heart-Disease preprocessing)")
    ] = "consortia",
    run_dir: Annotated[Path | None, typer.Option(help="run folder (default: runs/<vertical>-<time>)")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="continue the run in this folder from its last checkpoint")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="metric of the printed table (default: the vertical's)")] = None,
) -> None:
    """Train federated, centralized and local-only models and print the comparison table."""
    from consortia.cli.data_options import data_options
    from consortia.config import ExperimentConfig
    from consortia.experiment.recorded import resume_config
    from consortia.runs.folder import default_run_dir
    from consortia.verticals import get_vertical

    spec = get_vertical(vertical)
    data_config, notes = data_options(
        spec.name, files=[str(p) for p in data or []], data_dir=str(data_dir) if data_dir else None,
        target=target, mapping_path=str(map_path) if map_path else None, example=example, protocol=protocol,
    )  # fmt: skip
    model_params = parse_pairs(model_param, "--model-param")
    if protocol == "flamby" and model is None:  # FLamby's model: Linear + sigmoid, Adam, batch 4
        from consortia.data import flamby as flamby_heart

        model, model_params = flamby_heart.MODEL, {**flamby_heart.MODEL_PARAMS, **model_params}
        metric = metric or "accuracy"
    if resume is not None:
        config = resume_config(resume)
    else:
        config = ExperimentConfig.build(
            data=data_config,
            run_dir=str(run_dir or default_run_dir(spec.name)),
            vertical=vertical,
            institutions=spec.default_institutions if institutions is None else institutions,
            rows=spec.default_rows if rows is None else rows,
            rounds=rounds,
            local_epochs=local_epochs,
            finetune_epochs=finetune_epochs,
            model=model or "logistic",
            model_params=model_params,
            strategy=strategy,
            strategy_params=parse_pairs(strategy_param, "--strategy-param"),
            xgb_mode=xgb_mode,
            fraction_train=fraction_train,
            partition={"kind": partition, "alpha": alpha},
            engine=engine,
            device=device,
            seed=seed,
        )
    set_flower_verbosity(verbose)
    for message in notes:
        note(message)
    if config.data.files:
        from consortia.data.sources import load_data

        if config.data.protocol == "consortia":
            for message in load_data(config, spec).notes:  # validates every file before any training
                note(message)
    result = _run_with_progress(config)
    console.print(result.render_table(metric))
    s = result.summary["pooled"]
    console.print(
        f"pooled {result.primary_metric}: federated {s['federated']:.4f} = "
        f"{s['federated'] / s['centralized']:.3f} x centralized; local-only mean {s['local_only_mean']:.4f}; "
        f"{result.timings['total_s']:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    if json_path is not None:
        result.to_json(json_path)
        console.print(f"RunResult written to {json_path}")


def _run_with_progress(config):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from consortia.experiment import run_experiment
    from consortia.verticals import get_vertical

    metric = get_vertical(config.vertical).primary_metric
    columns = (
        TextColumn("[bold]rounds"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=err_console, transient=not sys.stderr.isatty()) as progress:
        task = progress.add_task("rounds", total=config.rounds, status="")

        def on_round(record) -> None:
            value = record.metrics.get(f"pooled.{metric}", record.metrics.get(metric, float("nan")))
            progress.update(task, advance=1, status=f"{metric} {value:.4f}")

        if config.run_dir:
            from consortia.experiment.recorded import run_recorded

            result, folder = run_recorded(config, on_round=on_round)
            err_console.print(f"run folder: {folder.path}", highlight=False)
            return result
        return run_experiment(config, on_round=on_round)
