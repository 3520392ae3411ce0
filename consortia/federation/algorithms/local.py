"""Dispatch of a train message to the algorithm its config names (see the package docstring)."""

from __future__ import annotations

from consortia.errors import ConfigError
from consortia.federation.algorithms.task import ALGORITHM_KEY, LocalResult, LocalTask


def train_locally(task: LocalTask) -> LocalResult | None:
    """Run the algorithm the message names; None for ordinary training (no ``ALGORITHM_KEY``)."""
    raw = task.config.get(ALGORITHM_KEY)
    if raw is None:
        return None
    name = str(raw)
    if task.privacy != "none":
        raise ConfigError(
            f"strategy '{name}' cannot be used with differential privacy ({task.privacy}): its local update "
            "is not DP-SGD and its replies are not clipped; use fedavg or fedprox with --dp"
        )
    # imported here: each algorithm pulls in torch or scipy only when a message asks for it
    if name == "scaffold":
        from consortia.federation.algorithms.scaffold import train_scaffold

        return train_scaffold(task)
    if name == "fedma":
        from consortia.federation.algorithms.fedma import train_fedma

        return train_fedma(task)
    if name == "fedmeta":
        from consortia.federation.algorithms.fedmeta import train_fedmeta

        return train_fedmeta(task)
    raise ConfigError(f"this institution's Consortia has no local algorithm '{name}' (a newer server?)")
