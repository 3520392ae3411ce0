"""run_experiment: federated vs centralized vs local-only, in one call (the public API).

The CLI, the demo app and the benchmarks all call this function.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.core.apps import ServerHooks
from consortia.core.baselines import score, train_centralized, train_local_only
from consortia.core.engines import run_engine
from consortia.core.institutions import load_federation
from consortia.core.results import RoundRecord, RunResult


def run_experiment(
    config: ExperimentConfig,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    baselines: bool = True,
) -> RunResult:
    """Train the federation and (optionally) both baselines; evaluate all on the same splits."""
    if config.model == "xgboost" and config.xgb_mode == "histogram":  # no Flower strategy: own path
        from consortia.core.xgboost_histogram_run import run_histogram_experiment

        return run_histogram_experiment(config, on_round=on_round, baselines=baselines)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    federation = load_federation(config)
    timings["data_s"] = time.perf_counter() - started
    vertical = federation.vertical
    target = federation.schema.target

    t0 = time.perf_counter()
    outcome = run_engine(config, ServerHooks(on_round=on_round, report_scores=True))
    timings["federated_s"] = time.perf_counter() - t0

    per_institution: dict[str, dict[str, dict[str, float]]] = {
        name: {"federated": modes["global"], "federated_finetuned": modes["finetuned"]}
        for name, modes in outcome.per_institution.items()
    }
    pooled: dict[str, dict[str, float]] = {
        "federated": outcome.pooled.get("global", {}),
        "federated_finetuned": outcome.pooled.get("finetuned", {}),
    }
    if baselines:
        pooled_test = pd.concat([i.test for i in federation.institutions.values()], ignore_index=True)
        y_pooled = pooled_test[target].to_numpy(dtype=int)

        pooled_train = pd.concat([i.train for i in federation.institutions.values()], ignore_index=True)

        def train_scores(learner, preprocessor, frame):  # only for verticals that tune on training rows
            if not vertical.tunes_on_train:
                return None
            return frame[target].to_numpy(dtype=int), score(learner, preprocessor, frame)

        central, timings["centralized_s"] = train_centralized(federation, config, outcome.preprocessor)
        central_train = train_scores(central, outcome.preprocessor, pooled_train)
        pooled["centralized"] = vertical.evaluate(
            y_pooled, score(central, outcome.preprocessor, pooled_test), frame=pooled_test, train=central_train
        )
        local_models, timings["local_only_s"] = train_local_only(federation, config)
        local_on_pooled = []
        for name, inst in federation.institutions.items():
            y = inst.test[target].to_numpy(dtype=int)
            per_institution[name]["centralized"] = vertical.evaluate(
                y, score(central, outcome.preprocessor, inst.test), frame=inst.test, train=central_train
            )
            learner, own = local_models[name]
            own_train = train_scores(learner, own, inst.train)
            per_institution[name]["local_only"] = vertical.evaluate(
                y, score(learner, own, inst.test), frame=inst.test, train=own_train
            )
            local_on_pooled.append(
                vertical.evaluate(y_pooled, score(learner, own, pooled_test), frame=pooled_test, train=own_train)
            )
        pooled["local_only"] = {key: _mean_ignoring_nan([m[key] for m in local_on_pooled]) for key in local_on_pooled[0]}
    timings["total_s"] = time.perf_counter() - started
    return RunResult(
        config=config.model_dump(mode="json"),
        vertical=vertical.name,
        primary_metric=vertical.primary_metric,
        institution_noun=vertical.institution_noun,
        rounds=outcome.rounds,
        per_institution=per_institution,
        pooled=pooled,
        institution_sizes=outcome.institution_sizes,
        timings=timings,
        notes=[
            "pooled local_only is the mean over institutions of each local model on all test rows",
            "federated + fine-tuned pools each institution's own fine-tuned model on its own test rows",
        ],
    )


def _mean_ignoring_nan(values: list[float]) -> float:
    """Mean over institutions; NaN (a metric the data cannot support) only if all are NaN."""
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")
