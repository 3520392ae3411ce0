"""SecAgg+ under Message-API strategies: Flower's own ``SecAggPlusWorkflow`` and ``secaggplus_mod``.

Flower 1.42 has SecAgg+ only on its legacy path (a ``LegacyContext`` and a legacy strategy's
``configure_fit`` / ``aggregate_fit``). This module bridges it, on both sides, without touching
Flower's protocol code:

* server: ``SecAggPlusGrid`` wraps the Grid a Message-API strategy trains on. When the strategy
  sends its train messages, the grid runs one SecAgg+ round (setup, share keys, collect masked
  vectors, unmask: four messages per institution) and hands the strategy, for each institution
  that took part, a reply carrying the consortium's weighted average instead of that
  institution's update, with the institution's own (clear) row count and training metrics. FedAvg,
  FedProx, FedAdam ... then aggregate exactly as they would (the mean of equal arrays is the
  array); strategies that need individual updates (median, Krum ...) are refused beforehand.
* client: ``secagg_train_mods`` puts ``secaggplus_mod`` and a layout adapter around the train
  handler, which stays a Message-API handler. The adapter sends the *update* (local model minus
  global model), whose coordinates are small, into SecAgg+'s quantisation range and refuses one
  that would be clipped; the server adds the global model back.

``secure_sum`` runs the same workflow over integer vectors (summaries, histograms) with ranges
under which quantisation is exact (``consortia.privacy.secure_sum``).

What the server sees: masked vectors (uniform in [0, 2^32)), the sum, each institution's
``num_examples`` and training metrics. SecAgg+'s masks come from NumPy's Mersenne Twister seeded
with 32 bits of each 32-byte shared secret: not a cryptographic generator (Flower's choice).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.error import Error
from flwr.app.message_type import MessageType
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import Mod
from flwr.common import Code, FitIns, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE
from flwr.server import ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from consortia.errors import ConfigError, FederationError
from consortia.federation.grids import DelegatingGrid
from consortia.privacy.secure_sum import integer_workflow_ranges

#: train-message config keys of this protocol
SECURE_SUM = "secure-sum"  # what to sum instead of training (the client's secure-sum handler answers)
WEIGHT_KEY = "secagg-weight-key"  # which reply metric is the institution's aggregation weight
SEED_KEY = "secagg-seed"  # seeds the client's stochastic quantisation: the same digits in every engine
#: the error code of a reply a drop-out leaves behind
DROPPED = 1


@dataclass
class SecAggRound:
    """The outcome of one SecAgg+ round: the weighted mean of what the active institutions sent."""

    mean: list[np.ndarray]
    fitres: dict[int, FitRes] = field(default_factory=dict)  # node -> its clear metrics and weight

    @property
    def active(self) -> list[int]:
        return sorted(self.fitres)


class _Collector(LegacyStrategy):
    """The legacy strategy the workflow drives: hands out each node's instructions, keeps the result."""

    def __init__(self, grid: Grid, instructions: Mapping[int, FitIns]) -> None:
        self.grid = grid
        self.instructions = dict(instructions)
        self.result: SecAggRound | None = None

    def initialize_parameters(self, client_manager):  # pragma: no cover - not used by the workflow
        return None

    def configure_fit(self, server_round, parameters, client_manager):
        run_id = self.grid.run.run_id
        return [(GridClientProxy(nid, self.grid, run_id), fitins) for nid, fitins in sorted(self.instructions.items())]

    def aggregate_fit(self, server_round, results, failures):
        # every result carries the same (aggregated) parameters; the workflow put them there
        if results:
            mean = parameters_to_ndarrays(results[0][1].parameters)
            self.result = SecAggRound(mean, {proxy.node_id: res for proxy, res in results})
        return None, {}

    def configure_evaluate(self, server_round, parameters, client_manager):  # pragma: no cover
        return []

    def aggregate_evaluate(self, server_round, results, failures):  # pragma: no cover
        return None, {}

    def evaluate(self, server_round, parameters):  # pragma: no cover
        return None


def run_secagg_round(
    grid: Grid,
    instructions: Mapping[int, FitIns],
    *,
    server_round: int,
    max_weight: float,
    clipping_range: float,
    quantization_range: int,
    reconstruction: float,
    timeout: float | None,
    seed: int,
) -> SecAggRound:
    """One round of Flower's SecAgg+ workflow over ``grid``; the weighted mean or a FederationError."""
    collector = _Collector(grid, instructions)
    base = Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, ServerConfig(num_rounds=1), strategy=collector, client_manager=SimpleClientManager())
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: server_round})
    context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord()
    n = len(instructions)
    workflow = SecAggPlusWorkflow(
        num_shares=1.0 if n < 8 else 0.6,  # everyone a neighbour of everyone in small consortia
        reconstruction_threshold=reconstruction,
        max_weight=max_weight,
        clipping_range=clipping_range,
        quantization_range=quantization_range,
        timeout=timeout,
    )
    random.seed(seed)  # the workflow picks neighbours with the global `random`
    workflow(grid, context)
    if collector.result is None:
        raise FederationError(
            f"secure aggregation (SecAgg+) halted in round {server_round}: too few institutions answered the "
            "key-sharing stages to recover the masks; no update was applied (see the node logs)"
        )
    return collector.result


def _fitins(content: RecordDict, extra: Mapping[str, Any]) -> FitIns:
    config: dict[str, Any] = dict(content.config_records["config"]) if "config" in content.config_records else {}
    parameters = compat.arrayrecord_to_parameters(content.array_records["arrays"], keep_input=True)
    return FitIns(parameters, {**config, **dict(extra)})


class SecAggPlusGrid(DelegatingGrid):
    """Train messages go through one SecAgg+ round; everything else passes as it is."""

    def __init__(
        self,
        grid: Grid,
        *,
        weight_key: str,
        max_weight: float,
        clipping_range: float,
        reconstruction: float,
        seed: int,
    ) -> None:
        super().__init__(grid)
        self.weight_key = weight_key
        self.max_weight = max_weight
        self.clipping_range = clipping_range
        self.reconstruction = reconstruction
        self.seed = seed
        self.rounds = 0

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        sent = list(messages)
        if not sent or any(m.metadata.message_type != MessageType.TRAIN for m in sent):
            return self.inner.send_and_receive(sent, timeout=timeout)
        self.rounds += 1
        server_round = int(sent[0].content.config_records["config"].get("server-round", self.rounds))  # type: ignore[arg-type]
        global_arrays = sent[0].content.array_records["arrays"]
        names = list(global_arrays.keys())
        quantization, _ = integer_workflow_ranges(len(sent))  # N quantised values below 2^32 together
        instructions = {
            m.metadata.dst_node_id: _fitins(
                m.content, {WEIGHT_KEY: self.weight_key, SEED_KEY: self.seed * 7919 + server_round}
            )
            for m in sent
        }
        outcome = run_secagg_round(
            self.inner, instructions, server_round=server_round, max_weight=self.max_weight,
            clipping_range=self.clipping_range, quantization_range=quantization,
            reconstruction=self.reconstruction, timeout=timeout, seed=self.seed + server_round,
        )  # fmt: skip
        # the update's mean plus the global model: the weighted mean of the institutions' models
        mean = [g + d for g, d in zip(global_arrays.to_numpy_ndarrays(), outcome.mean, strict=True)]
        aggregate = {name: Array(np.asarray(a, dtype=g.dtype)) for name, a, g in zip(
            names, mean, global_arrays.to_numpy_ndarrays(), strict=True)}  # fmt: skip
        replies = []
        for message in sent:
            node = message.metadata.dst_node_id
            res = outcome.fitres.get(node)
            if res is None:
                error = Error(code=DROPPED, reason="dropped out of the SecAgg+ round (its share was recovered)")
                replies.append(Message(error, reply_to=message))
                continue
            metrics = MetricRecord({k: v for k, v in res.metrics.items() if isinstance(v, int | float)})
            content = RecordDict({"arrays": ArrayRecord(dict(aggregate)), "metrics": metrics})
            replies.append(Message(content, reply_to=message))
        return replies


def secure_sum(
    grid: Grid,
    node_ids: list[int],
    length: int,
    config: Mapping[str, Any],
    *,
    reconstruction: float,
    timeout: float | None,
    seed: int,
) -> np.ndarray:
    """The element-wise sum of one integer-valued vector per node, and nothing else, through SecAgg+.

    Every node must take part (a consortium total with a member missing would be silently wrong)."""
    quantization, clipping = integer_workflow_ranges(len(node_ids))
    zeros = ndarrays_to_parameters([np.zeros(length, dtype=np.float64)])
    instructions = {
        nid: FitIns(zeros, {**dict(config), WEIGHT_KEY: "num-examples", SEED_KEY: seed}) for nid in node_ids
    }
    outcome = run_secagg_round(
        grid, instructions, server_round=0, max_weight=1.0, clipping_range=clipping,
        quantization_range=quantization, reconstruction=reconstruction, timeout=timeout, seed=seed,
    )  # fmt: skip
    if outcome.active != sorted(node_ids):
        missing = sorted(set(node_ids) - set(outcome.active))
        raise FederationError(f"secure sum '{config.get(SECURE_SUM)}': node(s) {missing} did not take part")
    return np.rint(outcome.mean[0] * len(node_ids))


# -- the institution's side ----------------------------------------------------------------------
def secagg_train_mods(
    aggregation_of: Callable[[Context], str], answer_sum: Callable[[Message, Context], Message]
) -> list[Mod]:
    """The train handler's mods for secure aggregation, decided by this node's run config.

    Under ``secagg+`` every train message must come as a SecAgg+ round: a plain one (which would
    return this institution's update in the clear) is refused. Under ``he`` SecAgg+ rounds carry the
    secure sums (summaries, histograms) and model rounds go to the HE mods. Under ``plain`` nothing
    changes: a handler wrapped by ``secaggplus_mod`` could no longer answer plain train messages.
    A secure sum goes to ``answer_sum``, past the training mods (clipping, simulated attacks)."""

    def masked(message: Message, context: Context, call_next: Any) -> Message:
        aggregation = aggregation_of(context)
        if aggregation == "plain":
            passed: Message = call_next(message, context)
            return passed
        if RECORD_KEY_CONFIGS in message.content.config_records:
            return secaggplus_mod(message, context, lambda m, c: update_layout_mod(m, c, call_next, answer_sum))
        if aggregation == "secagg+":
            raise ConfigError(
                "this institution answers train messages only through SecAgg+ (privacy.aggregation = secagg+): "
                "a plain train message would send its update in the clear"
            )
        result: Message = call_next(message, context)
        return result

    return [masked]


def update_layout_mod(
    message: Message, context: Context, call_next: Any, answer_sum: Callable[[Message, Context], Message]
) -> Message:
    """Between ``secaggplus_mod`` (legacy FitIns/FitRes layout) and a Message-API train handler:
    converts both ways and sends the update (reply minus the global model) to be masked."""
    fitins = compat.recorddict_to_fitins(message.content, keep_input=True)
    config = dict(fitins.config)
    global_arrays = parameters_to_ndarrays(fitins.parameters)
    arrays = compat.parameters_to_arrayrecord(fitins.parameters, keep_input=True)
    message.content = RecordDict({"arrays": arrays, "config": ConfigRecord(dict(config))})
    reply: Message = answer_sum(message, context) if SECURE_SUM in config else call_next(message, context)
    if reply.has_error():
        return reply
    content = reply.content
    local = content.array_records["arrays"].to_numpy_ndarrays()
    update = [np.asarray(a, dtype=np.float64) - g for a, g in zip(local, global_arrays, strict=True)]
    bound = float(context.state.config_records[RECORD_KEY_STATE]["clipping_range"])  # type: ignore[arg-type]
    largest = max((float(np.abs(u).max()) for u in update if u.size), default=0.0)
    if largest > bound:
        raise ConfigError(
            f"SecAgg+: an update coordinate of {largest:.3g} exceeds the quantisation range {bound:g}; it would be "
            "clipped and the aggregate wrong. Raise privacy.secagg_clipping_range (consortia run --secagg-range)"
        )
    metrics = dict(next(iter(content.metric_records.values()))) if content.metric_records else {}
    weight = metrics.get(str(config.get(WEIGHT_KEY, "num-examples")), metrics.get("num-examples", 1))
    # SecAgg+'s stochastic rounding draws from the global RNG: seed it per institution and round, so the
    # same seed gives the same digits in every engine (node ids differ between engines; node configs do not)
    salt = zlib.crc32(repr(sorted((str(k), str(v)) for k, v in context.node_config.items())).encode())
    np.random.seed((int(config.get(SEED_KEY, 0)) * 1_000_003 + salt) % 2**32)
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(update), int(weight), metrics)  # type: ignore[arg-type]
    reply.content = compat.fitres_to_recorddict(fitres, keep_input=True)
    return reply


__all__ = [
    "SECURE_SUM",
    "SecAggPlusGrid",
    "secagg_train_mods",
    "secure_sum",
    "update_layout_mod",
]
