"""Lossless horizontal federated XGBoost over XGBoost's own federated communicator.

Why lossless: the ``hist`` method needs only (a) the bin cut points of every feature and
(b) per-bin gradient/hessian sums per tree node. If every institution first maps its features
onto the same global bin edges (at most ``max_bin`` distinct values per feature), XGBoost's
quantile sketch becomes exact and identical everywhere, and the per-bin sums that the
federated communicator all-reduces equal the pooled sums. The federated model is then the
model a pooled run on the same binned data would give (measured difference: 0.0).

What leaves an institution: its quantile summary (see :func:`local_quantile_summary`) once,
then every round the all-reduced gradient/hessian histograms, node sums, and small scalars
(row count, base-score and metric sums). Rows never leave. XGBoost's federated server sees the
per-institution histograms; the simulation runs it on loopback without TLS, a deployment
(``consortia.federation.xgb_histogram``) with mutual TLS (``ServerTls`` / ``WorkerTls``).

Two ways to run the same worker (:func:`run_worker`, in a spawned process of its own):
:func:`train_histogram_federated` simulates every institution and the server on this machine;
:func:`train_rank` is one institution's part, next to its data, with the server elsewhere
(:class:`FederatedServer` at the coordinator).

Why a parent-side watchdog: XGBoost 3.2's federated collectives block in gRPC without a
deadline (``dmlc_timeout`` and the server ``timeout`` do not end a collective that waits for a
dead peer), so one stopped institution would hang everyone. The parent watches every process
and tears the federation down with :class:`FederatedTrainingError`.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue as queue_mod
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from consortia.errors import FederationError
from consortia.learners.xgboost.binning import (
    GlobalBinning,
    as_2d_float,
    local_quantile_summary,
    merge_quantile_summaries,
)

if TYPE_CHECKING:  # imported inside functions: worker processes must skip sklearn first
    import xgboost as xgb

__all__ = [
    "ROUND_TIMEOUT_S",
    "STARTUP_TIMEOUT_S",
    "FederatedServer",
    "FederatedTrainingError",
    "GlobalBinning",
    "ServerTls",
    "WorkerTls",
    "best_rounds",
    "joint_params",
    "local_quantile_summary",
    "merge_quantile_summaries",
    "run_worker",
    "train_centralized",
    "train_histogram_federated",
    "train_rank",
]

#: seconds the federation may go without a finished boosting round before it is torn down
ROUND_TIMEOUT_S = 60.0
#: seconds for the server and every institution's process to start and finish round 1
STARTUP_TIMEOUT_S = 180.0
#: exit code of a worker whose own watchdog gave up (no round finished within its timeout)
STALL_EXIT_CODE = 75
#: extra seconds a simulated worker waits beyond the parent's timeout, so the parent reports first
_WORKER_GRACE_S = 10.0
_POLL_S = 0.1
#: seconds between two probes of a remote federated server (train_rank)
_PROBE_EVERY_S = 2.0

Part = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ServerTls:
    """TLS files of XGBoost's federated server (PEM paths): its key and certificate, and the CA
    that signed the workers' client certificates (the server verifies every worker)."""

    key: str
    cert: str
    client_ca: str


@dataclass(frozen=True)
class WorkerTls:
    """TLS files of one federated worker (PEM paths): the CA that signed the server's certificate,
    and this worker's own key and client certificate."""

    server_ca: str
    client_key: str
    client_cert: str


class FederatedTrainingError(FederationError):
    """Federated training stopped: an institution died, raised, or the federation stalled.

    A ``FederationError`` (so also a ``RuntimeError``): the CLI prints it as one line."""

    def __init__(
        self,
        message: str,
        *,
        rank: int | None = None,
        last_round: int | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.rank = rank  # the institution at fault, where it can be told
        self.last_round = last_round  # last round (0-based) it reported finished; -1: none
        self.detail = detail  # e.g. the worker's traceback


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _hist_params(params: dict[str, Any], binning: GlobalBinning | None) -> dict[str, Any]:
    """Force exact hist training: tree_method=hist, max_bin covering every global bin."""
    p = dict(params)
    if p.setdefault("tree_method", "hist") != "hist":
        raise ValueError(f"tree_method must be 'hist', got {p['tree_method']!r}")
    if binning is not None and p.setdefault("max_bin", binning.n_bins) < binning.n_bins:
        raise ValueError(
            f"max_bin={p['max_bin']} < {binning.n_bins} global bins: the sketch would "
            "re-bin and federated training would no longer match pooled training"
        )
    p.setdefault("seed", 0)
    return p


def joint_params(
    model_params: dict[str, Any], *, seed: int, n_rounds: int, positives: int, negatives: int
) -> tuple[dict[str, Any], int | None]:
    """The joint booster's parameters and early-stopping rounds (None: off), from the run's model
    params and the consortium's label counts (for ``scale_pos_weight='balanced'``): one rule for
    the simulated federation and a deployed one, so both train the same model."""
    from consortia.learners.xgboost.learner import booster_params, split_params

    own, xgb_params = split_params(model_params)
    xgb_params.setdefault("nthread", 1)
    params = booster_params(xgb_params, None, None, seed=seed)
    if own.get("scale_pos_weight") == "balanced":
        params["scale_pos_weight"] = negatives / positives if positives else 1.0
    elif own.get("scale_pos_weight") is not None:
        params["scale_pos_weight"] = float(own["scale_pos_weight"])
    es = None
    if own["early_stopping_rounds"] and n_rounds > own["early_stopping_rounds"]:
        es = int(own["early_stopping_rounds"])
        # Early stopping must see the pooled validation metric. Log loss is a sum over rows, so the
        # federated all-reduce gives exactly the pooled value; XGBoost's federated AUC/AUPRC is not
        # the pooled one (it stopped a federated run one round before the pooled run).
        if params.get("eval_metric", "logloss") in ("auc", "aucpr"):
            params["eval_metric"] = "logloss"
        params.setdefault("eval_metric", "logloss")
    return params, es


def best_rounds(booster: xgb.Booster, early_stopping_rounds: int | None) -> xgb.Booster:
    """With early stopping, keep the rounds up to the best one (all institutions agree on it)."""
    if early_stopping_rounds and booster.num_boosted_rounds() > booster.best_iteration + 1:
        return booster[: booster.best_iteration + 1]
    return booster


def _dmatrix(X: np.ndarray, y: np.ndarray, binning: GlobalBinning | None) -> xgb.DMatrix:
    import xgboost as xgb

    Xb = binning.transform(X) if binning is not None else as_2d_float(X, "X")
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(y) != len(Xb):
        raise ValueError(f"X has {len(Xb)} rows but y has {len(y)}")
    return xgb.DMatrix(Xb, label=y, missing=np.nan)


def _start_stall_watchdog(rank: int, timeout_s: float) -> tuple[Callable[[], None], threading.Event]:
    """Hard-exit the process if no round finishes for ``timeout_s`` (gRPC can't be interrupted)."""
    last = [time.monotonic()]
    stop = threading.Event()

    def beat() -> None:
        last[0] = time.monotonic()

    def watch() -> None:
        while not stop.wait(min(1.0, timeout_s / 4)):
            if time.monotonic() - last[0] > timeout_s:
                sys.stderr.write(
                    f"rank {rank}: no federated round finished for {timeout_s:.0f}s; "
                    "another institution or the server stopped; exiting\n"
                )
                sys.stderr.flush()
                os._exit(STALL_EXIT_CODE)

    threading.Thread(target=watch, name=f"xgb-stall-watchdog-{rank}", daemon=True).start()
    return beat, stop


def run_worker(
    rank: int,
    world_size: int,
    server_address: str,
    X: np.ndarray,
    y: np.ndarray,
    params: dict[str, Any],
    num_boost_round: int,
    timeout_s: float | None = 60,
    *,
    binning: GlobalBinning | None = None,
    X_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    early_stopping_rounds: int | None = None,
    on_round: Callable[[int], None] | None = None,
    tls: WorkerTls | None = None,
) -> bytes:
    """What an institution runs next to its data: join the federation, train, return the model.

    Builds the DMatrix from this institution's rows only (binned with ``binning`` if given,
    else ``X`` must already be binned) and trains inside XGBoost's federated communicator
    (over TLS with ``tls``). Returns the model (UBJSON bytes): every rank holds the same one,
    and a deployed institution evaluates and fine-tunes its own copy. ``timeout_s`` bounds the
    wait for any one round (joining included): past it the *process exits* with code
    ``STALL_EXIT_CODE``, since a blocked gRPC collective cannot be interrupted, so run this in a
    dedicated process; ``None`` disables that. On error the communicator is not finalised (that
    can block on a broken federation): let the process end.
    """
    import xgboost as xgb

    if (X_valid is None) != (y_valid is None):
        raise ValueError("give both X_valid and y_valid, or neither")
    if early_stopping_rounds is not None and X_valid is None:
        raise ValueError("early stopping needs a validation set at every institution")
    p = _hist_params(params, binning)
    dtrain = _dmatrix(X, y, binning)
    evals = [(_dmatrix(X_valid, y_valid, binning), "valid")] if X_valid is not None and y_valid is not None else []

    beat, stop = (lambda: None), threading.Event()
    if timeout_s is not None:
        beat, stop = _start_stall_watchdog(rank, timeout_s)

    class _Progress(xgb.callback.TrainingCallback):
        def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
            beat()
            if on_round is not None:
                on_round(epoch)
            return False

    comm: dict[str, Any] = {
        "dmlc_communicator": "federated",
        "federated_server_address": server_address,
        "federated_world_size": world_size,
        "federated_rank": rank,
    }
    if timeout_s is not None:  # ignored by the federated communicator in 3.2; kept for later ones
        comm["dmlc_timeout"] = math.ceil(timeout_s)
    if tls is not None:
        comm |= {
            "federated_server_cert_path": tls.server_ca,
            "federated_client_key_path": tls.client_key,
            "federated_client_cert_path": tls.client_cert,
        }
    try:
        xgb.collective.init(**comm)
        booster = xgb.train(
            p,
            dtrain,
            num_boost_round,
            evals=evals,
            early_stopping_rounds=early_stopping_rounds,
            verbose_eval=False,
            callbacks=[_Progress()],
        )
        beat()
        xgb.collective.finalize()
    finally:
        stop.set()  # the caller handles errors from here on
    return bytes(booster.save_raw("ubj"))


def _exit_with_parent() -> None:
    """Child processes must not outlive a parent that was killed (no cleanup ran)."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _skip_sklearn() -> None:
    """Speed up a simulated institution's start-up (child processes only).

    xgboost imports scikit-learn eagerly when installed: ~2 s of CPU, about 80% of a worker's
    start-up. Workers only call ``xgb.train``, so the import is made to fail (documented
    ``sys.modules[name] = None``) and xgboost falls back to its sklearn-free stubs.
    """
    if "xgboost" not in sys.modules:
        sys.modules.setdefault("sklearn", None)  # type: ignore[arg-type]


def _server_main(world_size: int, port: int, events: Any, tls: ServerTls | None = None) -> None:
    _exit_with_parent()
    _skip_sklearn()
    from xgboost.federated import FederatedTracker

    try:
        files = (
            {"server_key_path": tls.key, "server_cert_path": tls.cert, "client_cert_path": tls.client_ca} if tls else {}
        )
        tracker = FederatedTracker(n_workers=world_size, port=port, secure=tls is not None, **files)
        tracker.start()
        events.put(("server_ready", -1, port))
        tracker.wait_for()  # does not return after training; the parent terminates us
    except BaseException:
        events.put(("server_error", -1, traceback.format_exc()))
        raise


def _error_summary(exc: BaseException) -> str:
    """One readable line; XGBoost errors carry a timestamp, a C++ location and a backtrace."""
    text = str(exc).split("Stack trace:")[0].strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    line = re.sub(r"^\[[0-9:]+\]\s+\S+:\d+:\s*", "", line)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _worker_main(rank: int, world_size: int, address: str, kwargs: dict[str, Any], events: Any) -> None:
    _exit_with_parent()
    _skip_sklearn()
    try:
        model = run_worker(rank, world_size, address, on_round=lambda e: events.put(("round", rank, e)), **kwargs)
        events.put(("done", rank, model))
    except BaseException as exc:
        events.put(("error", rank, (_error_summary(exc), traceback.format_exc())))
        events.close()
        events.join_thread()  # make sure the report is out, then exit without finalising
        os._exit(1)


@contextmanager
def _reserved_port(port: int | None) -> Iterator[int]:
    """Hold the port while the server binds it, so no other process picks the same free port.

    gRPC binds with SO_REUSEPORT, so a second gRPC server would silently share a port instead
    of failing; we keep a bound (non-listening) SO_REUSEPORT socket until the server listens.
    """
    if port is not None:  # caller's port: fail clearly if a non-gRPC process already holds it
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            raise FederatedTrainingError(f"port {port} is already in use: {exc}") from exc
        finally:
            probe.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("0.0.0.0", port or 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == STALL_EXIT_CODE:
        return "gave up waiting for the federation"
    return f"exit code {code}"


def _terminate(procs: Sequence[Any], grace_s: float = 2.0) -> None:
    """Stop every started child: SIGTERM, then SIGKILL whatever is still alive."""
    started = [p for p in procs if p.pid is not None]
    for p in started:
        if p.is_alive():
            p.terminate()
            with suppress(OSError):
                os.kill(p.pid, signal.SIGCONT)  # a stopped process only sees SIGTERM once resumed
    deadline = time.monotonic() + grace_s
    for p in started:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in started:
        if p.is_alive():
            p.kill()
            p.join(1.0)
    for p in started:
        with suppress(ValueError):  # still alive after SIGKILL (should not happen); leave it be
            p.close()


def _check_parts(parts: Sequence[Part], binning: GlobalBinning, what: str) -> None:
    for i, (X_part, y) in enumerate(parts):
        X = np.asarray(X_part)
        if X.ndim != 2 or X.shape[1] != binning.n_features:
            raise ValueError(f"{what} {i}: X must be 2-D with {binning.n_features} features")
        if len(X) == 0 or len(X) != len(np.asarray(y).ravel()):
            raise ValueError(f"{what} {i}: need at least one row and one label per row")


def train_histogram_federated(
    parts: Sequence[Part],
    params: dict[str, Any],
    num_boost_round: int,
    *,
    binning: GlobalBinning,
    port: int | None = None,
    timeout_s: float = 60,
    startup_timeout_s: float | None = None,
    valid_parts: Sequence[Part] | None = None,
    early_stopping_rounds: int | None = None,
    names: Sequence[str] | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> xgb.Booster:
    """Simulate the federation on this machine: one server and one process per institution.

    Each worker process (spawn context) bins and loads only its own ``(X, y)`` and runs
    :func:`run_worker`. ``port=None`` picks a free port (the server listens on all
    interfaces; workers connect via 127.0.0.1). ``timeout_s`` bounds the time the federation
    may go without any round finishing; ``startup_timeout_s`` (default ``timeout_s``) bounds
    the server start and the time until every institution finished its first round (process
    start, data loading, joining). A worker that dies or raises is detected within ~0.1 s.
    On any failure every child is terminated and :class:`FederatedTrainingError` names the
    institution. ``on_round(rank, round)`` runs in this process as ranks report finished
    rounds (0-based). Returns rank 0's model; it expects features transformed by ``binning``.
    Lossless (equal to :func:`train_centralized`) unless rows are subsampled (``subsample``
    < 1 draws different rows per institution than the pooled run does).
    """
    n = len(parts)
    names = _check_federation(parts, params, binning, valid_parts, early_stopping_rounds, names)
    startup_s = timeout_s if startup_timeout_s is None else startup_timeout_s
    worker_params = dict(params)
    worker_params.setdefault("nthread", 1)  # all institutions share this machine's cores
    federation = _Federation(dict(enumerate(names)), num_boost_round, timeout_s, startup_s, on_round)
    try:
        deadline = time.monotonic() + startup_s
        with _reserved_port(port) as port_:
            federation.start_server(n, port_, deadline)
        address = f"127.0.0.1:{port_}"
        for rank, (X, y) in enumerate(parts):
            kwargs = _worker_kwargs(
                X, y, worker_params, num_boost_round, max(timeout_s, startup_s), binning, early_stopping_rounds
            )
            if valid_parts is not None:
                kwargs["X_valid"], kwargs["y_valid"] = map(np.asarray, valid_parts[rank])
            federation.start_worker(rank, n, address, kwargs)
        model = federation.wait_for_models()[0]
        import xgboost as xgb

        return xgb.Booster(model_file=bytearray(model))
    finally:
        federation.close()


def _check_federation(
    parts: Sequence[Part],
    params: dict[str, Any],
    binning: GlobalBinning,
    valid_parts: Sequence[Part] | None,
    early_stopping_rounds: int | None,
    names: Sequence[str] | None,
) -> list[str]:
    """Everything that can be judged before a process starts; returns one name per institution."""
    n = len(parts)
    if n < 1:
        raise ValueError("need at least one institution")
    _check_parts(parts, binning, "institution")
    if valid_parts is not None:
        if len(valid_parts) != n:
            raise ValueError("valid_parts needs one (X, y) per institution")
        _check_parts(valid_parts, binning, "validation part")
    if early_stopping_rounds is not None and valid_parts is None:
        raise ValueError("early stopping needs valid_parts")
    names = list(names) if names is not None else [f"institution {r}" for r in range(n)]
    if len(names) != n:
        raise ValueError("names needs one entry per institution")
    _hist_params(params, binning)  # validate before starting processes
    return names


class _Federation:
    """The parent's view of federated processes started here: XGBoost's federated server (in a
    simulation or at a coordinator) and/or the workers of some ranks (all of them in a
    simulation, one at a deployed institution), their reports and the watchdog."""

    def __init__(
        self,
        names: dict[int, str],
        num_boost_round: int,
        timeout_s: float,
        startup_s: float,
        on_round: Callable[[int, int], None] | None,
    ) -> None:
        self.names = names  # rank -> institution, for the ranks whose workers run here
        self.ranks = sorted(names)
        self.num_boost_round = num_boost_round
        self.timeout_s = timeout_s
        self.startup_s = startup_s
        self.on_round = on_round
        self.ctx = mp.get_context("spawn")
        self.events = self.ctx.Queue()
        self.procs: list[Any] = []
        self.server: Any | None = None
        self.workers: dict[int, Any] = {}
        self.last_round = dict.fromkeys(self.ranks, -1)
        self.results: dict[int, bytes] = {}
        self.last_progress = time.monotonic()
        #: (host, port) of a federated server that runs elsewhere, probed every few seconds: when it
        #: is gone (a coordinator that ended the run), the workers here stop instead of waiting out
        #: their timeout on a federation that no longer exists
        self.remote_server: tuple[str, int] | None = None
        self._next_probe = 0.0

    def who(self, rank: int) -> str:
        return f"{self.names[rank]} (rank {rank})"

    def where(self, rank: int) -> str:
        r, total = self.last_round[rank], self.num_boost_round
        return f"before finishing round 1 of {total}" if r < 0 else f"after round {r + 1} of {total}"

    # -- start-up --------------------------------------------------------------------------------
    def start_server(self, world_size: int, port: int, deadline: float, tls: ServerTls | None = None) -> None:
        """Start XGBoost's federated server and wait until it listens on ``port``."""
        server = self.ctx.Process(
            target=_server_main,
            args=(world_size, port, self.events, tls),
            name="consortia-xgb-server",
            daemon=True,
        )
        server.start()
        self.procs.append(server)
        self.server = server
        ready = False
        while not (ready and _listening(port)):
            if time.monotonic() > deadline:
                raise FederatedTrainingError(
                    f"federated server did not start listening on port {port} within {self.startup_s:.0f}s"
                )
            with suppress(queue_mod.Empty):
                kind, _, payload = self.events.get(timeout=_POLL_S)
                if kind == "server_error":
                    last_line = payload.strip().splitlines()[-1]
                    raise FederatedTrainingError(f"federated server failed to start: {last_line}", detail=payload)
                ready = ready or kind == "server_ready"
            if not server.is_alive():
                raise FederatedTrainingError(
                    f"federated server stopped at start-up ({_describe_exit(server.exitcode)})"
                )

    def start_worker(self, rank: int, world_size: int, address: str, kwargs: dict[str, Any]) -> None:
        proc = self.ctx.Process(
            target=_worker_main,
            args=(rank, world_size, address, kwargs, self.events),
            name=f"consortia-xgb-worker-{rank}",
            daemon=True,
        )
        proc.start()
        self.procs.append(proc)
        self.workers[rank] = proc
        self.last_progress = time.monotonic()

    # -- training --------------------------------------------------------------------------------
    def wait_for_models(self) -> dict[int, bytes]:
        """Watch the reports until every worker started here is done; their models by rank."""
        server = self.server
        while len(self.results) < len(self.ranks):
            with suppress(queue_mod.Empty):
                self.handle(self.events.get(timeout=_POLL_S))
            dead = [r for r, w in self.workers.items() if r not in self.results and w.exitcode is not None]
            server_gone = server is not None and server.exitcode is not None
            if dead or server_gone:
                self.drain(0.5)  # a final "done"/"error" may still be in the pipe
                dead = [r for r in dead if r not in self.results]
            if dead:
                r = dead[0]
                raise FederatedTrainingError(
                    f"{self.who(r)} stopped {self.where(r)} ({_describe_exit(self.workers[r].exitcode)}); "
                    "federated training aborted and all processes terminated",
                    rank=r,
                    last_round=self.last_round[r],
                )
            if server_gone and len(self.results) < len(self.ranks):
                assert server is not None
                raise FederatedTrainingError(
                    f"federated server stopped during training ({_describe_exit(server.exitcode)})"
                )
            self.check_stall()
            self.check_remote_server()
        return dict(self.results)

    def check_remote_server(self) -> None:
        if self.remote_server is None or time.monotonic() < self._next_probe:
            return
        self._next_probe = time.monotonic() + _PROBE_EVERY_S
        host, port = self.remote_server
        if not (_listening(port, host) or _listening(port, host)):  # twice: one lost probe is no verdict
            raise FederatedTrainingError(
                f"the federated server at {host}:{port} stopped listening; federated training aborted",
                last_round=min(self.last_round.values(), default=-1),
            )

    def handle(self, msg: tuple[str, int, Any]) -> None:
        kind, rank, payload = msg
        if kind == "round":
            self.last_round[rank] = max(self.last_round[rank], payload)
            self.last_progress = time.monotonic()
            if self.on_round is not None:
                self.on_round(rank, payload)
        elif kind == "done":
            self.results[rank] = payload
            self.last_progress = time.monotonic()
        elif kind == "error":
            summary, tb = payload
            raise FederatedTrainingError(
                f"{self.who(rank)} failed {self.where(rank)}: {summary}",
                rank=rank,
                last_round=self.last_round[rank],
                detail=tb,
            )

    def drain(self, wait_s: float) -> None:
        end = time.monotonic() + wait_s
        while True:
            try:
                self.handle(self.events.get(timeout=max(0.0, end - time.monotonic())))
            except queue_mod.Empty:
                return

    def check_stall(self) -> None:
        """No round finished for too long: blame the institution furthest behind, if any is."""
        last_round = self.last_round
        started = all(last_round[r] >= 0 or r in self.results for r in self.ranks)
        limit = self.timeout_s if started else self.startup_s
        if time.monotonic() - self.last_progress <= limit:
            return
        pending = [r for r in self.ranks if r not in self.results]
        slowest = min(pending, key=lambda r: last_round[r])
        if last_round[slowest] < max(last_round[r] for r in pending):
            blame, rank_ = f"{self.who(slowest)} is furthest behind", slowest
        else:  # in lockstep: whoever hangs inside the round can't be told apart
            blame, rank_ = "an institution or the server stopped responding", None
        raise FederatedTrainingError(
            f"federation stalled: no round finished for {limit:.0f}s "
            f"({', '.join(f'{self.who(r)}: {last_round[r] + 1}' for r in pending)} rounds "
            f"finished); {blame}; all processes terminated",
            rank=rank_,
            last_round=last_round[slowest],
        )

    def close(self) -> None:
        _terminate(self.procs)
        self.events.close()
        self.events.cancel_join_thread()


class FederatedServer:
    """XGBoost's federated server in a process of its own, for a coordinator whose workers run
    elsewhere (a deployment's ServerApp). It listens on all interfaces (XGBoost has no host
    option); with ``tls`` it accepts only workers whose client certificate ``tls.client_ca`` signed.
    ``run_federated_server(blocking=True)`` never returns after training: ``close`` terminates it."""

    def __init__(
        self, world_size: int, *, port: int | None = None, tls: ServerTls | None = None, startup_timeout_s: float = 60
    ) -> None:
        self._federation = _Federation({}, 0, math.inf, startup_timeout_s, None)
        try:
            with _reserved_port(port) as port_:
                self._federation.start_server(world_size, port_, time.monotonic() + startup_timeout_s, tls)
        except BaseException:
            self._federation.close()
            raise
        self.port = port_

    def check(self) -> None:
        """FederatedTrainingError if the server process is gone (it only ends when closed)."""
        server = self._federation.server
        if server is not None and server.exitcode is not None:
            raise FederatedTrainingError(
                f"federated server stopped during training ({_describe_exit(server.exitcode)})"
            )

    def close(self) -> None:
        self._federation.close()

    def __enter__(self) -> FederatedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def train_rank(
    rank: int,
    world_size: int,
    server_address: str,
    X: np.ndarray,
    y: np.ndarray,
    params: dict[str, Any],
    num_boost_round: int,
    *,
    binning: GlobalBinning,
    name: str = "",
    tls: WorkerTls | None = None,
    valid: Part | None = None,
    early_stopping_rounds: int | None = None,
    timeout_s: float = 60,
    startup_timeout_s: float | None = None,
    on_round: Callable[[int], None] | None = None,
) -> xgb.Booster:
    """One institution's part of a federation whose server and other ranks run elsewhere.

    The same worker as :func:`train_histogram_federated` runs (:func:`run_worker` in a spawned
    process of its own, binning and loading only these rows), watched the same way: the worker
    dying or raising, or no round finishing for ``timeout_s`` (``startup_timeout_s`` until the
    first), or the server no longer listening, ends it with :class:`FederatedTrainingError` and
    the process terminated."""
    _check_parts([(X, y)], binning, "institution")
    if valid is not None:
        _check_parts([valid], binning, "validation part")
    elif early_stopping_rounds is not None:
        raise ValueError("early stopping needs a validation part")
    _hist_params(params, binning)
    startup_s = timeout_s if startup_timeout_s is None else startup_timeout_s
    report = None if on_round is None else (lambda _rank, rnd: on_round(rnd))
    federation = _Federation({rank: name or f"institution {rank}"}, num_boost_round, timeout_s, startup_s, report)
    kwargs = _worker_kwargs(X, y, params, num_boost_round, max(timeout_s, startup_s), binning, early_stopping_rounds)
    if valid is not None:
        kwargs["X_valid"], kwargs["y_valid"] = map(np.asarray, valid)
    kwargs["tls"] = tls
    host, _, port = server_address.rpartition(":")
    federation.remote_server = (host.strip("[]") or "127.0.0.1", int(port))
    try:
        federation.start_worker(rank, world_size, server_address, kwargs)
        model = federation.wait_for_models()[rank]
        import xgboost as xgb

        return xgb.Booster(model_file=bytearray(model))
    finally:
        federation.close()


def _worker_kwargs(
    X: np.ndarray,
    y: np.ndarray,
    params: dict[str, Any],
    num_boost_round: int,
    timeout_s: float,
    binning: GlobalBinning,
    early_stopping_rounds: int | None,
) -> dict[str, Any]:
    """What :func:`run_worker` gets in a worker process (its own stall timer outlasts the parent's)."""
    return {
        "X": np.asarray(X),
        "y": np.asarray(y),
        "params": params,
        "num_boost_round": num_boost_round,
        "timeout_s": timeout_s + _WORKER_GRACE_S,
        "binning": binning,
        "early_stopping_rounds": early_stopping_rounds,
    }


def train_centralized(
    parts: Sequence[Part],
    params: dict[str, Any],
    num_boost_round: int,
    *,
    binning: GlobalBinning,
    valid_parts: Sequence[Part] | None = None,
    early_stopping_rounds: int | None = None,
) -> xgb.Booster:
    """Pooled reference: the same params on all rows together (what federation must match)."""
    import xgboost as xgb

    _check_parts(parts, binning, "institution")
    X = np.concatenate([np.asarray(x, dtype=np.float64) for x, _ in parts])
    y = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for _, t in parts])
    evals = []
    if valid_parts is not None:
        _check_parts(valid_parts, binning, "validation part")
        Xv = np.concatenate([np.asarray(x, dtype=np.float64) for x, _ in valid_parts])
        yv = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for _, t in valid_parts])
        evals = [(_dmatrix(Xv, yv, binning), "valid")]
    elif early_stopping_rounds is not None:
        raise ValueError("early stopping needs valid_parts")
    return xgb.train(
        _hist_params(params, binning),
        _dmatrix(X, y, binning),
        num_boost_round,
        evals=evals,
        early_stopping_rounds=early_stopping_rounds,
        verbose_eval=False,
    )
