"""Local-only baselines trained at the nodes, for deployments where no one holds every file.

In simulation the driver has every institution's rows and trains the local-only baselines
itself (``consortia.experiment.baselines``). In a deployment only the institution has its rows,
so the server asks each node to train its own local-only model (message ``train.local_baseline``)
and to report that model's metrics on its own test rows, with the same per-class score
histograms the federated model's evaluation sends (no per-row data), so the server can pool them.

A node trains one only if its operator agrees: node config ``local-baseline=true``. A node that
does not answers with its name alone, and the server lists what it got. The model is the one
``train_local`` builds in simulation: the institution's own preprocessor (from its own training
rows' summary), the same learner, the federation's training budget and early-stopping rule, the same seed.

Pooled local-only here pools each institution's own model on its own test rows (as fine-tuned
models are pooled); the simulation's pooled local-only is the mean of each local model on every
institution's test rows, which would need each local model sent to the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from consortia.config import ExperimentConfig
from consortia.data.consortium import node_institution
from consortia.data.institutions import InstitutionData, institution_seed
from consortia.data.preprocessing import FeatureSummary, Preprocessor, merge_summaries
from consortia.data.schema import TabularSchema
from consortia.evaluation.pooled import ScoreHistogram
from consortia.federation.strategies import training_budget
from consortia.learners import Learner, make_learner
from consortia.learners.early_stopping import Score, ValidationPart, fit_early_stopping, validation_scorer
from consortia.verticals import Vertical, get_vertical

#: the message type (a train message: the node trains a model; no train mods wrap its handler)
LOCAL_BASELINE = "train.local_baseline"
#: the node-config entry by which an institution agrees to train and report its local-only model
NODE_FLAG = "local-baseline"
MODE = "local_only"
NOTE = (
    "deployment: local_only trained at each agreeing node; pooled local_only pools each institution's "
    "own model on its own test rows"
)


def agrees(node_config: Mapping[str, Any]) -> bool:
    raw = node_config.get(NODE_FLAG, False)
    return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes")


# -- the node ---------------------------------------------------------------------------------
def answer_local_baseline(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    """The ClientApp handler: this institution's local-only model's metrics, if it agrees."""
    config = ExperimentConfig.from_run_config({**dict(context.run_config), **dict(overrides)})  # once per run
    vertical = get_vertical(config.vertical)
    federation, institution = node_institution(config, vertical, context.node_config)
    content = RecordDict({"identity": ConfigRecord({"institution": institution.name})})
    if agrees(context.node_config):
        metrics, histograms = train_and_evaluate(config, vertical, federation.schema, institution)
        content["metrics"] = MetricRecord({"num-examples": len(institution.test), **metrics})
        for name, histogram in histograms.items():
            content[name] = ArrayRecord(array_dict={k: Array(v) for k, v in histogram.to_arrays().items()})
    return Message(content, reply_to=message)


@dataclass(frozen=True)
class LocalModel:
    """One institution's local-only model, with its own preprocessor and its transformed training rows."""

    learner: Learner
    preprocessor: Preprocessor
    x_train: np.ndarray
    y_train: np.ndarray


def train_local_model(
    config: ExperimentConfig, vertical: Vertical, schema: TabularSchema, institution: InstitutionData
) -> LocalModel:
    """Institution alone: its own statistics, its own rows, the federation's budget and stopping rule.

    The one recipe for the simulation's local-only baselines and the ones trained at the nodes."""
    own = merge_summaries([FeatureSummary.from_frame(institution.train, schema)], schema)
    params = vertical.model_params(config.model, config.model_params)
    learner = make_learner(config.model, own.n_features, params, seed=config.seed, device=config.device)
    x_train = own.transform(institution.train)
    y_train = institution.train[schema.target].to_numpy(dtype=int)
    seed = institution_seed(config.seed, institution.name, 0)
    rows = institution.validation
    if config.selects_round and rows is not None:  # its own validation rows, the federation's rule
        part = ValidationPart(own.transform(rows), rows[schema.target].to_numpy(dtype=int), rows, x_train, y_train)
        fit_selected(learner, x_train, y_train, config, seed, validation_scorer([part], vertical))
    else:
        learner.fit(x_train, y_train, epochs=training_budget(config), seed=seed)
    return LocalModel(learner, own, x_train, y_train)


def fit_selected(
    learner: Learner, x: np.ndarray, y: np.ndarray, config: ExperimentConfig, seed: int, score: Score
) -> int:
    """A baseline's early stopping: at most the federation's budget, stopped by the federation's
    patience (rounds counted as the epochs, or trees, a round adds); ``model_size`` reads what was kept."""
    budget = training_budget(config)
    per_round = max(1, budget // config.rounds)
    kept, _ = fit_early_stopping(
        learner, x, y, epochs=budget, seed=seed, score=score,
        patience=config.selection.patience * per_round, min_delta=config.selection.min_delta,
    )  # fmt: skip
    learner.epochs_kept = kept  # type: ignore[attr-defined]
    return kept


def train_and_evaluate(
    config: ExperimentConfig, vertical: Vertical, schema: TabularSchema, institution: InstitutionData
) -> tuple[dict[str, float], dict[str, ScoreHistogram]]:
    """Train the local-only model as the simulation does; its metrics and score histograms."""
    local = train_local_model(config, vertical, schema, institution)
    learner, own, x_train, y_train = local.learner, local.preprocessor, local.x_train, local.y_train
    test = institution.test
    y_test = test[schema.target].to_numpy(dtype=int)
    proba = learner.predict_proba(own.transform(test))
    train = (y_train, learner.predict_proba(x_train)) if vertical.tunes_on_train else None
    metrics = {k: float(v) for k, v in vertical.evaluate(y_test, proba, frame=test, train=train).items()}
    columns = {c: test[c].to_numpy(dtype=np.float64) for c in vertical.metric_columns if c in test.columns}
    histograms = {"histogram.test.1": ScoreHistogram.from_scores(y_test, proba, columns)}
    if train is not None:
        histograms["histogram.train.1"] = ScoreHistogram.from_scores(*train)
    return metrics, histograms


# -- the server -------------------------------------------------------------------------------
@dataclass
class LocalBaselines:
    """What the nodes reported: metrics per agreeing institution, pooled metrics, who declined."""

    per_institution: dict[str, dict[str, float]] = field(default_factory=dict)
    pooled: dict[str, float] = field(default_factory=dict)
    declined: list[str] = field(default_factory=list)

    def merge_into(
        self,
        per_institution: dict[str, dict[str, dict[str, float]]],
        pooled: dict[str, dict[str, float]],
        notes: list[str],
    ) -> None:
        """Add ``local_only`` to a FederatedOutcome's tables (and a note saying what it is)."""
        for name, metrics in self.per_institution.items():
            per_institution.setdefault(name, {})[MODE] = metrics
        if self.pooled:
            pooled[MODE] = self.pooled
        if self.per_institution:
            notes.append(NOTE)
        if self.declined:
            notes.append(f"no local-only baseline from {', '.join(self.declined)} (node config {NODE_FLAG} not true)")


#: ``histogram_pooled_metrics(records, vertical, columns)`` of consortia.federation.server
PoolFn = Callable[[list[RecordDict], Vertical, tuple[int, ...]], dict[int, dict[str, float]]]


def collect_local_baselines(
    grid: Grid, vertical: Vertical, node_ids: list[int], pool: PoolFn, timeout_s: float | None = None
) -> LocalBaselines:
    """Ask every node for its local-only baseline; a node that fails or declines is listed, not
    fatal. ``pool`` pools the agreeing nodes' score histograms (the server's own function)."""

    messages = [
        Message(RecordDict({"config": ConfigRecord()}), dst_node_id=nid, message_type=LOCAL_BASELINE)
        for nid in node_ids
    ]
    replies = [m for m in grid.send_and_receive(messages, timeout=timeout_s) if not m.has_error()]
    replies.sort(key=lambda m: str(m.content["identity"]["institution"]))  # pooling order: institutions'
    result = LocalBaselines()
    agreed = []
    for reply in replies:
        name = str(reply.content["identity"]["institution"])
        if "metrics" not in reply.content.metric_records:
            result.declined.append(name)
            continue
        metrics = dict(reply.content.metric_records["metrics"])
        result.per_institution[name] = {k: float(v) for k, v in metrics.items() if k != "num-examples"}  # type: ignore[arg-type]
        agreed.append(reply.content)
    result.pooled = pool(agreed, vertical, (1,)).get(1, {})
    return result
