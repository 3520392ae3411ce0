"""Flower's FedXgbCyclic with a reproducible visiting order.

Flower's ``FedXgbCyclic`` fixes the order in which institutions take turns when it first sees
the nodes, and it first sees them through ``random.sample`` (unseeded), so two runs with the
same seed visit institutions in different orders and end with different models. This
subclass registers unseen nodes in the order the grid lists them: under Consortia's
``ManagedStrategy`` that is institution order (by name), whatever node ids the runtime gave
(Ray and deployments give random ones). Asked directly, without a grid, it falls back to
ascending node ids. Everything else is Flower's.
"""

from __future__ import annotations

from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedXgbCyclic


class FedXgbCyclicOrdered(FedXgbCyclic):
    """``FedXgbCyclic`` whose turn order is the grid's node order, not a random draw."""

    #: node ids as the grid last listed them (institution order under ManagedStrategy)
    _listed: tuple[int, ...] = ()

    def _make_sampling(self, grid: Grid, server_round: int, configure_type: str) -> list[int]:
        self._listed = tuple(grid.get_node_ids())
        return super()._make_sampling(grid, server_round, configure_type)

    def _reorder_nodes(self, node_ids: list[int]) -> list[int]:
        position = {nid: i for i, nid in enumerate(self._listed)}
        next_index = max(self.registered_nodes.values(), default=0) + 1
        for nid in sorted(node_ids, key=lambda n: (position.get(n, len(position)), n)):
            if nid not in self.registered_nodes:
                self.registered_nodes[nid] = next_index
                next_index += 1
        return super()._reorder_nodes(node_ids)
