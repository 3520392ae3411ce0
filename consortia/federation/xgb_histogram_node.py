"""The institution's side of histogram XGBoost in a Flower federation (two ClientApp handlers).

* ``query.xgb_quantiles``: the quantile summary of this institution's preprocessed training
  features (``local_quantile_summary``), its two label counts, and (TLS) the public half of a key
  pair made here for XGBoost's communicator; the private half stays in this node's run state;
* ``train.xgb_histogram``: join XGBoost's federated server (address, world size, rank, the
  global bin edges, the booster params and the run's CA and client certificate in the message)
  with the worker of ``consortia.learners.xgboost.histogram.train_rank`` on this institution's
  own rows; then evaluate the joint model on its test rows and fine-tune it, as the simulated
  path does (``consortia.experiment.histogram``), and answer with the model, the metrics and
  per-class score histograms (for pooled metrics), per federated round and at the end.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from consortia.config import ExperimentConfig
from consortia.data.consortium import institution_arrays, node_institution
from consortia.data.institutions import institution_seed
from consortia.data.split import validation_split
from consortia.evaluation.pooled import ScoreHistogram
from consortia.federation.xgb_histogram_tls import new_key, worker_files
from consortia.learners.xgboost.binning import GlobalBinning, local_quantile_summary
from consortia.learners.xgboost.histogram import best_rounds, train_rank
from consortia.learners.xgboost.learner import XGBoostLearner, split_params
from consortia.verticals import get_vertical

QUANTILES = "query.xgb_quantiles"
TRAIN = "train.xgb_histogram"
#: the node's run state entry holding its communicator key (never sent)
KEY_STATE = "xgb-histogram-key"
#: the fine-tuning seed's salt, as in every mode (consortia.federation.client.FINETUNE_SALT)
FINETUNE_SALT = 10**6


@functools.lru_cache(maxsize=8)
def _parsed(items: tuple[tuple[str, Any], ...]) -> ExperimentConfig:
    return ExperimentConfig.from_run_config(dict(items))


def _config(context: Context, overrides: Mapping[str, Any]) -> ExperimentConfig:
    return _parsed(tuple(sorted({**dict(context.run_config), **dict(overrides)}.items())))


def _job(message: Message, context: Context, overrides: Mapping[str, Any]) -> tuple[Any, ...]:
    config = _config(context, overrides)
    fingerprint = config.fingerprint()
    vertical = get_vertical(config.vertical)
    _, institution = node_institution(config, vertical, context.node_config, fingerprint)
    request = message.content.config_records["config"]
    data_path = context.node_config.get("data-path")
    arrays = institution_arrays(
        config, vertical, institution.name, str(request["preprocessor"]),
        None if data_path is None else str(data_path), fingerprint,
    )  # fmt: skip
    return config, vertical, institution, request, arrays


def answer_quantiles(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    """This institution's quantile summary and label counts (and, for TLS, a public key)."""
    config, vertical, institution, request, (x_train, y_train, _, _) = _job(message, context, overrides)
    own, _ = split_params(vertical.model_params(config.model, config.model_params))
    reply = ConfigRecord(
        {
            "institution": institution.name,
            "summary": json.dumps(local_quantile_summary(x_train, own["n_bins"])),
            "positives": int(np.sum(y_train == 1)),
            "negatives": int(np.sum(y_train == 0)),
        }
    )
    if bool(request.get("tls", False)):
        private, public = new_key()
        context.state[KEY_STATE] = ConfigRecord({"private": private})  # the node keeps it; never sent
        reply["public-key"] = public
    return Message(RecordDict({"quantiles": reply}), reply_to=message)


def answer_train(message: Message, context: Context, overrides: Mapping[str, Any]) -> Message:
    """Train the joint booster with the others, then evaluate and fine-tune it here."""
    config, vertical, institution, request, (x_train, y_train, x_test, y_test) = _job(message, context, overrides)
    model_params = vertical.model_params(config.model, config.model_params)
    own, _ = split_params(model_params)
    binning = GlobalBinning([np.asarray(e, dtype=np.float64) for e in json.loads(str(request["edges"]))],
                            int(request["n-bins"]))  # fmt: skip
    params = json.loads(str(request["params"]))
    es = int(request["early-stopping"]) or None
    n_rounds = int(request["boost-rounds"])
    x_part, y_part, valid = x_train, y_train, None
    if es is not None:  # the split the simulated path makes (consortia.experiment.histogram.agree_bins)
        tr, va = validation_split(
            y_train, own["validation_fraction"], institution_seed(config.seed, institution.name, 0)
        )
        x_part, y_part, valid = x_train[tr], y_train[tr], (x_train[va], y_train[va])
    finished: list[float] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="consortia-xgb-tls-") as folder:
        tls = None
        if "ca" in request:
            key = context.state[KEY_STATE]
            assert isinstance(key, ConfigRecord)
            tls = worker_files(Path(folder), str(request["ca"]), str(key["private"]), str(request["client-cert"]))
        booster = train_rank(
            int(request["rank"]), int(request["world-size"]), str(request["server-address"]),
            x_part, y_part, params, n_rounds, binning=binning, name=institution.name, tls=tls, valid=valid,
            early_stopping_rounds=es, timeout_s=float(request["round-timeout-s"]),
            startup_timeout_s=float(request["startup-timeout-s"]),
            on_round=lambda _: finished.append(time.perf_counter() - started),
        )  # fmt: skip
    booster = best_rounds(booster, es)
    fed = XGBoostLearner(x_train.shape[1], model_params, seed=config.seed)
    fed.set_booster(booster, binning.edges)
    tuned = XGBoostLearner(x_train.shape[1], model_params, seed=config.seed)
    tuned.set_parameters(fed.get_parameters())
    if config.finetune_epochs:
        tuned.fit(x_train, y_train, epochs=config.finetune_epochs,
                  seed=institution_seed(config.seed, institution.name, FINETUNE_SALT))  # fmt: skip

    def evaluate(p: np.ndarray, learner: XGBoostLearner) -> dict[str, float]:
        train = (y_train, learner.predict_proba(x_train)) if vertical.tunes_on_train else None
        metrics = vertical.evaluate(y_test, p, frame=institution.test, train=train)
        return {k: float(v) for k, v in metrics.items()}

    content = RecordDict({"arrays": ArrayRecord(fed.get_parameters()),
                          "identity": ConfigRecord({"institution": institution.name})})  # fmt: skip
    columns = {c: institution.test[c].to_numpy(dtype=np.float64)
               for c in vertical.metric_columns if c in institution.test.columns}  # fmt: skip
    metrics: dict[str, float] = {"num-examples": float(len(y_test))}
    for i, (mode, learner) in enumerate((("global", fed), ("finetuned", tuned)), start=1):
        p = learner.predict_proba(x_test)
        metrics |= {f"{mode}.{k}": v for k, v in evaluate(p, learner).items()}
        content[f"histogram.test.{i}"] = _histogram(ScoreHistogram.from_scores(y_test, p, columns))
        if vertical.tunes_on_train:
            content[f"histogram.train.{i}"] = _histogram(
                ScoreHistogram.from_scores(y_train, learner.predict_proba(x_train))
            )
    content["metrics"] = MetricRecord(metrics)  # type: ignore[arg-type]
    _add_rounds(content, config, model_params, booster, binning, evaluate, x_test, y_test, columns, finished)
    return Message(content, reply_to=message)


def _add_rounds(content: RecordDict, config: Any, model_params: dict[str, Any], booster: Any, binning: GlobalBinning,
                evaluate: Any, x_test: np.ndarray, y_test: np.ndarray, columns: dict[str, np.ndarray],
                finished: list[float]) -> None:  # fmt: skip
    """The joint model after each federated round (``local_epochs * trees_per_epoch`` boosting
    rounds): its metrics and score histogram here, and when this node had finished that round."""
    per_round = config.local_epochs * int(split_params(model_params)[0]["trees_per_epoch"])
    total = booster.num_boosted_rounds()
    seconds = []
    for r in range(1, config.rounds + 1):
        upto = min(r * per_round, total)
        if upto < r * per_round and r > 1 and (r - 1) * per_round >= total:
            break  # early stopping ended training before this round
        learner = XGBoostLearner(binning.n_features, model_params, seed=config.seed)
        learner.set_booster(booster[:upto], binning.edges)
        p = learner.predict_proba(x_test)
        content[f"round.{r}"] = MetricRecord({"num-examples": float(len(y_test)), **evaluate(p, learner)})
        content[f"round.{r}.histogram.test.1"] = _histogram(ScoreHistogram.from_scores(y_test, p, columns))
        seconds.append(finished[min(upto, len(finished)) - 1] if finished else 0.0)
    content["timing"] = ConfigRecord({"round-seconds": seconds})


def _histogram(histogram: ScoreHistogram) -> ArrayRecord:
    record = ArrayRecord()
    for name, values in histogram.to_arrays().items():
        record[name] = Array(values)
    return record
