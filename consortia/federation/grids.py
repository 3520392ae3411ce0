"""Grid wrappers: each hands every call to the wrapped Grid and changes one thing.

* ``MinimumNodesGrid``: Flower's strategies wait, without a deadline, until
  ``min_available_nodes`` nodes are connected. When SuperNodes die and fewer than the minimum
  remain, the run would hang; this raises ``FederationError`` once the count has stayed below the
  minimum for ``timeout_s`` seconds. Above the minimum it changes nothing.
* ``RecordingGrid``: writes down what every reply carried (the run's disclosure log).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from consortia.errors import FederationError


def detached(content: RecordDict) -> RecordDict:
    """A copy of ``content`` whose records are new objects (no array data copied): Flower's strategies
    give every node the same RecordDict, and whoever changes a message's records must not change all."""
    out = RecordDict()
    for key, record in content.items():
        if isinstance(record, ArrayRecord):
            out[key] = ArrayRecord(dict(record.items()))
        elif isinstance(record, ConfigRecord):
            out[key] = ConfigRecord(dict(record))
        elif isinstance(record, MetricRecord):
            out[key] = MetricRecord(dict(record))
        else:  # pragma: no cover - RecordDict holds only these three
            out[key] = record
    return out


class DelegatingGrid(Grid):
    """A Grid that hands every call to ``inner``: subclasses override only what they change."""

    def __init__(self, grid: Grid) -> None:
        self.inner = grid

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

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


class MinimumNodesGrid(DelegatingGrid):
    def __init__(self, grid: Grid, minimum: int, timeout_s: float) -> None:
        super().__init__(grid)
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


class RecordingGrid(DelegatingGrid):
    """A Grid wrapper that writes down what every reply carried: the run's disclosure log.

    Per node and message type: how many replies, which records with which fields (array names
    and shapes, metric and config keys) and how many bytes of payload, so the run folder can say,
    per institution, exactly what left it. Values are never recorded.
    """

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        self.log: dict[int, dict[str, dict[str, Any]]] = {}
        self._pushed: dict[str, str] = {}  # message id -> message type, until its reply is pulled

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        sent = list(messages)
        kinds = {m.metadata.dst_node_id: m.metadata.message_type for m in sent}
        replies = list(self.inner.send_and_receive(sent, timeout=timeout))
        for reply in replies:
            self._note_reply(kinds.get(reply.metadata.src_node_id, reply.metadata.message_type), reply)
        return replies

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Phases that push and pull themselves (histogram XGBoost's watch) are logged as well."""
        sent = list(messages)
        ids = list(self.inner.push_messages(sent))
        self._pushed.update({mid: m.metadata.message_type for mid, m in zip(ids, sent, strict=True)})
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.inner.pull_messages(message_ids))
        for reply in replies:
            self._note_reply(self._pushed.pop(reply.metadata.reply_to_message_id, reply.metadata.message_type), reply)
        return replies

    def note_channel(self, node: int, channel: str, fields: list[str], *, encrypted: bool) -> None:
        """What a node sent outside Flower's messages (histogram XGBoost's federated communicator), so
        that the disclosure log lists it beside the replies; its bytes are not counted."""
        entry = self.log.setdefault(node, {}).setdefault(channel, {"replies": 0, "bytes": 0, "records": {}})
        entry["records"]["all-reduce"] = {"kind": "outside Flower", "fields": fields, "tls": encrypted}

    def _note_reply(self, kind: str, reply: Message) -> None:
        node = reply.metadata.src_node_id
        if reply.has_error():  # an error's reason text leaves the node too (Flower forwards exceptions)
            self._note_error(node, kind, reply.error.reason)
        else:
            self._note(node, kind, reply.content)

    def _note_error(self, node: int, message_type: str, reason: str | None) -> None:
        entry = self.log.setdefault(node, {}).setdefault(message_type, {"replies": 0, "bytes": 0, "records": {}})
        entry["replies"] += 1
        entry["records"]["error"] = {"kind": "error", "fields": ["code", "reason"]}
        entry["bytes"] += len(reason or "")

    def _note(self, node: int, message_type: str, content: RecordDict) -> None:
        entry = self.log.setdefault(node, {}).setdefault(message_type, {"replies": 0, "bytes": 0, "records": {}})
        entry["replies"] += 1
        for name, record in content.items():
            fields, size = describe_record(record)
            entry["records"][name] = fields
            entry["bytes"] += size


def describe_record(record: Any) -> tuple[dict[str, Any], int]:
    """A record's kind and fields (array shapes, metric and config keys) and its payload bytes."""
    if isinstance(record, ArrayRecord):
        shapes = {key: list(array.shape) for key, array in record.items()}
        return {"kind": "arrays", "fields": shapes}, sum(len(array.data) for array in record.values())
    if isinstance(record, MetricRecord):
        return {"kind": "metrics", "fields": sorted(record)}, 8 * len(record)
    if isinstance(record, ConfigRecord):
        size = sum(len(v) if isinstance(v, str | bytes) else 8 for v in record.values())
        return {"kind": "config", "fields": sorted(record)}, size
    return {"kind": type(record).__name__, "fields": []}, 0
