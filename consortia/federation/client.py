"""The Flower ClientApp: one institution, one handler per message type.

Message types (what the server may ask, and what each handler answers):

* ``query.summary``: feature summaries of the training rows (counts, sums, category counts) and
  the split sizes; the server merges them into one preprocessor;
* ``train``: local training of the global model; the new parameters and the training metrics;
* ``evaluate``: the global model's metrics on this institution's test rows;
* ``evaluate.finetune``: the final global model fine-tuned locally; both models' metrics.

Per-row scores leave only when the request asks for ``report-scores`` AND the node's own
disclosure policy (its node config, ``consortia.privacy.disclosure``) allows it; otherwise the
evaluate replies carry per-class score histograms, from which the server pools metrics.
Mods attach per handler (``mods={"train": [...]}``), never app-wide, so that a mod meant for
model updates (clipping, masking) never touches an evaluate or summary reply.

The app reads the experiment from ``context.run_config`` (what ``flwr run`` passes in a
deployment); ``overrides`` bake a config in for engines that start the app from Python.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

from consortia.config import ExperimentConfig
from consortia.config.selection import LEARNING_RATE_KEY, LEARNING_RATE_PARAM, VALIDATION_PREFIX, VALIDATION_ROWS_KEY
from consortia.data.consortium import institution_arrays, node_institution, validation_arrays
from consortia.data.institutions import Federation, InstitutionData, institution_seed
from consortia.errors import ConfigError
from consortia.evaluation.pooled import ScoreHistogram
from consortia.federation import xgb_histogram_node
from consortia.federation.algorithms import LocalTask, train_locally
from consortia.federation.attacks import attack_mod, poison_rows
from consortia.federation.local_baseline import answer_local_baseline
from consortia.federation.secure.client import secure_read_mods, secure_train_mods
from consortia.federation.secure.he import CONTEXT, public_context_of
from consortia.federation.secure.node import keep_histograms, secure_sum_vector
from consortia.federation.secure.secagg import SECURE_SUM
from consortia.federation.stragglers import straggler_mod
from consortia.learners import Learner, make_learner, require
from consortia.privacy.disclosure import DisclosurePolicy
from consortia.privacy.dp import (
    EPSILON_KEY,
    EQUAL_WEIGHT_KEY,
    client_clipping_mod,
    dp_sgd_plan,
    training_seed,
    within_budget,
)
from consortia.privacy.dpsgd import fit_dp_sgd
from consortia.privacy.secure_sum import layout_summary
from consortia.verticals import Vertical, get_vertical
from consortia.verticals.base import TrainScores

SUMMARY = "query.summary"
#: train config key: the consortium's training rows, for learners that share a penalty by rows (logistic)
CONSORTIUM_ROWS = "consortium-train-rows"
FINETUNE = "evaluate.finetune"
#: handler names accepted in ``build_client_app(mods=...)``
HANDLERS = ("summary", "train", "evaluate", "finetune", "local_baseline")
#: the ``finetune`` seed's salt: distinct from every round number
FINETUNE_SALT = 10**6


def run_config(context: Context, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """The run's config: Flower's run_config with ``overrides`` on top, validated once per run."""
    merged = {**dict(context.run_config), **dict(overrides)}
    return _parse_config(tuple(sorted(merged.items())))


@functools.lru_cache(maxsize=16)
def _parse_config(items: tuple[tuple[str, Any], ...]) -> ExperimentConfig:
    """Validated once per run, not once per message (the config is the same all run long)."""
    return ExperimentConfig.from_run_config(dict(items))


@dataclass
class Job:
    """What a training or evaluation message needs: the institution, its arrays, the model."""

    config: ExperimentConfig
    vertical: Vertical
    federation: Federation
    institution: InstitutionData
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    learner: Learner
    request: ConfigRecord
    policy: DisclosurePolicy
    data_path: str | None = None  # a deployed node's own file

    def train_scores(self) -> TrainScores | None:
        """The model's scores on its own training rows, for verticals that tune an operating point there."""
        if not self.vertical.tunes_on_train:
            return None
        return self.y_train, self.learner.predict_proba(self.x_train)

    def evaluate(self, proba: np.ndarray, train: TrainScores | None) -> dict[str, float]:
        metrics = self.vertical.evaluate(self.y_test, proba, frame=self.institution.test, train=train)
        return {k: float(v) for k, v in metrics.items()}  # MetricRecord values must be numbers

    @property
    def report_scores(self) -> bool:
        """Per-row scores leave only if the server asks AND this node's own policy allows it."""
        return self.policy.allows_rows(bool(self.request.get("report-scores", False)))


#: fingerprints of the parsed run configs, by identity (``run_config`` returns one object per run)
_FINGERPRINTS: OrderedDict[int, tuple[ExperimentConfig, str]] = OrderedDict()
_FINGERPRINTS_LOCK = threading.Lock()


def run_fingerprint(config: ExperimentConfig) -> str:
    """``config.fingerprint()`` once per run, not twice per message: ``run_config`` hands every
    message of a run the same cached config object, which nothing modifies (the cache shares it).
    The entry keeps the config alive, so its ``id`` is not reused while cached."""
    key = id(config)
    with _FINGERPRINTS_LOCK:
        entry = _FINGERPRINTS.get(key)
        if entry is not None and entry[0] is config:
            _FINGERPRINTS.move_to_end(key)
            return entry[1]
    fingerprint = config.fingerprint()
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS[key] = (config, fingerprint)
        while len(_FINGERPRINTS) > 16:  # as many runs as _parse_config keeps
            _FINGERPRINTS.popitem(last=False)
    return fingerprint


def prepare(message: Message, context: Context, overrides: Mapping[str, Any]) -> Job:
    """This node's institution and a learner holding the parameters the message carries."""
    config = run_config(context, overrides)
    fingerprint = run_fingerprint(config)
    vertical = get_vertical(config.vertical)
    federation, institution = node_institution(config, vertical, context.node_config, fingerprint)
    request = message.content.config_records["config"]
    data_path = context.node_config.get("data-path")
    x_train, y_train, x_test, y_test = institution_arrays(
        config, vertical, institution.name, str(request["preprocessor"]),
        None if data_path is None else str(data_path), fingerprint,
    )  # fmt: skip
    params = vertical.model_params(config.model, config.model_params)
    if LEARNING_RATE_KEY in request:  # the rate the server's search tried or chose (consortia.config.selection)
        params[LEARNING_RATE_PARAM[config.model]] = float(request[LEARNING_RATE_KEY])  # type: ignore[arg-type]
    learner = make_learner(config.model, x_train.shape[1], params, seed=config.seed, device=config.device)
    learner.set_parameters(message.content.array_records["arrays"].to_numpy_ndarrays())
    policy = DisclosurePolicy.from_node_config(context.node_config)
    return Job(config, vertical, federation, institution, x_train, y_train, x_test, y_test, learner, request, policy,
               None if data_path is None else str(data_path))  # fmt: skip


def answer_summary(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    config = run_config(context, overrides)
    vertical = get_vertical(config.vertical)
    federation, institution = node_institution(config, vertical, context.node_config)
    policy = DisclosurePolicy.from_node_config(context.node_config)
    if config.privacy.secure:  # the counts and sums follow as a secure sum: only the layout now
        summary = layout_summary(institution.train, federation.schema, policy.min_category_count)
    else:
        summary = institution.summary(federation.schema, min_count=policy.min_category_count)
    reply = ConfigRecord(
        {
            "institution": institution.name,
            "summary": summary.to_json(),
            "n-train": len(institution.train),
            "n-test": len(institution.test),
        }
    )
    if config.privacy.aggregation == "he":  # the public half of the consortium's key, for the server to add
        reply[CONTEXT] = public_context_of(context)
    return Message(RecordDict({"summary": reply}), reply_to=message)


def answer_train(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    job = prepare(message, context, overrides)
    server_round = int(job.request.get("server-round", 0))  # type: ignore[arg-type]
    seed = institution_seed(job.config.seed, job.institution.name, server_round)
    key = f"{job.config.seed}:{job.institution.name}"  # a malicious node's own rows (consortia.federation.attacks)
    job.x_train, job.y_train = poison_rows(context.node_config, job.x_train, job.y_train, key=key)
    if CONSORTIUM_ROWS in job.request and (share := getattr(job.learner, "share_penalty", None)) is not None:
        share(int(job.request[CONSORTIUM_ROWS]))  # type: ignore[arg-type]  # the local fit's share of the L2 penalty
    extra: dict[str, ArrayRecord] = {}  # records an algorithm's reply carries (SCAFFOLD's dc)
    task = LocalTask(job.request, message, context, job.learner, job.x_train, job.y_train,
                     job.config.local_epochs, seed, job.config.privacy.mechanism)  # fmt: skip
    if (local := train_locally(task)) is not None:  # SCAFFOLD, FedMA, FedMeta (algorithms/)
        info, extra = local.info, local.records
    elif job.config.privacy.mechanism == "dp-sample":
        info = train_dp_sgd(job, server_round, seed)
    else:
        info = job.learner.fit(
            job.x_train,
            job.y_train,
            epochs=job.config.local_epochs,
            seed=seed,
            proximal_mu=float(job.request.get("proximal-mu", 0.0)),  # type: ignore[arg-type]
        )
    metrics = MetricRecord({"num-examples": len(job.y_train), **info, **equal_weight(job.config)})
    content = RecordDict({"arrays": ArrayRecord(job.learner.get_parameters()), "metrics": metrics, **extra})
    return Message(content, reply_to=message)


def answer_secure_sum(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    """This institution's addend to a secure sum (summaries, histograms): SecAgg+ masks it."""
    config = run_config(context, overrides)
    federation, institution = node_institution(config, get_vertical(config.vertical), context.node_config)
    request = message.content.config_records["config"]
    vector = secure_sum_vector(str(request[SECURE_SUM]), request, context, federation, institution)
    content = RecordDict({"arrays": ArrayRecord([vector]), "metrics": MetricRecord({"num-examples": 1})})
    return Message(content, reply_to=message)


def train_dp_sgd(job: Job, server_round: int, seed: int) -> dict[str, float]:
    """Record-level DP: this round's local epochs as DP-SGD, with noise this institution planned
    from its own row count; reports its ε after this round (``privacy.epsilon``)."""
    require(job.learner, "supports_batch_steps", feature="record-level DP (DP-SGD)")
    privacy = job.config.privacy
    plan = dp_sgd_plan(job.config, n_rows=len(job.y_train), batch_size=int(job.learner.batch_size))  # type: ignore[attr-defined]
    epsilon = plan.epsilon_after(server_round)
    if not within_budget(privacy, epsilon):  # the server stops before this; refuse all the same
        raise ConfigError(
            f"{job.institution.name}: round {server_round} would spend epsilon {epsilon:.3f}, "
            f"beyond the budget {privacy.epsilon:g}"
        )
    info = fit_dp_sgd(
        job.learner, job.x_train, job.y_train, epochs=job.config.local_epochs,
        seed=training_seed(privacy, seed), plan=plan,
    )  # fmt: skip
    return {**info, EPSILON_KEY: epsilon}


def equal_weight(config: ExperimentConfig) -> dict[str, int]:
    """Under client-level DP every institution weighs the same (Flower's accounted aggregation)."""
    return {EQUAL_WEIGHT_KEY: 1} if config.privacy.mechanism == "dp-client" else {}


def answer_evaluate(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    job = prepare(message, context, overrides)
    proba = job.learner.predict_proba(job.x_test)
    train = job.train_scores()
    metrics = job.evaluate(proba, train)
    if job.config.selects_round:  # the round's score for early stopping (consortia.config.selection)
        metrics |= validation_metrics(job, train)
    content = RecordDict(
        {"metrics": MetricRecord({"num-examples": len(job.y_test), **metrics, **equal_weight(job.config)})}
    )
    if job.config.privacy.secure:  # round histograms would show this institution's scores: none sent
        return Message(content, reply_to=message)
    add_histograms(content, job, [proba], [train])
    if job.report_scores:
        content["scores"] = ArrayRecord([job.y_test.astype(np.float64), proba])
        add_metric_inputs(content, job, [train])
    return Message(content, reply_to=message)


def validation_metrics(job: Job, train: TrainScores | None) -> dict[str, float]:
    """The global model's primary metric on this institution's validation rows (held out of its
    training rows), and their count; no vote (0 rows) when they hold a single class."""
    x_val, y_val = validation_arrays(
        job.config, job.vertical, job.institution.name, str(job.request["preprocessor"]),
        job.data_path, run_fingerprint(job.config),
    )  # fmt: skip
    primary = job.vertical.primary_metric
    if len(np.unique(y_val)) < 2:  # the same keys as every other reply (Flower aggregates only those)
        return {VALIDATION_PREFIX + primary: float("nan"), VALIDATION_ROWS_KEY: 0.0}
    proba = job.learner.predict_proba(x_val)
    scores = job.vertical.evaluate(y_val, proba, frame=job.institution.validation, train=train)
    return {VALIDATION_PREFIX + primary: float(scores[primary]), VALIDATION_ROWS_KEY: float(len(y_val))}


def answer_finetune(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    job = prepare(message, context, overrides)
    global_proba = job.learner.predict_proba(job.x_test)
    global_train = job.train_scores()
    if job.config.finetune_epochs:
        job.learner.fit(
            job.x_train,
            job.y_train,
            epochs=job.config.finetune_epochs,
            seed=institution_seed(job.config.seed, job.institution.name, FINETUNE_SALT),
        )
    tuned_proba = job.learner.predict_proba(job.x_test)
    tuned_train = job.train_scores()
    metrics: dict[str, int | float | list[int] | list[float]] = {"num-examples": len(job.y_test)}
    metrics |= {f"global.{k}": v for k, v in job.evaluate(global_proba, global_train).items()}
    metrics |= {f"finetuned.{k}": v for k, v in job.evaluate(tuned_proba, tuned_train).items()}
    content = RecordDict(
        {
            "metrics": MetricRecord(metrics),
            "identity": ConfigRecord({"institution": job.institution.name}),
        }
    )
    if job.config.privacy.secure:  # kept for the secure sum the server asks next
        keep_histograms(context, job.vertical, job.institution, job.y_test, [global_proba, tuned_proba],
                        [global_train, tuned_train])  # fmt: skip
        return Message(content, reply_to=message)
    add_histograms(content, job, [global_proba, tuned_proba], [global_train, tuned_train])
    if job.report_scores:
        content["scores"] = ArrayRecord([job.y_test.astype(np.float64), global_proba, tuned_proba])
        add_metric_inputs(content, job, [global_train, tuned_train])
    return Message(content, reply_to=message)


def add_histograms(
    content: RecordDict, job: Job, test_scores: Sequence[np.ndarray], train: Sequence[TrainScores | None]
) -> None:
    """Per-class score histograms of each model (``histogram.test.<i>``, and ``histogram.train.<i>``
    for verticals that tune an operating point on training rows): no per-row data, and they add up."""
    test = job.institution.test
    columns = {c: test[c].to_numpy(dtype=np.float64) for c in job.vertical.metric_columns if c in test.columns}
    for i, proba in enumerate(test_scores, start=1):
        content[f"histogram.test.{i}"] = histogram_record(ScoreHistogram.from_scores(job.y_test, proba, columns))
    for i, scores in enumerate(train, start=1):
        if job.vertical.tunes_on_train and scores is not None:
            content[f"histogram.train.{i}"] = histogram_record(ScoreHistogram.from_scores(*scores))


def histogram_record(histogram: ScoreHistogram) -> ArrayRecord:
    """The histogram's arrays as a record, each serialised once (``ArrayRecord(array_dict=...)``
    would build every Array a second time)."""
    record = ArrayRecord()
    for name, values in histogram.to_arrays().items():
        record[name] = Array(values)
    return record


def add_metric_inputs(content: RecordDict, job: Job, train: Sequence[TrainScores | None]) -> None:
    """What the server needs beyond (y, p) to pool this vertical's metrics (simulation only)."""
    test = job.institution.test
    present = [c for c in job.vertical.metric_columns if c in test.columns]
    if present:
        columns = {c: Array(test[c].to_numpy(dtype=np.float64)) for c in present}
        content["metric-columns"] = ArrayRecord(array_dict=columns)
    scored = [t for t in train if t is not None]
    if job.vertical.tunes_on_train and len(scored) == len(train):
        content["train-scores"] = ArrayRecord([job.y_train.astype(np.float64), *(t[1] for t in scored)])


def with_node_config(defaults: Mapping[str, Any]) -> Mod:
    """A mod giving a simulated node these node-config entries (where the runtime makes the
    node config itself, as Flower's Ray simulation does); the node's own entries win."""

    def mod(message: Message, context: Context, call_next: Any) -> Message:
        context.node_config = {**dict(defaults), **dict(context.node_config)}
        result: Message = call_next(message, context)
        return result

    return mod


def build_client_app(
    overrides: Mapping[str, Any] | None = None, mods: Mapping[str, Sequence[Mod]] | None = None
) -> ClientApp:
    """A ClientApp serving one institution; ``overrides`` take precedence over run_config.

    ``mods`` maps a handler name (``summary``, ``train``, ``evaluate``, ``finetune``) to the
    Flower mods wrapped around that handler only.
    """
    fixed = dict(overrides or {})
    per_handler = {name: list(m) for name, m in (mods or {}).items()}
    unknown = sorted(set(per_handler) - set(HANDLERS))
    if unknown:
        raise ValueError(f"no ClientApp handler named {', '.join(unknown)}; handlers: {', '.join(HANDLERS)}")
    app = ClientApp()

    @app.query("summary", mods=per_handler.get("summary"))
    def summary(message: Message, context: Context) -> Message:
        return answer_summary(message, context, fixed)

    # clipping for client-level DP: on the train handler only, innermost (it sees the update as trained)
    clipping = client_clipping_mod(lambda context: run_config(context, fixed).privacy)
    attack = attack_mod(lambda context: run_config(context, fixed).seed)  # a malicious node ignores clipping

    # secure aggregation outside the training mods: SecAgg+ masks (HE encrypts) what they produced; the
    # caller's mods (node config, recorders) outermost, so they see what really leaves the node
    secure = secure_train_mods(
        lambda context: run_config(context, fixed).privacy.aggregation,
        lambda message, context: answer_secure_sum(message, context, fixed),
    )

    straggle = straggler_mod(lambda context: run_config(context, fixed).seed)  # compute-slowdown, failure-rate

    @app.train(mods=[*per_handler.get("train", []), straggle, *secure, attack, clipping])
    def train(message: Message, context: Context) -> Message:
        return answer_train(message, context, fixed)

    read = secure_read_mods(lambda context: run_config(context, fixed).privacy.aggregation)

    @app.evaluate(mods=[*per_handler.get("evaluate", []), *read])
    def evaluate(message: Message, context: Context) -> Message:
        return answer_evaluate(message, context, fixed)

    @app.evaluate("finetune", mods=[*per_handler.get("finetune", []), *read])
    def finetune(message: Message, context: Context) -> Message:
        return answer_finetune(message, context, fixed)

    @app.train("local_baseline", mods=per_handler.get("local_baseline"))  # deployments; no train mods
    def local_baseline(message: Message, context: Context) -> Message:
        return answer_local_baseline(message, context, fixed)

    @app.query("xgb_quantiles")  # histogram XGBoost (consortia.federation.xgb_histogram_node); no mods
    def xgb_quantiles(message: Message, context: Context) -> Message:
        return xgb_histogram_node.answer_quantiles(message, context, fixed)

    @app.train("xgb_histogram")
    def xgb_histogram(message: Message, context: Context) -> Message:
        return xgb_histogram_node.answer_train(message, context, fixed)

    return app
