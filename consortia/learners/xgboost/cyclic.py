"""Flower's FedXgbCyclic with a reproducible visiting order.

Flower's ``FedXgbCyclic`` fixes the order in which institutions take turns when it first sees
the nodes, and it first sees them through ``random.sample`` (unseeded), so two runs with the
same seed visit institutions in different orders and end with different models. This
subclass registers unseen nodes in ascending node id order first (in simulation: the
institutions' order); everything else is Flower's.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedXgbCyclic


class FedXgbCyclicOrdered(FedXgbCyclic):
    """``FedXgbCyclic`` whose turn order is the nodes' id order, not a random draw."""

    def _reorder_nodes(self, node_ids: list[int]) -> list[int]:
        next_index = max(self.registered_nodes.values(), default=0) + 1
        for nid in sorted(node_ids):
            if nid not in self.registered_nodes:
                self.registered_nodes[nid] = next_index
                next_index += 1
        return super()._reorder_nodes(node_ids)
