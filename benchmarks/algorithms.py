"""SCAFFOLD, FedMA, FedMeta and q-FedAvg against FedAvg: the pooled primary metric, global and fine-tuned.

Per vertical, the MLP over its natural institutions (their own case mixes and sizes), several
local epochs (where client drift shows), the same seed for every strategy. ``global`` is the
federated model's pooled primary metric on all test rows; ``finetuned`` is after each institution
fine-tunes it for ``--finetune-epochs`` on its own rows (what FedMeta optimises for);
``centralized`` is the same MLP trained on the pooled rows.

Usage::

    python benchmarks/algorithms.py [--verticals finance,manufacturing] [--institutions 10]
        [--rows 20000] [--rounds 10] [--local-epochs 3] [--finetune-epochs 1]

The last line reads ``best = NAME best_vs_fedavg = X`` (ratio of the best non-FedAvg strategy's
global metric to FedAvg's, over the verticals' mean).
"""

from __future__ import annotations

import argparse
import time

from consortia import ExperimentConfig
from consortia.experiment import run_experiment
from consortia.logs import set_flower_verbosity

STRATEGIES = {
    "fedavg": {},
    "scaffold": {},
    "fedma": {},
    "fedmeta": {},
    "qfedavg": {"client_learning_rate": 0.01},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verticals", default="finance,manufacturing")
    parser.add_argument("--institutions", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    set_flower_verbosity(False)
    print("| vertical | strategy | metric | global | finetuned | centralized | global / fedavg | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {}
    for vertical in args.verticals.split(","):
        fedavg = None
        for name in args.strategies.split(","):
            config = ExperimentConfig.build(
                vertical=vertical, institutions=args.institutions, rows=args.rows, rounds=args.rounds,
                local_epochs=args.local_epochs, finetune_epochs=args.finetune_epochs, model="mlp",
                strategy=name, strategy_params=STRATEGIES.get(name, {}), seed=args.seed,
            )  # fmt: skip
            started = time.perf_counter()
            result = run_experiment(config)
            seconds = time.perf_counter() - started
            data = result.to_dict()
            metric = result.primary_metric
            pooled = data["pooled"]
            glob = pooled["federated"][metric]
            tuned = pooled.get("federated_finetuned", {}).get(metric, float("nan"))
            central = pooled.get("centralized", {}).get(metric, float("nan"))
            fedavg = glob if name == "fedavg" else fedavg
            ratio = glob / fedavg if fedavg else float("nan")
            if name != "fedavg":
                ratios.setdefault(name, []).append(ratio)
            cells = [vertical, name, metric, f"{glob:.4f}", f"{tuned:.4f}", f"{central:.4f}", f"{ratio:.3f}"]
            print(f"| {' | '.join(cells)} | {seconds:.0f} |", flush=True)
    means = {n: sum(r) / len(r) for n, r in ratios.items()}
    best = max(means, key=lambda n: means[n]) if means else "none"
    print(f"best = {best} best_vs_fedavg = {means.get(best, float('nan')):.3f}")


if __name__ == "__main__":
    main()
