"""Errors a person can act on.

Every error Consortia raises on bad input derives from ``ConsortiaError`` so the CLI can print
one clear line instead of a traceback from deep inside a library.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConsortiaError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class ConfigError(ConsortiaError, ValueError):
    """A configuration value is invalid."""


class DataValidationError(ConsortiaError, ValueError):
    """Input data does not fit the schema; names the source, the column and the rows."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        column: str | None = None,
        rows: Sequence[int] = (),
    ) -> None:
        self.source = source
        self.column = column
        self.rows = list(rows)
        where = []
        if source:
            where.append(source)
        if column:
            where.append(f"column '{column}'")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" (+{len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
            where.append(f"rows {shown}{more}")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(f"{prefix}{message}")


class FederationError(ConsortiaError, RuntimeError):
    """The federation could not complete (too few institutions answered, a node failed)."""
