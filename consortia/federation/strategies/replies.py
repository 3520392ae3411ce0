"""What Consortia's own strategies share when they read train replies.

* a node that refused the algorithm (a learner without the capability it needs, ``require``'s
  one line) makes the run stop with that line, not with "no institution returned a model";
* weighted means of arrays, weighted by the reply's ``num-examples`` as FedAvg weighs;
* results keep the keys of the ArrayRecord they update (the global model's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from consortia.errors import ConfigError, FederationError

#: the words of ``consortia.learners.require``'s refusal (and of the client's DP refusal)
_REFUSAL = "cannot be used with"


def checked_replies(replies: Iterable[Message], strategy: str, records: Sequence[str]) -> list[Message]:
    """The replies without errors, each holding ``records`` (``arrays`` and the algorithm's own);
    raises the first refusal as the ConfigError it was on the node."""
    valid = []
    for message in replies:
        if message.has_error():
            reason = str(message.error.reason)
            if _REFUSAL in reason:
                line = reason[reason.rfind("model '") if "model '" in reason else 0 :].strip(" '\">)")
                raise ConfigError(f"strategy '{strategy}': {line}")
            continue
        missing = [r for r in records if r not in message.content.array_records]
        if missing:
            raise FederationError(
                f"strategy '{strategy}': node {message.metadata.src_node_id} replied without {', '.join(missing)}: "
                "it does not run this algorithm (an older Consortia on that node?)"
            )
        valid.append(message)
    return valid


def reply_weights(replies: Sequence[Message], key: str) -> np.ndarray:
    """Each reply's weight (``key`` of its one MetricRecord), normalised to sum to one."""
    raw = np.array([float(next(iter(m.content.metric_records.values()))[key]) for m in replies])  # type: ignore[arg-type]
    if raw.sum() <= 0:
        raise FederationError(f"replies carry no positive '{key}' to weigh them by")
    return raw / raw.sum()


def weighted_mean(arrays: Sequence[Sequence[np.ndarray]], weights: np.ndarray) -> list[np.ndarray]:
    """Element-wise ``sum_i w_i a_i`` over the replies, array by array (in float64)."""
    return [
        sum(w * np.asarray(a[k], dtype=np.float64) for w, a in zip(weights, arrays, strict=True))
        for k in range(len(arrays[0]))
    ]


def arrays_of(message: Message, key: str = "arrays") -> list[np.ndarray]:
    return message.content.array_records[key].to_numpy_ndarrays()


def like(template: ArrayRecord, arrays: Sequence[np.ndarray]) -> ArrayRecord:
    """``arrays`` under ``template``'s keys, in the template's dtypes (float32 models stay float32)."""
    keys = list(template.keys())
    old = template.to_numpy_ndarrays()
    if len(keys) != len(arrays):
        raise FederationError(f"expected {len(keys)} arrays, got {len(arrays)}")
    return ArrayRecord(
        {k: Array(np.asarray(a, dtype=o.dtype).reshape(o.shape)) for k, a, o in zip(keys, arrays, old, strict=True)}
    )
