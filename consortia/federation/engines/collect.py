"""Shared by the engines that run the ServerApp in this process: catch its outcome."""

from __future__ import annotations

from dataclasses import replace

from consortia.federation.server import ServerHooks
from consortia.runs.results import FederatedOutcome


def collecting(hooks: ServerHooks | None) -> tuple[ServerHooks, list[FederatedOutcome]]:
    """The caller's hooks plus one that stores the outcome in the returned list."""
    hooks = hooks or ServerHooks()
    outcome: list[FederatedOutcome] = []
    user_hook = hooks.on_outcome

    def collect(result: FederatedOutcome) -> None:
        outcome.append(result)
        if user_hook is not None:
            user_hook(result)

    return replace(hooks, on_outcome=collect), outcome
