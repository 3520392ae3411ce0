"""A Grid wrapper that turns "waiting forever for nodes" into a clear error.

Flower's strategies wait, without a deadline, until ``min_available_nodes`` nodes are connected
before they sample a round. When SuperNodes die and fewer than the minimum remain, the run
would hang; this wrapper raises ``FederationError`` once the count has stayed below the
minimum for ``timeout_s`` seconds. Above the minimum it changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

from consortia.errors import FederationError


class MinimumNodesGrid(Grid):
    def __init__(self, grid: Grid, minimum: int, timeout_s: float) -> None:
        self.inner = grid
        self.minimum = minimum
        self.timeout_s = timeout_s
        self._below_since: float | None = None

    def get_node_ids(self) -> Iterable[int]:
        node_ids = list(self.inner.get_node_ids())
        if len(node_ids) >= self.minimum:
            self._below_since = None
        else:
            now = time.monotonic()
            self._below_since = self._below_since or now
            if now - self._below_since > self.timeout_s:
                raise FederationError(
                    f"only {len(node_ids)} institution(s) still connected, below the minimum of "
                    f"{self.minimum}; waited {self.timeout_s:.0f} s for others to come back "
                    "(lower min_institutions to go on with fewer)"
                )
        return node_ids

    # -- everything else is the wrapped grid's ---------------------------------------------------
    def set_run(self, run) -> None:
        self.inner.set_run(run)

    @property
    def run(self):
        return self.inner.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.inner.send_and_receive(messages, timeout=timeout)
