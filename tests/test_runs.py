"""Run folder, per-round checkpoints, model card, resume with identical results, predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from consortia.errors import ConfigError, DataValidationError
from consortia.experiment.recorded import resume_config, run_recorded
from consortia.runs.folder import RunFolder
from consortia.runs.predict import predict_file


class Interrupt(Exception):
    pass


def _numbers(result) -> dict:
    data = result.to_dict()
    return {k: data[k] for k in ("per_institution", "pooled", "institution_sizes")} | {
        "rounds": [r["metrics"] for r in data["rounds"]]
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "logistic", "strategy": "fedavg"},
        # MLP: stochastic local training; FedAdam: server-side optimizer state must be restored
        {"model": "mlp", "strategy": "fedadam", "strategy_params": {"eta": 0.01}},
    ],
    ids=["logistic-fedavg", "mlp-fedadam"],
)
def test_resume_gives_identical_results(small_config, tmp_path, overrides):
    full, _ = run_recorded(small_config(run_dir=str(tmp_path / "full"), **overrides))

    def stop_after_round_3(record):
        if record.round == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_recorded(small_config(run_dir=str(tmp_path / "cut"), **overrides), on_round=stop_after_round_3)
    cut = RunFolder(tmp_path / "cut")
    assert cut.latest_checkpoint().round == 2 and not (cut.path / "result.json").exists()

    resumed, _ = run_recorded(resume_config(tmp_path / "cut"))
    assert _numbers(resumed) == _numbers(full)
    a = RunFolder(tmp_path / "full").latest_checkpoint()
    b = cut.latest_checkpoint()
    assert a.round == b.round == 4
    for x, y in zip(a.parameters, b.parameters, strict=True):
        np.testing.assert_array_equal(x, y)


def test_run_folder_contents_and_model_card(small_config, tmp_path):
    config = small_config(run_dir=str(tmp_path / "run"), rounds=3)
    result, folder = run_recorded(config)
    files = sorted(p.name for p in folder.checkpoints.iterdir())
    assert files == [f"round-000{r}.{ext}" for r in (1, 2, 3) for ext in ("json", "npz")]
    assert folder.read_config() == config.model_copy(update={"resume": False})
    assert json.loads((folder.path / "result.json").read_text())["summary"] == result.summary
    card = json.loads((folder.path / "model_card.json").read_text())
    assert card["vertical"] == "healthcare" and card["training"]["rounds_checkpointed"] == 3
    assert card["data"]["institution_sizes"] == result.institution_sizes
    assert {f["name"] for f in card["schema"]["features"]} >= {"age", "chest_pain"}
    assert "privacy" in card and "## Metrics" in (folder.path / "model_card.md").read_text()
    # a second run into the same folder must not overwrite it
    with pytest.raises(ConfigError, match="already holds a run"):
        run_recorded(config)


def test_predict_scores_new_rows_and_refuses_misfits(tmp_path):
    from consortia import ExperimentConfig
    from consortia.cli.data_options import data_options

    data, _ = data_options("healthcare", example="uci-heart")
    config = ExperimentConfig.build(data=data, rounds=2, finetune_epochs=0, run_dir=str(tmp_path / "run"))
    run_recorded(config)
    source = pd.read_csv(data["files"][0]).head(12)
    new = tmp_path / "new.csv"
    source.drop(columns=["num"]).to_csv(new, index=False)
    before = new.read_bytes()
    scored = predict_file(tmp_path / "run", new, tmp_path / "scores.csv")
    assert new.read_bytes() == before
    assert len(scored) == 12 and scored["score"].between(0, 1).all()
    assert pd.read_csv(tmp_path / "scores.csv")["score"].tolist() == pytest.approx(scored["score"].tolist())

    missing = tmp_path / "missing.csv"
    source.drop(columns=["num", "thalach"]).to_csv(missing, index=False)
    with pytest.raises(DataValidationError, match="max_heart_rate") as info:
        predict_file(tmp_path / "run", missing)
    assert str(missing) in str(info.value)
    bad = tmp_path / "bad.csv"
    source.assign(age=[300] + [50] * 11).to_csv(bad, index=False)
    with pytest.raises(DataValidationError) as info:
        predict_file(tmp_path / "run", bad)
    assert info.value.column == "age" and info.value.rows == [1]
