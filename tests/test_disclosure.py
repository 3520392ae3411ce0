"""What leaves an institution is decided at the institution: no per-row data unless it allows it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from consortia.catalog import VERTICALS
from consortia.config import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.data.preprocessing import FeatureSummary, merge_summaries
from consortia.federation.client import build_client_app
from consortia.federation.engines import run_engine
from consortia.federation.server import ServerHooks
from consortia.learners import make_learner
from consortia.verticals import get_vertical

PER_ROW = {"scores", "metric-columns", "train-scores"}


def _config(vertical: str = "healthcare", **extra: object) -> ExperimentConfig:
    values: dict[str, object] = {"vertical": vertical, "institutions": 3, "rows": 3000, "rounds": 2}
    return ExperimentConfig.build(**{**values, **extra})


def _ask(message_type: str, node_config: dict, *, report_scores: bool) -> RecordDict:
    """Send one evaluate-type message straight to a ClientApp, as any server could."""
    config = _config()
    vertical = get_vertical(config.vertical)
    federation = load_federation(config, vertical)
    summaries = [FeatureSummary.from_frame(i.train, federation.schema) for i in federation.institutions.values()]
    preprocessor = merge_summaries(summaries, federation.schema)
    learner = make_learner(config.model, preprocessor.n_features, seed=0)
    content = RecordDict(
        {
            "arrays": ArrayRecord(learner.get_parameters()),
            "config": ConfigRecord({"preprocessor": preprocessor.to_json(), "report-scores": report_scores}),
        }
    )
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1  # we are the runtime here
    message = Message(content, dst_node_id=1001, message_type=message_type)
    context = Context(run_id=1, node_id=1001, node_config=node_config, state=RecordDict(),
                      run_config=config.to_run_config())  # fmt: skip
    return build_client_app()(message, context).content


@pytest.mark.parametrize("message_type", ["evaluate", "evaluate.finetune"])
def test_a_node_that_does_not_allow_rows_sends_none_whatever_the_server_asks(message_type: str) -> None:
    reply = _ask(message_type, {"partition-id": 0}, report_scores=True)
    assert PER_ROW.isdisjoint(reply.keys())
    assert any(key.startswith("histogram.test.") for key in reply)
    # the node's histogram carries counts per score bin, never one entry per row
    histogram = reply.array_records["histogram.test.1"]
    assert histogram["count"].numpy().sum() > len(histogram["count"].numpy())


def test_a_node_that_allows_rows_sends_them_only_when_asked() -> None:
    allowed = {"partition-id": 0, "disclose-rows": True}
    assert "scores" in _ask("evaluate", allowed, report_scores=True)
    assert "scores" not in _ask("evaluate", allowed, report_scores=False)


@pytest.mark.parametrize("vertical", VERTICALS.names())
def test_histogram_pooled_metrics_equal_the_exact_ones_through_the_federation(vertical: str) -> None:
    config = _config(vertical, rows=6000 if vertical == "finance" else 3000)
    exact = run_engine(config, ServerHooks(report_scores=True)).pooled
    private = run_engine(config, ServerHooks(report_scores=False)).pooled
    for mode in ("global", "finetuned"):
        assert set(private[mode]) == set(exact[mode])
        for key, value in exact[mode].items():
            got = private[mode][key]
            if math.isnan(value):
                assert math.isnan(got), key
            elif key == "money_saved":
                assert got == pytest.approx(value, rel=1e-3, abs=1e-3), key
            else:
                assert got == pytest.approx(value, abs=1e-3), key


def test_simulated_runs_disclose_no_rows_by_default(small_config) -> None:
    from consortia.experiment import run_experiment

    result = run_experiment(small_config(rounds=2))
    assert not np.isnan(result.pooled["federated"]["auroc"])  # pooled from histograms


def test_rare_categories_and_lonely_values_never_leave() -> None:
    import pandas as pd

    from consortia.data.preprocessing import RARE
    from consortia.data.schema import Feature, TabularSchema

    schema = TabularSchema(features=(Feature("ward", "categorical"), Feature("dose", "numeric")), target="y")
    frame = pd.DataFrame({"ward": ["a"] * 6 + ["rare-ward"] * 2, "dose": [np.nan] * 7 + [123.456], "y": [0, 1] * 4})
    summary = FeatureSummary.from_frame(frame, schema, min_count=5)
    text = summary.to_json()
    assert "rare-ward" not in text and "123.456" not in text
    assert summary.categorical["ward"] == {"a": 6, RARE: 2}
    assert summary.numeric["dose"].withheld and summary.numeric["dose"].count == 1
    merged = merge_summaries([summary, FeatureSummary.from_frame(frame.iloc[:6], schema, min_count=5)], schema)
    assert merged.categories["ward"] == ["a"]  # nobody named the rare ward: not in the vocabulary


def test_the_summary_reply_uses_the_nodes_own_floor() -> None:
    reply = _ask("query.summary", {"partition-id": 0, "min-category-count": 10**6}, report_scores=False)
    summary = FeatureSummary.from_json(str(reply.config_records["summary"]["summary"]))
    assert all(set(counts) <= {"__rare__"} for counts in summary.categorical.values())
    assert all(s.withheld for s in summary.numeric.values() if s.count)


def test_the_run_folder_lists_what_left_each_institution(small_config, tmp_path) -> None:
    import json

    from consortia.experiment.recorded import run_recorded

    _, folder = run_recorded(small_config(rounds=2, run_dir=str(tmp_path / "run")))
    log = json.loads((folder.path / "disclosure.json").read_text())
    assert len(log) == 3
    for kinds in log.values():
        assert set(kinds) == {"query.summary", "train", "evaluate", "evaluate.finetune"}
        assert kinds["train"]["replies"] == 2 and kinds["train"]["bytes"] > 0
        assert not {"scores", "metric-columns", "train-scores"} & set(kinds["evaluate"]["records"])
    card = (folder.path / "model_card.md").read_text()
    assert "No per-row data left any institution" in card and "| evaluate.finetune |" in card
