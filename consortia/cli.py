"""Command line: ``consortia run healthcare`` and friends.

Every error caused by input (a bad option value, a bad file) ends in one clear line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from consortia.errors import ConsortiaError
from consortia.logs import set_flower_verbosity

app = typer.Typer(
    name="consortia",
    help="Federated learning between institutions that may not pool their data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _friendly_errors(fn):
    """Turn Consortia's input errors into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConsortiaError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """``key=value`` options; values become int, float or bool where they look like one."""
    from consortia.errors import ConfigError

    parsed: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} expects key=value (got {pair!r})")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        parsed[key.strip()] = value
    return parsed


@app.command()
@_friendly_errors
def run(
    vertical: Annotated[str, typer.Argument(help="healthcare, finance or manufacturing")],
    institutions: Annotated[int | None, typer.Option(help="number of institutions (default: the vertical's)")] = None,
    rows: Annotated[int | None, typer.Option(help="total synthetic rows (default: the vertical's)")] = None,
    rounds: Annotated[int, typer.Option(help="federated rounds")] = 20,
    local_epochs: Annotated[int, typer.Option(help="local epochs per round")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="local fine-tuning epochs after federation")] = 2,
    model: Annotated[str | None, typer.Option(help="logistic | mlp | xgboost (default: logistic)")] = None,
    model_param: Annotated[list[str] | None, typer.Option(help="model option key=value (repeatable)")] = None,
    strategy: Annotated[str, typer.Option(help="fedavg | fedprox | fedadam | fedyogi | fedmedian | krum ...")] = "fedavg",
    strategy_param: Annotated[list[str] | None, typer.Option(help="strategy option key=value, e.g. proximal-mu=0.1")] = None,
    xgb_mode: Annotated[str | None, typer.Option(help="--model xgboost: bagging | cyclic (Flower) | histogram (lossless)")] = None,
    fraction_train: Annotated[float, typer.Option(help="share of institutions sampled per round")] = 1.0,
    partition: Annotated[str, typer.Option(help="natural | iid | dirichlet | quantity")] = "natural",
    alpha: Annotated[float, typer.Option(help="skew for dirichlet/quantity (smaller = more skew)")] = 0.5,
    engine: Annotated[str, typer.Option(help="inprocess | ray")] = "inprocess",
    device: Annotated[str, typer.Option(help="cpu | cuda | auto (PyTorch models)")] = "cpu",
    seed: Annotated[int, typer.Option(help="the same seed gives the same numbers")] = 42,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the RunResult JSON here")] = None,
    verbose: Annotated[bool, typer.Option(help="show Flower's own log")] = False,
    data: Annotated[list[Path] | None, typer.Option("--data", help="one CSV/Parquet per institution (repeatable)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="folder with one file per institution")] = None,
    target: Annotated[str | None, typer.Option(help="target column in the files")] = None,
    map_path: Annotated[Path | None, typer.Option("--map", help="mapping.yaml: file columns/labels -> schema")] = None,
    example: Annotated[str | None, typer.Option(help="a shipped data set (see `consortia examples`)")] = None,
    protocol: Annotated[str, typer.Option(help="consortia | flamby (FLamby's Fed-Heart-Disease preprocessing)")] = "consortia",
    run_dir: Annotated[Path | None, typer.Option(help="run folder (default: runs/<vertical>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue the run in this folder from its last checkpoint")] = None,
    metric: Annotated[str | None, typer.Option(help="metric of the printed table (default: the vertical's)")] = None,
) -> None:
    """Train federated, centralized and local-only models and print the comparison table."""
    from consortia.config import ExperimentConfig
    from consortia.core.data_source import data_options
    from consortia.core.runs import default_run_dir, resume_config
    from consortia.verticals import get_vertical

    spec = get_vertical(vertical)
    data_config, notes = data_options(
        spec.name, files=[str(p) for p in data or []], data_dir=str(data_dir) if data_dir else None,
        target=target, mapping_path=str(map_path) if map_path else None, example=example, protocol=protocol,
    )  # fmt: skip
    model_params = _parse_pairs(model_param, "--model-param")
    if protocol == "flamby" and model is None:  # FLamby's model: Linear + sigmoid, Adam, batch 4
        from consortia.examples import flamby_heart

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
            strategy_params=_parse_pairs(strategy_param, "--strategy-param"),
            xgb_mode=xgb_mode,
            fraction_train=fraction_train,
            partition={"kind": partition, "alpha": alpha},
            engine=engine,
            device=device,
            seed=seed,
        )
    set_flower_verbosity(verbose)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if config.data.files:
        from consortia.core.data_source import load_data

        if config.data.protocol == "consortia":
            for note in load_data(config).notes:  # validates every file before any training
                err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
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

    from consortia.core.experiment import run_experiment
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
            from consortia.core.runs import run_recorded

            result, folder = run_recorded(config, on_round=on_round)
            err_console.print(f"run folder: {folder.path}", highlight=False)
            return result
        return run_experiment(config, on_round=on_round)


@app.command()
@_friendly_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `consortia run`")],
    data: Annotated[Path, typer.Option("--data", help="CSV/Parquet with new rows (same columns as training)")],
    out: Annotated[Path, typer.Option("--out", help="CSV to write: the file's columns plus 'score'")],
) -> None:
    """Score new rows with a run's global model (same mapping, validation and preprocessing)."""
    from consortia.core.predict import predict_file

    scored = predict_file(run_dir, data, out)
    console.print(f"{len(scored)} rows scored -> {out}", highlight=False)


@app.command()
def examples() -> None:
    """Real data sets that ship with Consortia (use with `consortia run <vertical> --example NAME`)."""
    from consortia.examples import EXAMPLES

    for example in EXAMPLES.values():
        console.print(
            f"[bold]{example.name}[/] ({example.vertical}): {example.title}\n"
            f"  {len(example.files)} institutions: {', '.join(p.stem for p in example.files)}\n"
            f"  {example.source}; licence {example.licence}\n  files: {example.path}",
            highlight=False,
        )


@app.command("list")
def list_components() -> None:
    """Verticals, models, strategies and engines that can be chosen by name."""
    from consortia.core.engines import ENGINES
    from consortia.core.learners import LEARNERS
    from consortia.core.strategies import STRATEGIES
    from consortia.verticals import VERTICALS

    for registry in (VERTICALS, LEARNERS, STRATEGIES, ENGINES):
        console.print(f"[bold]{registry.kind}s[/]: {', '.join(registry.names())}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def demo(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="port to serve the demo on")] = 8501,
    address: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 to share on the network)")] = "127.0.0.1",
    headless: Annotated[bool, typer.Option(help="do not open a browser (servers, CI)")] = False,
) -> None:
    """Start the Streamlit demo (Home + one page per vertical); extra options go to `streamlit run`."""
    import os

    from consortia.apps import APP_SCRIPT

    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(port), "--server.address", address,
        "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal", *ctx.args,
    ]  # fmt: skip
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.execv(sys.executable, command)  # the demo's process is Streamlit's: signals reach it directly


def _add_serve() -> None:
    from consortia.deploy.cli import serve_app

    app.add_typer(serve_app, name="serve")


_add_serve()


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
