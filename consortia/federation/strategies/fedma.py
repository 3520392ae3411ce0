"""FedMA (Wang et al. 2020, "Federated Learning with Matched Averaging") for the MLP.

One round per hidden layer, input to output, then FedAvg rounds:

1. round 1: each institution trains its own model from its own initialisation; the server
   matches the first hidden layer's units across institutions (``algorithms.matching``), permutes
   every institution's model into the global order and replaces that layer by the matched average;
2. round ``l``: each institution receives ITS OWN aligned model (its upper layers are permuted
   by its own matching, so a shared model would not fit them), keeps layers ``< l`` frozen and
   retrains the layers above; the server matches layer ``l``;
3. after the last hidden layer: the global model is the matched layers plus the weighted average
   of the aligned output layers, and every further round is plain FedAvg.

The global model between matching rounds (what evaluation sees) is the matched layers plus the
average of the aligned layers above. Needs every institution each round (``fraction_train`` 1),
its raw weights (not combinable with secure aggregation, HE or DP) and a layered model
(``mlp``; others are refused with one line). Its per-node state is not checkpointed: resume a
FedMA run only after its matching rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from consortia.errors import ConfigError
from consortia.federation.algorithms import ALGORITHM_KEY
from consortia.federation.algorithms.fedma import FROZEN_KEY, INIT_KEY
from consortia.federation.algorithms.matching import average, layer_count, match_layer
from consortia.federation.strategies.replies import arrays_of, checked_replies, like, reply_weights


class FedMA(FedAvg):
    """Layer-wise matched averaging, then FedAvg; ``independent_init`` as in the paper."""

    def __init__(
        self,
        independent_init: bool = True,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
    ) -> None:
        if fraction_train != 1.0:
            raise ConfigError("strategy 'fedma' matches every institution's layer each round: use fraction_train 1")
        super().__init__(
            fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes, min_available_nodes,
            weighted_by_key, arrayrecord_key, configrecord_key, train_metrics_aggr_fn, evaluate_metrics_aggr_fn,
        )  # fmt: skip
        if not isinstance(independent_init, bool):
            raise ConfigError(f"strategy 'fedma': independent_init must be true or false (got {independent_init!r})")
        self.independent_init = independent_init
        #: hidden layers matched so far
        self.matched = 0
        #: each node's aligned model after the last matching round
        self.aligned: dict[int, list[np.ndarray]] = {}
        self._template: ArrayRecord | None = None
        self._matching_round = False

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        hidden = layer_count(arrays.to_numpy_ndarrays()) - 1
        self._template = arrays
        self._matching_round = self.matched < hidden
        if not self._matching_round:
            return super().configure_train(server_round, arrays, config, grid)
        config[ALGORITHM_KEY] = "fedma"
        config[FROZEN_KEY] = self.matched
        config[INIT_KEY] = self.matched == 0 and self.independent_init
        messages = super().configure_train(server_round, arrays, config, grid)
        out = []
        for message in messages:  # each node its own aligned model (the global one if it has none yet)
            node = message.metadata.dst_node_id
            own = like(arrays, self.aligned[node]) if node in self.aligned else arrays
            content = RecordDict({self.arrayrecord_key: own, self.configrecord_key: config})
            out.append(Message(content=content, dst_node_id=node, message_type=message.metadata.message_type))
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if not self._matching_round:
            return super().aggregate_train(server_round, replies)
        valid = checked_replies(replies, "fedma", (self.arrayrecord_key,))
        if not valid or self._template is None:
            return None, None
        weights = reply_weights(valid, self.weighted_by_key)
        models = [arrays_of(m, self.arrayrecord_key) for m in valid]
        aligned = match_layer(models, weights, self.matched)
        self.aligned = {m.metadata.src_node_id: a for m, a in zip(valid, aligned, strict=True)}
        self.matched += 1
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return like(self._template, average(aligned, weights)), metrics
