"""Flower's Ray simulation engine (``flwr.simulation.run_simulation``).

Useful for many institutions or when each institution should run in its own process. Flower's
Python entry point passes an empty ``run_config``, so the config is baked into the apps. Ray
gives the nodes random ids: the ServerApp samples and orders by institution, not by id.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from consortia.config import ExperimentConfig
from consortia.errors import FederationError
from consortia.federation.attacks import simulated_attacks, with_attacks
from consortia.federation.client import HANDLERS, build_client_app, with_node_config
from consortia.federation.engines.collect import collecting
from consortia.federation.secure.he import release_model, simulated_key
from consortia.federation.server import ServerHooks, build_server_app, check_servable
from consortia.privacy.disclosure import DISCLOSE_ROWS
from consortia.runs.results import FederatedOutcome


def run(config: ExperimentConfig, hooks: ServerHooks | None = None) -> FederatedOutcome:
    check_servable(config)  # inside Ray the ServerApp's error would only reach the log
    server_hooks, outcome = collecting(hooks)
    overrides = config.to_run_config()
    server_app = build_server_app(overrides, server_hooks)
    # Flower's Ray runtime makes the node configs; the simulated nodes' policy joins them by a mod
    with simulated_key(config.privacy.aggregation) as (key, secret):  # HE: the institutions' shared key
        node_policy = {DISCLOSE_ROWS: bool(server_hooks.report_scores), **key}
        mods = {h: [with_node_config(node_policy)] for h in HANDLERS}
        mods["train"].append(with_attacks(simulated_attacks(config)))  # simulated malicious members
        client_app = build_client_app(overrides, mods=mods)
        _simulate(config, server_app, client_app)
    if not outcome:
        raise FederationError("the Ray simulation ended without a result; see the log above")
    return release_model(outcome[0], secret) if secret is not None else outcome[0]


def _simulate(config: ExperimentConfig, server_app: Any, client_app: Any) -> None:
    from flwr.simulation import run_simulation

    cpus = max(1, os.cpu_count() or 1)
    backend_config: dict[str, dict[str, Any]] = {
        # Ray hides the GPU from actors that ask for none: share it when a GPU run is asked for.
        "client_resources": {"num_cpus": 1, "num_gpus": _gpu_share(config)},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": logging.ERROR},
    }
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=config.institutions,
        backend_config=backend_config,
    )


def _gpu_share(config: ExperimentConfig) -> float:
    if config.device == "cpu":
        return 0.0
    import torch

    return 1.0 / config.institutions if torch.cuda.is_available() else 0.0
