"""Quiet Flower's console log unless asked: Consortia prints its own progress and tables."""

from __future__ import annotations

import logging


def set_flower_verbosity(verbose: bool = False) -> None:
    """Flower sets its logger to DEBUG when imported, so import it first, then set levels."""
    import flwr.supercore.logger  # noqa: F401  (configures the "flwr" logger on import)

    level = logging.INFO if verbose else logging.WARNING
    logger = logging.getLogger("flwr")
    logger.setLevel(level)
    for handler in logger.handlers:
        handler.setLevel(level)
