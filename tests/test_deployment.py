"""A real Flower deployment on 127.0.0.1: SuperLink + 3 SuperNodes, TLS and node auth on.

One federation serves the whole module (starting it costs seconds); the tests run in file
order and the last one kills a SuperNode. Every process is stopped by the fixture's teardown,
also when a test fails. Deployment is slow per round (a new ClientApp process per message and
Flower's poll interval), so those tests are marked slow (about 4-9 minutes together on a
loaded 2-core machine); the command-line and helper tests below them are fast.
"""

from __future__ import annotations

import os
import sys
import time
import tomllib

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from consortia.cli import app
from consortia.config import ExperimentConfig
from consortia.errors import ConfigError, FederationError
from consortia.federation.engines.deployment import LocalFederation
from consortia.federation.engines.inprocess import run as run_inprocess
from consortia.federation.grids import MinimumNodesGrid
from consortia.runs.folder import RunFolder
from consortia.verticals import get_vertical

ROUNDS = 3


@pytest.fixture(scope="module")
def hospital_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hospitals")
    frame = get_vertical("healthcare").generate(3, 900, 11)
    paths = []
    for name, part in frame.groupby("hospital"):
        path = folder / f"{name}.csv"
        part.drop(columns=["hospital"]).to_csv(path, index=False)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def federation(hospital_files, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deployment")
    fed = LocalFederation(hospital_files, workdir, tls=True, node_auth=True)
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


def _config(files, run_dir, **overrides) -> ExperimentConfig:
    values = dict(vertical="healthcare", rounds=ROUNDS, seed=5, finetune_epochs=1,
                  data={"files": [str(p) for p in files]}, run_dir=str(run_dir))  # fmt: skip
    return ExperimentConfig.build(**(values | overrides))


@pytest.mark.slow
def test_deployed_run_equals_the_inprocess_engine(federation, hospital_files, tmp_path):
    config = _config(hospital_files, tmp_path / "deployed")
    outcome = federation.wait(federation.submit(config), config.run_dir)

    reference = run_inprocess(config.model_copy(update={"run_dir": str(tmp_path / "inprocess")}))
    assert set(outcome.per_institution) == {p.stem for p in hospital_files}
    for name, modes in reference.per_institution.items():
        for mode, metrics in modes.items():
            assert outcome.per_institution[name][mode] == pytest.approx(metrics, rel=1e-9), (name, mode)
    assert len(outcome.rounds) == ROUNDS and outcome.institution_sizes == reference.institution_sizes
    assert outcome.pooled == {"global": {}, "finetuned": {}}  # no scores leave a deployed node
    assert RunFolder(config.run_dir).latest_checkpoint().round == ROUNDS


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
    config = _config(hospital_files, tmp_path / "dropout", rounds=2, min_institutions=2, finetune_epochs=0)
    run_id = federation.submit(config)
    folder = RunFolder(config.run_dir)
    deadline = time.monotonic() + 600
    while folder.latest_checkpoint() is None:  # round 1 done with all three
        assert time.monotonic() < deadline, federation.server_log(run_id)
        time.sleep(1)
    victim = hospital_files[2].stem
    federation.kill_node(victim)
    outcome = federation.wait(run_id, config.run_dir)
    assert len(outcome.rounds) == 2  # round 2 completed with the two survivors
    assert set(outcome.per_institution) == {p.stem for p in hospital_files[:2]}  # the survivors


def test_below_the_minimum_fails_with_a_clear_message():
    class TwoNodes:
        def get_node_ids(self):
            return [1, 2]

    grid = MinimumNodesGrid(TwoNodes(), minimum=3, timeout_s=0.0)
    grid.get_node_ids()  # starts the clock
    with pytest.raises(FederationError, match="only 2 institution.*minimum of 3"):
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
