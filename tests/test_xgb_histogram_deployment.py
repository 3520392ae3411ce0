"""Histogram XGBoost on the Flower ServerApp: equal to the simulated run, TLS on, no hang on failure.

The message path (quantile summaries, bin edges, XGBoost's federated server and one worker per
node over mutual TLS, evaluation and fine-tuning at the nodes) runs on an in-process grid
whose nodes answer concurrently (each node's worker must be in the federation at the same time
as the others), and in a real deployment (SuperLink + SuperNodes on loopback, Flower TLS and
node auth). Both must give the joint booster ``consortia run --xgb-mode histogram`` gives.
"""

from __future__ import annotations

import threading
import time
from uuid import uuid4

import numpy as np
import pytest
import xgboost as xgb
from factories import hospital_files
from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from processes import spawned_children

from consortia.config import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.errors import FederationError
from consortia.experiment.histogram import run_histogram
from consortia.federation.client import build_client_app
from consortia.federation.engines.inprocess import InProcessGrid, start_server_task
from consortia.federation.grids import detached
from consortia.federation.server import ServerHooks, build_server_app
from consortia.federation.xgb_histogram import COMMUNICATOR
from consortia.federation.xgb_histogram_node import QUANTILES, TRAIN
from consortia.learners.xgboost.learner import XGBoostLearner
from consortia.verticals import get_vertical


class ConcurrentGrid(InProcessGrid):
    """The in-process grid, but each node answers in a thread of its own (as separate SuperNodes
    do), and a ClientApp exception becomes an error reply (as Flower's runtimes send)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def push_messages(self, messages):
        ids = []
        for message in sorted(messages, key=lambda m: m.metadata.dst_node_id):
            message.metadata.__dict__["_message_id"] = str(uuid4())
            message.content = detached(message.content)
            thread = threading.Thread(target=self._deliver, args=(message,), daemon=True)
            self.threads.append(thread)
            thread.start()
            ids.append(message.metadata.message_id)
        return ids

    def _deliver(self, message: Message) -> None:
        try:
            reply = self.client_app(message, self.contexts[message.metadata.dst_node_id])
        except Exception as exc:
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{exc}"), reply_to=message)
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        with self.lock:
            self._replies[message.metadata.message_id] = reply

    def pull_messages(self, message_ids):
        with self.lock:
            return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages, *, timeout=None):
        waiting = list(self.push_messages(messages))
        replies, end = [], time.monotonic() + (timeout or 600)
        while waiting and time.monotonic() < end:
            pulled = self.pull_messages(waiting)
            replies += pulled
            waiting = [i for i in waiting if i not in {m.metadata.reply_to_message_id for m in pulled}]
            time.sleep(0.01)
        return replies


def _config(files, **overrides) -> ExperimentConfig:
    values = {"vertical": "healthcare", "model": "xgboost", "xgb_mode": "histogram", "rounds": 2, "seed": 3,
              "finetune_epochs": 1, "model_params": {"trees_per_epoch": 2},
              "data": {"files": [str(p) for p in files]}}  # fmt: skip
    return ExperimentConfig.build(**(values | overrides))


def _serve(config: ExperimentConfig, client_app=None, timeout_s: float = 60.0, ended: list | None = None):
    """The ServerApp on the concurrent grid; its outcome. ``ended``: seconds until the ServerApp
    returned or raised, and until every node had answered."""
    outcome = []
    hooks = ServerHooks(on_outcome=outcome.append, node_timeout_s=timeout_s)
    run_config = config.to_run_config()
    nodes = [{"partition-id": i, "num-partitions": config.institutions} for i in range(config.institutions)]
    grid = ConcurrentGrid(client_app or build_client_app(), nodes, run_config)
    start_server_task(grid)
    context = Context(run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={}, state=RecordDict(),
                      run_config=run_config)  # fmt: skip
    started = time.monotonic()
    try:
        build_server_app(hooks=hooks)(grid, context)
    finally:
        seconds = [time.monotonic() - started]
        for thread in grid.threads:
            thread.join(timeout=120)
        seconds.append(time.monotonic() - started)
        if ended is not None:
            ended += seconds
    return outcome[0]


def _max_difference(config: ExperimentConfig, outcome, reference) -> float:
    """Largest |p_served - p_simulated| over every institution's test rows."""
    vertical = get_vertical(config.vertical)
    federation = load_federation(config, vertical)
    x = np.concatenate([federation.institutions[n].arrays(outcome.preprocessor, federation.schema.target)[2]
                        for n in federation.names])  # fmt: skip
    served = XGBoostLearner(x.shape[1], vertical.model_params(config.model, config.model_params))
    served.set_parameters(outcome.final_parameters)
    simulated = reference.federated.predict(xgb.DMatrix(reference.binning.transform(x))).astype(np.float64)
    assert served.num_rounds == reference.federated.num_boosted_rounds()
    return float(np.max(np.abs(served.predict_proba(x) - simulated)))


def _assert_same_tables(outcome, reference) -> None:
    per = reference.result.per_institution
    assert set(outcome.per_institution) == set(per)
    for name, modes in outcome.per_institution.items():
        assert modes["global"] == pytest.approx(per[name]["federated"], rel=1e-9, abs=1e-12), name
        assert modes["finetuned"] == pytest.approx(per[name]["federated_finetuned"], rel=1e-9, abs=1e-12), name
    assert outcome.pooled["global"]["auroc"] == pytest.approx(reference.result.pooled["federated"]["auroc"], abs=1e-9)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return hospital_files(tmp_path_factory.mktemp("hospitals"), rows=300, seed=4)


@pytest.fixture(scope="module")
def reference(files):
    return run_histogram(_config(files), baselines=False)


@pytest.mark.timeout(300)
def test_serverapp_trains_the_simulated_booster_over_tls(files, reference, tmp_path):
    from consortia.runs.folder import RunFolder

    config = _config(files, run_dir=str(tmp_path / "served"))
    outcome = _serve(config)
    difference = _max_difference(config, outcome, reference)
    print(f"max |served - simulated| = {difference:.2e}")
    assert difference <= 1e-6
    _assert_same_tables(outcome, reference)
    assert len(outcome.rounds) == config.rounds
    assert outcome.rounds[-1].metrics["pooled.auroc"] == pytest.approx(outcome.pooled["global"]["auroc"], abs=1e-9)
    assert any("TLS on" in note for note in outcome.notes)
    # every reply (pushed and pulled by the phase itself) and the communicator's traffic are in the disclosure log
    disclosure = RunFolder(config.run_dir).read_disclosure()
    assert all({QUANTILES, TRAIN, COMMUNICATOR} <= set(kinds) for kinds in disclosure.values())
    assert all(kinds[TRAIN]["replies"] == 1 for kinds in disclosure.values())


@pytest.mark.timeout(300)
def test_a_node_that_fails_ends_the_run_with_a_clear_error(files):
    """One institution's node dies as training starts: the others' workers are stopped, no hang."""
    app = build_client_app()

    def dies_at_training(message: Message, context: Context) -> Message:
        if message.metadata.message_type == TRAIN and context.node_config["partition-id"] == 1:
            raise RuntimeError("node lost")
        return app(message, context)

    before = spawned_children()
    ended: list[float] = []
    with pytest.raises(FederationError, match=r"histogram XGBoost stopped: hospital-02 failed: node lost"):
        _serve(_config(files), client_app=dies_at_training, timeout_s=120.0, ended=ended)
    raised, cleaned_up = ended
    # the server ends the run at the error reply, and the other nodes' workers stop as soon as its
    # federated server is gone (they probe it), not after their 120 s start-up timeout
    assert raised < 90 and cleaned_up < 90, ended
    assert spawned_children() - before == set()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deployed_histogram_run_equals_the_simulated_one(files, reference, tmp_path):
    """SuperLink + three SuperNodes on loopback (Flower TLS and node auth), XGBoost's communicator over TLS."""
    from consortia.federation.engines.deployment import LocalFederation
    from consortia.federation.local_baseline import NODE_FLAG
    from consortia.runs.folder import RunFolder

    config = _config(files, run_dir=str(tmp_path / "deployed"))
    agrees = {files[0].stem: {NODE_FLAG: True}}  # one node trains its local-only baseline too
    with LocalFederation(files, tmp_path / "federation", tls=True, node_auth=True, node_configs=agrees) as federation:
        outcome = federation.wait(federation.submit(config), config.run_dir)
    difference = _max_difference(config, outcome, reference)
    print(f"deployed: max |deployed - simulated| = {difference:.2e}")
    assert difference <= 1e-6
    _assert_same_tables(outcome, reference)
    assert len(outcome.rounds) == config.rounds and any("TLS on" in note for note in outcome.notes)
    assert [n for n, modes in outcome.per_institution.items() if "local_only" in modes] == [files[0].stem]
    kept = RunFolder(config.run_dir).model_checkpoint()  # what `consortia predict` and export load
    assert kept is not None and np.array_equal(kept.parameters[0], outcome.final_parameters[0])
    disclosure = RunFolder(config.run_dir).read_disclosure()  # what left each node, by message type
    assert set(disclosure) == set(outcome.per_institution)
    assert all({QUANTILES, TRAIN} <= set(kinds) for kinds in disclosure.values())
    # what went through XGBoost's communicator, outside Flower's messages, is listed too
    assert all(kinds[COMMUNICATOR]["records"]["all-reduce"]["tls"] for kinds in disclosure.values())


@pytest.mark.timeout(300)
def test_the_federated_server_refuses_a_worker_the_run_ca_did_not_sign(tmp_path):
    """Mutual TLS: a worker with a certificate from another CA never joins the federation."""
    from consortia.federation.xgb_histogram_tls import RunAuthority, new_key, worker_files
    from consortia.learners.xgboost.histogram import (
        FederatedServer,
        FederatedTrainingError,
        local_quantile_summary,
        merge_quantile_summaries,
        train_rank,
    )

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), (np.arange(60) % 2).astype(float)
    binning = merge_quantile_summaries([local_quantile_summary(X, 8)], 8)
    run_ca, other_ca = RunAuthority.create(), RunAuthority.create()
    key, public = new_key()
    stranger = worker_files(tmp_path / "stranger", run_ca.cert_pem, key, other_ca.client_cert("stranger", public))
    before = spawned_children()
    server = FederatedServer(1, tls=run_ca.server_files(tmp_path / "server", ("127.0.0.1",)))
    with server, pytest.raises(FederatedTrainingError, match=r"stalled|failed"):
        train_rank(0, 1, f"127.0.0.1:{server.port}", X, y, {"nthread": 1}, 2, binning=binning,
                   tls=stranger, timeout_s=5, startup_timeout_s=8)  # fmt: skip
    assert spawned_children() - before == set()
