"""``model='xgboost', xgb_mode='histogram'``: one booster trained jointly, equal to pooled training.

Not a Flower strategy: the institutions train ONE booster inside XGBoost's federated
communicator (``consortia.learners.xgboost.histogram``), exchanging only aggregated gradient
histograms. The steps, each with only aggregates leaving an institution:

0. feature summaries -> one preprocessor (as the Flower apps do),
1. quantile summaries of the preprocessed training features -> global bin edges,
   and (for ``scale_pos_weight='balanced'``) each institution's two label counts,
2. joint training (simulated here: one process per institution plus the server, loopback),
3. each institution evaluates the joint model on its own test rows and fine-tunes it by
   boosting ``finetune_epochs * trees_per_epoch`` trees on its own rows on top of it.

Baselines: "centralized" is XGBoost on the pooled rows with the same global bins and
parameters (the model the federation must equal; the run records the largest prediction
difference on the pooled test split), "local-only" is each institution alone (its own
preprocessing and XGBoost's own sketch), both with the same tree budget
``rounds * local_epochs * trees_per_epoch``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.data.institutions import Federation, InstitutionData, institution_seed
from consortia.data.loaders import schema_from_summaries
from consortia.data.preprocessing import Preprocessor, merge_summaries
from consortia.data.split import validation_split
from consortia.errors import ConfigError
from consortia.experiment.baselines import budget_note, compare_baselines, federated_budget, model_size, predictor
from consortia.learners.xgboost.binning import GlobalBinning, local_quantile_summary, merge_quantile_summaries
from consortia.learners.xgboost.histogram import (
    ROUND_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    best_rounds,
    joint_params,
    train_centralized,
    train_histogram_federated,
)
from consortia.learners.xgboost.learner import XGBoostLearner, split_params
from consortia.privacy.disclosure import DEFAULT_MIN_CATEGORY_COUNT
from consortia.runs.folder import RunFolder
from consortia.runs.results import (
    RoundRecord,
    RunResult,
    aggregate_over_institutions,
    metric_aggregation,
    rounds_aggregation,
)
from consortia.verticals import Vertical, get_vertical
from consortia.verticals.base import TrainScores


@dataclass
class HistogramRun:
    """A histogram-mode run: the usual RunResult plus what the lossless check needs."""

    result: RunResult
    binning: GlobalBinning
    federated: Any  # xgb.Booster
    centralized: Any | None  # xgb.Booster, None without baselines
    #: largest |p_federated - p_centralized| on the pooled test split (NaN without baselines)
    max_pred_diff: float
    pooled_test: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (y, p_fed, p_cen)


def run_histogram_experiment(
    config: ExperimentConfig,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    baselines: bool = True,
) -> RunResult:
    """The ``run_experiment`` entry for histogram mode."""
    return run_histogram(config, on_round=on_round, baselines=baselines).result


@dataclass
class HistogramSetup:
    """Steps 0 and 1: the agreed preprocessor and bins, the training parts, the booster params."""

    names: list[str]
    institutions: list[InstitutionData]
    preprocessor: Preprocessor
    arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # x_train, y_train, x_test, y_test
    model_params: dict[str, Any]
    params: dict[str, Any]
    binning: GlobalBinning
    n_rounds: int
    trees_per_epoch: int
    parts: list[tuple[np.ndarray, np.ndarray]]
    valid_parts: list[tuple[np.ndarray, np.ndarray]] | None
    early_stopping: int | None


def run_histogram(
    config: ExperimentConfig,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    baselines: bool = True,
    on_worker_round: Callable[[int, int], None] | None = None,
    timeout_s: float = ROUND_TIMEOUT_S,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> HistogramRun:
    """Train jointly, evaluate like every other mode; ``on_worker_round(rank, round)`` watches ranks."""
    if config.model != "xgboost" or config.xgb_mode != "histogram":
        raise ConfigError("run_histogram needs model 'xgboost' with xgb_mode 'histogram'")
    if config.resume:
        raise ConfigError("histogram runs train in one go and cannot resume; start a new run")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    vertical = get_vertical(config.vertical)
    federation = load_federation(config, vertical)
    timings["data_s"] = time.perf_counter() - started
    setup = agree_bins(config, vertical, federation)

    # (2) joint training over XGBoost's federated communicator
    joint = train_jointly(setup, on_worker_round, timeout_s, startup_timeout_s)
    timings["federated_s"] = joint.seconds
    timings |= startup_split(joint)
    booster = joint.booster

    # (3) each institution: the joint model and its local fine-tuning, on its own test rows
    fed = XGBoostLearner(setup.preprocessor.n_features, setup.model_params, seed=config.seed)
    fed.set_booster(booster, setup.binning.edges)
    per_institution, pooled = evaluate_at_institutions(config, vertical, setup, fed)
    rounds = _round_records(config, setup, booster, vertical, joint.finished_at, joint.started)
    for record in rounds:
        if on_round is not None:
            on_round(record)
    budget = federated_budget(config, vertical, setup.preprocessor.n_features, fed.get_parameters())

    reference = Reference()
    if baselines:
        reference = compare_with_centralized(config, vertical, federation, setup, fed, timings, budget)
        for name, modes in reference.per_institution.items():
            per_institution[name] |= modes
        pooled |= reference.pooled

    if config.run_dir:  # the joint model as a checkpoint: `consortia predict` scores new rows with it
        RunFolder(config.run_dir).save_checkpoint(
            config.rounds, fed.get_parameters(), setup.preprocessor, [asdict(r) for r in rounds]
        )
    timings["total_s"] = time.perf_counter() - started
    sizes = {
        n: {"train": len(i.train), "test": len(i.test)} for n, i in zip(setup.names, setup.institutions, strict=True)
    }
    result = RunResult(
        config=config.model_dump(mode="json"),
        vertical=vertical.name,
        primary_metric=vertical.primary_metric,
        institution_noun=vertical.institution_noun,
        rounds=rounds,
        per_institution=per_institution,
        pooled=pooled,
        institution_sizes=sizes,
        timings=timings,
        notes=_notes(setup, booster, reference if baselines else None, budget),
        budget=budget,
        round_metric_aggregation=rounds_aggregation(rounds, vertical.additive_metrics, vertical.pooled_only_metrics),
    )
    return HistogramRun(result, setup.binning, booster, reference.booster, reference.max_diff, reference.pooled_test)


def _notes(
    setup: HistogramSetup, booster: Any, reference: Reference | None, budget: dict[str, dict[str, float]]
) -> list[str]:
    lossless = (
        f"; max |federated - centralized| prediction on pooled test = {reference.max_diff:.1e}" if reference else ""
    )
    return [
        "histogram mode: one booster trained jointly over XGBoost's federated communicator "
        f"({booster.num_boosted_rounds()} boosting rounds, {setup.binning.n_bins} global bins)",
        "centralized = the same parameters and global bins on the pooled rows" + lossless,
        "pooled local_only is the mean over institutions of each local model on all test rows",
        "federated + fine-tuned pools each institution's own fine-tuned model on its own test rows",
        budget_note(budget),
    ]


@dataclass
class JointTraining:
    """Step 2's result: the joint booster and when every institution had finished each round."""

    booster: Any  # xgb.Booster, cut at the best round with early stopping
    finished_at: dict[int, float]  # boosting round (0-based) -> perf_counter time all had finished it
    started: float
    seconds: float


def train_jointly(
    setup: HistogramSetup,
    on_worker_round: Callable[[int, int], None] | None,
    timeout_s: float,
    startup_timeout_s: float,
) -> JointTraining:
    """Step 2: one booster over XGBoost's federated communicator; round times for the records."""
    finished_at: dict[int, float] = {}
    progress = dict.fromkeys(range(len(setup.names)), -1)

    def track(rank: int, rnd: int) -> None:
        progress[rank] = max(progress[rank], rnd)
        done = min(progress.values())
        if done >= 0 and done not in finished_at:
            finished_at[done] = time.perf_counter()
        if on_worker_round is not None:
            on_worker_round(rank, rnd)

    t0 = time.perf_counter()
    booster = train_histogram_federated(
        setup.parts, setup.params, setup.n_rounds, binning=setup.binning, valid_parts=setup.valid_parts,
        early_stopping_rounds=setup.early_stopping, names=setup.names, on_round=track, timeout_s=timeout_s,
        startup_timeout_s=startup_timeout_s,
    )  # fmt: skip
    booster = best_rounds(booster, setup.early_stopping)
    return JointTraining(booster, finished_at, t0, time.perf_counter() - t0)


def startup_split(joint: JointTraining) -> dict[str, float]:
    """``federated_s`` split into the processes' start-up (paid once per run: the server and one
    worker per institution, until the first round is done, less one round) and the boosting rounds."""
    done = sorted(joint.finished_at.values())
    if len(done) < 2:
        return {}
    per_round = (done[-1] - done[0]) / (len(done) - 1)
    startup = max(0.0, done[0] - joint.started - per_round)
    return {"federated_startup_s": startup, "federated_rounds_s": joint.seconds - startup}


@dataclass
class Reference:
    """The baselines of a histogram run: centralized on the same bins, and local-only."""

    per_institution: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    pooled: dict[str, dict[str, float]] = field(default_factory=dict)
    booster: Any | None = None  # the centralized xgb.Booster
    #: largest |p_federated - p_centralized| on the pooled test split (NaN without baselines)
    max_diff: float = math.nan
    pooled_test: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (y, p_fed, p_cen)


def compare_with_centralized(
    config: ExperimentConfig,
    vertical: Vertical,
    federation: Federation,
    setup: HistogramSetup,
    fed: XGBoostLearner,
    timings: dict[str, float],
    budget: dict[str, dict[str, float]],
) -> Reference:
    """Pooled training on the same global bins (the model to equal), then both baselines."""
    t1 = time.perf_counter()
    central = best_rounds(
        train_centralized(
            setup.parts, setup.params, setup.n_rounds, binning=setup.binning,
            valid_parts=setup.valid_parts, early_stopping_rounds=setup.early_stopping,
        ),
        setup.early_stopping,
    )  # fmt: skip
    timings["centralized_s"] = time.perf_counter() - t1
    cen = XGBoostLearner(setup.preprocessor.n_features, setup.model_params, seed=config.seed)
    cen.set_booster(central, setup.binning.edges)
    budget["centralized"] = model_size(cen, config)
    x_pooled = np.concatenate([a[2] for a in setup.arrays])
    y_pooled = np.concatenate([a[3] for a in setup.arrays])
    p_fed, p_cen = fed.predict_proba(x_pooled), cen.predict_proba(x_pooled)
    per_baseline, pooled_baseline = compare_baselines(
        federation, vertical, config, predictor(cen, setup.preprocessor), timings, budget,
        arrays=dict(zip(setup.names, setup.arrays, strict=True)),  # transformed once, in step 1
    )  # fmt: skip
    max_diff = float(np.max(np.abs(p_fed - p_cen)))
    return Reference(per_baseline, pooled_baseline, central, max_diff, (y_pooled, p_fed, p_cen))


def agree_bins(config: ExperimentConfig, vertical: Vertical, federation: Federation) -> HistogramSetup:
    """Steps 0 and 1: only feature summaries, quantile summaries and label counts travel."""
    schema = federation.schema
    names = federation.names
    insts = [federation.institutions[n] for n in names]
    summaries = [inst.summary(schema, min_count=DEFAULT_MIN_CATEGORY_COUNT) for inst in insts]  # as nodes send them
    preprocessor = merge_summaries(summaries, schema_from_summaries(vertical.schema, summaries))
    arrays = [inst.arrays(preprocessor, schema.target) for inst in insts]

    model_params = vertical.model_params(config.model, config.model_params)
    own, _ = split_params(model_params)
    n_rounds = config.rounds * config.local_epochs * own["trees_per_epoch"]
    binning = merge_quantile_summaries([local_quantile_summary(a[0], own["n_bins"]) for a in arrays], own["n_bins"])
    positives = sum(int(np.sum(a[1] == 1)) for a in arrays)
    negatives = sum(int(np.sum(a[1] == 0)) for a in arrays)
    params, es = joint_params(
        model_params, seed=config.seed, n_rounds=n_rounds, positives=positives, negatives=negatives
    )

    parts = [(a[0], a[1]) for a in arrays]
    valid_parts: list[tuple[np.ndarray, np.ndarray]] | None = None
    if es is not None:
        parts, valid_parts = [], []
        for name, (x, y, _, _) in zip(names, arrays, strict=True):
            tr, va = validation_split(y, own["validation_fraction"], institution_seed(config.seed, name, 0))
            parts.append((x[tr], y[tr]))
            valid_parts.append((x[va], y[va]))
    return HistogramSetup(
        names, insts, preprocessor, arrays, model_params, params, binning, n_rounds,
        int(own["trees_per_epoch"]), parts, valid_parts, es,
    )  # fmt: skip


def evaluate_at_institutions(
    config: ExperimentConfig, vertical: Vertical, setup: HistogramSetup, fed: XGBoostLearner
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, float]]]:
    """Step 3: the joint model and each institution's fine-tuned one, per institution and pooled."""
    per_institution: dict[str, dict[str, dict[str, float]]] = {}
    scores: dict[str, list[np.ndarray]] = {"federated": [], "federated_finetuned": []}
    trains: dict[str, list[TrainScores | None]] = {"federated": [], "federated_finetuned": []}
    for name, inst, (x_train, y_train, x_test, y_test) in zip(
        setup.names, setup.institutions, setup.arrays, strict=True
    ):
        tuned = XGBoostLearner(setup.preprocessor.n_features, setup.model_params, seed=config.seed)
        tuned.set_parameters(fed.get_parameters())
        if config.finetune_epochs:
            tuned.fit(x_train, y_train, epochs=config.finetune_epochs, seed=institution_seed(config.seed, name, 10**6))
        modes = {}
        for mode, learner in (("federated", fed), ("federated_finetuned", tuned)):
            p = learner.predict_proba(x_test)
            train = (y_train, learner.predict_proba(x_train)) if vertical.tunes_on_train else None
            modes[mode] = vertical.evaluate(y_test, p, frame=inst.test, train=train)
            scores[mode].append(p)
            trains[mode].append(train)
        per_institution[name] = modes

    pooled_test = pd.concat([inst.test for inst in setup.institutions], ignore_index=True)
    y_pooled = np.concatenate([a[3] for a in setup.arrays])

    def pooled_train(train: list[TrainScores | None]) -> TrainScores | None:
        present = [t for t in train if t is not None]
        if not vertical.tunes_on_train or len(present) != len(train):
            return None
        return np.concatenate([t[0] for t in present]), np.concatenate([t[1] for t in present])

    pooled = {
        mode: vertical.evaluate(
            y_pooled, np.concatenate(scores[mode]), frame=pooled_test, train=pooled_train(trains[mode])
        )
        for mode in scores
    }
    return per_institution, pooled


def _round_records(
    config: ExperimentConfig,
    setup: HistogramSetup,
    booster: Any,
    vertical: Vertical,
    finished_at: dict[int, float],
    t0: float,
) -> list[RoundRecord]:
    """One record per federated round (``local_epochs * trees_per_epoch`` boosting rounds):
    the joint model truncated there, scored like the Flower path (the same per-metric
    aggregation over institutions, ``num-examples`` included, plus ``pooled.*``)."""
    import xgboost as xgb

    arrays, insts, binning = setup.arrays, setup.institutions, setup.binning
    per_round = config.local_epochs * setup.trees_per_epoch
    total = booster.num_boosted_rounds()
    binned = [xgb.DMatrix(binning.transform(a[2]), nthread=1) for a in arrays]
    y_all = np.concatenate([a[3] for a in arrays])
    frame_all = pd.concat([inst.test for inst in insts], ignore_index=True)
    train_all = [xgb.DMatrix(binning.transform(a[0]), nthread=1) for a in arrays] if vertical.tunes_on_train else []
    records, last_time = [], t0
    for r in range(1, config.rounds + 1):
        upto = min(r * per_round, total)
        if upto < r * per_round and r > 1 and (r - 1) * per_round >= total:
            break  # early stopping ended training before this round
        rng = (0, upto)
        ps = [booster.predict(d, iteration_range=rng).astype(np.float64) for d in binned]
        trains: list = [None] * len(arrays)
        if vertical.tunes_on_train:
            trains = [
                (a[1], booster.predict(d, iteration_range=rng).astype(np.float64))
                for a, d in zip(arrays, train_all, strict=True)
            ]
        local = [
            {"num-examples": float(len(a[3])), **vertical.evaluate(a[3], p, frame=inst.test, train=t)}
            for a, p, inst, t in zip(arrays, ps, insts, trains, strict=True)
        ]
        rules = metric_aggregation(local[0], vertical.additive_metrics, vertical.pooled_only_metrics)
        metrics = aggregate_over_institutions(local, [m["num-examples"] for m in local], rules)
        pooled_train = None
        if vertical.tunes_on_train:
            pooled_train = (np.concatenate([t[0] for t in trains]), np.concatenate([t[1] for t in trains]))
        pooled = vertical.evaluate(y_all, np.concatenate(ps), frame=frame_all, train=pooled_train)
        metrics |= {f"pooled.{k}": float(v) for k, v in pooled.items()}
        at = finished_at.get(upto - 1, last_time)
        records.append(RoundRecord(round=r, metrics=metrics, seconds=max(0.0, at - last_time)))
        last_time = at
    return records
