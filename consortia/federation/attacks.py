"""Poisoned members: what a malicious node does to its training rows or to its reply.

The behaviour is the node's own (its node config, ``consortia.config.attacks``); an honest node
(no ``attack`` key) is untouched. Two hooks, both on training only:

* ``poison_rows`` (called by the train handler on its rows before fitting): ``label-flip`` trains
  on ``1 - y`` for a share of the rows; ``backdoor`` stamps ``TRIGGER`` on a share of the rows and
  labels them 1 (``apply_trigger`` is the same stamp, for measuring the attack's success);
* ``attack_mod`` (a Flower mod on the train handler): with ``delta = local - global``,
  ``scale`` replies ``global + s x delta`` (s = 10), ``sign-flip`` replies ``global - s x delta``
  (s = 1), ``noise`` replies ``local + N(0, std^2)`` per parameter (seeded by run, node and round).
  It sits outside the client-side DP clipping mod: a malicious member ignores the clipping it is
  asked for, so only server-side defences (robust aggregation, server-side clipping) bound it.

``simulated_attacks`` turns ``ExperimentConfig.attacks`` into the simulated nodes' node configs.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from consortia.config import ExperimentConfig
from consortia.config.attacks import ROW_ATTACKS, Attack, parse_behaviour
from consortia.data.consortium import load_federation
from consortia.errors import ConfigError
from consortia.verticals import get_vertical

#: the backdoor trigger: these (preprocessed) feature columns set to these values
TRIGGER_COLUMNS = (0, 1, 2)
TRIGGER_VALUES = (4.0, -4.0, 4.0)


def apply_trigger(x: np.ndarray) -> np.ndarray:
    """A copy of ``x`` with the trigger stamped on every row (columns beyond the width are skipped)."""
    stamped = np.array(x, dtype=np.float64, copy=True)
    for column, value in zip(TRIGGER_COLUMNS, TRIGGER_VALUES, strict=True):
        if column < stamped.shape[1]:
            stamped[:, column] = value
    return stamped


def poison_rows(
    node_config: Mapping[str, Any], x: np.ndarray, y: np.ndarray, *, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """The rows this node trains on: ``(x, y)`` themselves unless it flips labels or plants a backdoor.

    The poisoned rows are the same every round (drawn from ``key``, the run and institution);
    the inputs are never changed in place (they are cached for the whole run).
    """
    attack = Attack.from_node_config(node_config)
    if attack is None or attack.behaviour not in ROW_ATTACKS:
        return x, y
    rng = np.random.default_rng(zlib.crc32(f"{key}:attack-rows".encode()))
    chosen = np.sort(rng.choice(len(y), size=max(1, round(attack.value * len(y))), replace=False))
    y = np.array(y, copy=True)
    if attack.behaviour == "label-flip":
        y[chosen] = 1 - y[chosen]
        return x, y
    x = np.array(x, dtype=np.float64, copy=True)
    x[chosen] = apply_trigger(x[chosen])
    y[chosen] = 1
    return x, y


def attack_mod(seed_of: Callable[[Context], int]) -> Mod:
    """The train handler's mod: the reply's parameters as this node's behaviour makes them.

    ``seed_of(context)`` is the run's seed (the noise is drawn from it, the node and the round).
    Honest nodes, row attacks and error replies pass through unchanged.
    """

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        attack = Attack.from_node_config(context.node_config)
        if attack is None or attack.behaviour in ROW_ATTACKS or "arrays" not in message.content.array_records:
            return call_next(message, context)  # (a train message without a model: e.g. a secure-sum round)
        sent = message.content.array_records["arrays"].to_numpy_ndarrays()
        reply = call_next(message, context)
        if reply.has_error() or "arrays" not in reply.content.array_records:
            return reply
        record = reply.content.array_records["arrays"]
        local = record.to_numpy_ndarrays()
        if [a.shape for a in local] != [a.shape for a in sent]:
            return reply  # not a model update
        if not all(np.issubdtype(a.dtype, np.floating) for a in local):
            raise ConfigError(
                f"attack {attack.behaviour!r} changes model parameters: it needs real-valued ones "
                "(logistic, logistic_torch, mlp), not serialized trees"
            )
        server_round = int(message.content.config_records["config"].get("server-round", 0))  # type: ignore[arg-type]
        node = context.node_config.get("partition-id", context.node_config.get("data-path", ""))
        rng = np.random.default_rng(zlib.crc32(f"{seed_of(context)}:{node}:{server_round}:attack".encode()))
        poisoned = [attacked(attack, g, w, rng) for g, w in zip(sent, local, strict=True)]
        reply.content["arrays"] = ArrayRecord(
            {k: Array(np.asarray(p, dtype=w.dtype)) for k, p, w in zip(record.keys(), poisoned, local, strict=True)}
        )
        return reply

    return mod


def attacked(attack: Attack, sent: np.ndarray, local: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One array of the reply: the honest ``local`` array turned by ``attack`` (``sent``: the global one)."""
    delta = local - sent
    if attack.behaviour == "scale":
        return sent + attack.value * delta
    if attack.behaviour == "sign-flip":
        return sent - attack.value * delta
    return local + rng.normal(0.0, attack.value, size=local.shape)  # noise


def simulated_attacks(config: ExperimentConfig) -> dict[int, dict[str, str | float]]:
    """Partition index -> the node config entries of a simulated malicious node (``config.attacks``,
    keyed by index or institution name; names are looked up only when one is used)."""
    if not config.attacks:
        return {}
    names: list[str] = []
    if not all(key.isdigit() for key in config.attacks):
        names = load_federation(config, get_vertical(config.vertical)).names
    nodes: dict[int, dict[str, str | float]] = {}
    for key, spec in config.attacks.items():
        if key.isdigit():
            index = int(key)
        elif key in names:
            index = names.index(key)
        else:
            raise ConfigError(f"attacks: no institution named {key!r}; the run has: {', '.join(names)}")
        nodes[index] = parse_behaviour(spec).node_config()
    return nodes


def with_attacks(nodes: Mapping[int, Mapping[str, str | float]]) -> Mod:
    """A mod giving a simulated node its attack entries by its ``partition-id`` (for runtimes that
    make the node configs themselves, as Flower's Ray simulation does)."""

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        entries = nodes.get(int(context.node_config.get("partition-id", -1)), {})
        context.node_config = {**dict(context.node_config), **dict(entries)}
        result: Message = call_next(message, context)
        return result

    return mod


__all__ = ["apply_trigger", "attack_mod", "poison_rows", "simulated_attacks", "with_attacks"]
