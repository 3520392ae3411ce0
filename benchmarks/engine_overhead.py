"""What does Flower cost? The same federated workload three ways.

Workload: 10 institutions, 20 rounds, logistic regression, 50,000 rows x 30 features (the
``synthetic`` vertical). Each way does the same work per round: every institution trains one
local epoch, the server averages weighted by rows, every institution evaluates the global
model; at the end every institution fine-tunes and evaluates.

1. plain: a Python loop over the same learners and data, no Flower at all;
2. inprocess: Flower's FedAvg strategy and Message API through Consortia's in-process Grid;
3. ray: the same ClientApp/ServerApp under Flower's Ray simulation (run_simulation).

Data generation is done once beforehand and not timed. Usage::

    python benchmarks/engine_overhead.py [--rounds 20] [--institutions 10] [--rows 50000] [--skip-ray]

The last line reads ``inprocess/plain = X.XX ray/plain = Y.YY``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from consortia import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.data.institutions import institution_seed
from consortia.data.preprocessing import FeatureSummary, merge_summaries
from consortia.federation.engines import run_engine
from consortia.learners import make_learner
from consortia.logs import set_flower_verbosity
from consortia.verticals import get_vertical


def plain_loop(config: ExperimentConfig) -> tuple[float, float]:
    """FedAvg by hand over the same learners; returns (seconds, final pooled AUROC)."""
    federation = load_federation(config, get_vertical(config.vertical))
    vertical, schema = get_vertical(config.vertical), federation.schema
    started = time.perf_counter()
    preprocessor = merge_summaries(
        [FeatureSummary.from_frame(i.train, schema) for i in federation.institutions.values()], schema
    )
    data = {n: i.arrays(preprocessor, schema.target) for n, i in federation.institutions.items()}
    params = vertical.model_params(config.model, config.model_params)
    global_params = make_learner(config.model, preprocessor.n_features, params, seed=config.seed).get_parameters()
    for server_round in range(1, config.rounds + 1):
        updates, weights = [], []
        for name, (x_train, y_train, _, _) in data.items():
            learner = make_learner(config.model, preprocessor.n_features, params, seed=config.seed)
            learner.set_parameters(global_params)
            learner.fit(x_train, y_train, epochs=config.local_epochs,
                        seed=institution_seed(config.seed, name, server_round))  # fmt: skip
            updates.append(learner.get_parameters())
            weights.append(len(y_train))
        total = float(sum(weights))
        global_params = [
            sum(w / total * u[k] for u, w in zip(updates, weights, strict=True)) for k in range(len(updates[0]))
        ]
        ys, ps = [], []
        for _x_train, _y_train, x_test, y_test in data.values():
            learner.set_parameters(global_params)
            proba = learner.predict_proba(x_test)
            vertical.metrics(y_test, proba)
            ys.append(y_test)
            ps.append(proba)
        pooled = vertical.metrics(np.concatenate(ys), np.concatenate(ps))
    for name, (x_train, y_train, x_test, y_test) in data.items():
        learner.set_parameters(global_params)
        vertical.metrics(y_test, learner.predict_proba(x_test))
        learner.fit(x_train, y_train, epochs=config.finetune_epochs, seed=institution_seed(config.seed, name, 10**6))
        vertical.metrics(y_test, learner.predict_proba(x_test))
    return time.perf_counter() - started, pooled[vertical.primary_metric]


def timed_engine(config: ExperimentConfig) -> tuple[float, float]:
    started = time.perf_counter()
    outcome = run_engine(config)
    return time.perf_counter() - started, outcome.pooled["global"]["auroc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--institutions", type=int, default=10)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5, help="best of N for plain and inprocess")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    set_flower_verbosity(False)

    config = ExperimentConfig.build(
        vertical="synthetic", institutions=args.institutions, rows=args.rows, rounds=args.rounds,
        model="logistic", strategy="fedavg", seed=0,
    )  # fmt: skip
    load_federation(config, get_vertical(config.vertical))  # generate, validate and split once, untimed
    rows = {}
    rows["plain"] = min((plain_loop(config) for _ in range(args.repeats)), key=lambda r: r[0])
    rows["inprocess"] = min((timed_engine(config) for _ in range(args.repeats)), key=lambda r: r[0])
    if not args.skip_ray:
        rows["ray"] = timed_engine(config.model_copy(update={"engine": "ray"}))

    print(f"{'way':<10} {'seconds':>8} {'s/round':>8} {'x plain':>8} {'pooled AUROC':>13}")
    for name, (seconds, auroc) in rows.items():
        ratio = seconds / rows["plain"][0]
        print(f"{name:<10} {seconds:8.2f} {seconds / args.rounds:8.3f} {ratio:8.2f} {auroc:13.6f}")
    ray_ratio = rows["ray"][0] / rows["plain"][0] if "ray" in rows else float("nan")
    print(f"inprocess/plain = {rows['inprocess'][0] / rows['plain'][0]:.2f} ray/plain = {ray_ratio:.2f}")


if __name__ == "__main__":
    main()
