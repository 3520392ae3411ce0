"""How Consortia scales: institutions x total rows, against a plain loop on the same arrays.

For each size ``IxR`` (I institutions, R synthetic rows in total over all of them, as
``consortia run --institutions I --rows R``) and each model, on the finance vertical with the
in-process engine, ``--rounds`` rounds (default 20), seed 42:

* consortia: ``run_experiment`` (federation, fine-tuning, centralized and local-only baselines);
* plain: the same work by hand with no Flower: the same data loading, preprocessor and cached
  arrays, FedAvg rounds over the same learners with each institution's metrics each round and
  the pooled metrics, local fine-tuning, and the same baseline code (``train_centralized`` and
  ``compare_baselines`` on the cached arrays).

Each (size, model, way) runs in its own subprocess, so the peak memory is that run's alone: the
child's peak RSS plus its own children's peak (``resource.getrusage``; the in-process engine starts
none, so it is the whole process tree). Columns: wall seconds of the whole run, seconds per round
(the federated phase / rounds), peak GB, federated / centralized (pooled primary metric, AUPRC),
the plain loop's seconds and consortia / plain, and beside the wall seconds the CPU seconds
(user + system of the run's process tree, from ``RUSAGE_CHILDREN``), which other jobs on a
shared machine inflate far less than wall time, and the 1-minute load average before and after.
A second table splits each Consortia run into its ``timings`` phases.

A size may carry its own rounds: ``1000x10M@3`` (the table's rounds column says so).

Usage::

    python benchmarks/scale.py [--sizes 5x100k,100x1M,1000x10M@3] [--models logistic,mlp] [--rounds 20]
                               [--quick] [--full] [--timeout 3600] [--no-plain]

Default sizes 5x100k,20x1M,100x100k,100x1M; ``--full`` every combination of {5, 20, 100, 1000}
institutions and {100k, 1M, 10M} rows; ``--quick`` 5x100k,20x100k with logistic only and 5 rounds.
The last line reads ``100x1M: seconds = S peak_gb = G consortia/plain = R`` (logistic; nan if not run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from typing import Any

RESULT = "RESULT "
DEFAULT_SIZES = "5x100k,20x1M,100x100k,100x1M"
FULL_INSTITUTIONS = (5, 20, 100, 1000)
FULL_ROWS = ("100k", "1M", "10M")


def parse_rows(text: str) -> int:
    """``100k`` -> 100_000, ``1M`` -> 1_000_000, ``2500`` -> 2500."""
    units = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    text = text.strip().lower()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def parse_size(text: str, rounds: int) -> tuple[int, int, int]:
    """``100x1M`` -> (100, 1_000_000, rounds); ``1000x10M@3`` -> (1000, 10_000_000, 3)."""
    try:
        size, _, own_rounds = text.lower().partition("@")
        institutions, rows = size.split("x")
        return int(institutions), parse_rows(rows), int(own_rounds) if own_rounds else rounds
    except ValueError:
        raise SystemExit(f"size '{text}': expected INSTITUTIONSxROWS[@ROUNDS], e.g. 100x1M or 1000x10M@3") from None


def peak_gb() -> float:
    """This process's peak RSS plus its children's (ru_maxrss is in KiB on Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024**2


def _config(institutions: int, rows: int, model: str, rounds: int):
    from consortia import ExperimentConfig

    return ExperimentConfig.build(
        vertical="finance", institutions=institutions, rows=rows, rounds=rounds, model=model,
        engine="inprocess", seed=42,
    )  # fmt: skip


def run_consortia(institutions: int, rows: int, model: str, rounds: int) -> dict[str, Any]:
    from consortia.experiment import run_experiment
    from consortia.logs import set_flower_verbosity

    set_flower_verbosity(False)
    config = _config(institutions, rows, model, rounds)
    started = time.perf_counter()
    result = run_experiment(config)
    seconds = time.perf_counter() - started
    primary = result.primary_metric
    return {
        "seconds": seconds,
        "federated_s": result.timings["federated_s"],
        "timings": result.timings,
        "federated": result.pooled["federated"].get(primary, math.nan),
        "centralized": result.pooled["centralized"].get(primary, math.nan),
    }


def run_plain(institutions: int, rows: int, model: str, rounds: int) -> dict[str, Any]:
    """The same experiment as a plain loop over the same learners and cached arrays, no Flower."""
    import numpy as np

    from consortia.data.consortium import federation_arrays, load_federation
    from consortia.data.institutions import institution_seed
    from consortia.data.preprocessing import merge_summaries
    from consortia.experiment.baselines import compare_baselines, predictor, train_centralized
    from consortia.learners import make_learner
    from consortia.verticals import get_vertical

    config = _config(institutions, rows, model, rounds)
    vertical = get_vertical(config.vertical)
    started = time.perf_counter()
    federation = load_federation(config, vertical)
    schema, names = federation.schema, federation.names
    preprocessor = merge_summaries([federation.institutions[n].summary(schema) for n in names], schema)
    data = federation_arrays(config, vertical, preprocessor)
    params = vertical.model_params(config.model, config.model_params)

    def learner_with(parameters):
        learner = make_learner(config.model, preprocessor.n_features, params, seed=config.seed)
        learner.set_parameters(parameters)
        return learner

    def evaluate(learner, name):
        x_train, y_train, x_test, y_test = data[name]
        proba = learner.predict_proba(x_test)
        train = (y_train, learner.predict_proba(x_train)) if vertical.tunes_on_train else None
        vertical.evaluate(y_test, proba, frame=federation.institutions[name].test, train=train)
        return proba

    rounds_started = time.perf_counter()
    global_params = make_learner(config.model, preprocessor.n_features, params, seed=config.seed).get_parameters()
    for server_round in range(1, config.rounds + 1):
        updates, weights = [], []
        for name in names:
            x_train, y_train, _, _ = data[name]
            learner = learner_with(global_params)
            learner.fit(x_train, y_train, epochs=config.local_epochs,
                        seed=institution_seed(config.seed, name, server_round))  # fmt: skip
            updates.append(learner.get_parameters())
            weights.append(len(y_train))
        total = float(sum(weights))
        global_params = [
            sum(w / total * u[k] for u, w in zip(updates, weights, strict=True)) for k in range(len(updates[0]))
        ]
        learner = learner_with(global_params)
        scores = [evaluate(learner, name) for name in names]
        y_pooled = np.concatenate([data[n][3] for n in names])
        vertical.evaluate(y_pooled, np.concatenate(scores))
    for name in names:  # fine-tuning: both models evaluated at each institution
        learner = learner_with(global_params)
        evaluate(learner, name)
        learner.fit(data[name][0], data[name][1], epochs=config.finetune_epochs,
                    seed=institution_seed(config.seed, name, 10**6))  # fmt: skip
        evaluate(learner, name)
    federated_s = time.perf_counter() - rounds_started
    central, _ = train_centralized(federation, vertical, config, preprocessor, data)
    compare_baselines(federation, vertical, config, predictor(central, preprocessor), {}, None, data)
    return {"seconds": time.perf_counter() - started, "federated_s": federated_s}


def child(way: str, institutions: int, rows: int, model: str, rounds: int) -> None:
    run = run_consortia if way == "consortia" else run_plain
    out = run(institutions, rows, model, rounds)
    out["peak_gb"] = peak_gb()
    print(RESULT + json.dumps(out), flush=True)


def cpu_seconds() -> float:
    """User + system seconds of every finished child (and its own children) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> float:
    return os.getloadavg()[0]


def measure(way: str, size: tuple[int, int, int], model: str, timeout: float) -> dict[str, Any]:
    institutions, rows, rounds = size
    command = [sys.executable, __file__, "--child", way, str(institutions), str(rows), model, str(rounds)]
    load_before, cpu_before = load_average(), cpu_seconds()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:120]}"}
    out = json.loads(lines[-1][len(RESULT) :])
    out |= {"cpu_s": cpu_seconds() - cpu_before, "load": (load_before, load_average())}
    return out


def label(size: tuple[int, int] | tuple[int, int, int]) -> str:
    institutions, rows = size[0], size[1]
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if rows % scale == 0:
            return f"{institutions}x{rows // scale}{unit}"
    return f"{institutions}x{rows}"


PHASES = ("data_s", "federated_s", "centralized_s", "local_only_s", "local_on_pooled_s", "baselines_scoring_s")


def print_phases(rows_out: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Each Consortia run's ``timings``, phase by phase (seconds)."""
    print("\n| size | model | " + " | ".join(PHASES) + " | total_s |")
    print("|" + "---|" * (len(PHASES) + 3))
    for (size, model), runs in rows_out.items():
        timings = runs["consortia"].get("timings")
        if timings:
            cells = " | ".join(f"{timings.get(k, math.nan):.1f}" for k in (*PHASES, "total_s"))
            print(f"| {size} | {model} | {cells} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        way, n_institutions, n_rows, model_name, n_rounds = sys.argv[2:]
        child(way, int(n_institutions), int(n_rows), model_name, int(n_rounds))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help=f"comma-separated IxR (default {DEFAULT_SIZES})")
    parser.add_argument("--models", default="logistic,mlp")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5x100k,20x100k, logistic, 5 rounds")
    parser.add_argument("--full", action="store_true", help="every size in {5,20,100,1000} x {100k,1M,10M}")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is given up")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-loop reference")
    args = parser.parse_args()
    sizes_text, models, rounds = args.sizes or DEFAULT_SIZES, args.models.split(","), args.rounds
    if args.quick:
        sizes_text, models, rounds = args.sizes or "5x100k,20x100k", ["logistic"], 5
    if args.full:
        sizes_text = ",".join(f"{i}x{r}" for i, r in itertools.product(FULL_INSTITUTIONS, FULL_ROWS))
    sizes = [parse_size(s, rounds) for s in sizes_text.split(",") if s.strip()]

    header = (
        "| size | model | rounds | seconds | CPU s | s/round | peak GB | federated/centralized | plain s | plain CPU s "
        "| consortia/plain | (CPU) | load average |"
    )
    print("finance, in-process engine, seed 42 (rows: total over all institutions)\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    rows_out: dict[tuple[str, str], dict[str, Any]] = {}
    for size, model in itertools.product(sizes, models):
        fed = measure("consortia", size, model, args.timeout)
        plain = {} if args.no_plain else measure("plain", size, model, args.timeout)
        rows_out[(label(size), model)] = {"consortia": fed, "plain": plain}
        n_rounds = size[2]
        if "error" in fed:
            print(f"| {label(size)} | {model} | {n_rounds} | {fed['error']} | | | | | | | | | |", flush=True)
            continue
        ratio = fed["federated"] / fed["centralized"] if fed["centralized"] else math.nan
        plain_s, plain_cpu = plain.get("seconds", math.nan), plain.get("cpu_s", math.nan)
        plain_text = plain.get("error", f"{plain_s:.1f} | {plain_cpu:.1f}") if plain else "- | -"
        loads = [fed["load"][0], (plain or fed)["load"][1]] if "load" in (plain or fed) else fed["load"]
        print(
            f"| {label(size)} | {model} | {n_rounds} | {fed['seconds']:.1f} | {fed['cpu_s']:.1f} | "
            f"{fed['federated_s'] / n_rounds:.3f} | {fed['peak_gb']:.2f} | {ratio:.3f} | {plain_text} | "
            f"{fed['seconds'] / plain_s:.2f} | {fed['cpu_s'] / plain_cpu:.2f} | {loads[0]:.1f} -> {loads[1]:.1f} |",
            flush=True,
        )
    print_phases(rows_out)
    print()
    target = rows_out.get(("100x1M", "logistic"), {})
    fed, plain = target.get("consortia", {}), target.get("plain", {})
    seconds, gb = fed.get("seconds", math.nan), fed.get("peak_gb", math.nan)
    ratio = seconds / plain.get("seconds", math.nan)
    print(f"100x1M: seconds = {seconds:.1f} peak_gb = {gb:.2f} consortia/plain = {ratio:.2f}")


if __name__ == "__main__":
    main()
