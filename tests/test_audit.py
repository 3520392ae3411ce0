"""The membership-inference audit: it finds memorisation where there is some, and only there."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score, roc_curve
from typer.testing import CliRunner

from consortia.cli import app
from consortia.config import ExperimentConfig
from consortia.experiment.recorded import run_recorded
from consortia.privacy import audit as audit_module
from consortia.privacy.audit import (
    AttackResult,
    attack_result,
    audit_run,
    loss_threshold_scores,
    privacy_mechanism,
    tpr_at_fpr,
)
from consortia.privacy.shadow import lira_scores, logit_confidence, shadow_membership

runner = CliRunner()

#: deep, unregularised trees on 150 training rows per institution: each tree memorises its rows
OVERFIT = {
    "vertical": "synthetic", "institutions": 3, "rows": 600, "rounds": 10, "seed": 7, "model": "xgboost",
    "model_params": {"max_depth": 8, "eta": 0.3, "min_child_weight": 0, "lambda": 0.0},
}  # fmt: skip
#: a linear model on 2,250 training rows per institution: nothing to memorise
CALM = {"vertical": "healthcare", "institutions": 3, "rows": 9000, "rounds": 3, "seed": 7, "model": "logistic"}


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("audit") / "overfit"
    run_recorded(ExperimentConfig.build(**OVERFIT, run_dir=str(run_dir)))
    return run_dir


@pytest.fixture(scope="module")
def calm_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("audit") / "calm"
    run_recorded(ExperimentConfig.build(**CALM, run_dir=str(run_dir)))
    return run_dir


def _strip_time(values: dict) -> dict:
    return {k: v for k, v in values.items() if k != "seconds"}


# -- on real runs ------------------------------------------------------------------------------------
def test_overfit_model_is_found_out(overfit_run):
    values = audit_run(overfit_run, shadows=4).to_dict()
    for attack in ("loss_threshold", "lira"):
        assert values["attacks"][attack]["auroc"] >= 0.6, values["attacks"]
        assert values["pooled"]["finetuned"][attack]["auroc"] >= 0.6, values["pooled"]
    assert values["attacks"]["loss_threshold"] == values["pooled"]["global"]["loss_threshold"]
    assert values["members"] == sum(m["members"] for m in values["models"]["global"].values())
    assert set(values["models"]["global"]) == set(values["models"]["finetuned"]) == {"inst-01", "inst-02", "inst-03"}
    assert values["privacy"] == "none"


def test_model_that_cannot_memorise_is_near_chance(calm_run):
    values = audit_run(calm_run, shadows=4).to_dict()
    for model in ("global", "finetuned"):
        for attack in ("loss_threshold", "lira"):
            assert abs(values["pooled"][model][attack]["auroc"] - 0.5) <= 0.05, (model, attack, values["pooled"])


def test_same_run_and_seed_give_the_same_numbers(overfit_run):
    first = audit_run(overfit_run, shadows=4, max_rows=120).to_dict()
    again = audit_run(overfit_run, shadows=4, max_rows=120).to_dict()
    assert _strip_time(first) == _strip_time(again)
    sizes = [m["members"] + m["non_members"] for m in first["models"]["global"].values()]
    assert max(sizes) == 120  # institutions of more rows are subsampled, smaller ones kept whole
    other = audit_run(overfit_run, shadows=4, max_rows=120, seed=8).to_dict()
    assert other["attacks"]["lira"] != first["attacks"]["lira"]  # the seed drives the draws


# -- the metrics on hand-made numbers ------------------------------------------------------------------
def test_tpr_at_1pct_fpr_by_hand():
    non_members = np.arange(100) / 100  # 0.00 .. 0.99: one false positive allowed at 1 % FPR
    members = np.array([1.5, 1.4, 1.3, 0.985, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    scores = np.concatenate([members, non_members])
    is_member = np.concatenate([np.ones(10, int), np.zeros(100, int)])
    # thresholds down to 0.985 flag only the non-member at 0.99: 4 of 10 members found
    assert tpr_at_fpr(is_member, scores) == pytest.approx(0.4)
    fpr, tpr, _ = roc_curve(is_member, scores)
    assert tpr_at_fpr(is_member, scores) == pytest.approx(tpr[fpr <= 0.01].max())
    assert tpr_at_fpr(is_member, scores, max_fpr=0.0) == pytest.approx(0.3)
    result = attack_result(is_member, scores)
    assert result == AttackResult(pytest.approx(roc_auc_score(is_member, scores)), pytest.approx(0.4))
    assert np.isnan(attack_result(np.ones(5, int), np.arange(5.0)).auroc)  # one class: undefined


def test_loss_threshold_score_is_minus_the_log_loss():
    y = np.array([1, 0, 1, 0])
    proba = np.array([0.9, 0.2, 0.3, 0.6])
    losses = [log_loss([t], [p], labels=[0, 1]) for t, p in zip(y, proba, strict=True)]
    assert loss_threshold_scores(proba, y) == pytest.approx(-np.array(losses))
    assert logit_confidence(proba, y) == pytest.approx(np.log([9, 4, 3 / 7, 4 / 6]))


def test_lira_separates_gaussian_in_and_out_confidences():
    rng = np.random.default_rng(0)
    n, k = 2000, 8
    keep = shadow_membership(n, k, rng)
    assert (keep.sum(axis=0) == k // 2).all()
    base = rng.normal(0, 3, n)  # every row has its own difficulty; training adds +1.5 to it
    shadow = base + 1.5 * keep + rng.normal(0, 0.5, (k, n))
    is_member = rng.random(n) < 0.5
    target = base + 1.5 * is_member + rng.normal(0, 0.5, n)
    lira = roc_auc_score(is_member, lira_scores(target, shadow, keep))
    plain = roc_auc_score(is_member, target)  # the loss threshold, blind to each row's difficulty
    assert lira > 0.9
    assert plain < 0.7


def test_privacy_mechanism_is_read_defensively():
    assert privacy_mechanism(ExperimentConfig.build().model_dump(mode="json")) == "none"
    assert privacy_mechanism({"privacy": {"mechanism": "dp-client", "epsilon": 3}}) == "privacy: dp-client"
    assert privacy_mechanism({"secure_aggregation": True, "dp": None}) == "secure_aggregation: True"


# -- the command ---------------------------------------------------------------------------------------
def _one_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_cli_writes_the_json_keys(calm_run, tmp_path):
    out = tmp_path / "audit.json"
    result = runner.invoke(app, ["audit", str(calm_run), "--json", str(out), "--shadows", "2", "--max-rows", "300"])
    assert result.exit_code == 0, result.output
    assert "pooled" in result.output and "hospital-01" in result.output
    values = json.loads(out.read_text())
    for attack in ("loss_threshold", "lira"):
        assert 0 <= values["attacks"][attack]["auroc"] <= 1
        assert 0 <= values["attacks"][attack]["tpr_at_1pct_fpr"] <= 1
        assert set(values["models"]["finetuned"]["hospital-01"][attack]) == {"auroc", "tpr_at_1pct_fpr"}
    assert values["members"] + values["non_members"] == 3 * 300
    assert values["privacy"] == "none" and values["settings"]["shadows"] == 2


def test_cli_refuses_bad_input_in_one_line(tmp_path, monkeypatch):
    line = _one_line(runner.invoke(app, ["audit", str(tmp_path / "nothing-here")]))
    assert "not a run folder" in line

    def never(*args, **kwargs):
        raise AssertionError("the attack ran before the --json path was checked")

    monkeypatch.setattr(audit_module, "audit_run", never)
    line = _one_line(runner.invoke(app, ["audit", str(tmp_path), "--json", str(tmp_path)]))
    assert "is a folder" in line
    line = _one_line(runner.invoke(app, ["audit", str(tmp_path), "--json", str(tmp_path / "no" / "a.json")]))
    assert "does not exist" in line


def test_run_with_audit_adds_it_to_the_json(tmp_path):
    out, run_dir = tmp_path / "out.json", tmp_path / "run"
    args = ["run", "healthcare", "--institutions", "3", "--rows", "600", "--rounds", "2", "--run-dir", str(run_dir)]
    result = runner.invoke(app, [*args, "--audit", "--audit-shadows", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "membership inference" in result.output and "pooled" in result.output
    for values in (json.loads(out.read_text())["audit"], json.loads((run_dir / "audit.json").read_text())):
        assert 0 <= values["attacks"]["loss_threshold"]["auroc"] <= 1
        assert values["privacy"] == "none"
    assert "summary" in json.loads(out.read_text())
