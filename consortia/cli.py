"""Command line: ``consortia run healthcare`` and friends.

Every error caused by input (a bad option value, a bad file) ends in one clear line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from consortia.errors import ConsortiaError

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


def _quiet_flower(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger("flwr").setLevel(level)
    for handler in logging.getLogger("flwr").handlers:
        handler.setLevel(level)


@app.command()
@_friendly_errors
def run(
    vertical: Annotated[str, typer.Argument(help="healthcare, finance or manufacturing")],
    institutions: Annotated[int | None, typer.Option(help="number of institutions (default: the vertical's)")] = None,
    rows: Annotated[int | None, typer.Option(help="total synthetic rows (default: the vertical's)")] = None,
    rounds: Annotated[int, typer.Option(help="federated rounds")] = 20,
    local_epochs: Annotated[int, typer.Option(help="local epochs per round")] = 1,
    finetune_epochs: Annotated[int, typer.Option(help="local fine-tuning epochs after federation")] = 2,
    model: Annotated[str, typer.Option(help="logistic | mlp")] = "logistic",
    model_param: Annotated[list[str] | None, typer.Option(help="model option key=value (repeatable)")] = None,
    strategy: Annotated[str, typer.Option(help="fedavg | fedprox | fedadam | fedyogi | fedmedian | krum ...")] = "fedavg",
    strategy_param: Annotated[list[str] | None, typer.Option(help="strategy option key=value, e.g. proximal-mu=0.1")] = None,
    fraction_train: Annotated[float, typer.Option(help="share of institutions sampled per round")] = 1.0,
    partition: Annotated[str, typer.Option(help="natural | iid | dirichlet | quantity")] = "natural",
    alpha: Annotated[float, typer.Option(help="skew for dirichlet/quantity (smaller = more skew)")] = 0.5,
    engine: Annotated[str, typer.Option(help="inprocess | ray")] = "inprocess",
    device: Annotated[str, typer.Option(help="cpu | cuda | auto (PyTorch models)")] = "cpu",
    seed: Annotated[int, typer.Option(help="the same seed gives the same numbers")] = 42,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the RunResult JSON here")] = None,
    verbose: Annotated[bool, typer.Option(help="show Flower's own log")] = False,
) -> None:
    """Train federated, centralized and local-only models and print the comparison table."""
    from consortia.config import ExperimentConfig
    from consortia.verticals import get_vertical

    spec = get_vertical(vertical)
    config = ExperimentConfig.build(
        vertical=vertical,
        institutions=institutions or spec.default_institutions,
        rows=rows or spec.default_rows,
        rounds=rounds,
        local_epochs=local_epochs,
        finetune_epochs=finetune_epochs,
        model=model,
        model_params=_parse_pairs(model_param, "--model-param"),
        strategy=strategy,
        strategy_params=_parse_pairs(strategy_param, "--strategy-param"),
        fraction_train=fraction_train,
        partition={"kind": partition, "alpha": alpha},
        engine=engine,
        device=device,
        seed=seed,
    )
    _quiet_flower(verbose)
    result = _run_with_progress(config)
    console.print(result.render_table())
    s = result.summary["pooled"]
    console.print(
        f"pooled {result.primary_metric}: federated {s['federated']:.4f} = "
        f"{s['federated'] / s['centralized']:.3f} x centralized; local-only mean {s['local_only_mean']:.4f}; "
        f"{result.timings['total_s']:.1f} s",
        highlight=False,
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

        return run_experiment(config, on_round=on_round)


@app.command("list")
def list_components() -> None:
    """Verticals, models, strategies and engines that can be chosen by name."""
    from consortia.core.engines import ENGINES
    from consortia.core.learners import LEARNERS
    from consortia.core.strategies import STRATEGIES
    from consortia.verticals import VERTICALS

    for registry in (VERTICALS, LEARNERS, STRATEGIES, ENGINES):
        console.print(f"[bold]{registry.kind}s[/]: {', '.join(registry.names())}")


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
