"""The secured protocol in a real Flower deployment (SuperLink + 3 SuperNodes, TLS and node auth).

One federation serves both runs: every SuperNode holds the consortium's HE key file (node config
``he-key``) and reads only its own hospital's file. Each deployed run must give the in-process
engine's numbers for the same config: secure aggregation changes what the server sees, not
what it computes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from factories import hospital_files as write_hospital_files

from consortia.config import ExperimentConfig
from consortia.federation.engines.deployment import LocalFederation
from consortia.federation.engines.inprocess import run as run_inprocess
from consortia.federation.secure.he import HE_KEY, release_model
from consortia.privacy.he import write_key_pair


@pytest.fixture(scope="module")
def hospital_files(tmp_path_factory):
    return write_hospital_files(tmp_path_factory.mktemp("hospitals"))


@pytest.fixture(scope="module")
def he_key(tmp_path_factory):
    secret, _ = write_key_pair(tmp_path_factory.mktemp("he"))
    return secret


@pytest.fixture(scope="module")
def federation(hospital_files, he_key, tmp_path_factory):
    fed = LocalFederation(
        hospital_files, tmp_path_factory.mktemp("deployment"), tls=True, node_auth=True,
        node_config={HE_KEY: str(he_key)},
    )  # fmt: skip
    try:
        fed.start()
        yield fed
    finally:
        fed.stop()


def _config(files, run_dir, aggregation: str) -> ExperimentConfig:
    return ExperimentConfig.build(
        vertical="healthcare", rounds=2, seed=5, finetune_epochs=1, data={"files": [str(p) for p in files]},
        run_dir=str(run_dir), privacy={"aggregation": aggregation},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("aggregation, tolerance", [("secagg+", 1e-3), ("he", 1e-4)])
def test_deployed_secure_run_equals_the_inprocess_engine(
    federation, hospital_files, he_key, tmp_path, aggregation, tolerance
):
    config = _config(hospital_files, tmp_path / "run", aggregation)
    deployed = federation.wait(federation.submit(config), config.run_dir)
    # the disclosure log shows what the nodes sent: SecAgg+'s masked configs, or HE ciphertexts
    log = json.loads((tmp_path / "run" / "disclosure.json").read_text())
    train = [kinds["train"]["records"] for kinds in log.values()]
    if aggregation == "secagg+":
        assert all("secaggplus_configs" in records for records in train)
    if aggregation == "he":
        assert deployed.final_parameters == [] and deployed.encrypted_model  # the server kept it encrypted
        deployed = release_model(deployed, he_key.read_bytes())
    local = run_inprocess(config.model_copy(update={"run_dir": str(tmp_path / "local")}))
    a = np.concatenate([p.ravel() for p in local.final_parameters])
    b = np.concatenate([p.ravel() for p in deployed.final_parameters])
    assert np.abs(a - b).max() / np.abs(a).max() <= tolerance
    for name, modes in local.per_institution.items():
        assert deployed.per_institution[name]["global"]["auroc"] == pytest.approx(modes["global"]["auroc"], abs=1e-3)
    assert deployed.pooled["global"]["auroc"] == pytest.approx(local.pooled["global"]["auroc"], abs=1e-3)


def test_serve_node_takes_the_he_key_and_refuses_the_public_one(tmp_path, hospital_files):
    from typer.testing import CliRunner

    from consortia.cli import app

    secret, public = write_key_pair(tmp_path / "keys")
    runner = CliRunner()
    ok = runner.invoke(
        app, ["serve", "node", "--data", str(hospital_files[0]), "--insecure", "--he-key", str(secret), "--dry-run"]
    )
    assert ok.exit_code == 0, ok.output
    assert f'he-key="{secret.resolve()}"' in ok.output.replace("\n", "")
    bad = runner.invoke(
        app, ["serve", "node", "--data", str(hospital_files[0]), "--insecure", "--he-key", str(public), "--dry-run"]
    )
    assert bad.exit_code != 0 and "no secret key" in bad.output
