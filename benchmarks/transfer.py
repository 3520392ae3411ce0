"""Transfer to a new institution: does the consortium's model beat training alone with 4x the labels?

Per vertical: a consortium (the vertical's default rows and institutions unless ``--rows`` /
``--institutions`` set them; ``--model``, default logistic; FedAvg, 20 rounds) is trained with
its run folder, then ``--newcomers`` new institutions are generated with the vertical's own
generator and other seeds (one institution each, as many rows as an average member; a fresh
profile from the population the members were drawn from). For each newcomer and ``--seeds``
seeds, ``consortia.experiment.transfer.transfer_curve`` draws the label budgets (stratified,
nested), fine-tunes the consortium's model (anchored to it, the API's default) and trains the
same learner alone from scratch, and scores both on the newcomer's held-out rows with the
vertical's primary metric. The table gives mean ± std over newcomers x seeds; the row "0" is the
consortium's model as it is. Usage::

    python benchmarks/transfer.py [--verticals healthcare,finance,manufacturing] [--model mlp]
                                  [--newcomers 3] [--seeds 3] [--prior 20] [--epochs N] [--png FILE]

The PNG is the first vertical's curve. The last line reads
``labels50_consortium = X labels200_alone = Y`` (the first vertical's means).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from consortia import ExperimentConfig
from consortia.experiment.recorded import run_recorded
from consortia.experiment.transfer import (
    ConsortiumModel,
    TransferPoint,
    TransferResult,
    TransferSettings,
    newcomer_frame,
    plot_curve,
    transfer_curve,
)
from consortia.logs import set_flower_verbosity
from consortia.verticals import VERTICALS, get_vertical

NEWCOMER_SEED = 10_000


def bench_vertical(name: str, args: argparse.Namespace, workdir: Path) -> TransferResult:
    """Every newcomer's curve merged into one result (seed index = newcomer x seeds + seed)."""
    spec = get_vertical(name)
    institutions = args.institutions or spec.default_institutions
    rows = args.rows or spec.default_rows
    config = ExperimentConfig.build(
        vertical=name, institutions=institutions, rows=rows, model=args.model, seed=args.seed,
        run_dir=str(workdir / f"{name}-run"),
    )  # fmt: skip
    run_recorded(config)
    model = ConsortiumModel.from_run(config.run_dir or "")
    settings = TransferSettings(
        labels=tuple(int(n) for n in args.labels.split(",")), seeds=args.seeds, method=args.method,
        prior_strength=args.prior, finetune_epochs=args.epochs,
    )  # fmt: skip
    merged: TransferResult | None = None
    for k in range(args.newcomers):
        path = workdir / f"{name}-newcomer-{k}.csv"
        newcomer_frame(spec, rows // institutions, NEWCOMER_SEED + k).to_csv(path, index=False)
        result = transfer_curve(model, path, settings)
        shifted = [dataclasses.replace(p, seed=p.seed + k * args.seeds) for p in result.points]
        if merged is None:
            merged = dataclasses.replace(result, points=shifted, seeds=args.seeds * args.newcomers)
        else:
            merged.points += shifted
            merged.as_is += result.as_is
            merged.test_split += result.test_split
            merged.seconds += result.seconds
    assert merged is not None
    return merged


def table(name: str, result: TransferResult, newcomers: int) -> str:
    title = (
        f"### {name}: {result.metric}, {result.model}, {newcomers} new institutions x "
        f"{result.seeds // newcomers} seeds ({result.rows} rows each, {result.test_rows} held out)"
    )
    return f"{title}\n\n{result.table_markdown()}"


def beats(points: list[TransferPoint], result: TransferResult) -> str:
    """In how many (newcomer, seed) draws the consortium start at 50 beats alone at 200."""
    at50 = {p.seed: p.consortium for p in points if p.labels == 50}
    at200 = {p.seed: p.alone for p in points if p.labels == 200}
    wins = sum(at50[s] > at200[s] for s in at50 if s in at200)
    return f"consortium start at 50 labels > alone at 200 in {wins} of {len(at50)} draws"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verticals", default="healthcare")
    parser.add_argument("--model", default="logistic")
    parser.add_argument("--method", default="finetune", choices=["finetune", "head"])
    parser.add_argument("--rows", type=int, default=None, help="consortium rows (default: the vertical's)")
    parser.add_argument("--institutions", type=int, default=None)
    parser.add_argument("--labels", default="10,25,50,100,200")
    parser.add_argument("--prior", type=float, default=20.0, help="fine-tuning's pull to the consortium model")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: the run's)")
    parser.add_argument("--newcomers", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--png", default="docs/images/transfer_curve.png")
    args = parser.parse_args()
    set_flower_verbosity(False)
    names = args.verticals.split(",")
    missing = [v for v in names if v not in VERTICALS]
    if missing:
        parser.error(f"unknown vertical(s) {', '.join(missing)}; registered: {', '.join(VERTICALS.names())}")
    first: TransferResult | None = None
    with tempfile.TemporaryDirectory(prefix="transfer-bench-") as tmp:
        for name in names:
            started = time.perf_counter()
            result = bench_vertical(name, args, Path(tmp))
            print(table(name, result, args.newcomers), flush=True)
            if 50 in result.labels and 200 in result.labels:
                print(f"\n{beats(result.points, result)}", flush=True)
            print(f"\n({time.perf_counter() - started:.0f} s with the consortium's run)\n", flush=True)
            first = first or result
    assert first is not None
    if args.png:
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        plot_curve(first, args.png)
        print(f"curve -> {args.png}")

    def mean(mode: str, labels: int) -> float:
        return first.mean(mode, labels) if labels in first.labels else float("nan")  # type: ignore[union-attr, arg-type]

    print(f"labels50_consortium = {mean('consortium', 50):.4f} labels200_alone = {mean('alone', 200):.4f}")


if __name__ == "__main__":
    main()
