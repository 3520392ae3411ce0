"""XGBoost's federated modes side by side, per vertical: quality and wall time.

For each registered vertical (healthcare, finance, manufacturing) with its default rows,
institutions and XGBoost parameters (``model_defaults['xgboost']``), ``--rounds`` rounds:

* centralized: the learner on the pooled training rows (XGBoost's own sketch), same tree
  budget as one federated boosting round per round (``rounds * local_epochs`` trees);
* histogram: one booster trained jointly over XGBoost's federated communicator (one process
  per institution plus the server, loopback), compared with pooled training on the same
  global bins: the largest prediction difference on the pooled test split is reported;
* bagging / cyclic: Flower's FedXgbBagging / FedXgbCyclic through Consortia's Flower apps
  (in-process engine);
* local-only mean: each institution alone, the mean over institutions of its model on the
  pooled test split.

Quality is measured on the union of the institutions' test splits. Wall time: training
only (for the federated modes the whole federated run, evaluation rounds included; for
histogram the process start-up of every institution too). Usage::

    python benchmarks/xgboost_modes.py [--rounds 20] [--rows N] [--verticals healthcare,finance]

The last line reads ``histogram max|pred diff| = X.Xe-YY`` (the largest over verticals).
"""

from __future__ import annotations

import argparse

from consortia import ExperimentConfig
from consortia.experiment import run_experiment
from consortia.experiment.histogram import run_histogram
from consortia.logs import set_flower_verbosity
from consortia.verticals import VERTICALS, get_vertical


def _row(vertical: str, mode: str, metrics: dict[str, float], seconds: float) -> str:
    auroc, auprc = metrics.get("auroc", float("nan")), metrics.get("auprc", float("nan"))
    return f"{vertical:<14} {mode:<16} {auroc:>7.4f} {auprc:>7.4f} {seconds:>8.1f}"


def bench_vertical(name: str, rounds: int, rows: int | None, seed: int) -> tuple[list[str], float]:
    spec = get_vertical(name)
    base = {
        "vertical": name, "model": "xgboost", "rounds": rounds, "seed": seed,
        "rows": rows or spec.default_rows, "institutions": spec.default_institutions,
    }  # fmt: skip
    lines = []
    bagging = run_experiment(ExperimentConfig.build(**base, xgb_mode="bagging"))
    cyclic = run_experiment(ExperimentConfig.build(**base, xgb_mode="cyclic"), baselines=False)
    histogram = run_histogram(ExperimentConfig.build(**base, xgb_mode="histogram"))
    lines.append(_row(name, "centralized", bagging.pooled["centralized"], bagging.timings["centralized_s"]))
    lines.append(_row(name, "histogram", histogram.result.pooled["federated"], histogram.result.timings["federated_s"]))
    lines.append(_row(name, "bagging", bagging.pooled["federated"], bagging.timings["federated_s"]))
    lines.append(_row(name, "cyclic", cyclic.pooled["federated"], cyclic.timings["federated_s"]))
    lines.append(_row(name, "local-only mean", bagging.pooled["local_only"], bagging.timings["local_only_s"]))
    return lines, histogram.max_pred_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=None, help="rows per vertical (default: the vertical's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verticals", default="healthcare,finance,manufacturing")
    args = parser.parse_args()
    set_flower_verbosity(False)
    names = [v for v in args.verticals.split(",") if v in VERTICALS]
    print(f"{'vertical':<14} {'mode':<16} {'AUROC':>7} {'AUPRC':>7} {'wall_s':>8}", flush=True)
    worst = 0.0
    for name in names:
        lines, diff = bench_vertical(name, args.rounds, args.rows, args.seed)
        print("\n".join(lines), flush=True)
        worst = max(worst, diff)
    print(f"histogram max|pred diff| = {worst:.1e}")


if __name__ == "__main__":
    main()
