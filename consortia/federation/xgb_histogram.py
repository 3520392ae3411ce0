"""The ServerApp's phase for histogram XGBoost: one booster over XGBoost's federated communicator.

No Flower strategy can run it (the rounds would average booster bytes), so after the usual
feature summaries (``server.agree_preprocessing``) the ServerApp:

1. asks every node for the quantile summary of its preprocessed training features and its two
   label counts (``query.xgb_quantiles``; ``consortia.federation.xgb_histogram_node``), merges
   the global bin edges and the booster params exactly as the simulated path does
   (``consortia.experiment.histogram.agree_bins``);
2. starts XGBoost's federated server in a process of its own, with TLS (a CA made for this run
   signs the server's certificate and each node's client certificate; ``xgb_histogram_tls``),
   and sends every node ``train.xgb_histogram``: the server's address, world size, its rank
   (institution order), the edges and params. Each node trains the joint booster on its own
   rows, then evaluates and fine-tunes it and answers with the model and metrics;
3. builds the same per-institution, pooled (from score histograms) and per-round figures as
   the other phases; the final booster is the run's model.

What leaves a node: the quantile summary, two counts, a public key; during training the
gradient histograms and sums XGBoost all-reduces (the federated server sees them per node);
afterwards metrics, score histograms and the joint model (the same at every node).

Where the nodes dial: ``CONSORTIA_XGB_SERVER_HOST`` (default 127.0.0.1, which only works when
every node runs on the ServerApp's machine) and ``CONSORTIA_XGB_SERVER_PORT`` (default a free
port) in the ServerApp's environment; the server listens on every interface. Plain text only
with ``CONSORTIA_XGB_INSECURE=1``. A node that dies or fails ends the run with a
FederationError: its error reply (Flower answers for a node whose heartbeat stopped), a worker
that stalls (every node's watchdog, ``round-timeout-s``) or the server process going away.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from consortia.config import ExperimentConfig
from consortia.data.preprocessing import Preprocessor
from consortia.errors import ConfigError, FederationError
from consortia.evaluation.pooled import ScoreHistogram, merge_histograms
from consortia.federation.grids import RecordingGrid
from consortia.federation.xgb_histogram_node import QUANTILES, TRAIN
from consortia.federation.xgb_histogram_tls import RunAuthority
from consortia.learners.xgboost.binning import merge_quantile_summaries
from consortia.learners.xgboost.histogram import (
    ROUND_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    FederatedServer,
    FederatedTrainingError,
    joint_params,
)
from consortia.learners.xgboost.learner import split_params
from consortia.runs.folder import RunFolder
from consortia.runs.results import RoundRecord, aggregate_over_institutions, metric_aggregation
from consortia.verticals import Vertical

#: the disclosure log's entry for what each node sent through XGBoost's federated communicator
COMMUNICATOR = "xgboost.communicator"
COMMUNICATOR_FIELDS = ["gradient and hessian sums per bin and tree node", "node sums", "row count",
                       "base-score and evaluation-metric sums"]  # fmt: skip
HOST_ENV, PORT_ENV, INSECURE_ENV = "CONSORTIA_XGB_SERVER_HOST", "CONSORTIA_XGB_SERVER_PORT", "CONSORTIA_XGB_INSECURE"


def is_histogram(config: ExperimentConfig) -> bool:
    return config.model == "xgboost" and config.xgb_mode == "histogram"


def check_histogram(config: ExperimentConfig) -> None:
    """What histogram XGBoost on the ServerApp cannot do, refused before any node is asked."""
    refused = []
    if config.privacy.mechanism != "none" or config.privacy.aggregation != "plain":
        refused.append("privacy mechanisms and secure aggregation (boosters and histograms travel in the clear)")
    if config.min_institutions is not None:
        refused.append("min_institutions (every institution holds a rank of the one booster)")
    if config.resume:
        refused.append("resume (the booster trains in one go)")
    if refused:
        raise ConfigError("xgb_mode 'histogram' on the ServerApp cannot run with " + "; ".join(refused))


def check_histogram_grid(grid: Grid) -> None:
    """Refuse a grid that calls the nodes one after another (the in-process engine's own
    ``push_messages``): the first node's worker would wait for the others until its timeout."""
    inner: Any = grid
    while hasattr(inner, "inner"):  # the Grid wrappers (consortia.federation.grids, deployment.prompt)
        inner = inner.inner
    push = getattr(type(inner), "push_messages", None)
    if getattr(push, "__qualname__", "") == "InProcessGrid.push_messages":
        raise ConfigError(
            "xgb_mode 'histogram' needs every node training at once, and the in-process grid asks the nodes "
            "one after another: use `consortia run --xgb-mode histogram` (simulated) or a deployment "
            "(flwr run / consortia serve submit), or xgb_mode 'bagging' or 'cyclic' here"
        )


@dataclass
class HistogramPhase:
    """What the phase hands back to the ServerApp: the model, the history, the evaluations."""

    arrays: list[np.ndarray]
    history: list[RoundRecord]
    per_institution: dict[str, dict[str, dict[str, float]]]
    pooled: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)


def train_histogram(
    grid: Grid,
    config: ExperimentConfig,
    vertical: Vertical,
    names: dict[int, str],
    preprocessor: Preprocessor,
    timeout_s: float,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> HistogramPhase:
    """Quantiles -> bins -> one booster over XGBoost's communicator -> evaluations (module doc)."""
    check_histogram(config)
    tls = os.environ.get(INSECURE_ENV, "").strip().lower() not in ("1", "true", "yes")
    nodes = sorted(names, key=lambda node: names[node])  # ranks in institution order
    shared = {"preprocessor": preprocessor.to_json()}
    quantiles = _ask(grid, nodes, QUANTILES, {**shared, "tls": tls}, timeout_s)
    replies = {node: quantiles[node].content["quantiles"] for node in nodes}
    model_params = vertical.model_params(config.model, config.model_params)
    own, _ = split_params(model_params)
    n_rounds = config.rounds * config.local_epochs * own["trees_per_epoch"]
    summaries = [json.loads(str(replies[node]["summary"])) for node in nodes]
    binning = merge_quantile_summaries(summaries, own["n_bins"])
    params, es = joint_params(
        model_params, seed=config.seed, n_rounds=n_rounds,
        positives=sum(_count(replies[n], "positives") for n in nodes),
        negatives=sum(_count(replies[n], "negatives") for n in nodes),
    )  # fmt: skip
    round_s, startup_s = min(ROUND_TIMEOUT_S, timeout_s), min(STARTUP_TIMEOUT_S, max(timeout_s, 30.0))
    request = {
        **shared,
        "edges": json.dumps([e.tolist() for e in binning.edges]),
        "n-bins": binning.n_bins,
        "params": json.dumps(params),
        "early-stopping": es or 0,
        "boost-rounds": n_rounds,
        "world-size": len(nodes),
        "round-timeout-s": round_s,
        "startup-timeout-s": startup_s,
    }
    host = os.environ.get(HOST_ENV, "127.0.0.1")
    port = int(os.environ[PORT_ENV]) if os.environ.get(PORT_ENV) else None
    with tempfile.TemporaryDirectory(prefix="consortia-xgb-server-") as folder:
        authority = RunAuthority.create() if tls else None
        server_tls = authority.server_files(Path(folder), (host, "localhost")) if authority else None
        try:
            server = FederatedServer(len(nodes), port=port, tls=server_tls, startup_timeout_s=startup_s)
        except FederatedTrainingError as exc:
            raise FederationError(f"histogram XGBoost: {exc}") from exc
        with server:
            messages = []
            for rank, node in enumerate(nodes):
                content = {**request, "rank": rank, "server-address": f"{host}:{server.port}"}
                if authority is not None:
                    content["ca"] = authority.cert_pem
                    content["client-cert"] = authority.client_cert(names[node], str(replies[node]["public-key"]))
                messages.append(Message(RecordDict({"config": ConfigRecord(content)}), dst_node_id=node,
                                        message_type=TRAIN))  # fmt: skip
            # a node's worker gives up after startup_s, then round_s per silent round: the server waits longer
            trained = _watch(grid, messages, server, startup_s + n_rounds * round_s + 60.0, names)
    if isinstance(grid, RecordingGrid):  # what the communicator carried, in the run's disclosure log
        for node in nodes:
            grid.note_channel(node, COMMUNICATOR, COMMUNICATOR_FIELDS, encrypted=authority is not None)
    records = [trained[node].content for node in nodes]
    models = [r.array_records["arrays"].to_numpy_ndarrays()[0] for r in records]
    if any(not np.array_equal(models[0], m) for m in models[1:]):
        raise FederationError("histogram XGBoost: the institutions' copies of the joint booster differ")
    per_institution = {
        names[node]: {
            mode: {k.split(".", 1)[1]: float(v) for k, v in r["metrics"].items() if k.startswith(f"{mode}.")}  # type: ignore[arg-type]
            for mode in ("global", "finetuned")
        }
        for node, r in zip(nodes, records, strict=True)
    }
    pooled = {mode: _pooled(records, vertical, f"histogram.test.{c}", f"histogram.train.{c}")
              for c, mode in ((1, "global"), (2, "finetuned"))}  # fmt: skip
    history = _history(records, vertical, config.rounds)
    for record in history:
        if on_round is not None:
            on_round(record)
    if config.run_dir:  # the joint model as a checkpoint: `consortia predict` and export score with it
        RunFolder(config.run_dir).save_checkpoint(
            config.rounds, [models[0]], preprocessor, [asdict(record) for record in history]
        )
    notes = [
        "histogram mode: one booster trained jointly over XGBoost's federated communicator "
        f"({n_rounds} boosting rounds asked, {binning.n_bins} global bins, TLS {'on' if tls else 'OFF'})"
    ]
    return HistogramPhase([models[0]], history, dict(sorted(per_institution.items())), pooled, notes)


def _count(record: Any, key: str) -> int:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FederationError(f"histogram XGBoost: a node sent a bad label count {key}={value!r}")
    return value


def _ask(grid: Grid, nodes: list[int], kind: str, config: dict[str, Any], timeout_s: float) -> dict[int, Message]:
    messages = [Message(RecordDict({"config": ConfigRecord(dict(config))}), dst_node_id=n, message_type=kind)
                for n in nodes]  # fmt: skip
    replies = {m.metadata.src_node_id: m for m in grid.send_and_receive(messages, timeout=timeout_s)}
    failed = [f"node {n}: {replies[n].error.reason}" for n in nodes if n in replies and replies[n].has_error()]
    missing = [n for n in nodes if n not in replies]
    if failed or missing:
        raise FederationError(f"{kind}: {len(nodes) - len(failed) - len(missing)} of {len(nodes)} institutions "
                              f"answered ({'; '.join(failed[:3]) or f'no reply from {len(missing)}'})")  # fmt: skip
    return replies


def _watch(
    grid: Grid, messages: list[Message], server: FederatedServer, timeout_s: float, names: dict[int, str]
) -> dict[int, Message]:
    """Push the training messages and pull replies, ending at the first failure: a node's error
    reply, the federated server gone, or no reply for ``timeout_s``. The replies reach the run's
    disclosure log through ``RecordingGrid``'s own push and pull."""
    kinds = {m.metadata.dst_node_id: m.metadata.message_type for m in messages}
    waiting = set(grid.push_messages(messages))
    replies: dict[int, Message] = {}
    deadline, wait = time.monotonic() + timeout_s, 0.01
    while waiting:
        pulled = list(grid.pull_messages(list(waiting)))
        for reply in pulled:
            node = reply.metadata.src_node_id
            waiting.discard(reply.metadata.reply_to_message_id)
            if reply.has_error():
                who = names.get(node, f"node {node}")
                raise FederationError(f"histogram XGBoost stopped: {who} failed: {reply.error.reason}")
            replies[node] = reply
        if not waiting:
            break
        try:
            server.check()
        except FederatedTrainingError as exc:
            raise FederationError(f"histogram XGBoost stopped: {exc}") from exc
        if time.monotonic() > deadline:
            missing = sorted(names.get(n, str(n)) for n in kinds if n not in replies)
            raise FederationError(f"histogram XGBoost: no reply from {', '.join(missing)} within {timeout_s:.0f} s")
        wait = 0.01 if pulled else min(1.0, wait * 2)
        time.sleep(wait)
    return replies


def _pooled(records: Iterable[RecordDict], vertical: Vertical, test_key: str, train_key: str) -> dict[str, float]:
    """Metrics on the union of the test splits, from the nodes' per-class score histograms."""
    records = list(records)

    def merged(key: str) -> ScoreHistogram | None:
        if not records or not all(key in r.array_records for r in records):
            return None
        return merge_histograms(
            [ScoreHistogram.from_arrays({k: v.numpy() for k, v in r.array_records[key].items()}) for r in records]
        )

    test = merged(test_key)
    if test is None:
        return {}
    y, p, frame = test.pseudo_rows()
    trained = merged(train_key) if vertical.tunes_on_train else None
    train = trained.pseudo_rows()[:2] if trained is not None else None
    return {k: float(v) for k, v in vertical.evaluate(y, p, frame=frame, train=train).items()}


def _history(records: list[RecordDict], vertical: Vertical, rounds: int) -> list[RoundRecord]:
    """One record per federated round, combined as the strategy rounds' are (sums, weighted means, pooled)."""
    history: list[RoundRecord] = []
    last = 0.0
    for r in range(1, rounds + 1):
        if not all(f"round.{r}" in rec.metric_records for rec in records):
            break
        local = [{k: float(v) for k, v in rec.metric_records[f"round.{r}"].items()} for rec in records]  # type: ignore[arg-type]
        rules = metric_aggregation(local[0], vertical.additive_metrics, vertical.pooled_only_metrics)
        metrics = aggregate_over_institutions(local, [m["num-examples"] for m in local], rules)
        pooled = _pooled(records, vertical, f"round.{r}.histogram.test.1", f"round.{r}.histogram.train.1")
        metrics |= {f"pooled.{k}": v for k, v in pooled.items()}
        finished = max(float(list(rec.config_records["timing"]["round-seconds"])[r - 1]) for rec in records)  # type: ignore[arg-type]
        history.append(RoundRecord(round=r, metrics=metrics, seconds=max(0.0, finished - last)))
        last = finished
    return history
