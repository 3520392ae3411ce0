"""SCAFFOLD (Karimireddy et al. 2020): control variates against client drift, which Flower's
Message-API strategies lack.

Server state: the global model ``x`` and the global control variate ``c`` (zeros at first). Each
round the train message carries ``c`` (``scaffold-c``) next to the model; each institution runs
corrected local steps (``consortia.federation.algorithms.scaffold``) and replies its new model
``y_i`` and the change of its own variate ``dc_i``. The server then sets (sampled set ``S`` of
``N`` nodes, weights ``w_i`` by rows as FedAvg weighs)::

    x <- x + server_lr * sum_i w_i (y_i - x)
    c <- c + |S| / N * sum_i w_i dc_i

With ``c = 0`` and ``server_lr = 1`` the first round is FedAvg's; the rounds after are not. Option
I (default) sets each ``c_i`` to the institution's full gradient at ``x``; option II uses the paper's
cheaper ``c_i - c + (x - y_i) / (K lr)`` (exact for SGD). PyTorch learners only (``logistic_torch``,
``mlp``); others are refused with one line. Not combinable with differential privacy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from consortia.errors import ConfigError
from consortia.federation.algorithms import ALGORITHM_KEY
from consortia.federation.algorithms.scaffold import DELTA_KEY, GLOBAL_KEY, OPTION_KEY
from consortia.federation.strategies.replies import arrays_of, checked_replies, like, reply_weights, weighted_mean


class Scaffold(FedAvg):
    """FedAvg plus SCAFFOLD's control variates; ``server_lr`` is the paper's global step size."""

    def __init__(
        self,
        server_lr: float = 1.0,
        option: int = 1,
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
        super().__init__(
            fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes, min_available_nodes,
            weighted_by_key, arrayrecord_key, configrecord_key, train_metrics_aggr_fn, evaluate_metrics_aggr_fn,
        )  # fmt: skip
        if option not in (1, 2):
            raise ConfigError(f"strategy 'scaffold': option must be 1 or 2 (got {option})")
        if not server_lr > 0:
            raise ConfigError(f"strategy 'scaffold': server_lr must be > 0 (got {server_lr})")
        self.server_lr = float(server_lr)
        self.option = int(option)
        #: the global control variate, in the model's shapes (None until the first round)
        self.control: list[np.ndarray] | None = None
        self._current: ArrayRecord | None = None
        self._num_nodes = 0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        x = arrays.to_numpy_ndarrays()
        if self.control is None or [c.shape for c in self.control] != [a.shape for a in x]:
            self.control = [np.zeros(a.shape, dtype=np.float64) for a in x]
        self._current = arrays
        self._num_nodes = len(list(grid.get_node_ids()))
        config[ALGORITHM_KEY] = "scaffold"
        config[OPTION_KEY] = self.option
        messages = list(super().configure_train(server_round, arrays, config, grid))
        variate = ArrayRecord([c.astype(np.float32) for c in self.control])
        for message in messages:  # FedAvg's messages share one RecordDict: the same record for all
            message.content[GLOBAL_KEY] = variate
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid = checked_replies(replies, "scaffold", (self.arrayrecord_key, DELTA_KEY))
        if not valid or self._current is None or self.control is None:
            return None, None
        weights = reply_weights(valid, self.weighted_by_key)
        x = [np.asarray(a, dtype=np.float64) for a in self._current.to_numpy_ndarrays()]
        dy = weighted_mean(
            [[y - xa for y, xa in zip(arrays_of(m, self.arrayrecord_key), x, strict=True)] for m in valid], weights
        )
        dc = weighted_mean([arrays_of(m, DELTA_KEY) for m in valid], weights)
        share = len(valid) / max(self._num_nodes, len(valid))
        self.control = [c + share * d for c, d in zip(self.control, dc, strict=True)]
        new = like(self._current, [xa + self.server_lr * d for xa, d in zip(x, dy, strict=True)])
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return new, metrics
