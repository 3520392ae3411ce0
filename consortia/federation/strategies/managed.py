"""One wrapper for what every Consortia run needs from any Flower strategy.

Flower's DP strategies wrap another strategy; this does the same for three run-level concerns,
instead of patching methods onto Flower's objects:

* **seeded sampling**: with ``fraction_train < 1`` Flower samples nodes with the unseeded
  module-level ``random``; seeding it from (run seed, round) before each configure step gives the
  same sample for the same seed, also after a resume. Flower samples node ids; the engines give
  institutions stable node ids (in order), so the sample is the same institutions;
* **continued rounds**: a resumed run continues the numbering that seeds local training
  (``server-round``) and that server optimizers use (FedAdam's bias correction);
* **server state**: FedOpt's moments and FedAvgM's momentum, read for checkpoints and restored
  on resume (Flower keeps them as plain attributes and has no API for them).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

#: server-side strategy state (FedOpt moments, FedAvgM momentum) that a resume must restore
STATE_ATTRIBUTES = ("m_t", "v_t", "momentum_vector")

StrategyState = dict[str, dict[str, np.ndarray] | list[np.ndarray]]


def sampling_seed(seed: int, step: str, server_round: int) -> int:
    key = f"{seed}:sampling-{step}:{server_round}"
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


class ManagedStrategy(Strategy):
    """``inner`` with seeded node sampling, a round offset and readable server state."""

    def __init__(self, inner: Strategy, *, seed: int, round_offset: int = 0) -> None:
        self.inner = inner
        self.seed = seed
        self.round_offset = round_offset

    def __getattr__(self, name: str) -> Any:  # e.g. ``registered_nodes`` of a cyclic strategy
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        shifted = server_round + self.round_offset
        random.seed(sampling_seed(self.seed, "configure_train", shifted))
        return self.inner.configure_train(shifted, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round + self.round_offset, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        shifted = server_round + self.round_offset
        random.seed(sampling_seed(self.seed, "configure_evaluate", shifted))
        return self.inner.configure_evaluate(shifted, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round + self.round_offset, replies)

    def summary(self) -> None:
        self.inner.summary()

    # -- server state for checkpoints ------------------------------------------------------------
    def state_dict(self) -> StrategyState:
        """The inner strategy's server-side optimizer state, as arrays."""
        state: StrategyState = {}
        for attr in STATE_ATTRIBUTES:
            value = getattr(self.inner, attr, None)
            if isinstance(value, dict):
                state[attr] = {k: np.asarray(v) for k, v in value.items()}
            elif isinstance(value, list):
                state[attr] = [np.asarray(v) for v in value]
        return state

    def load_state_dict(self, state: StrategyState) -> None:
        for attr, value in state.items():
            if attr not in STATE_ATTRIBUTES:
                raise ValueError(f"unknown strategy state '{attr}'")
            setattr(self.inner, attr, value)
