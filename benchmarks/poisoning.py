"""Poisoned members: how much a few malicious institutions hurt each aggregation strategy.

Per vertical (healthcare, finance, manufacturing; each at its default rows), ``--institutions``
institutions (default 10), the first 0, 1 or 2 of them malicious (``ExperimentConfig.attacks``;
the behaviour is each node's own node config, ``consortia.federation.attacks``), for FedAvg,
FedMedian, FedTrimmedAvg (beta 0.2), Krum (f = 2), MultiKrum (f = 2, selects n - f) and Bulyan
(f = 1: Flower's Bulyan needs n >= 4f + 3 replies and skips every round otherwise).

* metric: the pooled primary metric (healthcare AUROC, finance and manufacturing AUPRC) of the final
  global model on the union of every institution's test rows, computed exactly from the rows (the
  benchmark is a simulation: it can pool them; the score histograms the server pools misrank
  saturated scores, see docs/poisoning.md);
* drop: ``(clean - attacked) / clean`` against the same strategy without attackers;
  ``vs FedAvg clean``: the same against clean FedAvg (what the consortium would get unattacked);
* the main table is the scaled-update attack (``scale``: delta x 10); ``--behaviours`` adds a table
  of the other behaviours with 2 malicious institutions, and for ``backdoor`` the attack success
  rate (ASR): the share of triggered negative test rows scored >= 0.5 (next to the ASR of the clean
  model of the same strategy, i.e. what the trigger alone does).

Model ``--model`` (default logistic), ``--rounds`` (20) and ``--local-epochs`` (default 5: each
institution trains close to its local optimum; with 1 epoch, one L-BFGS step, an update x10 is a
larger step in a good direction and barely hurts, see docs/poisoning.md). Usage::

    python benchmarks/poisoning.py [--quick] [--verticals healthcare,finance] [--behaviours all] [--json out.json]

``--quick``: healthcare only at 4,000 rows, scaled updates only (about a minute on 2 cores).
The last line reads ``fedavg_drop = X best_robust_drop = Y``: relative drops with 2 scaled-update
attackers, the worst case over the verticals run (FedAvg: its smallest drop; robust: per vertical
the robust strategy with the best attacked metric, its drop against its own clean run, the largest).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from consortia import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.evaluation import metrics
from consortia.federation.attacks import apply_trigger
from consortia.federation.engines import run_engine
from consortia.learners import make_learner
from consortia.logs import set_flower_verbosity
from consortia.verticals import get_vertical

VERTICALS = ("healthcare", "finance", "manufacturing")
ROBUST = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")
BEHAVIOURS = ("scale", "label-flip", "sign-flip", "noise", "backdoor")


def strategy_params(strategy: str, institutions: int) -> dict[str, Any]:
    """What each robust rule assumes (the server does not know how many attack: f = 2, Bulyan at most (n-3)/4)."""
    assumed = 2
    params: dict[str, dict[str, Any]] = {
        "fedtrimmedavg": {"beta": 0.2},
        "krum": {"num_malicious_nodes": assumed},
        "multikrum": {"num_malicious_nodes": assumed, "num_nodes_to_select": institutions - assumed},
        "bulyan": {"num_malicious_nodes": min(assumed, (institutions - 3) // 4)},
    }
    return params.get(strategy, {})


def measure(vertical: str, strategy: str, behaviour: str, malicious: int, args: argparse.Namespace) -> dict[str, Any]:
    """One federation; its final model's pooled primary metric and backdoor success, from the rows."""
    spec = get_vertical(vertical)
    config = ExperimentConfig.build(
        vertical=vertical, institutions=args.institutions, rows=args.rows or spec.default_rows, rounds=args.rounds,
        local_epochs=args.local_epochs, finetune_epochs=0, model=args.model, seed=args.seed, strategy=strategy,
        strategy_params=strategy_params(strategy, args.institutions),
        attacks={str(i): behaviour for i in range(malicious)},
    )  # fmt: skip
    started = time.perf_counter()
    outcome = run_engine(config)  # the federation alone (no baselines); its outcome has the final model
    seconds = time.perf_counter() - started
    federation = load_federation(config, spec)
    tests = [
        inst.arrays(outcome.preprocessor, federation.schema.target)[2:] for inst in federation.institutions.values()
    ]
    x = np.vstack([t[0] for t in tests])
    y = np.concatenate([t[1] for t in tests])
    learner = make_learner(
        config.model, x.shape[1], spec.model_params(config.model, config.model_params), seed=config.seed, device="cpu"
    )
    learner.set_parameters(outcome.final_parameters)
    score = getattr(metrics, spec.primary_metric)(y, learner.predict_proba(x))
    asr = float(np.mean(learner.predict_proba(apply_trigger(x[y == 0])) >= 0.5))
    return {
        "vertical": vertical, "metric": spec.primary_metric, "strategy": strategy, "behaviour": behaviour,
        "malicious": malicious, "institutions": args.institutions, "rows": config.rows, "value": float(score),
        "backdoor_asr": asr, "seconds": seconds,
    }  # fmt: skip


def _find(rows: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    return next(r for r in rows if all(r[k] == v for k, v in where.items()))


def drop(clean: float, attacked: float) -> float:
    return (clean - attacked) / clean if clean else math.nan


def scale_table(rows: list[dict[str, Any]], verticals: list[str], strategies: tuple[str, ...]) -> str:
    lines = [
        "| vertical | metric | strategy | clean | 1 of 10 | drop | 2 of 10 | drop | 2 of 10 vs FedAvg clean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for vertical in verticals:
        reference = _find(rows, vertical=vertical, strategy="fedavg", malicious=0)["value"]
        for strategy in strategies:
            clean = _find(rows, vertical=vertical, strategy=strategy, malicious=0)
            one = _find(rows, vertical=vertical, strategy=strategy, behaviour="scale", malicious=1)
            two = _find(rows, vertical=vertical, strategy=strategy, behaviour="scale", malicious=2)
            lines.append(
                f"| {vertical} | {clean['metric']} | {strategy} | {clean['value']:.4f} | {one['value']:.4f} "
                f"| {drop(clean['value'], one['value']):+.1%} | {two['value']:.4f} "
                f"| {drop(clean['value'], two['value']):+.1%} | {drop(reference, two['value']):+.1%} |"
            )
    return "\n".join(lines)


def behaviour_table(
    rows: list[dict[str, Any]], verticals: list[str], strategies: tuple[str, ...], behaviours: list[str]
) -> str:
    others = [b for b in behaviours if b != "scale"]
    head = "| vertical | strategy | clean | " + " | ".join(f"{b} (2 of 10)" for b in others)
    head += " | backdoor ASR (clean model) |" if "backdoor" in others else " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for vertical in verticals:
        for strategy in strategies:
            clean = _find(rows, vertical=vertical, strategy=strategy, malicious=0)
            cells = []
            for behaviour in others:
                value = _find(rows, vertical=vertical, strategy=strategy, behaviour=behaviour, malicious=2)["value"]
                cells.append(f"{value:.4f} ({drop(clean['value'], value):+.1%})")
            line = f"| {vertical} | {strategy} | {clean['value']:.4f} | " + " | ".join(cells)
            if "backdoor" in others:
                attacked = _find(rows, vertical=vertical, strategy=strategy, behaviour="backdoor", malicious=2)
                line += f" | {attacked['backdoor_asr']:.1%} ({clean['backdoor_asr']:.1%})"
            lines.append(line + " |")
    return "\n".join(lines)


def summary_line(rows: list[dict[str, Any]], verticals: list[str]) -> str:
    """Worst case over the verticals: FedAvg's smallest drop, the best robust strategy's largest."""

    def pair(vertical: str, strategy: str) -> tuple[float, float]:
        clean = _find(rows, vertical=vertical, strategy=strategy, malicious=0)["value"]
        return clean, _find(rows, vertical=vertical, strategy=strategy, behaviour="scale", malicious=2)["value"]

    fedavg, robust = [], []
    for vertical in verticals:
        fedavg.append(drop(*pair(vertical, "fedavg")))
        best = max(ROBUST, key=lambda s: pair(vertical, s)[1])
        robust.append(drop(*pair(vertical, best)))
    return f"fedavg_drop = {min(fedavg):.4f} best_robust_drop = {max(robust):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verticals", default=",".join(VERTICALS))
    parser.add_argument("--rows", type=int, default=None, help="rows of every vertical (default: its own)")
    parser.add_argument("--institutions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--local-epochs", type=int, default=5)
    parser.add_argument("--model", default="logistic")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--behaviours", default="all", help="comma list, or all (" + ", ".join(BEHAVIOURS) + ")")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--quick", action="store_true", help="healthcare at 4,000 rows, scaled updates only")
    args = parser.parse_args()
    set_flower_verbosity(False)
    verticals = [v.strip() for v in args.verticals.split(",") if v.strip()]
    behaviours = list(BEHAVIOURS) if args.behaviours == "all" else [b.strip() for b in args.behaviours.split(",")]
    if args.quick:
        verticals, behaviours, args.rows = ["healthcare"], ["scale"], args.rows or 4_000
    behaviours = ["scale", *[b for b in behaviours if b != "scale"]]  # the main table is always measured
    strategies = ("fedavg", *ROBUST)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for vertical in verticals:
        for strategy in strategies:
            runs = [("none", 0)] + [("scale", 1)] + [(b, 2) for b in behaviours]
            for behaviour, malicious in runs:
                rows.append(measure(vertical, strategy, behaviour, malicious, args))
                r = rows[-1]
                print(
                    f"{vertical} {strategy} {behaviour} x{malicious}: {r['value']:.4f} ({r['seconds']:.1f} s)",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print()
    print(f"{args.institutions} institutions, model {args.model}, {args.rounds} rounds x {args.local_epochs} local "
          f"epochs, seed {args.seed}; {time.perf_counter() - started:.0f} s in all")  # fmt: skip
    print()
    print(scale_table(rows, verticals, strategies))
    if len(behaviours) > 1:
        print()
        print(behaviour_table(rows, verticals, strategies, behaviours))
    print()
    print(summary_line(rows, verticals))


if __name__ == "__main__":
    main()
