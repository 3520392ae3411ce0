"""run_experiment: federated vs centralized vs local-only, in one call (the public API).

The CLI, the demo app and the benchmarks all call this function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from consortia.config import ExperimentConfig
from consortia.config.selection import LEARNING_RATE_PARAM
from consortia.data.consortium import federation_arrays, load_federation
from consortia.experiment.baselines import (
    budget_note,
    compare_baselines,
    federated_budget,
    model_size,
    predictor,
    train_centralized,
)
from consortia.experiment.privacy import privacy_notes, privacy_record
from consortia.federation.engines import run_engine
from consortia.federation.server import ServerHooks
from consortia.privacy.dp import check_privacy
from consortia.runs.results import FederatedOutcome, RoundRecord, RunResult, rounds_aggregation
from consortia.verticals import get_vertical


def with_chosen_rate(config: ExperimentConfig, selection: dict[str, Any] | None) -> ExperimentConfig:
    """``config`` with the learning rate the federation's search chose: the baselines train the same learner."""
    if not selection or "learning_rate" not in selection:
        return config
    params = {**config.model_params, LEARNING_RATE_PARAM[config.model]: float(selection["learning_rate"])}
    return config.model_copy(update={"model_params": params})


def selection_notes(outcome: FederatedOutcome) -> list[str]:
    """The early-stopping and learning-rate lines of the rounds' notes (``consortia.config.selection``)."""
    return [note for note in outcome.notes if note.startswith(("early stopping", "learning rate"))]


def run_experiment(
    config: ExperimentConfig,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    baselines: bool = True,
) -> RunResult:
    """Train the federation and (optionally) both baselines; evaluate all on the same splits."""
    check_privacy(config)  # one line before any data is read or any round runs
    if config.model == "xgboost" and config.xgb_mode == "histogram" and config.engine != "deployment":
        # simulated by its own driver (consortia.experiment.histogram): the in-process and Ray engines
        # cannot run every institution's worker at once; a deployment runs the ServerApp's phase
        from consortia.experiment.histogram import run_histogram_experiment

        return run_histogram_experiment(config, on_round=on_round, baselines=baselines)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    vertical = get_vertical(config.vertical)
    federation = load_federation(config, vertical)
    timings["data_s"] = time.perf_counter() - started

    t0 = time.perf_counter()
    outcome = run_engine(config, ServerHooks(on_round=on_round))
    timings["federated_s"] = time.perf_counter() - t0

    per_institution: dict[str, dict[str, dict[str, float]]] = {
        name: {"federated": modes["global"], "federated_finetuned": modes["finetuned"]}
        for name, modes in outcome.per_institution.items()
    }
    pooled: dict[str, dict[str, float]] = {
        "federated": outcome.pooled.get("global", {}),
        "federated_finetuned": outcome.pooled.get("finetuned", {}),
    }
    budget = federated_budget(
        config, vertical, outcome.preprocessor.n_features, outcome.final_parameters, outcome.selection
    )
    if baselines:
        # the arrays the nodes trained on (in-process: already cached; other engines: transformed once here)
        t0 = time.perf_counter()
        arrays = federation_arrays(config, vertical, outcome.preprocessor)
        timings["baselines_data_s"] = time.perf_counter() - t0
        learner_config = with_chosen_rate(config, outcome.selection)  # the federation's searched rate, if any
        central, timings["centralized_s"] = train_centralized(
            federation, vertical, learner_config, outcome.preprocessor, arrays
        )
        budget["centralized"] = model_size(central, config)
        per_baseline, pooled_baseline = compare_baselines(
            federation, vertical, learner_config, predictor(central, outcome.preprocessor), timings, budget, arrays
        )
        for name, modes in per_baseline.items():
            per_institution.setdefault(name, {}).update(modes)
        pooled |= pooled_baseline
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
        notes=list(
            dict.fromkeys(
                [  # outcome notes may reach here twice (early stopping under DP)
                    "pooled local_only is the mean over institutions of each local model on all test rows",
                    "federated + fine-tuned pools each institution's own fine-tuned model on its own test rows",
                    budget_note(budget),
                    *selection_notes(outcome),
                    *privacy_notes(config, outcome, vertical.institution_noun),
                ]
            )
        ),
        budget=budget,
        round_metric_aggregation=rounds_aggregation(
            outcome.rounds, vertical.additive_metrics, vertical.pooled_only_metrics
        ),
        privacy=privacy_record(config, outcome, vertical.institution_noun),
    )
