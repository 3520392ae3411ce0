"""Slow and failing members, on the node: what ``compute-slowdown`` and ``failure-rate`` do.

The profile is the node's own (its node config, ``consortia.config.stragglers``). ``straggler_mod``
sits on the train handler:

* a node with ``failure-rate`` p fails a train message with probability p, drawn from (run seed,
  institution, round): it answers with an error reply, as a crashed ClientApp would, and trains
  nothing. The same seed fails the same institutions in the same rounds, in every engine;
* a node with ``compute-slowdown`` s > 1 is s times slower: where time is real (a deployment,
  Ray) it sleeps ``(s - 1) x`` its measured training time before replying; in the in-process
  engine (node config ``virtual-time``) it never sleeps, and the engine reports the reply's
  virtual time, ``measured x s``, to the round deadline (``consortia.federation.deadline``).

``simulated_stragglers`` turns ``ExperimentConfig.stragglers`` into the simulated nodes' node configs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flwr.app import Context, Error, Message
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common.constant import ErrorCode

from consortia.config import ExperimentConfig
from consortia.config.stragglers import VIRTUAL_TIME_KEY, NodeProfile, parse_profile
from consortia.data.consortium import load_federation
from consortia.errors import ConfigError
from consortia.federation.secure.secagg import SECURE_SUM
from consortia.verticals import get_vertical


def node_key(context: Context) -> str:
    """The institution's key in the failure draw: its partition (simulation) or data file (deployment)."""
    config = context.node_config
    return str(config.get("partition-id", config.get("data-path", context.node_id)))


def straggler_mod(seed_of: Callable[[Context], int]) -> Mod:
    """The train handler's mod: fail (seeded) or, where time is real, take ``slowdown`` times longer.

    ``seed_of(context)`` is the run's seed. Nodes without a profile pass through untouched; so do
    train messages that carry no round (secure sums of the summary phase)."""

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        profile = NodeProfile.from_node_config(context.node_config)
        if profile == NodeProfile():
            return call_next(message, context)
        request = message.content.config_records.get("config")
        server_round = int(request.get("server-round", 0)) if request is not None else 0  # type: ignore[arg-type]
        if server_round <= 0 or (request is not None and SECURE_SUM in request):
            return call_next(message, context)
        if profile.fails(seed_of(context), node_key(context), server_round):
            reason = f"simulated failure (failure-rate {profile.failure_rate:g}, round {server_round})"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message)
        started = time.perf_counter()
        reply = call_next(message, context)
        if profile.slowdown > 1 and not context.node_config.get(VIRTUAL_TIME_KEY, False):
            time.sleep((profile.slowdown - 1) * (time.perf_counter() - started))  # real time: really slow
        return reply

    return mod


def simulated_stragglers(config: ExperimentConfig) -> dict[int, dict[str, float]]:
    """Partition index -> the node config entries of a simulated slow or failing node
    (``config.stragglers``, keyed by index or institution name)."""
    if not config.stragglers:
        return {}
    names: list[str] = []
    if not all(key.isdigit() for key in config.stragglers):
        names = load_federation(config, get_vertical(config.vertical)).names
    nodes: dict[int, dict[str, float]] = {}
    for key, spec in config.stragglers.items():
        if key.isdigit():
            index = int(key)
        elif key in names:
            index = names.index(key)
        else:
            raise ConfigError(f"stragglers: no institution named {key!r}; the run has: {', '.join(names)}")
        nodes[index] = parse_profile(spec).node_config()
    return nodes


__all__ = ["node_key", "simulated_stragglers", "straggler_mod"]
