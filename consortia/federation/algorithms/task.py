"""What a local update gets and gives back (shared by every algorithm's module)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message

from consortia.learners import Learner

#: the train config entry naming the local algorithm ("scaffold", "fedma", "fedmeta")
ALGORITHM_KEY = "algorithm"


@dataclass
class LocalTask:
    """What a local update needs: the message's config and records, this node's state and rows."""

    config: ConfigRecord
    message: Message
    context: Context
    learner: Learner
    x: np.ndarray
    y: np.ndarray
    epochs: int
    seed: int
    #: the run's DP mechanism ("none", "dp-client", "dp-sample"): these algorithms train without DP
    privacy: str = "none"


@dataclass
class LocalResult:
    """The train reply's metrics, and records it carries besides ``arrays`` and ``metrics``."""

    info: dict[str, float]
    records: dict[str, ArrayRecord] = field(default_factory=dict)
