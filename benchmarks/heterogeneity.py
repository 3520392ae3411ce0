"""Heterogeneity, measured: federated / centralized pooled primary metric per vertical x partition x strategy.

Partitions: ``natural`` (each vertical's own institutions), ``iid``, and Dirichlet label skew with
alpha 1, 0.3 and 0.1 (``PartitionConfig``). Strategies, each with its default learner:

* ``fedavg``, ``fedadam``: ``logistic`` (scikit-learn, the default model);
* ``fedprox`` (mu 0.01), ``scaffold``: ``logistic_torch`` (they need a PyTorch model: scikit-learn's
  solver has no proximal term or corrected steps);
* ``fedma``: ``mlp`` (matched averaging needs hidden layers).

Dirichlet splits give every institution at least ``MIN_CLASS_ROWS`` (5) rows of each class
(``consortia.data.partition.ensure_class_floor``; without it alpha 0.3 and 0.1 leave an institution a
single class, which the data layer refuses). ``logistic``'s local fits take their share n / N of the
L2 penalty (``C x N / n``, ``consortia.learners.logistic``).

The centralized number is ``run_experiment``'s own baseline, the same model trained on the pooled
training rows, evaluated on the same pooled test rows; it is computed once per (vertical,
partition, model). Then the many-small-institutions rows: finance, 20 and 100 institutions x
100k rows, logistic FedAvg, with the same defaults.

Usage::

    python benchmarks/heterogeneity.py [--quick] [--verticals healthcare,finance,manufacturing]
        [--partitions natural,iid,a1,a03,a01] [--strategies fedavg,fedprox,scaffold,fedadam,fedma]
        [--rows 10000] [--institutions 5] [--rounds 20] [--no-many] [--seed 42]

``--quick``: 3,000 rows, 5 rounds, partitions iid and a03, the many-institutions rows at 20 only.
The last line reads ``iid_min_ratio = X alpha03_min_ratio = Y inst100_ratio = Z`` (the smallest
ratio over verticals and strategies; nan where not run). Targets: >= 0.98, >= 0.95, >= 0.95.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from consortia import ExperimentConfig
from consortia.experiment import run_experiment
from consortia.logs import set_flower_verbosity

PARTITIONS: dict[str, dict[str, Any]] = {
    "natural": {"kind": "natural"},
    "iid": {"kind": "iid"},
    "a1": {"kind": "dirichlet", "alpha": 1.0},
    "a03": {"kind": "dirichlet", "alpha": 0.3},
    "a01": {"kind": "dirichlet", "alpha": 0.1},
}
#: strategy -> (model, strategy params)
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "fedavg": ("logistic", {}),
    "fedprox": ("logistic_torch", {"proximal_mu": 0.01}),
    "scaffold": ("logistic_torch", {}),
    "fedadam": ("logistic", {}),
    "fedma": ("mlp", {}),
}


#: strong label skew can leave an institution too few rows (the partitioner gives up) or, in a
#: temporal split, a single class in its training part: the next seeds are tried (at most this many
#: in all) and the seed used is shown in the table. Dirichlet splits keep ``MIN_CLASS_ROWS`` rows of
#: each class per institution (consortia.data.partition), which makes alpha 0.3 and 0.1 measurable.
SEED_TRIES = 5


def retried(error: str) -> bool:
    """An error that another seed's split may not have (not a bug of the run)."""
    return ("DataValidationError" in error and "class" in error) or ("ConfigError" in error and "dirichlet" in error)


def measure(centralized: dict[tuple, float], **values: Any) -> dict[str, Any]:
    """``measure_once``, on the first of ``SEED_TRIES`` seeds whose split gives every institution both classes."""
    out: dict[str, Any] = {}
    for shift in range(SEED_TRIES):
        out = measure_once(centralized, **{**values, "seed": values["seed"] + shift})
        if not retried(out.get("error", "")):
            return {**out, "seed": values["seed"] + shift}
    return out


def measure_once(centralized: dict[tuple, float], **values: Any) -> dict[str, Any]:
    """One run's federated and centralized pooled primary metric (centralized cached per data and model)."""
    config = ExperimentConfig.build(**values)
    key = (
        config.vertical,
        config.partition.model_dump_json(),
        config.model,
        config.institutions,
        config.rows,
        config.seed,
    )
    started = time.perf_counter()
    try:
        result = run_experiment(config, baselines=key not in centralized)
    except Exception as exc:  # a row of the table, not the end of the benchmark
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    metric = result.primary_metric
    if key not in centralized:
        centralized[key] = result.pooled["centralized"].get(metric, math.nan)
    federated = result.pooled["federated"].get(metric, math.nan)
    return {
        "metric": metric,
        "federated": federated,
        "centralized": centralized[key],
        "ratio": federated / centralized[key] if centralized[key] else math.nan,
        "seconds": time.perf_counter() - started,
    }


def row(cells: list[Any]) -> str:
    return "| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verticals", default="healthcare,finance,manufacturing")
    parser.add_argument("--partitions", default=None, help=f"comma-separated of {', '.join(PARTITIONS)}")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--institutions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--many", default=None, help="institution counts for finance x 100k rows (default 20,100)")
    parser.add_argument("--no-many", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    set_flower_verbosity(False)
    rows = args.rows or (3_000 if args.quick else 10_000)
    rounds = args.rounds or (5 if args.quick else 20)
    partitions = (args.partitions or ("iid,a03" if args.quick else ",".join(PARTITIONS))).split(",")
    centralized: dict[tuple, float] = {}
    ratios: dict[str, list[float]] = {}
    print(f"{args.institutions} institutions, {rows} rows, {rounds} rounds, seed {args.seed}\n")
    print("| vertical | partition | strategy | model | seed | metric | federated | centralized | fed / central | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for vertical in [v for v in args.verticals.split(",") if v]:
        for part in partitions:
            for name in args.strategies.split(","):
                model, params = STRATEGIES[name]
                out = measure(
                    centralized, vertical=vertical, institutions=args.institutions, rows=rows, rounds=rounds,
                    model=model, strategy=name, strategy_params=params, partition=PARTITIONS[part], seed=args.seed,
                )  # fmt: skip
                if "error" in out:
                    print(row([vertical, part, name, model, "", "", "", "", out["error"][:90], ""]), flush=True)
                    continue
                ratios.setdefault(part, []).append(out["ratio"])
                cells = [vertical, part, name, model, out["seed"], out["metric"], out["federated"], out["centralized"]]
                print(row([*cells, out["ratio"], f"{out['seconds']:.1f}"]), flush=True)
    many = [] if args.no_many else [int(n) for n in (args.many or ("20" if args.quick else "20,100")).split(",")]
    inst_ratio: dict[int, float] = {}
    if many:
        print("\nMany small institutions: finance, 100,000 rows in total, logistic FedAvg, natural partition\n")
        print("| institutions | rounds | metric | federated | centralized | fed / central | seconds |")
        print("|---|---|---|---|---|---|---|")
        for n in many:
            out = measure(
                centralized, vertical="finance", institutions=n, rows=100_000, rounds=rounds, seed=args.seed
            )  # fmt: skip
            if "error" in out:
                print(row([n, rounds, "", "", "", out["error"], ""]), flush=True)
                continue
            inst_ratio[n] = out["ratio"]
            print(row([n, rounds, out["metric"], out["federated"], out["centralized"], out["ratio"],
                       f"{out['seconds']:.1f}"]), flush=True)  # fmt: skip

    def smallest(part: str) -> float:
        return min(ratios[part]) if ratios.get(part) else math.nan

    print(
        f"\niid_min_ratio = {smallest('iid'):.3f} alpha03_min_ratio = {smallest('a03'):.3f} "
        f"inst100_ratio = {inst_ratio.get(100, math.nan):.3f}"
    )


if __name__ == "__main__":
    main()
