"""What does secure aggregation cost? Plain FedAvg vs SecAgg+ vs HE, per round, per institution.

The same federated run (healthcare, logistic or MLP, in-process engine) three ways: ``plain``,
``secagg+`` (Flower's SecAgg+ workflow and mod: 4 messages per institution and round) and ``he``
(CKKS with TenSEAL: the update encrypted, ciphertexts added at the server). For each: the median
seconds per round (training + aggregation + evaluation, as the run records it) and the bytes each
institution sends per round (its train-stage replies, serialized as on Flower's wire), at 3, 5 and
20 institutions. The summary and histogram secure sums happen once per run and are not in the
per-round figures; the run's total seconds are shown beside.

Usage::

    python benchmarks/secure_aggregation.py [--rounds 5] [--institutions 3,5,20] [--models logistic,mlp]

The last line reads ``secagg/plain = X.XX he/plain = Y.YY`` (seconds per round, the median ratio
over every row of the table).
"""

from __future__ import annotations

import argparse
import statistics
import time

from flwr.app import Context, Message
from flwr.common.serde import message_to_proto

from consortia.config import ExperimentConfig
from consortia.federation.client import build_client_app
from consortia.federation.engines import inprocess
from consortia.logs import set_flower_verbosity

AGGREGATIONS = ("plain", "secagg+", "he")


class ByteCounter:
    """The real ClientApp; adds up the serialized size of every train-stage reply per node."""

    def __init__(self) -> None:
        self.app = build_client_app()
        self.train_bytes = 0
        self.train_replies = 0

    def __call__(self, message: Message, context: Context) -> Message:
        secure_sum = message.metadata.group_id == "0"  # the once-per-run secure sums run as SecAgg+ round 0
        reply = self.app(message, context)
        if message.metadata.message_type == "train" and not secure_sum and reply.has_content():
            self.train_bytes += message_to_proto(reply).ByteSize()
            self.train_replies += 1
        return reply


def measure(aggregation: str, model: str, institutions: int, rounds: int, rows: int) -> dict[str, float]:
    config = ExperimentConfig.build(
        vertical="healthcare", institutions=institutions, rows=rows, rounds=rounds, model=model, seed=7,
        finetune_epochs=1, privacy={"aggregation": aggregation},
    )  # fmt: skip
    counter = ByteCounter()
    started = time.perf_counter()
    outcome = inprocess.run(config, client_app=counter)
    total = time.perf_counter() - started
    per_round = statistics.median(r.seconds for r in outcome.rounds[1:] or outcome.rounds)  # round 1 warms caches
    return {
        "s_per_round": per_round,
        "kb_per_institution_round": counter.train_bytes / institutions / rounds / 1024,
        "total_s": total,
        "auroc": outcome.pooled["global"]["auroc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--institutions", default="3,5,20")
    parser.add_argument("--models", default="logistic,mlp")
    parser.add_argument("--rows-per-institution", type=int, default=2000)
    args = parser.parse_args()
    set_flower_verbosity(False)
    print(
        "| model | institutions | aggregation | s / round | x plain | KB sent / institution / round | run s | "
        "pooled AUROC |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ratios: dict[str, list[float]] = {"secagg+": [], "he": []}
    for model in args.models.split(","):
        for aggregation in AGGREGATIONS:  # warm-up (imports, key generation, caches): not measured
            measure(aggregation, model, 3, 2, 3 * 500)
        for n in (int(v) for v in args.institutions.split(",")):
            results = {a: measure(a, model, n, args.rounds, n * args.rows_per_institution) for a in AGGREGATIONS}
            base = results["plain"]["s_per_round"]
            for aggregation, r in results.items():
                ratio = r["s_per_round"] / base
                if aggregation != "plain":
                    ratios[aggregation].append(ratio)
                print(
                    f"| {model} | {n} | {aggregation} | {r['s_per_round']:.3f} | {ratio:.2f} | "
                    f"{r['kb_per_institution_round']:.1f} | {r['total_s']:.1f} | {r['auroc']:.4f} |",
                    flush=True,
                )
    print()
    print(f"secagg/plain = {statistics.median(ratios['secagg+']):.2f} he/plain = {statistics.median(ratios['he']):.2f}")


if __name__ == "__main__":
    main()
