"""One wrapper for what every Consortia run needs from any Flower strategy.

Flower's DP strategies wrap another strategy; this does the same for four run-level concerns,
instead of patching methods onto Flower's objects:

* **seeded sampling, by institution**: with ``fraction_train < 1`` Flower samples nodes with the
  unseeded module-level ``random`` (``random.sample`` over the grid's node ids). Seeding it from
  (run seed, round) before each configure step fixes the *positions* drawn; the strategy sees the
  grid's node ids in institution order (``institutions``: node id -> name, learnt in the summary
  phase), so the positions are the same institutions whatever ids the runtime gave the nodes
  (Ray and a deployment give random ones). The cyclic strategy takes its turn order from the
  same listing;
* **replies in institution order**: aggregation sums in the order of the replies it is handed;
  they are sorted by institution, not left in node-id or arrival order, so the same seed gives
  the same bits;
* **continued rounds**: a resumed run continues the numbering that seeds local training
  (``server-round``) and that server optimizers use (FedAdam's bias correction);
* **server state**: FedOpt's moments and FedAvgM's momentum, read for checkpoints and restored
  on resume (Flower keeps them as plain attributes and has no API for them).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from consortia.federation.grids import DelegatingGrid

#: server-side strategy state (FedOpt moments, FedAvgM momentum) that a resume must restore
STATE_ATTRIBUTES = ("m_t", "v_t", "momentum_vector")

StrategyState = dict[str, dict[str, np.ndarray] | list[np.ndarray]]
NodeOrder = Callable[[int], tuple[int, str, int]]


def sampling_seed(seed: int, step: str, server_round: int) -> int:
    key = f"{seed}:sampling-{step}:{server_round}"
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def institution_order(institutions: Mapping[int, str]) -> NodeOrder:
    """Sort key of a node id: known institutions by name, then nodes not seen in the summary
    phase (a reconnected node has a new id) by id."""

    def key(node_id: int) -> tuple[int, str, int]:
        name = institutions.get(node_id)
        return (0, name, node_id) if name is not None else (1, "", node_id)

    return key


class InstitutionOrderedGrid(DelegatingGrid):
    """A view of ``grid`` whose ``get_node_ids`` lists the nodes in institution order."""

    def __init__(self, grid: Grid, order: NodeOrder) -> None:
        super().__init__(grid)
        self.order = order

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self.inner.get_node_ids(), key=self.order)


class ManagedStrategy(Strategy):
    """``inner`` with seeded sampling by institution, ordered replies, a round offset and
    readable server state. Without ``institutions`` nodes are ordered by id."""

    def __init__(
        self, inner: Strategy, *, seed: int, round_offset: int = 0, institutions: Mapping[int, str] | None = None
    ) -> None:
        self.inner = inner
        self.seed = seed
        self.round_offset = round_offset
        self.order = institution_order(dict(institutions or {}))

    def __getattr__(self, name: str) -> Any:  # e.g. ``registered_nodes`` of a cyclic strategy
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _in_order(self, replies: Iterable[Message]) -> list[Message]:
        return sorted(replies, key=lambda m: self.order(m.metadata.src_node_id))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        shifted = server_round + self.round_offset
        random.seed(sampling_seed(self.seed, "configure_train", shifted))
        return self.inner.configure_train(shifted, arrays, config, InstitutionOrderedGrid(grid, self.order))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round + self.round_offset, self._in_order(replies))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        shifted = server_round + self.round_offset
        random.seed(sampling_seed(self.seed, "configure_evaluate", shifted))
        return self.inner.configure_evaluate(shifted, arrays, config, InstitutionOrderedGrid(grid, self.order))

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round + self.round_offset, self._in_order(replies))

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
