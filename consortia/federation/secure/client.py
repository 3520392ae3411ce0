"""The mods a node puts around its handlers for the secured protocol (its own run config decides).

Train handler, outermost first: SecAgg+ (``secagg.secagg_train_mods``), then HE
(``he.he_mods``); evaluate and fine-tune handlers: HE decryption of the global model. Under
``plain`` aggregation every one of them passes messages through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context, Message
from flwr.clientapp.typing import Mod

from consortia.federation.secure.he import he_mods
from consortia.federation.secure.secagg import secagg_train_mods


def secure_train_mods(
    aggregation_of: Callable[[Context], str], answer_sum: Callable[[Message, Context], Message]
) -> list[Mod]:
    """``answer_sum`` answers a secure sum's request (``consortia.federation.secure.node``)."""
    train, _ = he_mods(aggregation_of)
    return [*secagg_train_mods(aggregation_of, answer_sum), train]


def secure_read_mods(aggregation_of: Callable[[Context], str]) -> list[Mod]:
    _, read = he_mods(aggregation_of)
    return [read]
