"""The Flower ServerApp, as explicit phases.

1. **summaries**: every institution sends feature summaries; the server merges one preprocessor
   (and agrees the consortium's schema, the same function in simulation and deployment);
2. **rounds**: a Flower strategy (wrapped by ``ManagedStrategy``) trains the global model; a
   run folder gets a checkpoint per round, and a resumed run continues from the newest one;
3. **fine-tuning**: each institution fine-tunes the final global model and reports both
   models' metrics on its own test rows.

Pooled metrics (on the union of the test splits) exist only when nodes report per-row scores,
which only the simulation engines ask for. A round combines the institutions' metrics per metric
(``consortia.runs.results.metric_aggregation``): sums for what adds up, weighted means otherwise,
and nothing for what only means something pooled (thresholds).

Everything the server combines is taken in institution order, never in node-id or arrival order:
node ids are random under Ray and in a deployment, and a sum's order moves its last bits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.exception import PrivacyBudgetExhausted
from flwr.serverapp.strategy import Result, Strategy

from consortia.config import ExperimentConfig
from consortia.config.selection import LEARNING_RATE_KEY, VALIDATION_PREFIX, VALIDATION_ROWS_KEY
from consortia.data.loaders import schema_from_summaries
from consortia.data.preprocessing import FeatureSummary, Preprocessor, merge_summaries
from consortia.errors import FederationError
from consortia.evaluation.pooled import ScoreHistogram, merge_histograms
from consortia.evaluation.selection import BestRound, validation_score
from consortia.federation.client import CONSORTIUM_ROWS, FINETUNE, SUMMARY, run_config
from consortia.federation.deadline import DeadlineGrid, reports_dropped
from consortia.federation.grids import MinimumNodesGrid, RecordingGrid
from consortia.federation.local_baseline import collect_local_baselines
from consortia.federation.private_rounds import RoundsPrivacy, stopped_note
from consortia.federation.secure import check_secure, round_grid, secure_pooled_histograms, secure_summary
from consortia.federation.secure.he import HEGrid
from consortia.federation.secure.node import histogram_names
from consortia.federation.strategies import build_strategy
from consortia.federation.strategies.managed import ManagedStrategy
from consortia.federation.xgb_histogram import check_histogram, check_histogram_grid, is_histogram, train_histogram
from consortia.learners import make_learner
from consortia.privacy.dp import EPSILON_KEY, EQUAL_WEIGHT_KEY, check_privacy
from consortia.runs.folder import Checkpoint, RunFolder
from consortia.runs.results import (
    DROPPED_KEY,
    WEIGHT_KEY,
    FederatedOutcome,
    RoundRecord,
    aggregate_over_institutions,
    metric_aggregation,
)
from consortia.verticals import Vertical, get_vertical
from consortia.verticals.base import TrainScores

RoundCallback = Callable[[RoundRecord], None]


@dataclass
class ServerHooks:
    """Ways for the caller of an in-process engine to watch the run and collect its outcome."""

    on_round: RoundCallback | None = None
    on_outcome: Callable[[FederatedOutcome], None] | None = None
    #: simulation only, for the exact pooled-metrics check: ask for per-row scores, and let the engine's
    #: simulated nodes allow it (their node config's ``disclose-rows``); otherwise pooled metrics come
    #: from score histograms, as in a deployment
    report_scores: bool = False
    node_timeout_s: float = 120.0
    #: deployments: ask every node for a local-only baseline (trained there if its node config agrees)
    local_baselines: bool = False


@dataclass
class Consortium:
    """Phase 1's result: who is there, how big, and the preprocessor everyone agreed."""

    node_ids: list[int]
    names: dict[int, str]
    sizes: dict[str, dict[str, int]]
    preprocessor: Preprocessor


@dataclass
class Rounds:
    """Phase 2's result: the final global model and the per-round history."""

    arrays: ArrayRecord
    history: list[RoundRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the privacy budget ended the rounds early
    #: which round's model was kept, when the run selects it by federated validation
    selection: dict[str, Any] | None = None
    #: what fine-tuning messages must carry too (the learning rate the search chose)
    message_config: dict[str, Any] = field(default_factory=dict)


class EarlyStopped(Exception):
    """Raised from the strategy's per-round hook: ``patience`` rounds without a better validation score."""


def build_server_app(overrides: Mapping[str, Any] | None = None, hooks: ServerHooks | None = None) -> ServerApp:
    """A ServerApp that runs the whole federated loop with a Flower strategy."""
    fixed = dict(overrides or {})
    server_hooks = hooks or ServerHooks(report_scores=False)
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = run_config(context, fixed)
        outcome = run_federation(grid, config, server_hooks)
        context.state["outcome"] = ConfigRecord({"json": outcome.to_json()})
        if config.run_dir:  # the final model and metrics, also when the server is a remote process
            RunFolder(config.run_dir).write_outcome(outcome)
        if server_hooks.on_outcome is not None:
            server_hooks.on_outcome(outcome)

    return app


def run_federation(grid: Grid, config: ExperimentConfig, hooks: ServerHooks) -> FederatedOutcome:
    """Summaries -> preprocessor -> strategy rounds -> local fine-tuning; returns the outcome."""
    check_servable(config)
    if is_histogram(config):
        check_histogram_grid(grid)  # before any node is asked
    vertical = get_vertical(config.vertical)
    started = time.perf_counter()
    grid = recording = RecordingGrid(grid)  # what every institution's replies carried
    # under HE every phase's model travels encrypted; secure sums go straight to the recording grid
    he_grid = HEGrid(recording) if config.privacy.aggregation == "he" else None
    grid = he_grid or recording
    consortium = agree_preprocessing(grid, config, vertical, hooks, sums=recording)
    if is_histogram(config):  # one booster over XGBoost's communicator, not a strategy (federation.xgb_histogram)
        phase = train_histogram(grid, config, vertical, consortium.names, consortium.preprocessor,
                                hooks.node_timeout_s, hooks.on_round)  # fmt: skip
        rounds = Rounds(ArrayRecord(phase.arrays), phase.history, phase.notes)
        per_institution, pooled = phase.per_institution, phase.pooled
    else:
        rounds = train_rounds(grid, config, vertical, consortium, hooks)
        per_institution, pooled = finetune_and_evaluate(
            grid, config, vertical, consortium, rounds, hooks, sums=recording
        )
    if hooks.local_baselines:  # local-only models trained at the nodes that agree (consortia.federation.local_baseline)
        nodes = sorted(recording.get_node_ids())
        local = collect_local_baselines(recording, vertical, nodes, histogram_pooled_metrics, hooks.node_timeout_s)
        local.merge_into(per_institution, pooled, rounds.notes)
    if config.run_dir:
        log = {consortium.names.get(node, f"node-{node}"): kinds for node, kinds in recording.log.items()}
        RunFolder(config.run_dir).write_disclosure(dict(sorted(log.items())))
    return FederatedOutcome(
        rounds=rounds.history,
        per_institution=per_institution,
        pooled=pooled,
        final_parameters=[] if he_grid is not None else rounds.arrays.to_numpy_ndarrays(),
        preprocessor=consortium.preprocessor,
        institution_sizes=consortium.sizes,
        seconds=time.perf_counter() - started,
        notes=rounds.notes,
        encrypted_model=he_grid.encrypted_model() if he_grid is not None else None,
        selection=rounds.selection,
    )


def check_servable(config: ExperimentConfig) -> None:
    """Refuse, before any node is asked anything, what this ServerApp cannot run as configured."""
    check_privacy(config)
    check_secure(config)
    if is_histogram(config):  # no strategy: XGBoost's federated communicator (consortia.federation.xgb_histogram)
        check_histogram(config)
        return
    strategy_for(config)  # a bad strategy option fails now, not after the summaries


def strategy_for(
    config: ExperimentConfig,
    evaluate_metrics_aggr_fn: Callable | None = None,
    train_metrics_aggr_fn: Callable | None = None,
) -> Strategy:
    """The run's Flower strategy, with the node counts of the federation."""
    return build_strategy(
        config.strategy,
        config.strategy_params,
        num_institutions=config.institutions,
        fraction_train=config.fraction_train,
        min_available=config.min_institutions,
        evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        train_metrics_aggr_fn=train_metrics_aggr_fn,
    )


# -- phase 1: summaries -------------------------------------------------------------------------
def agree_preprocessing(
    grid: Grid, config: ExperimentConfig, vertical: Vertical, hooks: ServerHooks, sums: Grid | None = None
) -> Consortium:
    """Only summaries travel; the server merges them into the consortium's preprocessor.

    Under the secured protocol the summaries are layouts (columns, category names) and the counts
    and sums arrive as one SecAgg+ secure sum over ``sums``: the server learns consortium totals."""
    node_ids = wait_for_nodes(grid, config.institutions, hooks.node_timeout_s)
    replies = send_all(grid, node_ids, SUMMARY, RecordDict({"config": ConfigRecord()}))
    replies.sort(key=lambda msg: str(msg.content["summary"]["institution"]))  # merge order: institutions'
    names = {msg.metadata.src_node_id: str(msg.content["summary"]["institution"]) for msg in replies}
    summaries = [FeatureSummary.from_json(str(msg.content["summary"]["summary"])) for msg in replies]
    sizes = {
        names[msg.metadata.src_node_id]: {
            "train": int(msg.content["summary"]["n-train"]),  # type: ignore[arg-type]
            "test": int(msg.content["summary"]["n-test"]),  # type: ignore[arg-type]
        }
        for msg in replies
    }
    schema = schema_from_summaries(vertical.schema, summaries)
    if config.privacy.secure:
        ordered = sorted(names, key=lambda node: names[node])  # institution order, as everywhere
        summaries = [secure_summary(sums or grid, ordered, summaries, config, hooks.node_timeout_s)]
    preprocessor = merge_summaries(summaries, schema)
    return Consortium(node_ids, names, sizes, preprocessor)


# -- phase 2: rounds ----------------------------------------------------------------------------
def train_rounds(
    grid: Grid, config: ExperimentConfig, vertical: Vertical, consortium: Consortium, hooks: ServerHooks
) -> Rounds:
    """The strategy's rounds, continued from the newest checkpoint when resuming."""
    preprocessor = consortium.preprocessor
    folder = RunFolder(config.run_dir) if config.run_dir else None
    checkpoint = _resume_point(folder, config, preprocessor)
    done = checkpoint.round if checkpoint is not None else 0
    log = RoundLog(vertical, hooks, [RoundRecord(**r) for r in checkpoint.rounds] if checkpoint else [])
    train_sizes = {name: size["train"] for name, size in consortium.sizes.items()}
    privacy = RoundsPrivacy.plan(config, vertical, train_sizes, preprocessor.n_features)
    inner = strategy_for(config, log.aggregate_evaluate, privacy.aggregate_train if privacy.enabled else None)
    strategy = ManagedStrategy(
        privacy.wrap(inner), seed=config.seed, round_offset=done, institutions=consortium.names
    )  # fmt: skip
    log.epsilon_of = privacy.epsilon if privacy.enabled else None
    if checkpoint is not None:  # FedAdam's moments, FedAvgM's momentum
        strategy.load_state_dict(checkpoint.strategy_state)

    last = {"arrays": ArrayRecord()}  # the newest global model: what a run stopped by its budget keeps
    best = _round_selector(config, vertical, folder, log.history)

    def save_checkpoint(server_round: int, arrays: ArrayRecord) -> None:
        last["arrays"] = arrays
        if folder is not None and server_round > 0 and config.privacy.aggregation != "he":  # HE: a token
            folder.save_checkpoint(
                done + server_round, arrays.to_numpy_ndarrays(), preprocessor,
                [asdict(r) for r in log.history], strategy.state_dict(),
            )  # fmt: skip
        if best is not None and server_round > 0:  # after the round's evaluation: its validation score is known
            best.observe(done + server_round, _validation_of(log.history[-1], vertical), arrays)
            if best.should_stop():
                raise EarlyStopped

    initial = (
        ArrayRecord(checkpoint.parameters) if checkpoint is not None else _initial_arrays(config, vertical, consortium)
    )
    if best is not None and (done >= config.rounds or best.should_stop()):  # a resumed run that had stopped
        return _selected(best, initial, log.history, [], vertical)
    if done >= config.rounds:
        return Rounds(initial, log.history)
    shared = shared_config(consortium, hooks)
    num_rounds = min(config.rounds, privacy.rounds_allowed) - done  # record level: what every budget allows
    if num_rounds <= 0:
        return Rounds(initial, log.history, privacy.notes)
    rounds_grid: Grid = MinimumNodesGrid(grid, config.min_institutions or config.institutions, hooks.node_timeout_s)
    if config.privacy.aggregation == "plain":  # drop-outs recorded per round; a deadline drops late replies
        rounds_grid = deadline = DeadlineGrid(
            rounds_grid, config.round_deadline_s, names=consortium.names, minimum=config.min_institutions
        )
        log.dropped_of, log.report_dropped = deadline.dropped_in, reports_dropped(config)
    search: dict[str, Any] = {}
    if config.selection.learning_rates and done == 0:  # tried from the same start, each on its own strategy

        def trial(rate: float, rounds: int) -> list[RoundRecord]:
            trial_log = RoundLog(vertical, ServerHooks(), [])
            trial_strategy = ManagedStrategy(
                strategy_for(config, trial_log.aggregate_evaluate), seed=config.seed, institutions=consortium.names
            )
            trial_strategy.start(
                grid=round_grid(rounds_grid, config, train_sizes, seed=config.seed), initial_arrays=initial,
                num_rounds=rounds, timeout=hooks.node_timeout_s * 10,
                train_config=ConfigRecord({**shared, LEARNING_RATE_KEY: rate}),
                evaluate_config=ConfigRecord(dict(shared)),
            )  # fmt: skip
            return trial_log.history

        search = search_learning_rate(config, vertical, trial)
        shared[LEARNING_RATE_KEY] = search["learning_rate"]
    log.start()
    try:
        result: Result = strategy.start(
            grid=round_grid(
                rounds_grid,
                config,
                train_sizes,
                seed=config.seed,
            ),
            initial_arrays=initial,
            num_rounds=num_rounds,
            timeout=hooks.node_timeout_s * 10,
            train_config=ConfigRecord(dict(shared)),
            evaluate_config=ConfigRecord(dict(shared)),
            evaluate_fn=save_checkpoint,
        )
    except PrivacyBudgetExhausted:  # raised before the round that would exceed ε is sent
        notes = [*privacy.notes, stopped_note(config, len(log.history))]
        if best is not None:
            return _selected(best, last["arrays"], log.history, notes, vertical)
        return Rounds(last["arrays"], log.history, notes)
    except EarlyStopped:
        assert best is not None
        return _searched(_selected(best, last["arrays"], log.history, privacy.notes, vertical), search)
    if len(result.train_metrics_clientapp) < num_rounds:
        missing = sorted(set(range(1, num_rounds + 1)) - set(result.train_metrics_clientapp))
        raise FederationError(
            f"no institution returned a model in round(s) {[done + r for r in missing][:5]}; see the node logs"
        )
    if best is not None:
        return _searched(_selected(best, result.arrays, log.history, privacy.notes, vertical), search)
    return Rounds(result.arrays, log.history, privacy.notes)


def search_learning_rate(
    config: ExperimentConfig, vertical: Vertical, trial: Callable[[float, int], list[RoundRecord]]
) -> dict[str, Any]:
    """Each of ``selection.learning_rates`` for ``search_rounds`` rounds (``trial``); the rate whose
    best round scored highest on the federated validation rows (ties: the first listed)."""
    scores: dict[float, float] = {}
    for rate in config.selection.learning_rates:
        history = trial(rate, min(config.selection.search_rounds, config.rounds))
        finite = [v for v in (_validation_of(r, vertical) for r in history) if np.isfinite(v)]
        scores[rate] = max(finite) if finite else float("-inf")
    chosen = max(scores, key=lambda rate: scores[rate])
    return {"learning_rate": chosen, "learning_rate_scores": {str(k): v for k, v in scores.items()}}


def _searched(rounds: Rounds, search: dict[str, Any]) -> Rounds:
    """The learning-rate search's choice in the outcome's selection record and notes."""
    if not search:
        return rounds
    tried = ", ".join(f"{rate}: {score:.4f}" for rate, score in search["learning_rate_scores"].items())
    note = f"learning rate {search['learning_rate']:g} chosen by federated validation (best round of each: {tried})"
    rounds.selection = {**(rounds.selection or {}), **search}
    rounds.notes = [*rounds.notes, note]
    rounds.message_config = {LEARNING_RATE_KEY: search["learning_rate"]}
    return rounds


def _validation_of(record: RoundRecord, vertical: Vertical) -> float:
    return float(record.metrics.get(VALIDATION_PREFIX + vertical.primary_metric, float("nan")))


def _round_selector(
    config: ExperimentConfig, vertical: Vertical, folder: RunFolder | None, history: list[RoundRecord]
) -> BestRound[ArrayRecord] | None:
    """The early-stopping state; a resumed run replays its rounds' validation scores and reloads
    the best round's checkpoint (every round's is kept in the run folder)."""
    if not config.selects_round:
        return None
    best: BestRound[ArrayRecord] = BestRound(config.selection.patience, config.selection.min_delta)
    for record in history:
        best.observe(record.round, _validation_of(record, vertical), ArrayRecord())
    if best.judged and folder is not None:
        checkpoint = folder.checkpoint(best.best_round)
        if checkpoint is None:
            raise FederationError(
                f"cannot resume {config.run_dir} with early stopping: the checkpoint of its best round "
                f"({best.best_round}) is missing or unreadable"
            )
        best.best_model = ArrayRecord(checkpoint.parameters)
    return best


def _selected(
    best: BestRound[ArrayRecord], last: ArrayRecord, history: list[RoundRecord], notes: list[str], vertical: Vertical
) -> Rounds:
    """The best round's model (the last one when no round could be judged), with a note saying which."""
    metric = VALIDATION_PREFIX + vertical.primary_metric
    if not best.judged or best.best_model is None:
        note = "early stopping: no institution's validation rows could judge a round (one class each); kept the last"
        return Rounds(last, history, [*notes, note], best.summary(metric))
    how = f"stopped after {best.patience} rounds without a gain" if best.should_stop() else "every round run"
    note = f"early stopping: kept round {best.best_round} of {best.last_round} ({metric} {best.best_score:.4f}; {how})"
    return Rounds(best.best_model, history, [*notes, note], best.summary(metric))


class RoundLog:
    """The per-round history: the strategy's evaluate aggregation records one RoundRecord a round."""

    def __init__(self, vertical: Vertical, hooks: ServerHooks, history: list[RoundRecord]) -> None:
        self.vertical = vertical
        self.hooks = hooks
        self.history = history
        self._started = time.perf_counter()
        #: ε spent so far (DP runs): recorded as ``privacy.epsilon`` in each round's metrics
        self.epsilon_of: Callable[[], float | None] | None = None
        #: round -> institutions dropped (late or failed; consortia.federation.deadline), and whether
        #: their count goes in the round's metrics (``participation.dropped``)
        self.dropped_of: Callable[[int], list[str]] | None = None
        self.report_dropped = False

    def start(self) -> None:
        self._started = time.perf_counter()

    def aggregate_evaluate(self, records: list[RecordDict], weight_key: str) -> MetricRecord:
        """Flower's ``evaluate_metrics_aggr_fn``: sums, weighted means and pooled metrics.

        Means weigh by test rows (``WEIGHT_KEY``) even when Flower weighs equally (client DP)."""
        metrics = round_metrics(records, self.vertical)
        epsilon = self.epsilon_of() if self.epsilon_of is not None else None
        if epsilon is not None:
            metrics[EPSILON_KEY] = epsilon
        dropped = self.dropped_of(len(self.history) + 1) if self.dropped_of is not None else []
        if self.report_dropped:
            metrics[DROPPED_KEY] = float(len(dropped))
        now = time.perf_counter()
        record = RoundRecord(len(self.history) + 1, metrics, now - self._started, dropped=dropped)
        self._started = now
        self.history.append(record)
        if self.hooks.on_round is not None:
            self.hooks.on_round(record)
        return MetricRecord(dict(metrics))


def round_metrics(records: list[RecordDict], vertical: Vertical, weight_key: str = WEIGHT_KEY) -> dict[str, float]:
    """One round's metrics from the institutions' replies (in institution order), plus ``pooled.*``."""
    per_institution = [
        {k: float(v) for k, v in next(iter(r.metric_records.values())).items() if k != EQUAL_WEIGHT_KEY}  # type: ignore[arg-type]
        for r in records
    ]
    rules = metric_aggregation(
        {k for m in per_institution for k in m}, vertical.additive_metrics, vertical.pooled_only_metrics
    )
    validation = {k for m in per_institution for k in m if k.startswith(VALIDATION_PREFIX)}
    plain = [{k: v for k, v in m.items() if k not in validation} for m in per_institution] if validation else None
    metrics = aggregate_over_institutions(plain or per_institution, [m[weight_key] for m in per_institution], rules)
    if validation:  # weighted by validation rows, not test rows (consortia.evaluation.selection)
        primary = vertical.primary_metric
        metrics[VALIDATION_PREFIX + primary] = validation_score(per_institution, primary)
        metrics[VALIDATION_ROWS_KEY] = sum(m.get(VALIDATION_ROWS_KEY, 0.0) for m in per_institution)
    for key, value in pooled_metrics(records, vertical, columns=(1,)).get(1, {}).items():
        metrics[f"pooled.{key}"] = value
    return metrics


def _initial_arrays(config: ExperimentConfig, vertical: Vertical, consortium: Consortium) -> ArrayRecord:
    learner = make_learner(
        config.model,
        consortium.preprocessor.n_features,
        vertical.model_params(config.model, config.model_params),
        seed=config.seed,
        device=config.device,
    )
    return ArrayRecord(learner.get_parameters())


def _resume_point(folder: RunFolder | None, config: ExperimentConfig, preprocessor: Preprocessor) -> Checkpoint | None:
    if folder is None or not config.resume:
        return None
    checkpoint = folder.latest_checkpoint()
    if checkpoint is not None and checkpoint.preprocessor != preprocessor:
        raise FederationError(f"cannot resume {config.run_dir}: the institutions' data changed since the checkpoint")
    return checkpoint


def shared_config(consortium: Consortium, hooks: ServerHooks) -> dict[str, Any]:
    """What every train and evaluate message carries besides the model."""
    rows = sum(size["train"] for size in consortium.sizes.values())  # the local fits' penalty share (logistic)
    return {
        "preprocessor": consortium.preprocessor.to_json(),
        "report-scores": hooks.report_scores,
        CONSORTIUM_ROWS: rows,
    }


# -- phase 3: fine-tuning -----------------------------------------------------------------------
def finetune_and_evaluate(
    grid: Grid,
    config: ExperimentConfig,
    vertical: Vertical,
    consortium: Consortium,
    rounds: Rounds,
    hooks: ServerHooks,
    sums: Grid | None = None,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, float]]]:
    """Each institution fine-tunes the final global model; both models' metrics come back.

    Pooled metrics come from the institutions' score histograms: in their replies (plain), or as one
    SecAgg+ secure sum over ``sums`` (secured: the server sees only the consortium's histogram)."""
    message = {**shared_config(consortium, hooks), **rounds.message_config}
    final = RecordDict({"arrays": rounds.arrays, "config": ConfigRecord(message)})
    node_ids = consortium.node_ids
    if config.min_institutions is not None:  # nodes may have dropped out: ask those still here
        node_ids = sorted(grid.get_node_ids())
    replies = send_all(grid, node_ids, FINETUNE, final, minimum=config.min_institutions)
    replies.sort(key=lambda msg: str(msg.content["identity"]["institution"]))  # pooling order: institutions'
    per_institution: dict[str, dict[str, dict[str, float]]] = {}
    for msg in replies:
        metrics = dict(msg.content["metrics"])
        name = str(msg.content["identity"]["institution"])  # node ids may change on reconnect
        per_institution[name] = {
            mode: {k.split(".", 1)[1]: float(v) for k, v in metrics.items() if k.startswith(f"{mode}.")}  # type: ignore[arg-type]
            for mode in ("global", "finetuned")
        }
    if config.privacy.secure:
        ordered = sorted((m.metadata.src_node_id for m in replies), key=lambda node: consortium.names.get(node, ""))
        pooled = secure_pooled_metrics(sums or grid, ordered, vertical, config, hooks.node_timeout_s)
    else:
        pooled = pooled_metrics([m.content for m in replies], vertical, columns=(1, 2))
    return (
        {n: per_institution[n] for n in sorted(per_institution)},
        {"global": pooled.get(1, {}), "finetuned": pooled.get(2, {})},
    )


# -- shared ------------------------------------------------------------------------------------
def pooled_metrics(
    records: list[RecordDict], vertical: Vertical, columns: tuple[int, ...]
) -> dict[int, dict[str, float]]:
    """Metrics on the union of the test splits: exact from per-row scores where every node
    disclosed them (the simulation check), else from the nodes' score histograms."""
    scored = [r.array_records["scores"].to_numpy_ndarrays() for r in records if "scores" in r]
    if not scored or len(scored) != len(records):
        return histogram_pooled_metrics(records, vertical, columns)
    y = np.concatenate([s[0] for s in scored]).astype(int)
    frame = None
    if all("metric-columns" in r for r in records):
        columns_of = [r.array_records["metric-columns"] for r in records]
        shared = [k for k in columns_of[0] if all(k in c for c in columns_of)]
        frame = pd.DataFrame({k: np.concatenate([c[k].numpy() for c in columns_of]) for k in shared})
    trained = [r.array_records["train-scores"].to_numpy_ndarrays() for r in records if "train-scores" in r]
    trained = trained if len(trained) == len(records) else []

    def train(c: int) -> TrainScores | None:
        if not trained:
            return None
        return np.concatenate([t[0] for t in trained]).astype(int), np.concatenate([t[c] for t in trained])

    pooled = {}
    for c in columns:
        metrics = vertical.evaluate(y, np.concatenate([s[c] for s in scored]), frame=frame, train=train(c))
        pooled[c] = {k: float(v) for k, v in metrics.items()}
    return pooled


def secure_pooled_metrics(
    grid: Grid, node_ids: list[int], vertical: Vertical, config: ExperimentConfig, timeout_s: float
) -> dict[int, dict[str, float]]:
    """Pooled metrics of the global (1) and fine-tuned (2) models from securely summed histograms."""
    names = histogram_names(vertical)
    columns = [names, names] + ([[], []] if vertical.tunes_on_train else [])
    histograms = secure_pooled_histograms(grid, node_ids, columns, config, timeout_s)
    pooled = {}
    for c in (1, 2):
        y, p, frame = histograms[c - 1].pseudo_rows()
        train = histograms[c + 1].pseudo_rows()[:2] if vertical.tunes_on_train else None
        pooled[c] = {k: float(v) for k, v in vertical.evaluate(y, p, frame=frame, train=train).items()}
    return pooled


def histogram_pooled_metrics(
    records: list[RecordDict], vertical: Vertical, columns: tuple[int, ...]
) -> dict[int, dict[str, float]]:
    """Pooled metrics from per-class score histograms: no node sent a single row."""

    def merged(kind: str, c: int) -> ScoreHistogram | None:
        key = f"histogram.{kind}.{c}"
        if not records or not all(key in r.array_records for r in records):
            return None
        parts = [ScoreHistogram.from_arrays({k: v.numpy() for k, v in r.array_records[key].items()}) for r in records]
        return merge_histograms(parts)

    pooled = {}
    for c in columns:
        test = merged("test", c)
        if test is None:
            continue
        y, p, frame = test.pseudo_rows()
        trained = merged("train", c) if vertical.tunes_on_train else None
        train = trained.pseudo_rows()[:2] if trained is not None else None
        metrics = vertical.evaluate(y, p, frame=frame, train=train)
        pooled[c] = {k: float(v) for k, v in metrics.items()}
    return pooled


def wait_for_nodes(grid: Grid, count: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) >= count:
            return node_ids
        if time.monotonic() > deadline:
            raise FederationError(f"only {len(node_ids)} of {count} institutions connected within {timeout_s:.0f} s")
        time.sleep(0.5)


def send_all(
    grid: Grid, node_ids: list[int], message_type: str, content: RecordDict, minimum: int | None = None
) -> list[Message]:
    """One message per node; every node must answer, or at least ``minimum`` when drop-outs are allowed."""
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
