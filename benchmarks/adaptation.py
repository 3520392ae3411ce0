"""FedMeta (first-order MAML, Reptile) against FedAvg: each institution's metric after k local steps.

FedMeta's global model is meant to be adapted, not used as it is, so it is judged where it
claims to win: per institution, after ``k`` mini-batch steps (not epochs) on the institution's
own training rows, on its own test rows. Per vertical and model, over its natural institutions,
each strategy trains one global model (same seed, rounds and local epochs); then every
institution adapts it for each ``k`` in ``--steps`` (k = 0 is the global model as it is) with

* ``learner``: the learner's own optimizer, fresh as in fine-tuning (Adam at the model's ``lr``),
  i.e. FedAvg + fine-tuning as ``consortia run --finetune-epochs`` does it, only counted in steps;
* ``sgd``: plain SGD at FedMeta's ``inner_lr``, the inner step first-order MAML meta-trains for.

Usage::

    python benchmarks/adaptation.py [--verticals finance,manufacturing] [--models mlp,logistic_torch]
        [--institutions 10] [--rows 20000] [--rounds 10] [--local-epochs 3] [--steps 0,1,5,20]
        [--strategies fedavg,fomaml,reptile] [--adapt learner,sgd] [--inner-lr 0.2] [--server-lr 1.0]
        [--reptile-server-lr 1.5] [--per-institution]

Prints a summary table (mean over institutions of the primary metric at each k, the mean gain
over k = 0, and the pooled metric: every institution's test rows scored by its own adapted model,
as a run's "federated + fine-tuned" row), the per-institution table with ``--per-institution``,
and a last line ``fedmeta_gain_k5 = X fedavg_gain_k5 = Y fedmeta_minus_fedavg_k5 = Z
fedmeta_pooled_k5 = P fedavg_pooled_k5 = Q`` (first-order MAML vs FedAvg, ``learner``
adaptation, mean over verticals and models; Z compares the adapted per-institution means).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from consortia import ExperimentConfig
from consortia.data.consortium import federation_arrays, load_federation
from consortia.data.institutions import institution_seed
from consortia.federation.algorithms.fedmeta import adapt_steps
from consortia.federation.engines import run_engine
from consortia.learners import make_learner
from consortia.logs import set_flower_verbosity
from consortia.verticals import get_vertical

#: the ClientApp's fine-tuning salt (consortia.federation.client.FINETUNE_SALT): the same batches
FINETUNE_SALT = 10**6
#: the row of each group that pools every institution's test rows, each scored by its own adapted model
POOLED = "pooled"


@dataclass
class Row:
    vertical: str
    model: str
    strategy: str
    adapt: str
    institution: str
    metrics: dict[int, float]  # k -> primary metric


def strategy_of(name: str, args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    if name == "fedavg":
        return "fedavg", {}
    if name == "fomaml":
        return "fedmeta", {"meta": "fomaml", "inner_lr": args.inner_lr, "server_lr": args.server_lr}
    if name == "reptile":
        return "fedmeta", {"meta": "reptile", "server_lr": args.reptile_server_lr}
    raise SystemExit(f"unknown strategy {name!r}: fedavg, fomaml or reptile")


def measure(vertical_name: str, model: str, name: str, args: argparse.Namespace) -> tuple[list[Row], float]:
    """Train one global model, then adapt it at every institution for every k and mode."""
    strategy, params = strategy_of(name, args)
    config = ExperimentConfig.build(
        vertical=vertical_name, institutions=args.institutions, rows=args.rows, rounds=args.rounds,
        local_epochs=args.local_epochs, finetune_epochs=0, model=model, strategy=strategy,
        strategy_params=params, seed=args.seed,
    )  # fmt: skip
    started = time.perf_counter()
    outcome = run_engine(config)
    seconds = time.perf_counter() - started
    vertical = get_vertical(vertical_name)
    federation = load_federation(config, vertical)
    arrays = federation_arrays(config, vertical, outcome.preprocessor)
    model_params = vertical.model_params(config.model, config.model_params)
    rows = []
    for adapt in args.adapt.split(","):
        sgd_lr = args.inner_lr if adapt == "sgd" else None
        pooled: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
        for inst, (x_train, y_train, x_test, y_test) in arrays.items():
            metrics = {}
            for k in args.step_list:
                learner = make_learner(config.model, x_train.shape[1], model_params, seed=config.seed)
                learner.set_parameters([np.array(p, copy=True) for p in outcome.final_parameters])
                seed = institution_seed(config.seed, inst, FINETUNE_SALT)
                adapt_steps(learner, x_train, y_train, steps=k, seed=seed, sgd_lr=sgd_lr)  # type: ignore[arg-type]
                train = (y_train, learner.predict_proba(x_train))
                proba = learner.predict_proba(x_test)
                scores = vertical.evaluate(
                    y_test, proba, frame=federation.institutions[inst].test,
                    train=train if vertical.tunes_on_train else None,
                )  # fmt: skip
                metrics[k] = float(scores[vertical.primary_metric])
                pooled.setdefault(k, []).append((y_test, proba, *train))
            rows.append(Row(vertical_name, model, name, adapt, inst, metrics))
        # every institution's own adapted model on its own test rows, pooled (the run's "fine-tuned" row)
        frame = pd.concat([federation.institutions[i].test for i in arrays], ignore_index=True)
        metrics = {}
        for k, parts in pooled.items():
            y, p, y_tr, p_tr = (np.concatenate([part[j] for part in parts]) for j in range(4))
            train = (y_tr, p_tr) if vertical.tunes_on_train else None
            metrics[k] = float(vertical.evaluate(y, p, frame=frame, train=train)[vertical.primary_metric])
        rows.append(Row(vertical_name, model, name, adapt, POOLED, metrics))
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verticals", default="finance,manufacturing")
    parser.add_argument("--models", default="mlp,logistic_torch")
    parser.add_argument("--institutions", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=3)
    parser.add_argument("--steps", default="0,1,5,20")
    parser.add_argument("--strategies", default="fedavg,fomaml,reptile")
    parser.add_argument("--adapt", default="learner,sgd")
    parser.add_argument("--inner-lr", type=float, default=0.2)
    parser.add_argument("--server-lr", type=float, default=1.0)
    parser.add_argument("--reptile-server-lr", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--per-institution", action="store_true")
    args = parser.parse_args()
    args.step_list = sorted({int(k) for k in args.steps.split(",")} | {0})
    set_flower_verbosity(False)
    rows: list[Row] = []
    seconds: dict[tuple[str, str, str], float] = {}
    for vertical in args.verticals.split(","):
        for model in args.models.split(","):
            for name in args.strategies.split(","):
                found, secs = measure(vertical, model, name, args)
                rows += found
                seconds[(vertical, model, name)] = secs
    ks = args.step_list
    gains = [k for k in ks if k]
    print("| vertical | model | strategy | adapt | " + " | ".join(f"mean k={k}" for k in ks) + " | "
          + " | ".join(f"gain k={k}" for k in gains) + " | " + " | ".join(f"pooled k={k}" for k in ks)
          + " | seconds |")  # fmt: skip
    print("|" + "---|" * (5 + 2 * len(ks) + len(gains)))
    summary: dict[tuple[str, str, str, str], dict[str, float]] = {}
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.vertical, row.model, row.strategy, row.adapt), []).append(row)
    for (vertical, model, name, adapt), members in groups.items():
        own = [r for r in members if r.institution != POOLED]
        (pooled,) = [r.metrics for r in members if r.institution == POOLED]
        mean = {k: float(np.nanmean([r.metrics[k] for r in own])) for k in ks}
        gain = {k: float(np.nanmean([r.metrics[k] - r.metrics[0] for r in own])) for k in gains}
        summary[(vertical, model, name, adapt)] = (
            {f"mean{k}": v for k, v in mean.items()} | {f"gain{k}": v for k, v in gain.items()}
            | {f"pooled{k}": v for k, v in pooled.items()}
        )  # fmt: skip
        cells = [vertical, model, name, adapt, *(f"{mean[k]:.4f}" for k in ks), *(f"{gain[k]:+.4f}" for k in gains),
                 *(f"{pooled[k]:.4f}" for k in ks)]  # fmt: skip
        print(f"| {' | '.join(cells)} | {seconds[(vertical, model, name)]:.0f} |", flush=True)
    if args.per_institution:
        print()
        print("| vertical | model | strategy | adapt | institution | " + " | ".join(f"k={k}" for k in ks) + " |")
        print("|" + "---|" * (5 + len(ks)))
        for row in rows:
            cells = [row.vertical, row.model, row.strategy, row.adapt, row.institution]
            print(f"| {' | '.join(cells)} | " + " | ".join(f"{row.metrics[k]:.4f}" for k in ks) + " |")
    k = 5 if 5 in ks else max(ks)

    def over(strategy: str, key: str) -> float:
        values = [v[key] for (_, _, s, a), v in summary.items() if s == strategy and a == "learner"]
        return float(np.mean(values)) if values else float("nan")

    print(
        f"fedmeta_gain_k{k} = {over('fomaml', f'gain{k}'):.4f} fedavg_gain_k{k} = {over('fedavg', f'gain{k}'):.4f} "
        f"fedmeta_minus_fedavg_k{k} = {over('fomaml', f'mean{k}') - over('fedavg', f'mean{k}'):.4f} "
        f"fedmeta_pooled_k{k} = {over('fomaml', f'pooled{k}'):.4f} "
        f"fedavg_pooled_k{k} = {over('fedavg', f'pooled{k}'):.4f}"
    )


if __name__ == "__main__":
    main()
