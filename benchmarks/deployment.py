"""How quick is a real Flower federation? Seconds per round, deployed and in-process.

A SuperLink and 3 SuperNodes on 127.0.0.1 (TLS and SuperNode authentication on, free ports)
run the healthcare default config (logistic, FedAvg, 10,000 synthetic rows) split into one
file per hospital, for 5 rounds; the in-process engine runs the same config on the same files.
Seconds per round are the ServerApp's own round times (train + evaluate, as ``RoundRecord``
records them), averaged over the rounds, so start-up (processes, imports, the summaries
phase) is reported apart, as the deployed run's wall time from submit to outcome.

``--cold`` runs Flower's plain ``flower-supernode`` instead of Consortia's launcher: a new
ClientApp process per message and Flower's 3 s polls (the state before warm nodes).
The deployed and in-process runs must give the same final metrics; the script checks it.

Usage::

    python benchmarks/deployment.py [--rounds 5] [--rows 10000] [--cold]

The last line reads ``deployment_s_per_round = X inprocess_s_per_round = Y``.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from consortia import ExperimentConfig
from consortia.data.sources import write_institution_files
from consortia.federation.engines.deployment import LocalFederation
from consortia.federation.engines.inprocess import run as run_inprocess
from consortia.logs import set_flower_verbosity
from consortia.verticals import get_vertical

INSTITUTIONS = 3


def hospital_files(folder: Path, rows: int, seed: int) -> list[Path]:
    return write_institution_files(get_vertical("healthcare").generate(INSTITUTIONS, rows, seed), "hospital", folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cold", action="store_true", help="Flower's plain SuperNode (a process per message)")
    args = parser.parse_args()
    set_flower_verbosity(False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still stops its processes

    with tempfile.TemporaryDirectory(prefix="consortia-bench-deploy-") as tmp:
        folder = Path(tmp)
        files = hospital_files(folder, args.rows, args.seed)
        config = ExperimentConfig.build(
            vertical="healthcare", rounds=args.rounds, seed=args.seed,
            data={"files": [str(p) for p in files]}, run_dir=str(folder / "deployed"),
        )  # fmt: skip
        started = time.perf_counter()
        with LocalFederation(files, folder / "federation", tls=True, node_auth=True, warm=not args.cold) as fed:
            up = time.perf_counter() - started
            submitted = time.perf_counter()
            deployed = fed.wait(fed.submit(config), folder / "deployed")
            run_wall = time.perf_counter() - submitted
        total_wall = time.perf_counter() - started

        t0 = time.perf_counter()
        reference = run_inprocess(config.model_copy(update={"run_dir": str(folder / "inprocess")}))
        inprocess_wall = time.perf_counter() - t0

    same = all(
        abs(deployed.per_institution[name][mode][key] - value) <= 1e-9
        for name, modes in reference.per_institution.items()
        for mode, metrics in modes.items()
        for key, value in metrics.items()
    )
    dep = [r.seconds for r in deployed.rounds]
    inp = [r.seconds for r in reference.rounds]
    mode = "cold (flower-supernode)" if args.cold else "warm (Consortia's launcher)"
    print(f"healthcare default, {INSTITUTIONS} institutions x {args.rows} rows, {args.rounds} rounds, TLS + node auth")
    print(f"SuperNodes: {mode}; same final metrics as in-process: {same}\n")
    print("| engine | s/round (mean) | s/round (median) | slowest round | run wall s | start-up s |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| deployment | {statistics.fmean(dep):.3f} | {statistics.median(dep):.3f} | {max(dep):.3f} "
          f"| {run_wall:.1f} | {up:.1f} (all: {total_wall:.1f}) |")  # fmt: skip
    print(f"| inprocess | {statistics.fmean(inp):.3f} | {statistics.median(inp):.3f} | {max(inp):.3f} "
          f"| {inprocess_wall:.1f} | - |")  # fmt: skip
    if not same:
        raise SystemExit("the deployed run's metrics differ from the in-process run's")
    print(f"deployment_s_per_round = {statistics.fmean(dep):.3f} inprocess_s_per_round = {statistics.fmean(inp):.3f}")


if __name__ == "__main__":
    main()
