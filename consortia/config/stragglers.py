"""Slow and failing members: a node's compute speed and failure rate, and their settings.

Like a malicious behaviour (``consortia.config.attacks``), speed and reliability are properties
of the node (its Flower node config), never of the server. Node config keys:

* ``compute-slowdown``: a float >= 1, how many times slower than this machine the node computes
  (default 1). The in-process engine keeps *virtual* time: a reply's time is the measured handler
  time x slowdown, and nothing sleeps. Anywhere else (a deployment, Ray) the node really sleeps
  ``(slowdown - 1) x`` its compute time after training, to rehearse a deadline on one machine;
* ``failure-rate``: a probability in [0, 1) that the node fails a train message (an error reply,
  as a crashed ClientApp gives), drawn from a generator seeded by (run seed, institution, round):
  the same seed fails the same institutions in the same rounds.

In ``ExperimentConfig.stragglers`` (simulation only) an institution's profile is written
``slowdown:4``, ``failure:0.2`` or both, comma-separated (``slowdown:4,failure:0.2``).
This module imports no Flower: the config layer checks profiles with it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from consortia.errors import ConfigError

SLOWDOWN_KEY = "compute-slowdown"
FAILURE_KEY = "failure-rate"
#: set by the in-process engine on the nodes it serves: time is virtual there, a node never sleeps
VIRTUAL_TIME_KEY = "virtual-time"
#: short names in ``ExperimentConfig.stragglers`` -> node config keys
SPEC_KEYS = {"slowdown": SLOWDOWN_KEY, "failure": FAILURE_KEY}


@dataclass(frozen=True)
class NodeProfile:
    """One node's compute slowdown (>= 1) and failure rate ([0, 1))."""

    slowdown: float = 1.0
    failure_rate: float = 0.0

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> NodeProfile:
        """The node's profile (defaults: full speed, never fails); a bad value is one ConfigError line."""
        slowdown = _number(node_config, SLOWDOWN_KEY, 1.0)
        failure = _number(node_config, FAILURE_KEY, 0.0)
        if not (math.isfinite(slowdown) and slowdown >= 1):
            raise ConfigError(f"node config {SLOWDOWN_KEY}={slowdown:g} must be a finite number >= 1")
        if not 0 <= failure < 1:
            raise ConfigError(f"node config {FAILURE_KEY}={failure:g} must be in [0, 1)")
        return cls(slowdown, failure)

    def node_config(self) -> dict[str, float]:
        """The node config entries that give a node this profile."""
        return {SLOWDOWN_KEY: self.slowdown, FAILURE_KEY: self.failure_rate}

    def fails(self, seed: int, institution: str, server_round: int) -> bool:
        """Whether this node fails round ``server_round``'s train message (seeded: reproducible)."""
        if self.failure_rate <= 0:
            return False
        rng = np.random.default_rng(zlib.crc32(f"{seed}:{institution}:{server_round}:failure".encode()))
        return bool(rng.random() < self.failure_rate)


def _number(node_config: Mapping[str, Any], key: str, default: float) -> float:
    raw = node_config.get(key, default)
    if raw in ("", None):
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"node config {key}={raw!r} must be a number") from None


def parse_profile(spec: str) -> NodeProfile:
    """``slowdown:4``, ``failure:0.2`` or ``slowdown:4,failure:0.2`` -> the NodeProfile it means."""
    entries: dict[str, str] = {}
    for part in str(spec).replace(" ", "").lower().split(","):
        if not part:
            continue
        name, sep, value = part.partition(":")
        if name not in SPEC_KEYS or not sep:
            raise ConfigError(f"straggler profile {spec!r}: write slowdown:FACTOR and/or failure:RATE, comma-separated")
        entries[SPEC_KEYS[name]] = value
    if not entries:
        raise ConfigError(f"straggler profile {spec!r} is empty: write slowdown:FACTOR and/or failure:RATE")
    return NodeProfile.from_node_config(entries)


__all__ = ["FAILURE_KEY", "SLOWDOWN_KEY", "VIRTUAL_TIME_KEY", "NodeProfile", "parse_profile"]
