"""In-process engine: a Flower ``Grid`` that hands each message straight to the ClientApp.

Flower's strategies accept any ``flwr.serverapp.Grid``. This one keeps Flower's strategies,
messages, records and mods, and drops the process/thread hops of a simulation runtime, so a
round costs about what the training costs (see benchmarks/engine_overhead.py). Messages are
delivered in node order, and nodes get fixed ids (``FIRST_NODE_ID + partition``) unless
``node_ids`` are given: other ids (random ones, as Ray and a deployment give) must not change
what a seed computes, and tests check that through this parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from consortia.config import ExperimentConfig
from consortia.config.stragglers import VIRTUAL_TIME_KEY, NodeProfile
from consortia.federation.attacks import simulated_attacks
from consortia.federation.client import build_client_app
from consortia.federation.engines.collect import collecting
from consortia.federation.grids import detached
from consortia.federation.secure.he import release_model, simulated_key
from consortia.federation.server import ServerHooks, build_server_app
from consortia.federation.stragglers import simulated_stragglers
from consortia.privacy.disclosure import DISCLOSE_ROWS
from consortia.runs.results import FederatedOutcome

FIRST_NODE_ID = 1001

#: what a node runs: a ClientApp, or anything called like one (a test's recording wrapper)
ClientFn = ClientApp | Callable[[Message, Context], Message]


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process, each with its own Context.

    ``node_ids[i]`` is the id of the node serving ``node_configs[i]`` (default: consecutive ids
    from ``FIRST_NODE_ID``); ``get_node_ids`` lists them in ascending id order, as a SuperLink
    may, so ids that do not follow the partitions reorder the listing as they would under Ray.

    Time is virtual: nothing sleeps, and ``reply_seconds`` is a reply's measured handler time x
    its node's ``compute-slowdown`` (node config; ``consortia.config.stragglers``), what a round
    deadline compares (``consortia.federation.deadline``). Nodes are told (``virtual-time``).
    """

    def __init__(
        self,
        client_app: ClientFn,
        node_configs: list[dict],
        run_config: dict,
        run_id: int = 1,
        node_ids: Sequence[int] | None = None,
    ):
        ids = list(node_ids) if node_ids is not None else [FIRST_NODE_ID + i for i in range(len(node_configs))]
        if len(ids) != len(node_configs) or len(set(ids)) != len(ids):
            raise ValueError("node_ids needs one distinct id per node config")
        self.client_app = client_app
        self._run = Run.create_empty(run_id=run_id)
        self.contexts = {
            node_id: Context(
                run_id=run_id, node_id=node_id, node_config={**node_config, VIRTUAL_TIME_KEY: True},
                state=RecordDict(), run_config=dict(run_config),
            )
            for node_id, node_config in zip(ids, node_configs, strict=True)
        }  # fmt: skip
        self._replies: dict[str, Message] = {}
        self._slowdown = {
            node: NodeProfile.from_node_config(c.node_config).slowdown for node, c in self.contexts.items()
        }
        self._seconds: dict[str, float] = {}  # reply message id -> virtual seconds (the latest push's replies)

    # -- Grid API --------------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        self._seconds = {}
        for message in sorted(messages, key=lambda m: m.metadata.dst_node_id):
            message.metadata.__dict__["_message_id"] = str(uuid4())
            context = self.contexts[message.metadata.dst_node_id]
            # Flower's strategies give every node the same RecordDict, and a node's mods change what they
            # receive (SecAgg+ pops its stage, HE swaps ciphertexts for the model): each node gets its own
            # records, as over a wire (the arrays' bytes are shared, never written)
            message.content = detached(message.content)
            # A ClientApp exception propagates: in one process a failing institution is a bug
            # or bad data to fix, not a network event to tolerate.
            started = time.perf_counter()
            reply = self.client_app(message, context)
            reply.metadata.__dict__["_message_id"] = str(uuid4())
            self._seconds[reply.metadata.message_id] = (time.perf_counter() - started) * self._slowdown[context.node_id]
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    def reply_seconds(self, reply: Message) -> float | None:
        """The virtual time ``reply`` took (measured x the node's slowdown); None if not a reply of the latest push."""
        return self._seconds.get(reply.metadata.message_id)


def run(
    config: ExperimentConfig,
    hooks: ServerHooks | None = None,
    *,
    node_ids: Sequence[int] | None = None,
    client_app: ClientFn | None = None,
) -> FederatedOutcome:
    """Run the federation for ``config`` in this process and return its outcome.

    ``node_ids`` (one per institution, in partition order) and ``client_app`` (e.g. a wrapper that
    records what each node is asked) replace the defaults: for tests.
    """
    server_hooks, outcome = collecting(hooks)
    run_config = config.to_run_config()
    server_app = build_server_app(hooks=server_hooks)
    # the simulated nodes' own policy: per-row scores only for the exact pooled-metrics check
    disclose = {DISCLOSE_ROWS: bool(server_hooks.report_scores)}
    attacked = simulated_attacks(config)  # simulated malicious members: their own node config
    slow = simulated_stragglers(config)  # simulated slow or failing members: compute-slowdown, failure-rate
    with simulated_key(config.privacy.aggregation) as (key, secret):  # HE: the institutions' shared key
        node_configs = [
            {
                "partition-id": i,
                "num-partitions": config.institutions,
                **disclose,
                **attacked.get(i, {}),
                **slow.get(i, {}),
                **key,
            }
            for i in range(config.institutions)
        ]
        grid = InProcessGrid(client_app or build_client_app(), node_configs, run_config, node_ids=node_ids)
        start_server_task(grid)
        server_context = Context(
            run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={},
            state=RecordDict(), run_config=run_config,
        )  # fmt: skip
        server_app(grid, server_context)
        return release_model(outcome[0], secret) if secret is not None else outcome[0]


def start_server_task(grid: InProcessGrid) -> None:
    """Messages created by strategies take their sender identity from the process's task
    identity; in Flower's runtimes the runtime sets it, here we are the runtime."""
    TaskIdentity.run_id = grid.run.run_id
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
