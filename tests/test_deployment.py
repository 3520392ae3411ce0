"""A real Flower deployment on 127.0.0.1: SuperLink + 3 SuperNodes, TLS and node auth on.

One federation serves the whole module (starting it costs seconds); the tests run in file
order and the last one kills a SuperNode. The first run's ClientApp is the shipped one plus
the mod of tests/reply_recorder.py, which writes down the records of every reply (shapes, not
values), so that test checks what actually left each node, not only what the server asked for.
Every process is stopped by the fixture's teardown, also when a test fails. The SuperNodes are
Consortia's launcher (one warm ClientApp process each, prompt polling), so a round takes about
a second; the dead-node test waits for Flower's heartbeat to lapse (about a minute). Those tests
are marked slow; the command-line and helper tests below them are fast.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from factories import hospital_files as write_hospital_files
from reply_recorder import LOG_ENV
from typer.testing import CliRunner

from consortia.cli import app
from consortia.config import ExperimentConfig
from consortia.errors import ConfigError, FederationError
from consortia.experiment import run_experiment
from consortia.federation.engines.deployment import APP_DIR, LocalFederation
from consortia.federation.grids import MinimumNodesGrid
from consortia.federation.local_baseline import LOCAL_BASELINE, NODE_FLAG
from consortia.runs.folder import RunFolder

ROUNDS = 3


@pytest.fixture(scope="module")
def hospital_files(tmp_path_factory):
    return write_hospital_files(tmp_path_factory.mktemp("hospitals"))


@pytest.fixture(scope="module")
def federation(hospital_files, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deployment")
    # two of the three hospitals agree to train a local-only baseline; the third does not
    agree = {p.stem: {NODE_FLAG: True} for p in hospital_files[:2]}
    fed = LocalFederation(hospital_files, workdir, tls=True, node_auth=True, node_configs=agree)
    (workdir / "replies").mkdir()
    fed.env[LOG_ENV] = str(workdir / "replies")  # read only by the recording ClientApp below
    started = []
    try:
        fed.start()
        started = [p.popen.pid for p in fed.processes]
        yield fed
    finally:
        fed.stop()
        for pid in started:  # every process we started is gone
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@pytest.fixture(scope="module")
def recording_app(tmp_path_factory):
    """The shipped Flower App with the ClientApp of tests/reply_recorder.py (records every reply)."""
    folder = tmp_path_factory.mktemp("recording-app")
    shipped = (APP_DIR / "pyproject.toml").read_text()
    clientapp = 'clientapp = "consortia.federation.engines.deployment.app:client_app"'
    assert shipped.count(clientapp) == 1
    (folder / "pyproject.toml").write_text(shipped.replace(clientapp, 'clientapp = "reply_recorder:client_app"'))
    shutil.copy(Path(__file__).with_name("reply_recorder.py"), folder / "reply_recorder.py")
    return folder


def _config(files, run_dir, **overrides) -> ExperimentConfig:
    values = {"vertical": "healthcare", "rounds": ROUNDS, "seed": 5, "finetune_epochs": 1,
              "data": {"files": [str(p) for p in files]}, "run_dir": str(run_dir)}  # fmt: skip
    return ExperimentConfig.build(**(values | overrides))


def _replies(federation, name: str) -> list[dict]:
    path = federation.env[LOG_ENV] + f"/{name}.jsonl"
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.slow
def test_deployed_run_equals_the_inprocess_engine(federation, hospital_files, recording_app, tmp_path):
    config = _config(hospital_files, tmp_path / "deployed")
    outcome = federation.wait(federation.submit(config, app_dir=recording_app), config.run_dir)

    reference = run_experiment(config.model_copy(update={"run_dir": str(tmp_path / "inprocess")}))
    assert set(outcome.per_institution) == {p.stem for p in hospital_files}
    modes = {"global": "federated", "finetuned": "federated_finetuned", "local_only": "local_only"}
    agreed = {p.stem for p in hospital_files[:2]}
    for name, tables in reference.per_institution.items():
        deployed = outcome.per_institution[name]
        assert set(deployed) == {"global", "finetuned"} | ({"local_only"} if name in agreed else set())
        for mode, metrics in deployed.items():  # local-only: trained at the node, as the driver trains it
            assert metrics == pytest.approx(tables[modes[mode]], rel=1e-9), (name, mode)
    assert len(outcome.rounds) == ROUNDS and outcome.institution_sizes == reference.institution_sizes
    # pooled metrics in a deployment too: from the nodes' score histograms, never from rows
    assert outcome.pooled["global"]["auroc"] == pytest.approx(reference.pooled["federated"]["auroc"], abs=1e-9)
    assert 0.5 < outcome.pooled["local_only"]["auroc"] <= 1.0  # the two agreeing hospitals' own models, pooled
    assert any(hospital_files[2].stem in note and NODE_FLAG in note for note in outcome.notes)
    assert RunFolder(config.run_dir).latest_checkpoint().round == ROUNDS
    _assert_no_rows_left_the_nodes(federation, hospital_files)


#: the only records a deployed node's replies may hold: the model, numbers, who it is
REPLY_RECORDS = {
    "query.summary": {"summary": "config"},
    "train": {"arrays": "array", "metrics": "metric"},
    "evaluate": {"metrics": "metric"},
    "evaluate.finetune": {"metrics": "metric", "identity": "config"},
    LOCAL_BASELINE: {"metrics": "metric", "identity": "config"},  # a node that declines: identity only
}
CONFIG_KEYS = {"summary": ["institution", "n-test", "n-train", "summary"], "identity": ["institution"]}


def _assert_no_rows_left_the_nodes(federation, hospital_files) -> None:
    """What each node's ClientApp actually sent: no per-row records, arrays only of the model's shapes."""
    for path in hospital_files:
        replies = _replies(federation, path.stem)
        assert sorted(r["type"] for r in replies) == sorted(
            ["query.summary", "evaluate.finetune", LOCAL_BASELINE, *["train"] * ROUNDS, *["evaluate"] * ROUNDS]
        )
        assert _leaks(replies) == [], path.stem


def _leaks(replies: list[dict]) -> list[str]:
    """Every record of ``replies`` (reply_recorder's lines) that is not the model, a number or an identity."""
    model = {json.dumps(r["request"]["arrays"]["shapes"]) for r in replies if r["type"] == "train"}
    found = [] if len(model) == 1 else [f"the model's shapes changed between rounds: {model}"]
    for reply in replies:
        kind = reply["type"]
        if reply["reply"] is None:
            found.append(f"{kind}: the node answered with an error")
        for name, record in (reply["reply"] or {}).items():
            where = f"{kind} reply record '{name}'"
            if (kind.startswith("evaluate") or kind == LOCAL_BASELINE) and name.startswith(HISTOGRAM):
                found += _histogram_leaks(where, record)
            elif REPLY_RECORDS[kind].get(name) != record["kind"]:
                found.append(f"{where}: not expected in a deployment ({record})")
            elif record["kind"] == "array" and json.dumps(record["shapes"]) not in model:
                found.append(f"{where}: arrays of shapes {record['shapes']}, not the model's")
            elif record["kind"] == "metric" and any(n is not None for n in record["lengths"].values()):
                found.append(f"{where}: lists among the metrics (a value per row?): {record['lengths']}")
            elif record["kind"] == "config" and record["keys"] != CONFIG_KEYS[name]:
                found.append(f"{where}: keys {record['keys']}")
    return found


#: per-class score histograms (consortia.evaluation.pooled): counts and sums per score bin
HISTOGRAM = "histogram."
HISTOGRAM_ARRAYS = {"bin", "label", "count", "score_sum"}


def _histogram_leaks(where: str, record: dict) -> list[str]:
    """A histogram holds its four arrays (plus declared metric-column sums), one entry per used bin."""
    if record["kind"] != "array" or not set(record.get("names", [])) >= HISTOGRAM_ARRAYS:
        return [f"{where}: not a score histogram ({record})"]
    extra = [n for n in record["names"] if n not in HISTOGRAM_ARRAYS and not n.startswith("column.")]
    lengths = {tuple(s) for s in record["shapes"]}
    return ([f"{where}: unexpected arrays {extra}"] if extra else []) + (
        [] if len(lengths) == 1 and len(next(iter(lengths))) == 1 else [f"{where}: shapes {record['shapes']}"]
    )


def test_the_reply_check_catches_rows_leaving_a_node():
    """What the deployed run's check would report, had a node sent scores or per-row arrays."""
    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
    from reply_recorder import describe

    model = ArrayRecord([np.zeros(23), np.zeros(1)])
    request = describe(RecordDict({"arrays": model, "config": ConfigRecord({"server-round": 1})}))

    def reply(kind: str, **records) -> dict:
        return {"type": kind, "request": request, "reply": describe(RecordDict(records))}

    metrics = MetricRecord({"num-examples": 75, "auroc": 0.8})
    clean = [reply("train", arrays=model, metrics=metrics), reply("evaluate", metrics=metrics)]
    assert _leaks(clean) == []
    rows = np.zeros(75)
    leaked = [
        *clean,
        reply("evaluate", metrics=metrics, scores=ArrayRecord([rows, rows])),
        reply("evaluate.finetune", metrics=metrics, identity=ConfigRecord({"institution": "h"}),
              **{"metric-columns": ArrayRecord([rows])}),
        reply("train", arrays=ArrayRecord([rows]), metrics=metrics),
        reply("evaluate", metrics=MetricRecord({"num-examples": 75, "proba": rows.tolist()})),
    ]  # fmt: skip
    problems = _leaks(leaked)
    assert len(problems) == 4, problems
    assert "'scores'" in problems[0] and "'metric-columns'" in problems[1]
    assert "not the model's" in problems[2] and "a value per row" in problems[3]


@pytest.mark.slow
def test_unregistered_supernode_is_refused(federation, hospital_files):
    name = hospital_files[0].stem
    link_log, node_log = federation.processes[0].log, federation.nodes[name].log  # the intruder appends to the latter
    link_seen, node_seen = link_log.stat().st_size, node_log.stat().st_size
    intruder = federation.start_node(hospital_files[0], register=False, max_retries=0)
    assert intruder.popen.wait(timeout=120) != 0
    # refused for its key, not for anything else: Flower 1.42 logs the unknown key (repr of its PEM)
    public = serialization.load_ssh_public_key((federation.workdir / "keys" / "nodes" / f"{name}.pub").read_bytes())
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    refusal = link_log.read_bytes()[link_seen:].decode(errors="replace")
    assert f"{pem!r}, exception: No SuperNode found with the given public key." in refusal
    assert "Failed to activate SuperNode" in node_log.read_bytes()[node_seen:].decode(errors="replace")


@pytest.mark.slow
def test_round_completes_when_a_supernode_dies(federation, hospital_files, tmp_path):
    # rounds enough that the run is still going when the node dies (a round takes about a second)
    config = _config(hospital_files, tmp_path / "dropout", rounds=6, min_institutions=2, finetune_epochs=0)
    run_id = federation.submit(config)
    folder = RunFolder(config.run_dir)
    deadline = time.monotonic() + 600
    while folder.latest_checkpoint() is None:  # round 1 done with all three
        assert time.monotonic() < deadline, federation.server_log(run_id)
        time.sleep(0.1)
    victim = hospital_files[2].stem
    federation.kill_node(victim)
    outcome = federation.wait(run_id, config.run_dir)
    assert len(outcome.rounds) == 6  # round 2 on completed with the two survivors
    assert set(outcome.per_institution) == {p.stem for p in hospital_files[:2]}  # the survivors


def test_below_the_minimum_fails_with_a_clear_message():
    class TwoNodes:
        def get_node_ids(self):
            return [1, 2]

    grid = MinimumNodesGrid(TwoNodes(), minimum=3, timeout_s=0.0)
    grid.get_node_ids()  # starts the clock
    with pytest.raises(FederationError, match=r"only 2 institution.*minimum of 3"):
        grid.get_node_ids()
    assert list(MinimumNodesGrid(TwoNodes(), minimum=2, timeout_s=0.0).get_node_ids()) == [1, 2]


def test_serve_commands_wrap_flower_with_tls_on_by_default(tmp_path, hospital_files):
    runner = CliRunner()
    refused = runner.invoke(app, ["serve", "link", "--dry-run"])
    assert refused.exit_code == 2 and "TLS is on by default" in refused.output
    assert runner.invoke(app, ["serve", "certs", str(tmp_path / "certs"), "--node", "a"]).exit_code == 0
    link = runner.invoke(app, ["serve", "link", "--certs", str(tmp_path / "certs"), "--dry-run"])
    assert link.exit_code == 0
    for flag in (
        "flower-superlink",
        "--ssl-certfile",
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
    ):
        assert flag in link.output
    node = runner.invoke(app, ["serve", "node", "--data", str(hospital_files[0]), "--certs", str(tmp_path / "certs"),
                               "--key", str(tmp_path / "certs" / "nodes" / "a"), "--dry-run"])  # fmt: skip
    assert node.exit_code == 0
    assert f'data-path="{hospital_files[0]}"' in node.output and "--root-certificates" in node.output
    insecure = runner.invoke(app, ["serve", "node", "--data", str(hospital_files[0]), "--insecure", "--dry-run"])
    assert insecure.exit_code == 0 and "--insecure" in insecure.output


def test_write_connection_keeps_the_rest_of_the_flower_config(tmp_path):
    from consortia.federation.engines.deployment.commands import Tls, write_connection

    config = tmp_path / "config.toml"
    config.write_text('[superlink]\ndefault = "local"\n\n[superlink.local]\noptions.num-supernodes = 10\n')
    write_connection(tmp_path, "consortia", "127.0.0.1:9093", None)
    write_connection(tmp_path, "consortia", "10.0.0.5:9093", Tls(tmp_path / "ca.crt"))
    data = tomllib.loads(config.read_text())
    assert data["superlink"]["local"] == {"options": {"num-supernodes": 10}}
    assert data["superlink"]["consortia"] == {"address": "10.0.0.5:9093", "root-certificates": str(tmp_path / "ca.crt")}


def test_run_config_round_trip_through_the_experiment_key():
    from consortia.federation.engines.deployment import run_config_toml

    config = ExperimentConfig.build(rounds=4, model="mlp", min_institutions=2, data={"target": "num"})
    flower_defaults = {"rounds": 3, "model": "logistic", "run_dir": "", "data.target": ""}
    parsed = tomllib.loads(run_config_toml(config))
    assert ExperimentConfig.from_run_config({**flower_defaults, **parsed}) == config


def test_private_keys_are_never_readable_by_others(tmp_path):
    from consortia.federation.engines.deployment.certs import generate_node_key, generate_tls

    folder = tmp_path / "certs"
    private = [folder / "ca.key", folder / "superlink.key", folder / "nodes" / "a"]
    seen: list[tuple[str, int, int]] = []  # (file, mode, size) whenever a file is opened or chmod-ed
    watching = [True]

    def watch(event: str, args: tuple) -> None:
        if watching and event in ("open", "os.chmod"):
            for path in private:
                if path.exists():
                    stat = path.stat()
                    seen.append((path.name, stat.st_mode & 0o777, stat.st_size))

    sys.addaudithook(watch)  # cannot be removed; `watching` switches it off
    old_umask = os.umask(0o022)
    try:
        (folder / "nodes").mkdir(parents=True)
        (folder / "ca.key").write_bytes(b"old")  # an earlier, world-readable file is replaced safely too
        (folder / "ca.key").chmod(0o644)
        generate_tls(folder)
        generate_node_key(folder, "a")
    finally:
        watching.clear()
        os.umask(old_umask)
    assert any(size for _, _, size in seen)
    assert [s for s in seen if s[2] > 3 and s[1] & 0o077] == []  # key bytes never sit in a readable file
    assert {p.name: p.stat().st_mode & 0o777 for p in private} == {p.name: 0o600 for p in private}
    assert (folder / "nodes" / "a.pub").stat().st_mode & 0o044  # public halves stay readable


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", ".hidden", "-x", "", "a b", "a\nb"])
def test_a_node_name_cannot_leave_the_keys_folder(tmp_path, name):
    from consortia.federation.engines.deployment.certs import generate_node_key

    with pytest.raises(ConfigError, match="node name"):
        generate_node_key(tmp_path / "certs", name)
    assert not (tmp_path / "certs").exists() and not (tmp_path / "escaped").exists()


def test_serve_certs_refuses_a_bad_node_name_before_writing_anything(tmp_path):
    result = CliRunner().invoke(app, ["serve", "certs", str(tmp_path / "certs"), "--node", "../../escaped"])
    assert result.exit_code == 2 and "node name" in result.output
    assert not (tmp_path / "certs").exists()


def test_connection_entry_is_escaped_toml(tmp_path):
    from consortia.federation.engines.deployment.commands import Tls, write_connection

    ca = tmp_path / 'odd "dir" \\ here' / "ca.crt"
    path = write_connection(tmp_path, "consortia", '127.0.0.1:9093"\n[evil]', Tls(ca))
    data = tomllib.loads(path.read_text())
    assert data == {
        "superlink": {
            "default": "consortia",
            "consortia": {"address": '127.0.0.1:9093"\n[evil]', "root-certificates": str(ca)},
        }
    }
    with pytest.raises(ConfigError, match="connection name"):
        write_connection(tmp_path, "x]\n[evil", "127.0.0.1:1", None)


# -- what Consortia's SuperNode launcher changes (node.py, worker.py, prompt.py) ------------------
def test_node_and_worker_wake_each_other_through_a_pipe():
    from consortia.federation.engines.deployment.prompt import Wakeup

    read, write = os.pipe()
    waiter, waker = Wakeup(read_fd=read), Wakeup(write_fd=write)
    try:
        assert not waiter.wait(0.0)  # nothing said yet
        waker.notify()
        waker.notify()
        assert waiter.wait(60.0)  # woken by the bytes, not by the time-out
        assert not waiter.wait(0.0)  # both bytes taken at once: one wake-up, not two
        os.close(write)
        assert waiter.wait(60.0) and waiter.read_fd is None  # the writer is gone: plain sleeps, no busy loop
    finally:
        os.close(read)


def test_the_node_loop_announces_each_stored_message():
    from types import SimpleNamespace

    from consortia.federation.engines.deployment.prompt import Wakeup, announce_stored_messages

    pulled = iter([None, 7])  # first poll finds nothing, the second stores a message of run 7
    loop = SimpleNamespace(_pull_and_store_message=lambda **_: next(pulled), _push_messages=lambda **_: None)
    read, write = os.pipe()
    waiter = Wakeup(read_fd=read)
    try:
        assert announce_stored_messages(loop, Wakeup(write_fd=write))
        assert not announce_stored_messages(loop, Wakeup(write_fd=write))  # wrapped once, not twice
        assert loop._pull_and_store_message(state=None) is None and not waiter.wait(0.0)
        assert loop._pull_and_store_message(state=None) == 7 and waiter.wait(0.0)
        assert not announce_stored_messages(SimpleNamespace(), Wakeup())  # another Flower: nothing changed
    finally:
        os.close(read)
        os.close(write)


def test_flower_still_has_what_the_launcher_changes():
    """Flower 1.42's SuperNode loop and object transfers as the launcher expects them (in a fresh
    Python: the changes are process-wide), so a Flower upgrade that moves them fails here."""
    import subprocess

    code = """
from flwr.supercore.inflatable import inflatable_utils as u
from flwr.supernode import start_client_internal as loop
from consortia.federation.engines.deployment.prompt import (
    AdaptiveSleep, Wakeup, announce_stored_messages, install_adaptive_sleep, prompt_object_transfers)
assert u.get_num_workers(8) <= 8 and u.pull_objects.__kwdefaults__["backoff_cap"] == 10
assert install_adaptive_sleep(loop) and isinstance(loop.time, AdaptiveSleep)
assert announce_stored_messages(loop, Wakeup()) and prompt_object_transfers()
assert u.get_num_workers(8) == 8  # object requests wait on I/O: not capped at the CPU count
assert u.pull_objects.__kwdefaults__["max_concurrent_pulls"] == 8
assert u.push_objects.__kwdefaults__["max_concurrent_pushes"] == 8
assert u.pull_objects.__kwdefaults__["initial_backoff"] == 0.05 and u.pull_objects.__kwdefaults__["backoff_cap"] == 0.2
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
