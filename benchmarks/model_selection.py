"""Model selection without pooling: are the defaults the best model users could get?

Two tables (issue 12, "Model selection without pooling"):

1. **MLP by federated validation.** Per vertical, `consortia run VERTICAL --model mlp` with the
   defaults (early stopping on each institution's validation rows, ``rounds`` the maximum; the
   centralized baseline stopped by the same rule within the same budget): pooled primary metric,
   federated / centralized, the round kept and the rounds run. Target: >= 0.95x on every vertical.
2. **XGBoost defaults against a small grid.** Per vertical, the default XGBoost (Flower's bagging,
   early stopping) against the same run with ``scale_pos_weight`` balanced | 1 x ``eta``
   0.1 | 0.3 x ``max_depth`` 4 | 6: pooled AUPRC of the federated model. Target: the default within
   3 % of the grid's best on every vertical.

Usage::

    python benchmarks/model_selection.py [--verticals healthcare,finance,manufacturing] [--rows N]
                                         [--rounds N] [--skip-mlp] [--skip-xgboost] [--quick]

``--quick``: 10,000 rows, the healthcare and manufacturing defaults only. The last line reads
``mlp_min_ratio = X xgb_default_vs_best_min = Y``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from typing import Any

from consortia import ExperimentConfig, run_experiment
from consortia.logs import set_flower_verbosity
from consortia.verticals import VERTICALS, get_vertical

GRID = {"scale_pos_weight": ("balanced", 1.0), "eta": (0.1, 0.3), "max_depth": (4, 6)}


def _config(vertical: str, args: argparse.Namespace, **values: Any) -> ExperimentConfig:
    spec = get_vertical(vertical)
    base: dict[str, Any] = {
        "vertical": vertical, "rows": args.rows or spec.default_rows, "institutions": spec.default_institutions,
        "seed": args.seed,
    }  # fmt: skip
    if args.rounds:
        base["rounds"] = args.rounds
    return ExperimentConfig.build(**(base | values))


def _selection(result: Any) -> str:
    for note in result.notes:
        if note.startswith("early stopping: kept round"):
            return note.removeprefix("early stopping: kept round ").split(" (")[0]  # "12 of 17"
    return "-"


def mlp_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for vertical in args.verticals:
        started = time.perf_counter()
        result = run_experiment(_config(vertical, args, model="mlp"))
        metric = result.primary_metric
        fed, central = result.pooled["federated"][metric], result.pooled["centralized"][metric]
        rows.append({
            "vertical": vertical, "metric": metric, "federated": fed, "centralized": central,
            "ratio": fed / central, "kept (federated)": _selection(result),
            "epochs (centralized)": result.budget["centralized"].get("epochs", math.nan),
            "s": time.perf_counter() - started,
        })  # fmt: skip
        print(f"  mlp {vertical}: {fed:.4f} / {central:.4f} = {fed / central:.3f}", flush=True)
    return rows


def xgboost_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for vertical in args.verticals:
        spec = get_vertical(vertical)
        default_params = spec.model_params("xgboost")
        runs: list[tuple[str, float, float]] = []
        started = time.perf_counter()
        default = run_experiment(_config(vertical, args, model="xgboost"), baselines=False)
        runs.append(("default", default.pooled["federated"]["auprc"], time.perf_counter() - started))
        for values in itertools.product(*GRID.values()):
            params = dict(zip(GRID, values, strict=True))
            label = ",".join(f"{k}={v}" for k, v in params.items())
            started = time.perf_counter()
            result = run_experiment(_config(vertical, args, model="xgboost", model_params=params), baselines=False)
            runs.append((label, result.pooled["federated"]["auprc"], time.perf_counter() - started))
            print(f"  xgboost {vertical} {label}: {runs[-1][1]:.4f}", flush=True)
        best = max(runs[1:], key=lambda r: r[1])
        rows.append({
            "vertical": vertical, "default": default_params, "default auprc": runs[0][1],
            "best of grid": best[0], "best auprc": best[1], "default / best": runs[0][1] / best[1],
            "s": sum(r[2] for r in runs),
        })  # fmt: skip
        print(f"  xgboost {vertical}: default {runs[0][1]:.4f}, best {best[1]:.4f} ({best[0]})", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    heads = list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.1f}" if value >= 10 else f"{value:.4f}"
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in value.items() if k in GRID)
        return str(value)

    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(cell(r[h]) for h in heads) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verticals", default=",".join(VERTICALS.names()))
    parser.add_argument("--rows", type=int, default=None, help="total rows (default: each vertical's)")
    parser.add_argument("--rounds", type=int, default=None, help="most rounds (default: ExperimentConfig's)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-mlp", action="store_true")
    parser.add_argument("--skip-xgboost", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10,000 rows; healthcare and manufacturing")
    args = parser.parse_args()
    args.verticals = [v.strip() for v in args.verticals.split(",") if v.strip()]
    if args.quick:
        args.rows = args.rows or 10_000
        args.verticals = [v for v in args.verticals if v != "finance"] or args.verticals
    set_flower_verbosity(False)
    mlp = [] if args.skip_mlp else mlp_rows(args)
    xgb = [] if args.skip_xgboost else xgboost_rows(args)
    if mlp:
        print("\n### MLP: federated by federated validation vs centralized (same rule, same budget)\n")
        print(markdown(mlp))
    if xgb:
        print("\n### XGBoost (bagging) defaults vs a small grid: pooled AUPRC of the federated model\n")
        print(markdown(xgb))
    mlp_min = min((r["ratio"] for r in mlp), default=math.nan)
    xgb_min = min((r["default / best"] for r in xgb), default=math.nan)
    print(f"\nmlp_min_ratio = {mlp_min:.3f} xgb_default_vs_best_min = {xgb_min:.3f}")


if __name__ == "__main__":
    main()
