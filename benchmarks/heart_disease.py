"""UCI Heart Disease, four hospitals: local-only vs federated vs fine-tuned vs centralized.

Prints the tables quoted in docs/real_data.md. Two protocols:

* ``consortia``: all 920 patients, the shipped mapping (cholesterol 0 = missing, slope/ca/thal
  kept as extra features with federated mean imputation and missing indicators), stratified
  75/25 split per hospital; AUROC and accuracy; logistic, MLP and XGBoost (when registered).
* ``flamby``: FLamby's Fed-Heart-Disease preprocessing and split (740 complete rows, 13
  features, train/test 199/104, 172/89, 30/16, 85/45), FLamby's model (a linear layer +
  sigmoid, Adam lr 1e-3, batch 4); accuracy, mean over seeds 42-46 like FLamby's figure.

Usage: ``python benchmarks/heart_disease.py [--protocol consortia|flamby|both] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from consortia import ExperimentConfig, run_experiment
from consortia.cli.data_options import data_options
from consortia.data import flamby as flamby_heart
from consortia.learners import LEARNERS

MODES = ("local_only", "federated", "federated_finetuned", "centralized")


def consortia_protocol(rounds: int, seed: int) -> dict:
    data, _ = data_options("healthcare", example="uci-heart")
    out = {}
    for model in [m for m in ("logistic", "mlp", "xgboost") if m in LEARNERS]:
        started = time.perf_counter()
        config = ExperimentConfig.build(vertical="healthcare", data=data, model=model, rounds=rounds, seed=seed)
        result = run_experiment(config)
        out[model] = {"result": result.to_dict(), "seconds": time.perf_counter() - started}
        for metric in ("auroc", "accuracy"):
            _print_table(
                f"consortia protocol, {model}, {metric} (seed {seed}, {rounds} rounds)", result.to_dict(), metric
            )
    return out


def flamby_protocol(rounds: int, local_epochs: int, seeds: list[int]) -> dict:
    data, _ = data_options("healthcare", example="uci-heart", protocol="flamby")
    runs = []
    for seed in seeds:
        config = ExperimentConfig.build(
            vertical="healthcare", data=data, model=flamby_heart.MODEL, model_params=flamby_heart.MODEL_PARAMS,
            rounds=rounds, local_epochs=local_epochs, seed=seed,
        )  # fmt: skip
        runs.append(run_experiment(config).to_dict())
    mean = {
        name: {mode: {"accuracy": float(np.mean([r["per_institution"][name][mode]["accuracy"] for r in runs]))}
               for mode in MODES}
        for name in runs[0]["per_institution"]
    }  # fmt: skip
    pooled = {mode: {"accuracy": float(np.mean([r["pooled"][mode]["accuracy"] for r in runs]))} for mode in MODES}
    summary = {"per_institution": mean, "pooled": pooled}
    _print_table(
        f"FLamby protocol, accuracy, mean of seeds {seeds} ({rounds} rounds x {local_epochs} local epochs; "
        f"baselines {rounds * local_epochs} epochs)", summary, "accuracy",
    )  # fmt: skip
    means = {mode: float(np.mean([mean[n][mode]["accuracy"] for n in mean])) for mode in MODES}
    print("unweighted mean over the 4 centres' test sets:", {m: round(v, 4) for m, v in means.items()})
    return {"seeds": seeds, "runs": runs, "mean": summary, "centre_mean": means}


def _print_table(title: str, result: dict, metric: str) -> None:
    print(f"\n{title}\n| hospital | " + " | ".join(MODES) + " |\n|---" * 1 + "|---" * len(MODES) + "|")
    rows = [*list(result["per_institution"].items()), ("pooled", result["pooled"])]
    for name, modes in rows:
        cells = [modes.get(m, {}).get(metric) for m in MODES]
        print(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=["consortia", "flamby", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out: dict = {}
    if args.protocol in ("consortia", "both"):
        out["consortia"] = consortia_protocol(args.rounds, args.seed)
    if args.protocol in ("flamby", "both"):
        out["flamby"] = flamby_protocol(rounds=25, local_epochs=2, seeds=[42, 43, 44, 45, 46])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
