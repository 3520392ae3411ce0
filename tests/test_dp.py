"""Differential privacy in runs: client level (Flower's DP wrappers, RdpAccountant), record level (Opacus).

Small federations (3 hospitals, 1,500 rows, 3 rounds) so that the file runs in about a minute.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from consortia.cli import app as cli_app
from consortia.errors import ConfigError

runner = CliRunner()
DELTA = 1e-5


def _config(**overrides):
    from consortia import ExperimentConfig

    values = {"vertical": "healthcare", "institutions": 3, "rows": 1500, "rounds": 3, "seed": 7, "finetune_epochs": 0}
    values.update(overrides)
    return ExperimentConfig.build(**values)


def _federate(config, client_app=None):
    from consortia.federation.engines import inprocess

    return inprocess.run(config, client_app=client_app)


def _client(epsilon: float = 4.0, **privacy):
    return {"mechanism": "dp-client", "epsilon": epsilon, "noise": "seeded", **privacy}


def _sample(epsilon: float = 4.0, **privacy):
    return {"mechanism": "dp-sample", "epsilon": epsilon, "noise": "seeded", **privacy}


def _epsilons(outcome) -> list[float]:
    return [r.metrics["privacy.epsilon"] for r in outcome.rounds]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def client_runs():
    """dp-client with sklearn logistic (fast): twice with one seed, once with another, once without DP."""
    runs = {
        "a": _federate(_config(model="logistic", privacy=_client())),
        "b": _federate(_config(model="logistic", privacy=_client())),
        "other_seed": _federate(_config(model="logistic", privacy=_client(), seed=8)),
        "plain": _federate(_config(model="logistic")),
    }
    return runs


@pytest.fixture(scope="module")
def sample_runs():
    """dp-sample with logistic_torch: twice with one seed, once with another, once without DP."""
    return {
        "a": _federate(_config(model="logistic_torch", privacy=_sample(2.0))),
        "b": _federate(_config(model="logistic_torch", privacy=_sample(2.0))),
        "other_seed": _federate(_config(model="logistic_torch", privacy=_sample(2.0), seed=8)),
        "plain": _federate(_config(model="logistic_torch")),
    }


# -- client level -------------------------------------------------------------------------------
def test_client_level_epsilon_is_within_target_and_matches_dp_accounting(client_runs) -> None:
    import dp_accounting
    from dp_accounting import rdp

    from consortia.privacy.accounting import client_level_noise

    z = client_level_noise(4.0, DELTA, 3)  # the noise the run derived from (ε, δ, rounds)
    epsilons = _epsilons(client_runs["a"])
    assert len(epsilons) == 3 and epsilons[-1] <= 4.0
    for rounds, ours in enumerate(epsilons, start=1):
        independent = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
        independent.compose(dp_accounting.GaussianDpEvent(z), rounds)
        assert ours == pytest.approx(independent.get_epsilon(DELTA), rel=0.01)
    assert epsilons[-1] == pytest.approx(4.0, rel=0.01)  # the budget is used, not wasted
    assert any(f"noise multiplier {z:.3f}" in n for n in client_runs["a"].notes)


def test_client_level_noise_repeats_with_the_seed_and_changes_with_it(client_runs) -> None:
    a, b = client_runs["a"], client_runs["b"]
    assert _same(a.final_parameters, b.final_parameters) and _epsilons(a) == _epsilons(b)
    assert not _same(a.final_parameters, client_runs["other_seed"].final_parameters)
    assert not _same(a.final_parameters, client_runs["plain"].final_parameters)  # DP really adds noise
    assert "privacy.epsilon" not in client_runs["plain"].rounds[-1].metrics


def test_secret_noise_differs_between_runs_with_one_seed(client_runs) -> None:
    secret = _federate(_config(model="logistic", privacy=_client(noise="secret")))
    assert not _same(secret.final_parameters, client_runs["a"].final_parameters)
    assert _epsilons(secret) == pytest.approx(_epsilons(client_runs["a"]))  # same accounting


def test_server_side_and_adaptive_clipping_run() -> None:
    server = _federate(_config(model="logistic", rounds=2, privacy=_client(side="server")))
    assert _epsilons(server)[-1] <= 4.0
    adaptive = _federate(_config(model="logistic", rounds=2, privacy=_client(clipping="adaptive")))
    assert len(adaptive.rounds) == 2 and "privacy.epsilon" not in adaptive.rounds[-1].metrics  # not accounted
    assert any("adaptive clipping" in n for n in adaptive.notes)


def test_clipping_applies_to_train_replies_only() -> None:
    """The client-side mod clips every train update to the norm; evaluate replies pass untouched,
    and a client-DP train message without a clipping norm gets an error, never an unclipped update."""
    from flwr.app import Message, RecordDict

    from consortia.federation.client import build_client_app

    inner = build_client_app()
    seen: dict[str, list] = {"train": [], "evaluate": []}

    def recording(message, context):
        reply = inner(message, context)
        kind = message.metadata.message_type
        if kind in seen:
            seen[kind].append((message, context, reply))
        return reply

    _federate(_config(model="mlp", rounds=2, privacy=_client(clipping_norm=0.05)), client_app=recording)
    for message, _, reply in seen["train"]:
        sent = message.content.array_records["arrays"].to_numpy_ndarrays()
        got = reply.content.array_records["arrays"].to_numpy_ndarrays()
        norm = math.sqrt(sum(float(((g - s) ** 2).sum()) for g, s in zip(got, sent, strict=True)))
        assert norm <= 0.05 * (1 + 1e-5)
        assert reply.content["metrics"]["equal-weight"] == 1
    assert seen["evaluate"] and all(
        not reply.has_error() and "metrics" in reply.content for *_, reply in seen["evaluate"]
    )

    message, context, _ = seen["train"][0]
    content = RecordDict({"arrays": message.content["arrays"], "config": message.content["config"].copy()})
    del content["config"]["clipping_norm"]
    unclipped = inner(Message(content, dst_node_id=message.metadata.dst_node_id, message_type="train"), context)
    assert unclipped.has_error()


def test_client_budget_exhaustion_stops_cleanly_through_the_cli(tmp_path, monkeypatch) -> None:
    """A given noise multiplier that cannot stay within ε: the run ends early, keeps its model, exit 0."""
    import consortia.cli.run as run_command

    options = run_command._privacy_options
    monkeypatch.setattr(  # the noise multiplier is for experts and tests: not a CLI option
        run_command, "_privacy_options", lambda *a: {**options(*a), "noise_multiplier": 1.0, "noise": "seeded"}
    )
    out = tmp_path / "r.json"
    args = ["run", "healthcare", "--institutions", "3", "--rows", "1500", "--rounds", "5", "--finetune-epochs", "0"]
    args += ["--dp", "client", "--epsilon", "8", "--run-dir", str(tmp_path / "run"), "--json", str(out)]
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(out.read_text())
    privacy = data["summary"]["privacy"]
    assert privacy["mechanism"] == "dp-client" and privacy["epsilon"] <= 8 and privacy["delta"] == DELTA
    assert len(data["rounds"]) == 2  # z = 1: ε 4.73 after one round, 7.08 after two, 9.1 after three
    assert any("stopped after 2 of 5 rounds" in n for n in data["notes"])
    assert "budget reached after 2 of 5 rounds" in result.output and "whole hospital" in result.output
    assert data["summary"]["pooled"]["federated"] > 0.5  # the last model was kept and evaluated
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "dp-client" in card and "whole hospital's participation" in card


def test_refusals_are_one_line_before_training(tmp_path) -> None:
    def one_line(args: list[str]) -> str:
        result = runner.invoke(cli_app, ["run", "healthcare", "--rounds", "2", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        return lines[0]

    for model in ("xgboost", "logistic"):
        line = one_line(["--dp", "sample", "--epsilon", "4", "--model", model])
        assert f"model '{model}'" in line and "logistic_torch" in line and "mlp" in line
    line = one_line(["--dp", "client", "--epsilon", "4", "--strategy", "fedmedian"])
    assert "fedmedian" in line and "fedavg" in line
    assert "xgboost" in one_line(["--dp", "client", "--epsilon", "4", "--model", "xgboost"])
    assert "--epsilon" in one_line(["--dp", "client"])
    assert "--dp" in one_line(["--epsilon", "4"])
    assert "client or sample" in one_line(["--dp", "everything", "--epsilon", "4"])
    assert "epsilon" in one_line(["--dp", "sample", "--epsilon", "-1"])
    assert not list(tmp_path.iterdir())  # no run folder was left behind

    from consortia.experiment import run_experiment

    with pytest.raises(ConfigError, match="resuming"):
        run_experiment(_config(model="logistic", privacy=_client(), resume=True, run_dir=str(tmp_path / "x")))


# -- record level -------------------------------------------------------------------------------
def test_record_level_epsilon_is_the_largest_institutions_and_matches_opacus(sample_runs) -> None:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    outcome = sample_runs["a"]
    per_round: list[list[float]] = []
    for sizes in outcome.institution_sizes.values():  # each institution plans its own noise, independently here
        q = 64 / sizes["train"]  # logistic_torch's batch size
        steps = math.ceil(1 / q)
        z = get_noise_multiplier(target_epsilon=2.0, target_delta=DELTA, sample_rate=q, steps=3 * steps)
        accountant = RDPAccountant()
        per_round.append([])
        for _ in range(3):
            accountant.history.append((z, q, steps))
            per_round[-1].append(accountant.get_epsilon(DELTA))
    expected = [max(eps[r] for eps in per_round) for r in range(3)]
    assert _epsilons(outcome) == pytest.approx(expected, rel=0.01)
    assert _epsilons(outcome)[-1] <= 2.0


def test_record_level_noise_repeats_with_the_seed_and_changes_with_it(sample_runs) -> None:
    a, b = sample_runs["a"], sample_runs["b"]
    assert _same(a.final_parameters, b.final_parameters) and _epsilons(a) == _epsilons(b)
    assert not _same(a.final_parameters, sample_runs["other_seed"].final_parameters)
    assert not _same(a.final_parameters, sample_runs["plain"].final_parameters)


def test_record_level_budget_limits_the_rounds() -> None:
    outcome = _federate(_config(model="logistic_torch", rounds=4, privacy=_sample(3.2, noise_multiplier=1.5)))
    assert 0 < len(outcome.rounds) < 4 and _epsilons(outcome)[-1] <= 3.2
    assert any(f"stopped after {len(outcome.rounds)} of 4 rounds" in n for n in outcome.notes)


def test_membership_inference_on_a_dp_model_is_near_chance(tmp_path) -> None:
    from consortia.experiment.recorded import run_recorded
    from consortia.privacy.audit import audit_run

    config = _config(model="mlp", privacy=_sample(1.0), run_dir=str(tmp_path / "run"))
    result, folder = run_recorded(config)
    assert result.summary["privacy"]["mechanism"] == "dp-sample" and result.summary["privacy"]["epsilon"] <= 1.0
    report = audit_run(folder.path, shadows=2).to_dict()
    assert abs(report["attacks"]["loss_threshold"]["auroc"] - 0.5) <= 0.05
    assert report["privacy"] == "privacy: dp-sample"
    assert any("not private" in n for n in result.notes) and any("baselines" in n for n in result.notes)


def test_demo_offers_the_budget_and_shows_the_spent_epsilon() -> None:
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).parents[1] / "consortia" / "demo" / "main.py"), default_timeout=120)
    at.run()
    at.switch_page("views/healthcare.py").run()
    for name, value in (("institutions", 3), ("rows", 1500), ("rounds", 2), ("finetune_epochs", 0)):
        at.number_input(key=f"healthcare:{name}").set_value(value)
    at.selectbox(key="healthcare:model").set_value("logistic_torch")
    at.selectbox(key="healthcare:dp").set_value("dp-sample").run()
    at.number_input(key="healthcare:epsilon").set_value(2.0).run()
    at.button(key="healthcare:run").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert any("Privacy: dp-sample, ε spent" in c.value and "patient's row" in c.value for c in at.caption)
