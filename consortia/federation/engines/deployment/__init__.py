"""A real Flower federation on this machine: one SuperLink, one SuperNode per institution file.

``LocalFederation`` starts the processes Flower's deployment runtime uses (``flower-superlink``,
``flower-supernode``; they start ``flower-superexec``, ``flwr-serverapp`` and ``flwr-clientapp``
themselves), with TLS and SuperNode authentication on by default, submits runs with
``flwr run`` and stops every process it started, also when something fails. Each SuperNode
gets only its own file, through its node config's ``data-path``. It is what the integration
test uses and a way to try a deployment before spreading it over machines (docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consortia.config import ExperimentConfig
from consortia.errors import ConfigError, FederationError
from consortia.federation.engines.deployment import commands as cmd
from consortia.federation.engines.deployment.certs import generate_node_key, generate_tls
from consortia.federation.local_baseline import NODE_FLAG
from consortia.federation.secure.he import release_model, simulated_key
from consortia.runs.folder import OUTCOME, RunFolder
from consortia.runs.results import FederatedOutcome

APP_DIR = Path(__file__).resolve().parent / "fab"
CONNECTION = "consortia-local"
#: how often ``wait`` asks for a run's status while its outcome file has not appeared
STATUS_EVERY_S = 2.0


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path


@dataclass
class LocalFederation:
    """SuperLink + SuperNodes on 127.0.0.1 in ``workdir`` (certificates, keys, logs, FLWR_HOME)."""

    data_files: list[Path]
    workdir: Path
    tls: bool = True
    node_auth: bool = True
    host: str = "127.0.0.1"
    #: Consortia's SuperNode launcher: one warm ClientApp process per node, prompt polling (node.py);
    #: False runs Flower's plain ``flower-supernode`` (a new ClientApp process per message, 3 s polls)
    warm: bool = True
    #: node-config entries every SuperNode sets for itself besides its ``data-path``
    node_config: dict[str, bool | int | str] = field(default_factory=dict)
    #: per node (its file's stem): entries over ``node_config``, e.g. one institution's ``local-baseline``
    node_configs: dict[str, dict[str, bool | int | str]] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.data_files = [Path(p).resolve() for p in self.data_files]
        self.flwr_home = self.workdir / "flwr_home"
        self.env = cmd.deployment_env(flwr_home=self.flwr_home)
        self.port = cmd.free_port(self.host)
        self.address = f"{self.host}:{self.port}"
        self.tls_files: cmd.Tls | None = None
        self.nodes: dict[str, Process] = {}
        self._control: Any = None  # the Control API client ``status`` uses, made on first use

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, ready_timeout_s: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            files = generate_tls(self.workdir / "certs", hosts=("localhost", self.host))
            self.tls_files = cmd.Tls(files.ca_cert, files.server_cert, files.server_key)
        cmd.write_connection(self.flwr_home, CONNECTION, self.address, self.tls_files)
        self._spawn(
            "superlink",
            cmd.superlink_command(
                host=self.host,
                port=self.port,
                tls=self.tls_files,
                node_auth=self.node_auth,
            ),
        )  # fmt: skip  (Flower's in-memory state: a local federation lives as long as its SuperLink)
        self._wait_for_port(self.port, ready_timeout_s)
        if self.node_auth:  # one `flwr supernode register` per node, all at once (each is a Python start)
            keys = [generate_node_key(self.workdir / "keys", Path(p).stem) for p in self.data_files]
            self.flwr_all([["supernode", "register", str(public), CONNECTION] for _, public in keys])
            for path, (key, _) in zip(self.data_files, keys, strict=True):
                self.start_node(path, key=key)
        else:
            for path in self.data_files:
                self.start_node(path)

    def start_node(
        self, data: Path, *, register: bool = True, max_retries: int | None = None, key: Path | None = None
    ) -> Process:
        """One SuperNode for ``data``; with node auth its key is made and registered first (unless
        not), or ``key`` is one already registered."""
        name = Path(data).stem
        if self.node_auth and key is None:
            key, public = generate_node_key(self.workdir / "keys", name)
            if register:
                self.flwr("supernode", "register", str(public), CONNECTION)
        process = self._spawn(f"node-{name}", cmd.supernode_command(
            superlink=self.address, data=data, port=cmd.free_port(self.host), tls=self.tls_files,
            auth_key=key, host=self.host, max_retries=max_retries, warm=self.warm,
            node_config={**self.node_config, **self.node_configs.get(name, {})},
        ))  # fmt: skip
        self.nodes[name] = process
        return process

    def kill_node(self, name: str) -> None:
        """Kill a SuperNode and its ClientApp processes at once (no goodbye to the SuperLink).

        They all share the SuperNode's process group (it is started in a new session and starts
        its SuperExec and ClientApps without one of their own), so one ``killpg`` reaches them."""
        process = self.nodes[name]
        _killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=30)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop every process this federation started (and what they started), newest first.

        Signals go to process groups, not remembered PIDs: a group's number cannot be handed to
        a new process while any member lives, and members that lost their parent are still in it.
        Each process is its own group leader (``start_new_session``); the groups its children made
        for themselves (the SuperLink starts its SuperExec in a new session) are looked up once,
        before anything is signalled, while they are still its children."""
        if self._control is not None:
            with contextlib.suppress(Exception):
                self._control.close()
            self._control = None
        groups = _process_groups([p.popen.pid for p in reversed(self.processes)])
        for group in groups:
            _killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for group in groups:  # whatever ignored SIGTERM, or outlived its leader
            _killpg(group, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored: rarely needed
                process.popen.wait(timeout=5)
        self.processes.clear()

    # -- runs ------------------------------------------------------------------------------------
    def flwr(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [cmd.executable("flwr"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0:
            raise FederationError(f"flwr {' '.join(args[:2])} failed: {(result.stdout + result.stderr).strip()[-800:]}")
        return result

    def flwr_all(self, commands: list[list[str]], timeout_s: float = 120.0) -> None:
        """Several ``flwr`` commands at once; FederationError with the first failure's output."""
        running = [
            subprocess.Popen([cmd.executable("flwr"), *args], env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for args in commands
        ]  # fmt: skip
        failures = []
        for args, popen in zip(commands, running, strict=True):
            try:
                output, _ = popen.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                popen.kill()
                output, _ = popen.communicate()
            if popen.returncode != 0:
                failures.append(f"flwr {' '.join(args[:2])} failed: {(output or '').strip()[-800:]}")
        if failures:
            raise FederationError(failures[0])

    def submit(self, config: ExperimentConfig, app_dir: str | Path = APP_DIR) -> str:
        """Start a run of ``config`` on the SuperLink; returns the run id.

        ``app_dir`` is the Flower App to submit: the shipped, code-less one unless a caller (a
        test that wraps the ClientApp, say) brings its own.
        """
        if not config.run_dir:
            raise FederationError("a deployed run needs config.run_dir (where the ServerApp writes its outcome)")
        run_config = self.workdir / f"run-config-{time.time_ns()}.toml"
        run_config.write_text(run_config_toml(config))
        result = self.flwr("run", str(app_dir), CONNECTION, "--run-config", str(run_config), "--format", "json")
        payload = json.loads(result.stdout[result.stdout.index("{") :])
        return str(payload["run-id"])

    def status(self, run_id: str) -> str:
        """The run's status as ``flwr ls`` prints it (``running``, ``finished:completed``, ...).

        Asked over the SuperLink's Control API from this process, as ``flwr ls`` asks it: a
        ``flwr`` command is a Python start, about 1.5 s of CPU taken from the run it watches."""
        import httpx
        from flwr.proto.control_pb2 import ListRunsRequest

        if self._control is None:
            self._control = cmd.control_client(self.address, self.tls_files)
        try:
            runs = self._control.ListRuns(ListRunsRequest(run_id=int(run_id))).run_dict.values()
        except httpx.HTTPError as exc:
            raise FederationError(f"the SuperLink did not say how run {run_id} is doing: {exc}") from exc
        for run in runs:
            status, sub_status = run.status.status, run.status.sub_status
            return f"{status}:{sub_status}" if sub_status else str(status)
        return "unknown"

    def wait(self, run_id: str, run_dir: str | Path, timeout_s: float = 900.0) -> FederatedOutcome:
        """Block until the run finishes; its outcome, or FederationError with the server's reason.

        The outcome file is looked for every 0.1 s; the run's status (one Control API request) is
        asked when it appears, and every 2 s meanwhile in case the run failed."""
        deadline = time.monotonic() + timeout_s
        folder = RunFolder(run_dir)
        outcome_file = Path(run_dir) / OUTCOME
        while True:
            ask_at = min(time.monotonic() + STATUS_EVERY_S, deadline)
            while not outcome_file.is_file() and time.monotonic() < ask_at:
                time.sleep(0.1)
            status = self.status(run_id)
            if status.startswith("finished"):
                outcome = folder.read_outcome()
                if status == "finished:completed" and outcome is not None:
                    return outcome
                raise FederationError(f"run {run_id} ended as '{status}': {self.server_log(run_id)}")
            if time.monotonic() > deadline:
                raise FederationError(f"run {run_id} still '{status}' after {timeout_s:.0f} s")
            if outcome_file.is_file():  # written; the ServerApp is finishing
                time.sleep(0.2)

    def server_log(self, run_id: str) -> str:
        try:
            return self.flwr("log", run_id, CONNECTION, "--show", timeout_s=60).stdout.strip()[-2000:]
        except (FederationError, subprocess.TimeoutExpired) as exc:
            return str(exc)

    # -- helpers -----------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> Process:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            popen = subprocess.Popen(
                argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _wait_for_port(self, port: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.processes[0].popen.poll() is not None:
                raise FederationError(f"the SuperLink exited: {self.processes[0].log.read_text()[-1500:]}")
            with socket.socket() as sock:
                if sock.connect_ex((self.host, port)) == 0:
                    return
            time.sleep(0.2)
        raise FederationError(f"the SuperLink did not open port {port} within {timeout_s:.0f} s")


def run_config_toml(config: ExperimentConfig) -> str:
    """The run config file ``flwr run --run-config FILE`` reads: the whole experiment as JSON."""
    return "experiment = " + json.dumps(config.model_dump_json()) + "\n"


# -- process groups (children's own groups are found through Linux /proc; elsewhere only ours) ------
def _process_groups(leaders: list[int]) -> list[int]:
    """``leaders`` (each leads its own group) and, after them, the groups their descendants lead."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else []:
        try:
            stat = entry.read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        children.setdefault(int(fields[1]), []).append((int(entry.parent.name), int(fields[2])))
    groups, stack, ours = list(leaders), list(leaders), os.getpgrp()
    while stack:
        for pid, group in children.get(stack.pop(), []):
            stack.append(pid)
            if group not in groups and group != ours:
                groups.append(group)
    return groups


def _killpg(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already, or not ours any more
        os.killpg(group, sig)


def run(config: ExperimentConfig, hooks: Any = None) -> FederatedOutcome:
    """The deployment engine: the run on a real Flower federation on this machine (SuperLink and
    one SuperNode per institution file, TLS and node authentication on), torn down afterwards.

    The same ClientApp and ServerApp as every engine, through Flower's deployment runtime; each
    SuperNode reads only its own file. Rounds are reported when the run ends (the ServerApp is a
    separate process), and ``hooks`` other than ``on_outcome`` do not reach it.
    """
    import tempfile

    if not config.data.files:
        raise ConfigError(
            "the deployment engine starts one SuperNode per institution file: give --data, --data-dir or --example"
        )
    with tempfile.TemporaryDirectory(prefix="consortia-deploy-") as workdir:
        run_dir = config.run_dir or str(Path(workdir) / "run")
        deployed = config.model_copy(update={"run_dir": run_dir, "engine": "inprocess"})
        files = [Path(f) for f in config.data.files]
        with (
            simulated_key(config.privacy.aggregation) as (he_key, secret),  # HE: every node the same key file
            # the files are the caller's own: every node agrees to train its local-only baseline
            LocalFederation(files, Path(workdir) / "federation", node_config={NODE_FLAG: True, **he_key}) as federation,
        ):
            outcome = federation.wait(federation.submit(deployed), run_dir)
            if secret is not None:  # the ServerApp holds only the encrypted model: an institution decrypts it
                outcome = release_model(outcome, secret)
    if hooks is not None and getattr(hooks, "on_round", None) is not None:
        for record in outcome.rounds:
            hooks.on_round(record)
    if hooks is not None and getattr(hooks, "on_outcome", None) is not None:
        hooks.on_outcome(outcome)
    return outcome
