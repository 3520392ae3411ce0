"""FedMeta / Per-FedAvg: a global model meant to be fine-tuned, not used as it is.

``meta='fomaml'`` (default): institutions run first-order MAML steps
(``consortia.federation.algorithms.fedmeta``; inner step size ``inner_lr``). ``meta='reptile'``:
institutions train as usual and only the server's step differs (Reptile, Nichol et al. 2018),
which with ``server_lr`` 1 is exactly FedAvg and is refused. Either way the server moves the
global model by ``server_lr`` times the weighted mean change::

    x <- x + server_lr * sum_i w_i (y_i - x)

Defaults, measured with benchmarks/adaptation.py (MLP and logistic_torch, finance and
manufacturing, docs/algorithms.md): ``inner_lr`` 0.2 (better than 0.05 with the MLP, equal with
logistic_torch); ``server_lr`` 1 for fomaml (2 was not better) and 1.5 for reptile (beat FedAvg with
the MLP before and after local steps; 0.5 lost).

Judge it by the run's fine-tuned metrics (``finetune_epochs``: each institution adapts the final
model on its own rows), against FedAvg's fine-tuned metrics: that is what it optimises.
PyTorch learners (``mlp``, ``logistic_torch``); not combinable with DP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from consortia.errors import ConfigError
from consortia.federation.algorithms import ALGORITHM_KEY
from consortia.federation.algorithms.fedmeta import DEFAULT_INNER_LR, INNER_LR_KEY
from consortia.federation.strategies.replies import arrays_of, checked_replies, like, reply_weights, weighted_mean

META = ("fomaml", "reptile")
#: the server step when none is given (measured: see the module docstring)
DEFAULT_SERVER_LR = {"fomaml": 1.0, "reptile": 1.5}


class FedMeta(FedAvg):
    """First-order MAML (or Reptile) over institutions with a server learning rate."""

    def __init__(
        self,
        meta: str = "fomaml",
        inner_lr: float = DEFAULT_INNER_LR,
        server_lr: float | None = None,
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
        if meta not in META:
            raise ConfigError(f"strategy 'fedmeta': meta must be {' or '.join(META)} (got {meta!r})")
        if server_lr is None:
            server_lr = DEFAULT_SERVER_LR[meta]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (inner_lr, server_lr)):
            raise ConfigError(
                f"strategy 'fedmeta': inner_lr and server_lr must be numbers (got {inner_lr!r}, {server_lr!r})"
            )
        if not inner_lr > 0 or not server_lr > 0:
            raise ConfigError(f"strategy 'fedmeta': inner_lr and server_lr must be > 0 (got {inner_lr}, {server_lr})")
        if meta == "reptile" and server_lr == 1.0:
            raise ConfigError(
                "strategy 'fedmeta' with meta=reptile and server_lr 1 is FedAvg: set server_lr (default 1.5) "
                "or use meta=fomaml"
            )
        self.meta, self.inner_lr, self.server_lr = meta, float(inner_lr), float(server_lr)
        self._current: ArrayRecord | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._current = arrays
        if self.meta == "fomaml":
            config[ALGORITHM_KEY] = "fedmeta"
            config[INNER_LR_KEY] = self.inner_lr
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid = checked_replies(replies, "fedmeta", (self.arrayrecord_key,))
        if not valid or self._current is None:
            return None, None
        weights = reply_weights(valid, self.weighted_by_key)
        x = [np.asarray(a, dtype=np.float64) for a in self._current.to_numpy_ndarrays()]
        change = weighted_mean([[y - xa for y, xa in zip(arrays_of(m), x, strict=True)] for m in valid], weights)
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return like(self._current, [xa + self.server_lr * d for xa, d in zip(x, change, strict=True)]), metrics
