"""Poisoned members: the malicious behaviours a node may be configured with, and their settings.

A behaviour is a property of the node (its Flower node config), never of the server: a real
member decides for itself, and in simulation the engines write ``ExperimentConfig.attacks`` into
the simulated nodes' configs. Node config keys:

* ``attack``: one of ``BEHAVIOURS`` (absent or "" = an honest node);
* ``attack-scale``: the factor on the update delta (``scale``: default 10; ``sign-flip``: default 1,
  i.e. the reply is ``global - 1 x (local - global)``);
* ``attack-noise-std``: the std of the Gaussian noise added to every parameter (``noise``: default 1);
* ``attack-fraction``: the share of training rows poisoned (``label-flip``: default 1, all rows;
  ``backdoor``: default 0.2).

In ``ExperimentConfig.attacks`` a behaviour is written ``name`` or ``name:value``, the value
setting that behaviour's one knob above (``scale:20``, ``noise:0.5``, ``backdoor:0.1``).
This module imports no Flower: the config layer checks names with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consortia.errors import ConfigError

#: behaviour -> (its knob's node config key, the knob's default)
BEHAVIOURS: dict[str, tuple[str, float]] = {
    "label-flip": ("attack-fraction", 1.0),
    "sign-flip": ("attack-scale", 1.0),
    "scale": ("attack-scale", 10.0),
    "noise": ("attack-noise-std", 1.0),
    "backdoor": ("attack-fraction", 0.2),
}
#: behaviours that change the training rows (the rest change the reply's parameters)
ROW_ATTACKS = ("label-flip", "backdoor")


@dataclass(frozen=True)
class Attack:
    """One node's malicious behaviour and its knob (``value``: scale, noise std or row fraction)."""

    behaviour: str
    value: float

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> Attack | None:
        """The node's behaviour, or None for an honest node; a bad name or value is one ConfigError line."""
        name = str(node_config.get("attack", "") or "").strip().lower()
        if not name:
            return None
        if name not in BEHAVIOURS:
            raise ConfigError(f"node config attack={name!r}: unknown behaviour; choose one of: {', '.join(BEHAVIOURS)}")
        key, default = BEHAVIOURS[name]
        raw = node_config.get(key, default)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"node config {key}={raw!r} must be a number (attack {name})") from None
        return cls(name, checked_value(name, key, value))

    def node_config(self) -> dict[str, str | float]:
        """The node config entries that give a node this behaviour."""
        return {"attack": self.behaviour, BEHAVIOURS[self.behaviour][0]: self.value}


def checked_value(name: str, key: str, value: float) -> float:
    """The knob's range: a fraction in (0, 1], a std >= 0, a finite non-zero scale."""
    if key == "attack-fraction":
        ok = 0 < value <= 1
    elif key == "attack-noise-std":
        ok = math.isfinite(value) and value >= 0
    else:
        ok = math.isfinite(value) and value != 0
    if not ok:
        wanted = {"attack-fraction": "in (0, 1]", "attack-noise-std": ">= 0"}.get(key, "finite and non-zero")
        raise ConfigError(f"node config {key}={value:g} must be {wanted} (attack {name})")
    return value


def parse_behaviour(spec: str) -> Attack:
    """``name`` or ``name:value`` (``ExperimentConfig.attacks``' values) -> the Attack it means."""
    name, _, raw = str(spec).strip().lower().partition(":")
    if name not in BEHAVIOURS:
        raise ConfigError(f"unknown attack {name!r}; choose one of: {', '.join(BEHAVIOURS)}")
    key = BEHAVIOURS[name][0]
    value = Attack.from_node_config({"attack": name, **({key: raw} if raw else {})})
    return value if value is not None else Attack(name, BEHAVIOURS[name][1])  # never None: the name is set


__all__ = ["BEHAVIOURS", "ROW_ATTACKS", "Attack", "parse_behaviour"]
