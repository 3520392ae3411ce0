"""XGBoost's federated modes side by side, per vertical: quality, model size and wall time.

For each registered vertical (healthcare, finance, manufacturing) with its default rows,
institutions (``n``) and XGBoost parameters (``model_defaults['xgboost']``). Every mode gets the
same number of trees, ``rounds x n`` (the size of bagging's global model), printed beside it:

* bagging: Flower's FedXgbBagging, ``--rounds`` rounds, every institution appends one tree a round;
* cyclic: Flower's FedXgbCyclic, ``rounds x n`` rounds of one tree (each institution gets
  ``--rounds`` turns; as many train messages as bagging);
* histogram: one booster trained jointly over XGBoost's federated communicator (one process
  per institution plus the server, loopback) for ``rounds x n`` boosting rounds, compared with
  pooled training on the same global bins: the largest prediction difference on the pooled
  test split is reported;
* centralized: the learner on the pooled training rows (XGBoost's own sketch), the same trees
  (``consortia.experiment.baselines.training_budget``);
* local-only mean: each institution alone with the same trees, the mean over institutions of
  its model on the pooled test split.

Bagging and cyclic run through Consortia's Flower apps (in-process engine). Quality is measured
on the union of the institutions' test splits. Wall time: training only (for the federated
modes the whole federated run, evaluation rounds included; for histogram the process start-up
of every institution too). Usage::

    python benchmarks/xgboost_modes.py [--rounds 20] [--rows N] [--verticals healthcare,finance]

The last line reads ``histogram max|pred diff| = X.Xe-YY`` (the largest over verticals).
"""

from __future__ import annotations

import argparse

from consortia import ExperimentConfig
from consortia.experiment import run_experiment
from consortia.experiment.histogram import run_histogram
from consortia.logs import set_flower_verbosity
from consortia.runs.results import RunResult
from consortia.verticals import VERTICALS, get_vertical

HEADER = f"{'vertical':<14} {'mode':<16} {'trees':>6} {'AUROC':>7} {'AUPRC':>7} {'wall_s':>8}"


def _row(vertical: str, mode: str, result: RunResult, pooled: str, seconds: str) -> str:
    metrics = result.pooled[pooled]
    auroc, auprc = metrics.get("auroc", float("nan")), metrics.get("auprc", float("nan"))
    trees = result.budget[pooled]["trees"]
    return f"{vertical:<14} {mode:<16} {trees:>6.0f} {auroc:>7.4f} {auprc:>7.4f} {result.timings[seconds]:>8.1f}"


def bench_vertical(name: str, rounds: int, rows: int | None, seed: int) -> tuple[list[str], float]:
    spec = get_vertical(name)
    n = spec.default_institutions
    base = {"vertical": name, "model": "xgboost", "seed": seed, "rows": rows or spec.default_rows, "institutions": n,
            # every mode the same number of trees (early stopping, which keeps each mode's best, is
            # benchmarks/model_selection.py's subject)
            "selection": {"early_stopping": False}}  # fmt: skip
    bagging = run_experiment(ExperimentConfig.build(**base, rounds=rounds, xgb_mode="bagging"))
    cyclic = run_experiment(ExperimentConfig.build(**base, rounds=rounds * n, xgb_mode="cyclic"), baselines=False)
    histogram = run_histogram(ExperimentConfig.build(**base, rounds=rounds * n, xgb_mode="histogram"))
    lines = [
        _row(name, "centralized", bagging, "centralized", "centralized_s"),
        _row(name, "histogram", histogram.result, "federated", "federated_s"),
        _row(name, "bagging", bagging, "federated", "federated_s"),
        _row(name, "cyclic", cyclic, "federated", "federated_s"),
        _row(name, "local-only mean", bagging, "local_only", "local_only_s"),
    ]
    sizes = {bagging.budget[m]["trees"] for m in ("federated", "centralized", "local_only")}
    sizes |= {cyclic.budget["federated"]["trees"], histogram.result.budget["federated"]["trees"]}
    if sizes != {float(rounds * n)}:  # early stopping (a vertical's default) could cut a model short
        lines.append(f"{name:<14} (model sizes differ: {sorted(sizes)} trees)")
    return lines, histogram.max_pred_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=None, help="rows per vertical (default: the vertical's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verticals", default="healthcare,finance,manufacturing")
    args = parser.parse_args()
    set_flower_verbosity(False)
    names = args.verticals.split(",")
    missing = [v for v in names if v not in VERTICALS]
    if missing:  # a silently shorter table reads like a complete one
        parser.error(f"unknown vertical(s) {', '.join(missing)}; registered: {', '.join(VERTICALS.names())}")
    print(HEADER, flush=True)
    worst = 0.0
    for name in names:
        lines, diff = bench_vertical(name, args.rounds, args.rows, args.seed)
        print("\n".join(lines), flush=True)
        worst = max(worst, diff)
    print(f"histogram max|pred diff| = {worst:.1e}")


if __name__ == "__main__":
    main()
