"""Flower's Ray simulation engine (``flwr.simulation.run_simulation``).

Useful for many institutions or when each institution should run in its own process. Flower's
Python entry point passes an empty ``run_config``, so the config is baked into the apps.
"""

from __future__ import annotations

import logging
import os

from consortia.config import ExperimentConfig
from consortia.core.apps import ServerHooks, build_client_app, build_server_app
from consortia.core.results import FederatedOutcome
from consortia.errors import FederationError


def run(config: ExperimentConfig, hooks: ServerHooks | None = None) -> FederatedOutcome:
    from flwr.simulation import run_simulation

    hooks = hooks or ServerHooks()
    outcome: list[FederatedOutcome] = []
    user_hook = hooks.on_outcome

    def collect(result: FederatedOutcome) -> None:
        outcome.append(result)
        if user_hook is not None:
            user_hook(result)

    overrides = config.to_run_config()
    server_app = build_server_app(overrides, ServerHooks(
        on_round=hooks.on_round, on_outcome=collect,
        report_scores=hooks.report_scores, node_timeout_s=hooks.node_timeout_s,
    ))  # fmt: skip
    client_app = build_client_app(overrides)
    cpus = max(1, os.cpu_count() or 1)
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": logging.ERROR},
    }
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=config.institutions,
        backend_config=backend_config,
    )
    if not outcome:
        raise FederationError("the Ray simulation ended without a result; see the log above")
    return outcome[0]
