"""In-process engine: a Flower ``Grid`` that hands each message straight to the ClientApp.

Flower's strategies accept any ``flwr.serverapp.Grid``. This one keeps Flower's strategies,
messages, records and mods, and drops the process/thread hops of a simulation runtime, so a
round costs about what the training costs (see benchmarks/engine_overhead.py). Messages are
delivered in node order, and nodes get fixed ids, so a run is deterministic for its seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from consortia.config import ExperimentConfig
from consortia.federation.client import build_client_app
from consortia.federation.engines.collect import collecting
from consortia.federation.server import ServerHooks, build_server_app
from consortia.runs.results import FederatedOutcome

FIRST_NODE_ID = 1001


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process, each with its own Context."""

    def __init__(self, client_app: ClientApp, node_configs: list[dict], run_config: dict, run_id: int = 1):
        self.client_app = client_app
        self._run = Run.create_empty(run_id=run_id)
        self.contexts = {
            FIRST_NODE_ID + i: Context(
                run_id=run_id, node_id=FIRST_NODE_ID + i, node_config=node_config,
                state=RecordDict(), run_config=dict(run_config),
            )
            for i, node_config in enumerate(node_configs)
        }  # fmt: skip
        self._replies: dict[str, Message] = {}

    # -- Grid API --------------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in sorted(messages, key=lambda m: m.metadata.dst_node_id):
            message.metadata.__dict__["_message_id"] = str(uuid4())
            context = self.contexts[message.metadata.dst_node_id]
            # A ClientApp exception propagates: in one process a failing institution is a bug
            # or bad data to fix, not a network event to tolerate.
            reply = self.client_app(message, context)
            reply.metadata.__dict__["_message_id"] = str(uuid4())
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run(config: ExperimentConfig, hooks: ServerHooks | None = None) -> FederatedOutcome:
    """Run the federation for ``config`` in this process and return its outcome."""
    server_hooks, outcome = collecting(hooks)
    run_config = config.to_run_config()
    client_app = build_client_app()
    server_app = build_server_app(hooks=server_hooks)
    node_configs = [{"partition-id": i, "num-partitions": config.institutions} for i in range(config.institutions)]
    grid = InProcessGrid(client_app, node_configs, run_config)
    # Messages created by strategies take their sender identity from the process's task
    # identity; in Flower's runtimes the runtime sets it, here we are the runtime.
    TaskIdentity.run_id = grid.run.run_id
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    server_context = Context(
        run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={},
        state=RecordDict(), run_config=run_config,
    )  # fmt: skip
    server_app(grid, server_context)
    return outcome[0]
