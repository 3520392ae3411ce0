"""The secured protocol: the server learns sums, never an institution's update or summary.

``privacy.aggregation`` picks how model updates are combined:

* ``secagg+``: Flower's SecAgg+ workflow and mod (``secagg``): masked vectors, the server unmasks
  only their sum; one institution dropping out mid-round is survived;
* ``he``: CKKS homomorphic encryption with TenSEAL (``he``): the server adds ciphertexts and keeps
  the global model encrypted; institutions decrypt.

Under either, the additive totals the server needs (the preprocessing summaries, the final
pooled-metric histograms) go through SecAgg+ secure sums (``secure_summary``,
``secure_pooled_histograms``): an HE total could only be read by a key holder, who cannot tell a
sum from one institution's ciphertext; SecAgg+ gives the server exactly the total.
``check_secure`` refuses, before any node is asked anything, what cannot be secured.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.serverapp import Grid

from consortia.config import ExperimentConfig
from consortia.data.preprocessing import FeatureSummary
from consortia.errors import ConfigError
from consortia.evaluation.pooled import ScoreHistogram
from consortia.federation.secure.secagg import SECURE_SUM, SecAggPlusGrid, secure_sum
from consortia.federation.strategies import train_sample_size
from consortia.privacy.dp import EQUAL_WEIGHT_KEY
from consortia.privacy.secure_sum import (
    HISTOGRAM_VALUE_BITS,
    VALUE_BITS,
    SummaryLayout,
    from_limbs,
    histogram_from_integers,
    histogram_size,
    limb_bits,
    summary_from_integers,
)

#: strategies whose aggregate is the weighted mean of the updates (then, for some, a server-side
#: optimiser step on that mean): SecAgg+ gives them all they need
MEAN_BASED = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm")
#: under HE the server cannot even take an optimiser step: the mean stays encrypted
HE_STRATEGIES = ("fedavg", "fedprox")
#: fewer institutions and a sum tells each one the other's update (subtract your own)
MIN_INSTITUTIONS = 3


def check_secure(config: ExperimentConfig) -> None:
    """One line saying why, for what secure aggregation cannot protect or would silently break."""
    aggregation = config.privacy.aggregation
    if aggregation == "plain":
        return
    name = "SecAgg+" if aggregation == "secagg+" else "homomorphic encryption"
    if config.model == "xgboost":
        if config.xgb_mode == "histogram":
            raise ConfigError(
                f"histogram XGBoost under {name}: the server (XGBoost's federated communicator) would see every "
                "institution's gradient histograms per tree node in the clear; secure aggregation of them is not "
                "built, so it is refused: use --xgb-mode bagging with --secure-agg plain, or a linear/MLP model"
            )
        raise ConfigError(
            f"XGBoost boosters travel as serialized bytes: they cannot be masked or encrypted for {name}; "
            "use --model logistic, logistic_torch or mlp"
        )
    allowed = MEAN_BASED if aggregation == "secagg+" else HE_STRATEGIES
    if config.strategy not in allowed:
        raise ConfigError(
            f"strategy '{config.strategy}' needs each institution's individual update, which {name} hides from the "
            f"server by design; under --secure-agg {aggregation} choose one of: {', '.join(allowed)}"
        )
    sampled = train_sample_size(config.institutions, config.fraction_train, config.min_institutions)
    if min(config.institutions, sampled) < MIN_INSTITUTIONS:
        raise ConfigError(
            f"secure aggregation needs at least {MIN_INSTITUTIONS} institutions in every round (this run trains "
            f"{min(config.institutions, sampled)}): with two, each learns the other's update from the sum"
        )
    if aggregation == "he":
        if config.privacy.mechanism == "dp-client":
            raise ConfigError(
                "client-level DP adds its noise to the aggregate at the server, which under HE cannot read it: "
                "use --secure-agg secagg+ with --dp client (clipped at the institutions, noised after unmasking)"
            )
        if config.resume:
            raise ConfigError("--resume under HE: checkpoints would need the encrypted model; not supported yet")
        if config.min_institutions is not None and config.min_institutions < config.institutions:
            raise ConfigError(
                "HE sets every institution's weight before the round, so a drop-out makes the sum wrong: "
                "use --secure-agg secagg+ to survive drop-outs"
            )


def round_grid(grid: Grid, config: ExperimentConfig, train_sizes: Mapping[str, int], seed: int) -> Grid:
    """The Grid the strategy's rounds run on: SecAgg+ for every train round under ``secagg+``."""
    if config.privacy.aggregation != "secagg+":
        return grid
    equal = config.privacy.mechanism == "dp-client"  # Flower's accounted DP needs equal weights
    return SecAggPlusGrid(
        grid,
        weight_key=EQUAL_WEIGHT_KEY if equal else "num-examples",
        max_weight=1.0 if equal else float(max(train_sizes.values())),
        clipping_range=config.privacy.secagg_clipping_range,
        reconstruction=config.privacy.secagg_reconstruction,
        seed=seed,
    )


def secure_summary(
    grid: Grid, node_ids: list[int], layouts: list[FeatureSummary], config: ExperimentConfig, timeout: float
) -> FeatureSummary:
    """The consortium's summary (counts, sums, sums of squares, category counts), summed by SecAgg+."""
    layout = SummaryLayout.union(layouts)
    bits = limb_bits(len(node_ids))
    length = _limbs_length(layout.size, bits)
    request = {SECURE_SUM: "summary", "layout": layout.to_json(), "limb-bits": bits}
    totals = secure_sum(grid, node_ids, length, request, reconstruction=config.privacy.secagg_reconstruction,
                        timeout=timeout, seed=config.seed)  # fmt: skip
    return summary_from_integers(from_limbs(totals, bits, VALUE_BITS), layout)


def secure_pooled_histograms(
    grid: Grid, node_ids: list[int], columns: list[list[str]], config: ExperimentConfig, timeout: float
) -> list[ScoreHistogram]:
    """The consortium's score histograms of the final models, summed by SecAgg+; ``columns[i]``: the
    metric columns histogram i carries (in the order the nodes stored them, ``node.keep_histograms``)."""
    bits = limb_bits(len(node_ids))
    sizes = [histogram_size(names) for names in columns]
    length = _limbs_length(sum(sizes), bits, HISTOGRAM_VALUE_BITS)
    request = {SECURE_SUM: "histograms", "limb-bits": bits}
    totals = secure_sum(grid, node_ids, length, request, reconstruction=config.privacy.secagg_reconstruction,
                        timeout=timeout, seed=config.seed + 1)  # fmt: skip
    integers = from_limbs(totals, bits, HISTOGRAM_VALUE_BITS)
    out, start = [], 0
    for names, size in zip(columns, sizes, strict=True):
        out.append(histogram_from_integers(integers[start : start + size], names))
        start += size
    return out


def _limbs_length(values: int, bits: int, value_bits: int = VALUE_BITS) -> int:
    return values * -(-value_bits // bits)
