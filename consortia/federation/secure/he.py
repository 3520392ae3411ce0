"""Homomorphic encryption of the model rounds (CKKS, TenSEAL), NVIDIA FLARE style, on Flower messages.

* server: ``HEGrid`` wraps the run's Grid. It learns the consortium's *public* context from the
  institutions' summary replies (each must send the same one), gives each train message the
  institution's aggregation weight, and adds the encrypted, pre-weighted replies: the sum is the
  weighted average, encrypted. It keeps that global model, puts it into every later train,
  evaluate and fine-tune message, and hands the Message-API strategy a one-number token instead
  (so FedAvg's bookkeeping runs, and no strategy ever holds a plaintext model).
* client: ``he_train_mod`` decrypts the incoming global model, lets the train handler train as
  usual, then multiplies the new model by the weight and encrypts it; ``he_read_mod`` decrypts the
  global model for evaluate and fine-tune. The node's secret context comes from its node config
  (``he-key``: a file ``consortia serve certs`` writes; simulation engines make one per run).

The first round's model is the seeded initial model, public anyway, and travels in the clear.
At the end the server holds only the encrypted model (``FederatedOutcome.encrypted_model``);
an institution (the simulation engines act for them) decrypts it with ``release_model``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.serverapp import Grid

from consortia.errors import ConfigError, FederationError
from consortia.federation.grids import DelegatingGrid, detached
from consortia.privacy import he
from consortia.runs.results import FederatedOutcome

#: node config key: the path of this institution's secret HE context
HE_KEY = "he-key"
#: records and config keys of the protocol
CIPHERTEXT = "he.model"  # ArrayRecord: one uint8 array per ciphertext
LAYOUT = "he.layout"  # ConfigRecord: the model arrays' names, shapes and dtypes (the layout is public)
WEIGHT = "he-weight"
CONTEXT = "he-public-context"
TOKEN = "he-token"
SUMMARY = "query.summary"


# -- wire forms ------------------------------------------------------------------------------------
def _cipher_record(blobs: list[bytes]) -> ArrayRecord:
    return ArrayRecord({f"c{i}": Array(np.frombuffer(b, dtype=np.uint8).copy()) for i, b in enumerate(blobs)})


def _blobs(record: ArrayRecord) -> list[bytes]:
    return [record[f"c{i}"].numpy().tobytes() for i in range(len(record))]


def _layout(arrays: ArrayRecord) -> dict[str, Any]:
    values = arrays.to_numpy_ndarrays()
    return {"names": list(arrays.keys()), "shapes": [list(a.shape) for a in values],
            "dtypes": [str(a.dtype) for a in values]}  # fmt: skip


def _size(layout: Mapping[str, Any]) -> int:
    return sum(int(np.prod(s)) if s else 1 for s in layout["shapes"])


def _arrays(flat: np.ndarray, layout: Mapping[str, Any]) -> ArrayRecord:
    parts = he.unflatten(flat, layout["shapes"])
    return ArrayRecord(
        {n: Array(np.asarray(a, dtype=d)) for n, a, d in zip(layout["names"], parts, layout["dtypes"], strict=True)}
    )


# -- the server's side ----------------------------------------------------------------------------
class HEGrid(DelegatingGrid):
    """The run's Grid with encrypted model rounds; the server never holds a plaintext update."""

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        self.public_context: bytes | None = None
        self.sizes: dict[int, int] = {}  # node -> training rows (from the summary replies)
        self.encrypted: list[bytes] | None = None
        self.layout: dict[str, Any] | None = None

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        sent = list(messages)
        kind = sent[0].metadata.message_type if sent else ""
        if kind == SUMMARY:
            replies = list(self.inner.send_and_receive(sent, timeout=timeout))
            self._learn_context(replies)
            return replies
        if kind == MessageType.TRAIN and not any(RECORD_KEY_CONFIGS in m.content.config_records for m in sent):
            return self._train_round(sent, timeout)
        if kind.startswith(MessageType.EVALUATE):
            for message in sent:
                message.content = detached(message.content)
                self._encrypt_global_in(message.content)
        return self.inner.send_and_receive(sent, timeout=timeout)

    def _learn_context(self, replies: list[Message]) -> None:
        contexts = {}
        for reply in replies:
            if reply.has_error():
                continue
            summary = reply.content.config_records["summary"]
            if CONTEXT not in summary:
                raise FederationError(f"node {reply.metadata.src_node_id} sent no HE public context (is he-key set?)")
            contexts[reply.metadata.src_node_id] = bytes(summary[CONTEXT])  # type: ignore[arg-type]
            self.sizes[reply.metadata.src_node_id] = int(summary["n-train"])  # type: ignore[arg-type]
        digests = {hashlib.sha256(c).hexdigest()[:12] for c in contexts.values()}
        if len(digests) != 1:
            raise FederationError(
                f"the institutions hold {len(digests)} different HE keys; every institution needs the same "
                "he-secret.ctx (made once by `consortia serve certs`)"
            )
        context = next(iter(contexts.values()))
        if he.load_context(context).is_private():
            raise FederationError("an institution sent its SECRET HE context to the server; refusing to go on")
        self.public_context = context

    def _encrypt_global_in(self, content: RecordDict) -> None:
        """Replace the strategy's token by the encrypted global model (after the first round)."""
        if self.encrypted is None:
            return
        content["arrays"] = _cipher_record(self.encrypted)
        content[LAYOUT] = ConfigRecord({"json": json.dumps(self.layout)})

    def _train_round(self, sent: list[Message], timeout: float | None) -> list[Message]:
        if self.public_context is None:
            raise FederationError("HE: no public context yet; the summary phase must run first")
        nodes = [m.metadata.dst_node_id for m in sent]
        total = sum(self.sizes[n] for n in nodes)  # weighted by rows (client DP, equal weights, is refused)
        if self.layout is None:
            self.layout = _layout(sent[0].content.array_records["arrays"])
        for message in sent:
            weight = self.sizes[message.metadata.dst_node_id]
            message.content = detached(message.content)  # strategies share one RecordDict between messages
            message.content.config_records["config"][WEIGHT] = weight / total
            self._encrypt_global_in(message.content)
        replies = list(self.inner.send_and_receive(sent, timeout=timeout))
        good = [r for r in replies if not r.has_error()]
        if len(good) < len(sent):
            raise FederationError(
                f"HE round: {len(sent) - len(good)} institution(s) did not answer; the weights were set for all "
                f"{len(sent)}, so the encrypted sum would be wrong (a drop-out is survived only under SecAgg+)"
            )
        self.encrypted = he.add(self.public_context, [_blobs(r.content.array_records["arrays"]) for r in good])
        token = ArrayRecord({TOKEN: Array(np.zeros(1))})
        by_node = {m.metadata.dst_node_id: m for m in sent}
        out = []
        for reply in good:
            metrics = MetricRecord(dict(next(iter(reply.content.metric_records.values()))))
            content = RecordDict({"arrays": token, "metrics": metrics})
            out.append(Message(content, reply_to=by_node[reply.metadata.src_node_id]))
        return out

    def encrypted_model(self) -> dict[str, Any] | None:
        if self.encrypted is None:
            return None
        return {"ciphertexts": [base64.b64encode(b).decode() for b in self.encrypted], "layout": self.layout}


def release_model(outcome: FederatedOutcome, secret: bytes) -> FederatedOutcome:
    """An institution's decryption of the server's encrypted final model (simulation engines hold the
    institutions' key, so they do it for them)."""
    sealed = outcome.encrypted_model
    if not sealed:
        return outcome
    layout = sealed["layout"]
    flat = he.decrypt(secret, [base64.b64decode(c) for c in sealed["ciphertexts"]], _size(layout))
    outcome.final_parameters = _arrays(flat, layout).to_numpy_ndarrays()
    return outcome


# -- the institution's side ------------------------------------------------------------------------
def node_secret(context: Context) -> bytes:
    path = context.node_config.get(HE_KEY)
    if not path:
        raise ConfigError(
            "privacy.aggregation is 'he' but this node has no HE key: set node config he-key=PATH "
            "(the he-secret.ctx that `consortia serve certs` wrote)"
        )
    return he.read_secret_context(str(path))


def _decrypt_incoming(message: Message, secret: bytes) -> None:
    content = message.content
    if LAYOUT not in content.config_records:
        return  # the first round's public initial model
    layout = json.loads(str(content.config_records[LAYOUT]["json"]))
    flat = he.decrypt(secret, _blobs(content.array_records["arrays"]), _size(layout))
    content["arrays"] = _arrays(flat, layout)
    del content.config_records[LAYOUT]


def he_mods(aggregation_of: Callable[[Context], str]) -> tuple[Callable, Callable]:
    """(train mod, read mod) for HE, active when this node's run config says ``he``."""

    def train(message: Message, context: Context, call_next: Any) -> Message:
        request = message.content.config_records.get("config")
        if aggregation_of(context) != "he":
            passed: Message = call_next(message, context)
            return passed
        if request is None or WEIGHT not in request:
            raise ConfigError("HE: a train message without this institution's aggregation weight; refusing to reply")
        secret = node_secret(context)
        _decrypt_incoming(message, secret)
        reply: Message = call_next(message, context)
        if reply.has_error():
            return reply
        flat, _ = he.flatten(reply.content.array_records["arrays"].to_numpy_ndarrays())
        reply.content["arrays"] = _cipher_record(he.encrypt(secret, flat, float(request[WEIGHT])))  # type: ignore[arg-type]
        return reply

    def read(message: Message, context: Context, call_next: Any) -> Message:
        if aggregation_of(context) == "he":
            _decrypt_incoming(message, node_secret(context))
        result: Message = call_next(message, context)
        return result

    return train, read


@contextlib.contextmanager
def simulated_key(config_aggregation: str) -> Iterator[tuple[dict[str, str], bytes | None]]:
    """For engines that play the institutions: a fresh consortium key for one run (node config
    entries pointing at it, and the secret to release the final model), removed afterwards."""
    if config_aggregation != "he":
        yield {}, None
        return
    with tempfile.TemporaryDirectory(prefix="consortia-he-") as folder:
        secret_path, _ = he.write_key_pair(folder)
        yield {HE_KEY: str(secret_path)}, secret_path.read_bytes()


def public_context_of(context: Context) -> bytes:
    """What a node adds to its summary reply: the public half of its key (for the server to add)."""
    return he.public_context(node_secret(context))
