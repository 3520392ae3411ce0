"""Commands that only look things up: ``predict``, ``examples``, ``list``, ``demo``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from consortia.cli.output import console, friendly_errors, note


@friendly_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by `consortia run`")],
    data: Annotated[Path, typer.Option("--data", help="CSV/Parquet with new rows (same columns as training)")],
    out: Annotated[Path, typer.Option("--out", help="CSV to write: the file's columns plus 'score'")],
) -> None:
    """Score new rows with a run's global model (same mapping, validation and preprocessing)."""
    from consortia.runs.predict import predict_file

    scored = predict_file(run_dir, data, out, on_note=note)
    console.print(f"{len(scored)} rows scored -> {escape(str(out))}", highlight=False)


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


def list_components() -> None:
    """Verticals, models, strategies and engines that can be chosen by name."""
    from consortia.catalog import ENGINES, LEARNERS, STRATEGIES, VERTICALS

    for registry in (VERTICALS, LEARNERS, STRATEGIES, ENGINES):
        console.print(f"[bold]{registry.kind}s[/]: {', '.join(registry.names())}")


def demo(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="port to serve the demo on")] = 8501,
    address: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 to share on the network)")] = "127.0.0.1",
    headless: Annotated[bool, typer.Option(help="do not open a browser (servers, CI)")] = False,
) -> None:
    """Start the Streamlit demo (Home + one page per vertical); extra options go to `streamlit run`."""
    import os

    from consortia.demo import APP_SCRIPT

    # Streamlit's first-run e-mail prompt would block a start without a terminal (and write
    # ~/.streamlit/credentials.toml): never show it. Without --headless, Streamlit decides
    # itself whether to open a browser (not on a Linux box without a display).
    headless = headless or not sys.stdin.isatty()
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(port), "--server.address", address, "--server.showEmailPrompt", "false",
        *(["--server.headless", "true"] if headless else []), "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal", *ctx.args,
    ]  # fmt: skip
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.execv(sys.executable, command)  # the demo's process is Streamlit's: signals reach it directly
