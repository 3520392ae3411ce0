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

import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from consortia.config import ExperimentConfig
from consortia.core.institutions import institution_arrays, institution_seed, node_institution
from consortia.core.learners import make_learner
from consortia.core.results import FederatedOutcome, RoundRecord
from consortia.core.strategies import build_strategy
from consortia.core.grids import MinimumNodesGrid
from consortia.core.runs import RunFolder, offset_rounds, restore_strategy_state
from consortia.datasets.loaders import schema_from_summaries
from consortia.datasets.preprocessing import FeatureSummary, merge_summaries
from consortia.errors import FederationError
from consortia.verticals import Vertical, get_vertical
from consortia.verticals.base import TrainScores

SUMMARY = "query.summary"
FINETUNE = "evaluate.finetune"

RoundCallback = Callable[[RoundRecord], None]


def _config(context: Context, overrides: Mapping[str, Any]) -> ExperimentConfig:
    merged = {**dict(context.run_config), **dict(overrides)}
    return _parse_config(tuple(sorted(merged.items())))


@functools.lru_cache(maxsize=16)
def _parse_config(items: tuple[tuple[str, Any], ...]) -> ExperimentConfig:
    """Validated once per run, not once per message (the config is the same all run long)."""
    return ExperimentConfig.from_run_config(dict(items))


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
        data_path = context.node_config.get("data-path")
        arrays = institution_arrays(
            config, institution.name, str(request["preprocessor"]), None if data_path is None else str(data_path)
        )
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
        config, federation, institution, (x_train, y_train, x_test, y_test), learner, request = _setup(
            message, context
        )
        vertical = federation.vertical
        proba = learner.predict_proba(x_test)
        train = _train_scores(vertical, learner, x_train, y_train)
        metrics = vertical.evaluate(y_test, proba, frame=institution.test, train=train)
        content = RecordDict({"metrics": MetricRecord({"num-examples": len(y_test), **_clean(metrics)})})
        if bool(request.get("report-scores", False)):
            content["scores"] = ArrayRecord([y_test.astype(np.float64), proba])
            _add_metric_inputs(content, vertical, institution, y_train, [train])
        return Message(content, reply_to=message)

    @app.evaluate("finetune")
    def finetune(message: Message, context: Context) -> Message:
        config, federation, institution, (x_train, y_train, x_test, y_test), learner, request = _setup(
            message, context
        )
        vertical = federation.vertical
        global_proba = learner.predict_proba(x_test)
        global_train = _train_scores(vertical, learner, x_train, y_train)
        if config.finetune_epochs:
            learner.fit(
                x_train,
                y_train,
                epochs=config.finetune_epochs,
                seed=institution_seed(config.seed, institution.name, 10**6),
            )
        tuned_proba = learner.predict_proba(x_test)
        tuned_train = _train_scores(vertical, learner, x_train, y_train)
        global_metrics = vertical.evaluate(y_test, global_proba, frame=institution.test, train=global_train)
        tuned_metrics = vertical.evaluate(y_test, tuned_proba, frame=institution.test, train=tuned_train)
        metrics = {"num-examples": len(y_test)}
        metrics |= {f"global.{k}": v for k, v in _clean(global_metrics).items()}
        metrics |= {f"finetuned.{k}": v for k, v in _clean(tuned_metrics).items()}
        content = RecordDict(
            {
                "metrics": MetricRecord(metrics),
                "identity": ConfigRecord({"institution": institution.name}),
            }
        )
        if bool(request.get("report-scores", False)):
            content["scores"] = ArrayRecord([y_test.astype(np.float64), global_proba, tuned_proba])
            _add_metric_inputs(content, vertical, institution, y_train, [global_train, tuned_train])
        return Message(content, reply_to=message)

    return app


def _train_scores(vertical: Vertical, learner, x_train: np.ndarray, y_train: np.ndarray) -> TrainScores | None:
    """The model's scores on its own training rows, for verticals that tune an operating point there."""
    return (y_train, learner.predict_proba(x_train)) if vertical.tunes_on_train else None


def _add_metric_inputs(
    content: RecordDict, vertical: Vertical, institution, y_train: np.ndarray, train: list[TrainScores | None]
) -> None:
    """What the server needs beyond (y, p) to pool this vertical's metrics (simulation only)."""
    present = [c for c in vertical.metric_columns if c in institution.test.columns]
    if present:
        columns = {c: Array(institution.test[c].to_numpy(dtype=np.float64)) for c in present}
        content["metric-columns"] = ArrayRecord(array_dict=columns)
    if vertical.tunes_on_train and all(t is not None for t in train):
        content["train-scores"] = ArrayRecord([y_train.astype(np.float64), *(t[1] for t in train)])


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
        if config.run_dir:  # the final model and metrics, also when the server is a remote process
            RunFolder(config.run_dir).write_outcome(outcome)
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
    preprocessor = merge_summaries(summaries, schema_from_summaries(vertical.schema, summaries))
    learner = make_learner(
        config.model,
        preprocessor.n_features,
        vertical.model_params(config.model, config.model_params),
        seed=config.seed,
        device=config.device,
    )

    # a run folder gets a checkpoint per round; a resumed run starts from the newest one
    folder = RunFolder(config.run_dir) if config.run_dir else None
    checkpoint = folder.latest_checkpoint() if folder is not None and config.resume else None
    done = checkpoint.round if checkpoint is not None else 0
    if checkpoint is not None and checkpoint.preprocessor != preprocessor:
        raise FederationError(
            f"cannot resume {config.run_dir}: the institutions' data changed since the checkpoint"
        )

    # (1)-(3) rounds with Flower's strategy
    rounds: list[RoundRecord] = [RoundRecord(**r) for r in checkpoint.rounds] if checkpoint else []
    round_started = [time.perf_counter()]

    def aggregate_evaluate(records: list[RecordDict], weight_key: str) -> MetricRecord:
        metrics = aggregate_metricrecords(records, weight_key)
        pooled = _pooled_metrics(records, vertical, columns=(1,))
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
        min_available=config.min_institutions,
        evaluate_metrics_aggr_fn=aggregate_evaluate,
    )
    shared = {"preprocessor": preprocessor.to_json(), "report-scores": hooks.report_scores}
    initial = ArrayRecord(checkpoint.parameters if checkpoint else learner.get_parameters())
    _seed_node_sampling(strategy, config.seed)
    if checkpoint is not None:  # continue the round count: client seeds and FedAdam's bias correction use it
        restore_strategy_state(strategy, checkpoint.strategy_state)
        offset_rounds(strategy, done)

    def save_checkpoint(server_round: int, arrays: ArrayRecord) -> None:
        if folder is not None and server_round > 0:
            folder.save_checkpoint(
                done + server_round, arrays.to_numpy_ndarrays(), preprocessor,
                [asdict(r) for r in rounds], strategy,
            )  # fmt: skip

    result = Result(arrays=initial)
    if done < config.rounds:
        result = strategy.start(
            grid=MinimumNodesGrid(grid, config.min_institutions or config.institutions, hooks.node_timeout_s),
            initial_arrays=initial,
            num_rounds=config.rounds - done,
            timeout=hooks.node_timeout_s * 10,
            train_config=ConfigRecord(dict(shared)),
            evaluate_config=ConfigRecord(dict(shared)),
            evaluate_fn=save_checkpoint if folder is not None else None,
        )
    if len(result.train_metrics_clientapp) < config.rounds - done:
        missing = sorted(set(range(1, config.rounds - done + 1)) - set(result.train_metrics_clientapp))
        missing = [done + r for r in missing]
        raise FederationError(
            f"no institution returned a model in round(s) {missing[:5]}; see the node logs"
        )

    # (4) local fine-tuning of the final global model, evaluated at each institution
    final = RecordDict({"arrays": result.arrays, "config": ConfigRecord(dict(shared))})
    if config.min_institutions is not None:  # nodes may have dropped out: ask those still here
        node_ids = sorted(grid.get_node_ids())
    replies = _send_all(grid, node_ids, FINETUNE, final, minimum=config.min_institutions)
    per_institution: dict[str, dict[str, dict[str, float]]] = {}
    for msg in replies:
        metrics = dict(msg.content["metrics"])
        name = str(msg.content["identity"]["institution"])  # node ids may change on reconnect
        per_institution[name] = {
            mode: {k.split(".", 1)[1]: float(v) for k, v in metrics.items() if k.startswith(f"{mode}.")}
            for mode in ("global", "finetuned")
        }
    pooled = _pooled_metrics([m.content for m in replies], vertical, columns=(1, 2))
    return FederatedOutcome(
        rounds=rounds,
        per_institution={n: per_institution[n] for n in sorted(per_institution)},
        pooled={"global": pooled.get(1, {}), "finetuned": pooled.get(2, {})},
        final_parameters=result.arrays.to_numpy_ndarrays(),
        preprocessor=preprocessor,
        institution_sizes=sizes,
        seconds=time.perf_counter() - started,
    )


def _seed_node_sampling(strategy: object, seed: int) -> None:
    """Make Flower's node sampling (module-level ``random``) reproducible per round.

    With ``fraction_train < 1`` Flower samples institutions with the unseeded ``random``
    module; seeding it from (run seed, round) before each configure step gives the same
    institutions in the same round for the same seed, also after a resume.
    """
    for name in ("configure_train", "configure_evaluate"):
        method = getattr(strategy, name)

        def seeded(server_round: int, *args: Any, _method=method, _name=name, **kwargs: Any) -> Any:
            random.seed(institution_seed(seed, f"sampling-{_name}", server_round))
            return _method(server_round, *args, **kwargs)

        setattr(strategy, name, seeded)


def _pooled_metrics(
    records: list[RecordDict], vertical: Vertical, columns: tuple[int, ...]
) -> dict[int, dict[str, float]]:
    """Metrics on the union of the test splits, from scores the nodes reported (simulation)."""
    scored = [r["scores"].to_numpy_ndarrays() for r in records if "scores" in r]
    if not scored or len(scored) != len(records):
        return {}
    y = np.concatenate([s[0] for s in scored]).astype(int)
    frame = None
    if all("metric-columns" in r for r in records):
        shared = [k for k in records[0]["metric-columns"] if all(k in r["metric-columns"] for r in records)]
        frame = pd.DataFrame({k: np.concatenate([r["metric-columns"][k].numpy() for r in records]) for k in shared})
    trained = [r["train-scores"].to_numpy_ndarrays() for r in records if "train-scores" in r]
    trained = trained if len(trained) == len(records) else []

    def train(c: int) -> TrainScores | None:
        if not trained:
            return None
        return np.concatenate([t[0] for t in trained]).astype(int), np.concatenate([t[c] for t in trained])

    return {
        c: _clean(vertical.evaluate(y, np.concatenate([s[c] for s in scored]), frame=frame, train=train(c)))
        for c in columns
    }


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


def _send_all(
    grid: Grid, node_ids: list[int], message_type: str, content: RecordDict, minimum: int | None = None
) -> list[Message]:
    messages = [Message(content, dst_node_id=nid, message_type=message_type) for nid in node_ids]
    replies = list(grid.send_and_receive(messages))
    failed = [m for m in replies if m.has_error()]
    if minimum is not None and len(replies) - len(failed) >= minimum:  # drop-outs tolerated
        return sorted((m for m in replies if not m.has_error()), key=lambda m: m.metadata.src_node_id)
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
