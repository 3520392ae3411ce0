"""The Flower ClientApp and ServerApp: the one place that speaks Flower messages.

The loop (per MISSION.md): (0) institutions send feature summaries, the server merges them
into one preprocessor; (1) each institution trains locally; (2) a Flower strategy aggregates;
(3) the global model goes back; repeat; (4) each institution fine-tunes the final global model
locally and reports both the global and the fine-tuned model's metrics on its own test rows.

The apps read the experiment from ``context.run_config`` (what ``flwr run`` passes in a
deployment); ``build_apps(overrides)`` bakes a config in for engines that start the apps from
Python. The same objects run in every engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from consortia.config import ExperimentConfig
from consortia.core.institutions import institution_arrays, institution_seed, node_institution
from consortia.core.learners import make_learner
from consortia.core.results import FederatedOutcome, RoundRecord
from consortia.core.strategies import build_strategy
from consortia.datasets.preprocessing import FeatureSummary, merge_summaries
from consortia.errors import FederationError
from consortia.verticals import get_vertical

SUMMARY = "query.summary"
FINETUNE = "evaluate.finetune"

RoundCallback = Callable[[RoundRecord], None]


def _config(context: Context, overrides: Mapping[str, Any]) -> ExperimentConfig:
    return ExperimentConfig.from_run_config({**dict(context.run_config), **dict(overrides)})


# ---------------------------------------------------------------------------------------------
# ClientApp
# ---------------------------------------------------------------------------------------------
def build_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp serving one institution; ``overrides`` take precedence over run_config."""
    overrides = dict(overrides or {})
    app = ClientApp()

    def _setup(message: Message, context: Context):
        config = _config(context, overrides)
        federation, institution = node_institution(config, context.node_config)
        request = message.content["config"]
        arrays = institution_arrays(config, institution.name, str(request["preprocessor"]))
        learner = make_learner(
            config.model,
            arrays[0].shape[1],
            federation.vertical.model_params(config.model, config.model_params),
            seed=config.seed,
            device=config.device,
        )
        learner.set_parameters(message.content["arrays"].to_numpy_ndarrays())
        return config, federation, institution, arrays, learner, request

    @app.query("summary")
    def summary(message: Message, context: Context) -> Message:
        config = _config(context, overrides)
        federation, institution = node_institution(config, context.node_config)
        reply = ConfigRecord(
            {
                "institution": institution.name,
                "summary": institution.summary(federation.schema).to_json(),
                "n-train": len(institution.train),
                "n-test": len(institution.test),
            }
        )
        return Message(RecordDict({"summary": reply}), reply_to=message)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        config, _, institution, (x_train, y_train, _, _), learner, request = _setup(message, context)
        server_round = int(request.get("server-round", 0))
        info = learner.fit(
            x_train,
            y_train,
            epochs=config.local_epochs,
            seed=institution_seed(config.seed, institution.name, server_round),
            proximal_mu=float(request.get("proximal-mu", 0.0)),
        )
        metrics = MetricRecord({"num-examples": len(y_train), **info})
        content = RecordDict({"arrays": ArrayRecord(learner.get_parameters()), "metrics": metrics})
        return Message(content, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        config, federation, _, (_, _, x_test, y_test), learner, request = _setup(message, context)
        proba = learner.predict_proba(x_test)
        content = RecordDict(
            {"metrics": MetricRecord({"num-examples": len(y_test), **_clean(federation.vertical.metrics(y_test, proba))})}
        )
        if bool(request.get("report-scores", False)):
            content["scores"] = ArrayRecord([y_test.astype(np.float64), proba])
        return Message(content, reply_to=message)

    @app.evaluate("finetune")
    def finetune(message: Message, context: Context) -> Message:
        config, federation, institution, (x_train, y_train, x_test, y_test), learner, request = _setup(
            message, context
        )
        metric_fn = federation.vertical.metrics
        global_proba = learner.predict_proba(x_test)
        if config.finetune_epochs:
            learner.fit(
                x_train,
                y_train,
                epochs=config.finetune_epochs,
                seed=institution_seed(config.seed, institution.name, 10**6),
            )
        tuned_proba = learner.predict_proba(x_test)
        metrics = {"num-examples": len(y_test)}
        metrics |= {f"global.{k}": v for k, v in _clean(metric_fn(y_test, global_proba)).items()}
        metrics |= {f"finetuned.{k}": v for k, v in _clean(metric_fn(y_test, tuned_proba)).items()}
        content = RecordDict(
            {
                "metrics": MetricRecord(metrics),
                "identity": ConfigRecord({"institution": institution.name}),
            }
        )
        if bool(request.get("report-scores", False)):
            content["scores"] = ArrayRecord([y_test.astype(np.float64), global_proba, tuned_proba])
        return Message(content, reply_to=message)

    return app


def _clean(metrics: Mapping[str, float]) -> dict[str, float]:
    """MetricRecord values must be numbers; NaN (e.g. AUROC with one class) is kept as NaN."""
    return {k: float(v) for k, v in metrics.items()}


# ---------------------------------------------------------------------------------------------
# ServerApp
# ---------------------------------------------------------------------------------------------
@dataclass
class ServerHooks:
    """Ways for the caller of an in-process engine to watch the run and collect its outcome."""

    on_round: RoundCallback | None = None
    on_outcome: Callable[[FederatedOutcome], None] | None = None
    report_scores: bool = True  # simulation only: lets the server compute pooled metrics
    node_timeout_s: float = 120.0


def build_server_app(
    overrides: Mapping[str, Any] | None = None, hooks: ServerHooks | None = None
) -> ServerApp:
    """A ServerApp that runs the whole federated loop with a Flower strategy."""
    overrides = dict(overrides or {})
    hooks = hooks or ServerHooks(report_scores=False)
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = _config(context, overrides)
        outcome = run_federation(grid, config, hooks)
        context.state["outcome"] = ConfigRecord({"json": outcome.to_json()})
        if hooks.on_outcome is not None:
            hooks.on_outcome(outcome)

    return app


def run_federation(grid: Grid, config: ExperimentConfig, hooks: ServerHooks) -> FederatedOutcome:
    """Summaries -> preprocessor -> strategy rounds -> local fine-tuning; returns the outcome."""
    vertical = get_vertical(config.vertical)
    started = time.perf_counter()
    node_ids = _wait_for_nodes(grid, config.institutions, hooks.node_timeout_s)

    # (0) federated preprocessing: only summaries travel
    replies = _send_all(grid, node_ids, SUMMARY, RecordDict({"config": ConfigRecord()}))
    names = {msg.metadata.src_node_id: str(msg.content["summary"]["institution"]) for msg in replies}
    summaries = [FeatureSummary.from_json(str(msg.content["summary"]["summary"])) for msg in replies]
    sizes = {
        names[msg.metadata.src_node_id]: {
            "train": int(msg.content["summary"]["n-train"]),
            "test": int(msg.content["summary"]["n-test"]),
        }
        for msg in replies
    }
    preprocessor = merge_summaries(summaries, vertical.schema)
    learner = make_learner(
        config.model,
        preprocessor.n_features,
        vertical.model_params(config.model, config.model_params),
        seed=config.seed,
        device=config.device,
    )

    # (1)-(3) rounds with Flower's strategy
    rounds: list[RoundRecord] = []
    round_started = [time.perf_counter()]

    def aggregate_evaluate(records: list[RecordDict], weight_key: str) -> MetricRecord:
        metrics = aggregate_metricrecords(records, weight_key)
        pooled = _pooled_metrics(records, vertical.metrics, columns=(1,))
        for key, value in pooled.get(1, {}).items():
            metrics[f"pooled.{key}"] = value
        now = time.perf_counter()
        record = RoundRecord(
            round=len(rounds) + 1,
            metrics={k: float(v) for k, v in metrics.items()},
            seconds=now - round_started[0],
        )
        round_started[0] = now
        rounds.append(record)
        if hooks.on_round is not None:
            hooks.on_round(record)
        return metrics

    strategy = build_strategy(
        config.strategy,
        config.strategy_params,
        num_institutions=config.institutions,
        fraction_train=config.fraction_train,
        evaluate_metrics_aggr_fn=aggregate_evaluate,
    )
    shared = {"preprocessor": preprocessor.to_json(), "report-scores": hooks.report_scores}
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(learner.get_parameters()),
        num_rounds=config.rounds,
        timeout=hooks.node_timeout_s * 10,
        train_config=ConfigRecord(dict(shared)),
        evaluate_config=ConfigRecord(dict(shared)),
    )
    if len(result.train_metrics_clientapp) < config.rounds:
        missing = sorted(set(range(1, config.rounds + 1)) - set(result.train_metrics_clientapp))
        raise FederationError(
            f"no institution returned a model in round(s) {missing[:5]}; see the node logs"
        )

    # (4) local fine-tuning of the final global model, evaluated at each institution
    final = RecordDict({"arrays": result.arrays, "config": ConfigRecord(dict(shared))})
    replies = _send_all(grid, node_ids, FINETUNE, final)
    per_institution: dict[str, dict[str, dict[str, float]]] = {}
    for msg in replies:
        metrics = dict(msg.content["metrics"])
        name = names[msg.metadata.src_node_id]
        per_institution[name] = {
            mode: {k.split(".", 1)[1]: float(v) for k, v in metrics.items() if k.startswith(f"{mode}.")}
            for mode in ("global", "finetuned")
        }
    pooled = _pooled_metrics([m.content for m in replies], vertical.metrics, columns=(1, 2))
    return FederatedOutcome(
        rounds=rounds,
        per_institution={n: per_institution[n] for n in sorted(per_institution)},
        pooled={"global": pooled.get(1, {}), "finetuned": pooled.get(2, {})},
        final_parameters=result.arrays.to_numpy_ndarrays(),
        preprocessor=preprocessor,
        institution_sizes=sizes,
        seconds=time.perf_counter() - started,
    )


def _pooled_metrics(
    records: list[RecordDict], metric_fn: Callable, columns: tuple[int, ...]
) -> dict[int, dict[str, float]]:
    """Metrics on the union of the test splits, from scores the nodes reported (simulation)."""
    scored = [r["scores"].to_numpy_ndarrays() for r in records if "scores" in r]
    if not scored or len(scored) != len(records):
        return {}
    y = np.concatenate([s[0] for s in scored]).astype(int)
    return {c: _clean(metric_fn(y, np.concatenate([s[c] for s in scored]))) for c in columns}


def _wait_for_nodes(grid: Grid, count: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) >= count:
            return node_ids
        if time.monotonic() > deadline:
            raise FederationError(
                f"only {len(node_ids)} of {count} institutions connected within {timeout_s:.0f} s"
            )
        time.sleep(0.5)


def _send_all(grid: Grid, node_ids: list[int], message_type: str, content: RecordDict) -> list[Message]:
    messages = [Message(content, dst_node_id=nid, message_type=message_type) for nid in node_ids]
    replies = list(grid.send_and_receive(messages))
    failed = [m for m in replies if m.has_error()]
    if failed or len(replies) < len(node_ids):
        reasons = "; ".join(f"node {m.metadata.src_node_id}: {m.error.reason}" for m in failed[:3])
        raise FederationError(
            f"{message_type}: {len(replies) - len(failed)} of {len(node_ids)} institutions answered"
            + (f" ({reasons})" if reasons else "")
        )
    return sorted(replies, key=lambda m: m.metadata.src_node_id)


def parse_outcome(context: Context) -> FederatedOutcome:
    """The outcome a ServerApp left in its context (used after Flower's simulation)."""
    return FederatedOutcome.from_json(str(context.state["outcome"]["json"]))
