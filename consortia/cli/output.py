"""What every command shares: the consoles, one-line errors, ``key=value`` options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from consortia.errors import ConfigError, ConsortiaError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def note(message: str) -> None:
    err_console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def friendly_errors(fn: F) -> F:
    """Turn Consortia's input errors into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConsortiaError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, Any]:
    """``key=value`` options; values become int, float or bool where they look like one."""
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


class RunProgress:
    """Progress on stderr for a run's long phases: data (until the first round arrives), the
    rounds (a bar with the metric), then fine-tuning and baselines (after the last round).

    Shown only on a terminal and never with ``quiet`` (``--quiet``, ``--json``): logs, pipes and
    scripts get the table and nothing else. Each phase keeps its line with its elapsed time.
    """

    def __init__(self, rounds: int, metric: str, *, quiet: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.rounds, self.metric = rounds, metric
        columns = (
            SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("[bold]{task.description:<24}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
        )  # fmt: skip
        self.progress = Progress(*columns, console=err_console, disable=quiet or not err_console.is_terminal)
        self._data: Any = None
        self._rounds: Any = None
        self._after: Any = None

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        self._data = self.progress.add_task("data and preprocessing", total=None, status="")
        return self

    def __exit__(self, *exc: Any) -> None:
        for task in (self._data, self._rounds, self._after):
            if task is not None and exc[0] is None:
                self._finish(task)
        self.progress.__exit__(*exc)

    def _finish(self, task: Any) -> None:
        if not self.progress.tasks[task].finished:
            self.progress.update(task, total=1, completed=1)

    def on_round(self, record: Any) -> None:
        """The engine's per-round callback: the first round ends the data phase, the last starts the baselines."""
        if self._rounds is None:
            self._finish(self._data)
            self._rounds = self.progress.add_task("rounds", total=self.rounds, status="")
        value = record.metrics.get(f"pooled.{self.metric}", record.metrics.get(self.metric, float("nan")))
        self.progress.update(self._rounds, completed=record.round, status=f"{self.metric} {value:.4f}")
        if record.round >= self.rounds and self._after is None:
            self._finish(self._rounds)
            self._after = self.progress.add_task("fine-tuning, baselines", total=None, status="")
