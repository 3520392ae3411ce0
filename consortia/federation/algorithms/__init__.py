"""Client-side halves of the strategies that need more than ``learner.fit``: SCAFFOLD, FedMA, FedMeta.

A strategy names its algorithm in the train message's config (``ALGORITHM_KEY``); the ClientApp's
train handler hands such a message to ``train_locally``, which runs the algorithm's local update
and returns the metrics and the extra records the reply carries (SCAFFOLD's control-variate
change). A message without the key is ordinary training, which ``train_locally`` leaves alone.
"""

from __future__ import annotations

from consortia.federation.algorithms.local import train_locally
from consortia.federation.algorithms.task import ALGORITHM_KEY, LocalResult, LocalTask

__all__ = ["ALGORITHM_KEY", "LocalResult", "LocalTask", "train_locally"]
