"""The round deadline: train replies later than ``round_deadline_s`` are dropped, and every
round's drop-outs (late or failed) are written down by institution.

``DeadlineGrid`` wraps the Grid the strategy's rounds run on; only train messages are affected:

* **time**: where the Grid underneath keeps virtual time (the in-process engine: a reply's time
  is its measured handler time x the node's ``compute-slowdown``, ``VirtualClock``), a reply
  later than the deadline is removed from what the strategy receives, as if it never arrived;
  anywhere else (Ray, a deployment) the deadline is the ``timeout`` of Flower's
  ``send_and_receive``: what has not arrived by then is not waited for;
* **failures**: error replies (a node that crashed, or a ``failure-rate`` draw) pass through;
  Flower's strategies skip them, and they count as dropped;
* **the minimum**: with a deadline, a round whose on-time replies are fewer than
  ``minimum`` (``min_institutions``; default every sampled institution) stops the run with one
  ``FederationError`` line, instead of averaging too few;
* **the record**: ``dropped[server_round]`` is the sorted list of institutions that were asked to
  train and did not contribute (late or failed); the server puts it in the round's RoundRecord.

Weighting stays what the strategy does with the replies that arrived: FedAvg's mean weighted by
``num-examples`` over the on-time institutions only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from flwr.app import Message, MessageType
from flwr.serverapp import Grid

from consortia.config import ExperimentConfig
from consortia.errors import FederationError
from consortia.federation.grids import DelegatingGrid


@runtime_checkable
class VirtualClock(Protocol):
    """A Grid that knows how long (in virtual seconds) each reply took: the in-process engine."""

    def reply_seconds(self, reply: Message) -> float | None: ...


def find_clock(grid: Grid) -> VirtualClock | None:
    """The virtual clock under ``grid``'s chain of wrappers (``DelegatingGrid.inner``), if any."""
    current: object | None = grid
    while current is not None:
        if isinstance(current, VirtualClock):
            return current
        current = getattr(current, "inner", None)
    return None


class DeadlineGrid(DelegatingGrid):
    """Train replies later than ``deadline_s`` dropped; each round's drop-outs recorded by name.

    ``deadline_s`` None: nothing is dropped for time (failures are still recorded). ``names``:
    node id -> institution (nodes not in it are named ``node-<id>``). ``minimum`` None: every
    sampled institution must make the deadline."""

    def __init__(
        self,
        grid: Grid,
        deadline_s: float | None,
        *,
        names: Mapping[int, str] | None = None,
        minimum: int | None = None,
    ) -> None:
        super().__init__(grid)
        self.deadline_s = deadline_s
        self.names = dict(names or {})
        self.minimum = minimum
        self.clock = find_clock(grid)
        self.dropped: dict[int, list[str]] = {}
        self.late: dict[int, list[str]] = {}

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        sent = list(messages)
        if not sent or any(m.metadata.message_type != MessageType.TRAIN for m in sent):
            return self.inner.send_and_receive(sent, timeout=timeout)
        wait = timeout
        if self.deadline_s is not None and self.clock is None:  # real time: the deadline is the wait
            wait = self.deadline_s if timeout is None else min(timeout, self.deadline_s)
        replies = list(self.inner.send_and_receive(sent, timeout=wait))
        on_time = [r for r in replies if not self._late(r)]
        late = {r.metadata.src_node_id for r in replies} - {r.metadata.src_node_id for r in on_time}
        contributed = {r.metadata.src_node_id for r in on_time if not r.has_error()}
        server_round = _server_round(sent[0])
        asked = [m.metadata.dst_node_id for m in sent]
        self.late[server_round] = sorted(self._name(n) for n in late)
        self.dropped[server_round] = sorted(self._name(n) for n in asked if n not in contributed)
        if self.deadline_s is not None:
            needed = min(self.minimum or len(asked), len(asked))
            if len(contributed) < needed:
                raise FederationError(
                    f"round {server_round}: only {len(contributed)} of {len(asked)} institutions returned a model "
                    f"within the {self.deadline_s:g} s deadline (dropped: {', '.join(self.dropped[server_round])}); "
                    f"the round needs {needed}: lower min_institutions or raise round_deadline_s"
                )
        return on_time

    def dropped_in(self, server_round: int) -> list[str]:
        """The institutions asked to train in ``server_round`` that did not contribute (late or failed)."""
        return list(self.dropped.get(server_round, []))

    def _late(self, reply: Message) -> bool:
        if self.deadline_s is None or self.clock is None or reply.has_error():
            return False
        seconds = self.clock.reply_seconds(reply)
        return seconds is not None and seconds > self.deadline_s

    def _name(self, node_id: int) -> str:
        return self.names.get(node_id, f"node-{node_id}")


def reports_dropped(config: ExperimentConfig) -> bool:
    """Whether the run's rounds may go on without some institutions: then each round's metrics
    count the dropped ones (``participation.dropped``); otherwise the metrics keep their keys."""
    return bool(config.round_deadline_s or config.stragglers or config.min_institutions is not None)


def _server_round(message: Message) -> int:
    config = message.content.config_records.get("config")
    return int(config.get("server-round", 0)) if config is not None else 0  # type: ignore[arg-type]


__all__ = ["DeadlineGrid", "VirtualClock", "find_clock", "reports_dropped"]
