"""Command line: ``consortia run healthcare`` and friends.

Every error caused by input (a bad option value, a bad file) ends in one clear line on
stderr and a non-zero exit, never a traceback. One module per group of commands; this one
only assembles them.
"""

from __future__ import annotations

import typer

from consortia.cli import audit, commands, export, run, serve, transfer

app = typer.Typer(
    name="consortia",
    help="Federated learning between institutions that may not pool their data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(run.run)
app.command()(commands.predict)
app.command()(audit.audit)
app.command()(export.export)
app.command()(export.report)
app.command()(transfer.transfer)
app.command()(commands.examples)
app.command("list")(commands.list_components)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(commands.demo)
app.add_typer(serve.serve_app, name="serve")


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
