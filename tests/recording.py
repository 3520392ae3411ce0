"""A ClientApp wrapper that records what each institution was asked and answered (tests only).

The in-process engine calls whatever it is given like a ClientApp, so wrapping the real one
shows which institutions trained in which round, with which config, without touching the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flwr.app import Context, Message, MessageType

from consortia.config import ExperimentConfig
from consortia.federation.client import build_client_app
from consortia.federation.engines import inprocess
from consortia.runs.results import FederatedOutcome


@dataclass
class Call:
    message_type: str
    partition: int  # the institution: node ids may be anything, partitions are fixed
    server_round: int
    config: dict
    reply: Message


@dataclass
class Recording:
    """Calls the real ClientApp and keeps one ``Call`` per message."""

    app: object = field(default_factory=build_client_app)
    calls: list[Call] = field(default_factory=list)

    def __call__(self, message: Message, context: Context) -> Message:
        config = dict(message.content["config"]) if "config" in message.content else {}
        reply = self.app(message, context)  # type: ignore[operator]
        partition = int(context.node_config["partition-id"])  # type: ignore[arg-type]
        server_round = int(config.get("server-round", 0))  # type: ignore[arg-type]
        self.calls.append(Call(message.metadata.message_type, partition, server_round, config, reply))
        return reply

    def trained(self) -> dict[int, list[int]]:
        """Server round -> partitions that trained in it (sorted)."""
        rounds: dict[int, list[int]] = {}
        for call in self.calls:
            if call.message_type == MessageType.TRAIN:
                rounds.setdefault(call.server_round, []).append(call.partition)
        return {r: sorted(p) for r, p in sorted(rounds.items())}

    def of_type(self, message_type: str) -> list[Call]:
        return [c for c in self.calls if c.message_type == message_type]


def run_recorded(config: ExperimentConfig, node_ids: Sequence[int] | None = None) -> tuple[FederatedOutcome, Recording]:
    """The in-process engine with a recording ClientApp (and, optionally, other node ids)."""
    recording = Recording()
    outcome = inprocess.run(config, node_ids=node_ids, client_app=recording)
    return outcome, recording
