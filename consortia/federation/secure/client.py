"""The mods a node puts around its handlers for the secured protocol (its own run config decides).

Train handler, outermost first: SecAgg+ (``secagg.secagg_train_mods``), then HE
(``he.he_mods``); evaluate and fine-tune handlers: HE decryption of the global model. Under
``plain`` aggregation every one of them passes messages through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context
from flwr.clientapp.typing import Mod

from consortia.federation.secure.he import he_mods
from consortia.federation.secure.secagg import secagg_train_mods


def secure_train_mods(aggregation_of: Callable[[Context], str]) -> list[Mod]:
    train, _ = he_mods(aggregation_of)
    return [*secagg_train_mods(aggregation_of), train]


def secure_read_mods(aggregation_of: Callable[[Context], str]) -> list[Mod]:
    _, read = he_mods(aggregation_of)
    return [read]
