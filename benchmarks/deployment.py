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
``--logs DIR`` keeps the federation's logs there and prints where an exchange's time goes,
from the timing lines the ServerApp (one per exchange), each SuperNode and each warm ClientApp
process (one per message) write, and the CPU seconds each process used during the run.
The machine's load averages (``/proc/loadavg``) are printed before and after: the processes
share its cores with whatever else runs.

Usage::

    python benchmarks/deployment.py [--rounds 5] [--rows 10000] [--cold] [--logs DIR]

The last line reads ``deployment_s_per_round = X inprocess_s_per_round = Y``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from consortia import ExperimentConfig
from consortia.data.sources import write_institution_files
from consortia.federation.engines.deployment import CONNECTION, LocalFederation
from consortia.federation.engines.deployment.prompt import EXCHANGE_LOG, NODE_LOG
from consortia.federation.engines.inprocess import run as run_inprocess
from consortia.logs import set_flower_verbosity
from consortia.verticals import get_vertical

INSTITUTIONS = 3


def hospital_files(folder: Path, rows: int, seed: int) -> list[Path]:
    return write_institution_files(get_vertical("healthcare").generate(INSTITUTIONS, rows, seed), "hospital", folder)


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").is_file() else "?"


# -- --logs: where the time goes -------------------------------------------------------------------
EXCHANGE = re.compile(rf"{EXCHANGE_LOG} (\S+): (\d+) pushed in ([\d.]+) s, replies in at ([\d. ]*) s \((\d+) polls\)")
RECEIVING = re.compile(r"Receiving: (\S+) message")
NODE = re.compile(rf"{NODE_LOG}: message in ([\d.]+) s, reply in ([\d.?]+) s later, sent ([\d.?]+) s later")
TASK = re.compile(r"ClientApp task completed in ([\d.]+) s \(pull ([\d.]+) s, app ([\d.]+) s, push ([\d.]+) s\)")


def cpu_seconds(root_pids: list[int]) -> dict[int, tuple[float, str]]:
    """CPU seconds (user + system) so far of ``root_pids`` and their descendants, with a short name."""
    hz, table = os.sysconf("SC_CLK_TCK"), {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text, argv = stat.read_text(), (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        name = next((a.decode() for a in argv if b"flower-" in a or b"flwr-" in a or b"deployment." in a), "?")
        seconds = (int(fields[11]) + int(fields[12])) / hz
        table[int(stat.parent.name)] = (int(fields[1]), seconds, name.rsplit("/", 1)[-1])
    ours, stack = set(), list(root_pids)
    while stack:
        pid = stack.pop()
        if pid not in ours:
            ours.add(pid)
            stack += [child for child, (parent, _, _) in table.items() if parent == pid]
    return {pid: table[pid][1:] for pid in ours if pid in table}


def breakdown(server_log: str, node_logs: list[Path], cpu: dict[str, float]) -> None:
    exchanges: dict[str, list[tuple[float, float, float, int]]] = defaultdict(list)
    for kind, _, pushed, arrived, polls in EXCHANGE.findall(server_log):
        times = [float(t) for t in arrived.split()] or [float("nan")]
        exchanges[kind].append((float(pushed), times[0], times[-1], int(polls)))
    print("\n| exchange (ServerApp) | n | push s | first reply s | last reply s | polls |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, rows in exchanges.items():
        means = [statistics.fmean(col) for col in zip(*rows, strict=True)]
        print(f"| {kind} | {len(rows)} | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | {means[3]:.1f} |")
    nodes: dict[str, list[list[float]]] = defaultdict(list)
    tasks: dict[str, list[list[float]]] = defaultdict(list)
    for path in node_logs:  # a node's log holds its own lines and its warm ClientApp process' lines
        kind = "?"
        for line in path.read_text(errors="replace").splitlines():
            if m := RECEIVING.search(line):
                kind = m.group(1)
            elif m := NODE.search(line):
                nodes[kind].append([float(v) if v != "?" else math.nan for v in m.groups()])
            elif m := TASK.search(line):
                tasks[kind].append([float(v) for v in m.groups()])
    print("\n| message (SuperNode) | n | download s | reply ready s | upload s | worker task s | pull | app | push |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in nodes.keys() | tasks.keys():
        columns = [*zip(*nodes[kind], strict=True)] or [[]] * 3
        columns += [*zip(*tasks[kind], strict=True)] or [[]] * 4
        means = [statistics.fmean(known) if (known := [v for v in col if not math.isnan(v)]) else math.nan
                 for col in columns]  # fmt: skip
        print(f"| {kind} | {len(nodes[kind])} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    print("\n| process | CPU s during the run |")
    print("|---|---:|")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {seconds:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cold", action="store_true", help="Flower's plain SuperNode (a process per message)")
    parser.add_argument("--logs", type=Path, default=None, help="keep the logs here; print where the time goes")
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
        load_before = load()
        started = time.perf_counter()
        with LocalFederation(files, folder / "federation", tls=True, node_auth=True, warm=not args.cold) as fed:
            up = time.perf_counter() - started
            roots = [p.popen.pid for p in fed.processes]
            cpu_before = cpu_seconds(roots)
            submitted = time.perf_counter()
            run_id = fed.submit(config)
            deployed = fed.wait(run_id, folder / "deployed")
            run_wall = time.perf_counter() - submitted
            cpu_after = cpu_seconds(roots)
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                server_log = fed.flwr("log", run_id, CONNECTION, "--show").stdout
                (args.logs / "serverapp.log").write_text(server_log)
        total_wall = time.perf_counter() - started
        load_after = load()
        if args.logs is not None:
            for log in (folder / "federation" / "logs").glob("*.log"):
                shutil.copy(log, args.logs / log.name)
            cpu: dict[str, float] = defaultdict(float)
            for pid, (seconds, name) in cpu_after.items():
                cpu[name] += seconds - cpu_before.get(pid, (0.0, name))[0]

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
    print(f"SuperNodes: {mode}; same final metrics as in-process: {same}")
    print(f"load averages (1, 5, 15 min) before: {load_before}, after the deployed run: {load_after}\n")
    print("| engine | s/round (mean) | s/round (median) | slowest round | run wall s | start-up s |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| deployment | {statistics.fmean(dep):.3f} | {statistics.median(dep):.3f} | {max(dep):.3f} "
          f"| {run_wall:.1f} | {up:.1f} (all: {total_wall:.1f}) |")  # fmt: skip
    print(f"| inprocess | {statistics.fmean(inp):.3f} | {statistics.median(inp):.3f} | {max(inp):.3f} "
          f"| {inprocess_wall:.1f} | - |")  # fmt: skip
    if args.logs is not None:
        breakdown(server_log, sorted(args.logs.glob("node-*.log")), cpu)
    if not same:
        raise SystemExit("the deployed run's metrics differ from the in-process run's")
    print(f"deployment_s_per_round = {statistics.fmean(dep):.3f} inprocess_s_per_round = {statistics.fmean(inp):.3f}")


if __name__ == "__main__":
    main()
