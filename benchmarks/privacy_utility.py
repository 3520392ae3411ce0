"""Privacy-utility trade-off: the federated model's quality and attackability against ε.

Per vertical (healthcare, finance, manufacturing) and per mechanism, record level (``dp-sample``,
DP-SGD in each institution) and client level (``dp-client``, DP-FedAvg), for ε in
{0.5, 1, 2, 4, 8, ∞} (δ = 1e-5; ∞ = no DP, one run shared by both mechanisms):

* the pooled primary metric of the federated (global) model on the union of the test splits;
* its ratio to the NON-private centralized model of the same run (the baselines are always trained
  without privacy);
* the membership-inference audit of the run folder (``consortia.privacy.audit.audit_run``, with
  ``--max-rows`` rows per institution and ``--shadows`` shadows): the loss-threshold attack's pooled
  AUROC against the global model (0.5 = chance).

Sizes: each vertical's default rows and institutions (healthcare 10,000 / 5, finance 100,000 / 5,
manufacturing 20,000 / 5) unless ``--rows`` / ``--institutions`` set them for every vertical;
``--rounds`` rounds (default 10), model ``--model`` (default ``logistic_torch``). ``--client-sweep
5,20,50`` adds healthcare client-level runs at ε = ``--sweep-epsilon`` with that many institutions
(rows per institution kept), since client-level noise shrinks only with institutions.
DP noise is drawn from the OS's entropy (the default), so numbers vary slightly between runs.

Prints a markdown table, writes a PNG chart (``--png``, metric vs ε per mechanism per vertical) and
the rows as JSON (``--json``, default ``runs/privacy_utility.json``: the demo shows them after a DP
run). ``--quick``: healthcare only, ε in {1, 4, ∞}, 5 rounds. Usage::

    python benchmarks/privacy_utility.py [--quick] [--rows N] [--institutions N] [--verticals healthcare]

The last line reads ``healthcare_sample_eps4_ratio = R client_eps4_ratio = C attack_auroc_max = A``
(healthcare at ε = 4; the attack maximum over every DP run; nan where not run).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from consortia import ExperimentConfig
from consortia.experiment.recorded import run_recorded
from consortia.privacy.audit import audit_run
from consortia.verticals import get_vertical

VERTICALS = ("healthcare", "finance", "manufacturing")
EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
MECHANISMS = {"dp-sample": "record (dp-sample)", "dp-client": "client (dp-client)"}
DELTA = 1e-5


def measure(
    vertical: str, mechanism: str, epsilon: float, args: argparse.Namespace, work: Path, **sizes: int
) -> dict[str, Any]:
    """One recorded run and its audit: metric, ratio to centralized, ε spent, attack AUROCs."""
    spec = get_vertical(vertical)
    institutions = sizes.get("institutions") or args.institutions or spec.default_institutions
    rows = sizes.get("rows") or args.rows or spec.default_rows
    private = math.isfinite(epsilon)
    privacy = {"mechanism": mechanism, "epsilon": epsilon, "delta": DELTA} if private else {}
    run_dir = work / f"{vertical}-{mechanism if private else 'none'}-{epsilon:g}-{institutions}"
    started = time.perf_counter()
    config = ExperimentConfig.build(
        vertical=vertical, institutions=institutions, rows=rows, rounds=args.rounds, model=args.model,
        seed=args.seed, privacy=privacy, run_dir=str(run_dir),
    )  # fmt: skip
    result, _ = run_recorded(config)
    trained = time.perf_counter() - started
    audit = audit_run(run_dir, shadows=args.shadows, max_rows=args.max_rows).to_dict()
    pooled = result.summary["pooled"]
    return {
        "vertical": vertical, "mechanism": mechanism if private else "none", "epsilon": epsilon,
        "institutions": institutions, "rows": rows, "metric": result.primary_metric,
        "federated": pooled["federated"], "centralized": pooled["centralized"],
        "ratio": pooled["federated"] / pooled["centralized"],
        "epsilon_spent": result.privacy.get("epsilon"),
        "attack_loss_auroc": audit["attacks"]["loss_threshold"]["auroc"],
        "attack_lira_auroc": audit["attacks"]["lira"]["auroc"],
        "train_s": trained, "audit_s": audit["seconds"],
    }  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table, one line per run (∞ = no DP)."""
    head = (
        "| vertical | mechanism | institutions | ε target | ε spent | metric | federated | centralized (no DP) "
        "| ratio | attack AUROC (loss) | attack AUROC (LiRA) |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        target = "∞" if not math.isfinite(r["epsilon"]) else f"{r['epsilon']:g}"
        spent = "–" if r["epsilon_spent"] is None else f"{r['epsilon_spent']:.2f}"
        lines.append(
            f"| {r['vertical']} | {r['mechanism']} | {r['institutions']} | {target} | {spent} | {r['metric']} "
            f"| {r['federated']:.4f} | {r['centralized']:.4f} | {r['ratio']:.3f} | {r['attack_loss_auroc']:.3f} "
            f"| {r['attack_lira_auroc']:.3f} |"
        )
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path, epsilons: tuple[float, ...]) -> None:
    """Metric vs ε per mechanism, one panel per vertical; ∞ drawn right of the largest ε."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [e for e in epsilons if math.isfinite(e)]
    inf_x = max(finite) * 2.5 if finite else 1.0
    verticals = list(dict.fromkeys(r["vertical"] for r in rows))
    fig, axes = plt.subplots(1, len(verticals), figsize=(5 * len(verticals), 4), squeeze=False)
    for ax, vertical in zip(axes[0], verticals, strict=True):
        mine = [r for r in rows if r["vertical"] == vertical and not r.get("sweep")]
        baseline = next((r for r in mine if r["mechanism"] == "none"), None)
        for mechanism, label in MECHANISMS.items():
            points = sorted(
                [(r["epsilon"], r["federated"]) for r in mine if r["mechanism"] == mechanism]
                + ([(inf_x, baseline["federated"])] if baseline else [])
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
        if mine:
            ax.axhline(mine[0]["centralized"], linestyle="--", color="grey", label="centralized (no DP)")
            ax.set_ylabel(mine[0]["metric"])
        ax.set_xscale("log")
        ax.set_xticks([*finite, inf_x], [f"{e:g}" for e in finite] + ["∞"])
        ax.minorticks_off()
        ax.set_xlabel("ε (δ = 1e-5)")
        ax.set_title(f"{vertical}: federated model vs ε")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_line(rows: list[dict[str, Any]]) -> str:
    """The machine-readable last line: healthcare ratios at ε = 4 and the largest attack AUROC on DP runs."""

    def ratio(mechanism: str) -> float:
        found = [
            r["ratio"]
            for r in rows
            if (r["vertical"], r["mechanism"], r["epsilon"]) == ("healthcare", mechanism, 4) and not r.get("sweep")
        ]
        return found[0] if found else math.nan

    attacks = [r["attack_loss_auroc"] for r in rows if r["mechanism"] != "none"]
    return (
        f"healthcare_sample_eps4_ratio = {ratio('dp-sample'):.4f} client_eps4_ratio = {ratio('dp-client'):.4f} "
        f"attack_auroc_max = {max(attacks) if attacks else math.nan:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verticals", default=",".join(VERTICALS))
    parser.add_argument("--rows", type=int, default=None, help="rows of every vertical (default: its own)")
    parser.add_argument("--institutions", type=int, default=None, help="institutions (default: the vertical's)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--model", default="logistic_torch")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-rows", type=int, default=300, help="audit: rows attacked per institution")
    parser.add_argument("--shadows", type=int, default=2, help="audit: LiRA shadow models per institution")
    parser.add_argument("--client-sweep", default="", help="healthcare dp-client institution counts, e.g. 5,20,50")
    parser.add_argument("--sweep-epsilon", type=float, default=4.0)
    parser.add_argument("--png", type=Path, default=Path("privacy_utility.png"))
    parser.add_argument("--json", type=Path, default=Path("runs/privacy_utility.json"), help="read by the demo")
    parser.add_argument("--quick", action="store_true", help="healthcare only, ε in {1, 4, ∞}, 5 rounds")
    args = parser.parse_args()
    verticals = [v.strip() for v in args.verticals.split(",") if v.strip()]
    epsilons: tuple[float, ...] = EPSILONS
    if args.quick:
        verticals, epsilons, args.rounds = ["healthcare"], (1.0, 4.0, math.inf), min(args.rounds, 5)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="privacy-utility-") as tmp:
        work = Path(tmp)
        for vertical in verticals:
            for epsilon in epsilons:
                for mechanism in MECHANISMS if math.isfinite(epsilon) else ["none"]:
                    rows.append(measure(vertical, mechanism, epsilon, args, work))
                    print(markdown(rows[-1:]).splitlines()[-1], flush=True)
        spec = get_vertical("healthcare")
        per_institution = (args.rows or spec.default_rows) // (args.institutions or spec.default_institutions)
        for count in [int(c) for c in args.client_sweep.split(",") if c.strip()]:  # its centralized: no DP
            row = measure("healthcare", "dp-client", args.sweep_epsilon, args, work, institutions=count,
                          rows=count * per_institution)  # fmt: skip
            rows.append({**row, "sweep": True})
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    seconds = time.perf_counter() - started
    print(f"\n{args.model}, {args.rounds} rounds, δ = {DELTA:g}, audit on {args.max_rows} rows per institution; "
          f"{seconds:.0f} s in all\n")  # fmt: skip
    print(markdown(rows))
    chart(rows, args.png, epsilons)
    print(f"\nchart written to {args.png}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        finite = [{**r, "epsilon": r["epsilon"] if math.isfinite(r["epsilon"]) else "inf"} for r in rows]
        args.json.write_text(json.dumps({"seconds": seconds, "rows": finite}, indent=2) + "\n")
    print(summary_line(rows))


if __name__ == "__main__":
    main()
