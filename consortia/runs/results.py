"""RunResult: what a run produced, as JSON for scripts and as a table for people.

The JSON's top-level ``summary`` is a stable contract::

    {"metric": "auroc", "pooled": {"local_only_mean": .., "federated": ..,
                                   "federated_finetuned": .., "centralized": ..},
     "privacy": {"mechanism": "none" | "dp-client" | "dp-sample", "epsilon": float | None,
                 "delta": float | None, "aggregation": "plain"}}

``privacy.epsilon`` is what the run spent: the accountant's (client level) or the largest over
institutions (record level); None without DP or with adaptive clipping (not accounted).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from consortia.data.preprocessing import Preprocessor

MODES = ("local_only", "federated", "federated_finetuned", "centralized")
MODE_TITLES = {
    "local_only": "local-only",
    "federated": "federated",
    "federated_finetuned": "federated + fine-tuned",
    "centralized": "centralized",
}


#: how a round combines one metric over institutions (``RunResult.round_metric_aggregation``)
Aggregation = Literal["weighted_mean", "sum", "pooled_only"]
#: counts that add up over institutions whatever the vertical
COUNT_METRICS = ("num-examples",)
#: the key that weighs a weighted mean (Flower's ``weighted_by_key``)
WEIGHT_KEY = "num-examples"
#: a round's count of institutions asked to train that did not contribute (late or failed;
#: ``RoundRecord.dropped`` names them), in runs that tolerate drop-outs
DROPPED_KEY = "participation.dropped"


#: the keys of ``RunResult.summary["privacy"]`` (a stable contract, as ``summary`` is)
SUMMARY_PRIVACY_KEYS = ("mechanism", "epsilon", "delta", "aggregation")


def no_privacy() -> dict[str, Any]:
    """``RunResult.privacy`` of a run without differential privacy (plain, visible updates)."""
    return {"mechanism": "none", "epsilon": None, "delta": None, "aggregation": "plain"}


def metric_aggregation(
    names: Iterable[str], additive: Iterable[str] = (), pooled_only: Iterable[str] = ()
) -> dict[str, Aggregation]:
    """Metric -> how a round combines it: sums for what adds up (money, counts), nothing for what
    only means something on pooled rows (thresholds, ratios of sums), weighted means otherwise."""
    add, pooled = set(additive) | set(COUNT_METRICS), set(pooled_only)
    rules: dict[str, Aggregation] = {}
    for name in names:
        if name.startswith(("pooled.", "privacy.", "participation.")):  # computed by the server, not per institution
            continue
        rules[name] = "sum" if name in add else "pooled_only" if name in pooled else "weighted_mean"
    return rules


def rounds_aggregation(
    rounds: Iterable[RoundRecord], additive: Iterable[str] = (), pooled_only: Iterable[str] = ()
) -> dict[str, str]:
    """``RunResult.round_metric_aggregation`` of a run's round records (pooled-only metrics
    appear in them only as ``pooled.<name>``)."""
    names = {key for record in rounds for key in record.metrics}
    names |= {key.removeprefix("pooled.") for key in names}
    return dict(metric_aggregation(sorted(names), additive, pooled_only))


def aggregate_over_institutions(
    metrics: Sequence[Mapping[str, float]], weights: Sequence[float], rules: Mapping[str, Aggregation]
) -> dict[str, float]:
    """One round's metrics from every institution's: ``rules`` per key (weighted mean if unlisted).

    The weighted mean is Flower's ``aggregate_metricrecords`` arithmetic (same order, same
    float operations), so the metrics that were weighted means before keep their values.
    """
    total = sum(weights)
    factors = [w / total for w in weights]
    out: dict[str, float] = {}
    for record, factor in zip(metrics, factors, strict=True):
        for key, value in record.items():
            rule = rules.get(key, "weighted_mean")
            if rule == "pooled_only":
                continue
            term = float(value) if rule == "sum" else float(value) * factor
            out[key] = out[key] + term if key in out else term
    return out


@dataclass
class RoundRecord:
    """Global metrics after one round: each institution's metrics combined as
    ``RunResult.round_metric_aggregation`` says, plus ``pooled.*`` when scores are known."""

    round: int
    metrics: dict[str, float]
    seconds: float
    #: institutions asked to train this round that did not contribute: late for the deadline or failed
    dropped: list[str] = field(default_factory=list)


@dataclass
class FederatedOutcome:
    """What the ServerApp learned: rounds, per-institution metrics, the final model."""

    rounds: list[RoundRecord]
    per_institution: dict[str, dict[str, dict[str, float]]]  # name -> global|finetuned -> metrics
    pooled: dict[str, dict[str, float]]  # global|finetuned -> metrics on the union of test splits
    final_parameters: list[np.ndarray]
    preprocessor: Preprocessor
    institution_sizes: dict[str, dict[str, int]]
    seconds: float
    notes: list[str] = field(default_factory=list)  # what the server wants the reader to know (DP budget)
    #: under HE the server holds only this (base64 ciphertexts and the arrays' layout); an
    #: institution decrypts it into ``final_parameters`` (consortia.federation.secure.he.release_model)
    encrypted_model: dict[str, Any] | None = None
    #: the round kept by early stopping (``consortia.config.selection``): metric, best_round, rounds_run
    selection: dict[str, Any] | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["final_parameters"] = [
            {"dtype": str(a.dtype), "shape": list(a.shape), "values": a.ravel().tolist()} for a in self.final_parameters
        ]
        data["preprocessor"] = asdict(self.preprocessor)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> FederatedOutcome:
        data = json.loads(text)
        data["rounds"] = [RoundRecord(**r) for r in data["rounds"]]
        data["final_parameters"] = [
            np.asarray(p["values"], dtype=p["dtype"]).reshape(p["shape"]) for p in data["final_parameters"]
        ]
        data["preprocessor"] = Preprocessor(**data["preprocessor"])
        return cls(**data)


@dataclass
class RunResult:
    """A whole comparison run: config, per-round history, every mode's metrics, timings."""

    config: dict[str, Any]
    vertical: str
    primary_metric: str
    institution_noun: str
    rounds: list[RoundRecord]
    #: institution -> mode -> metric name -> value (each institution's own test split)
    per_institution: dict[str, dict[str, dict[str, float]]]
    #: mode -> metrics on the union of the test splits (local_only: mean over institutions)
    pooled: dict[str, dict[str, float]]
    institution_sizes: dict[str, dict[str, int]]
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    #: mode -> the size of its model: ``trees`` (tree learners) or ``epochs`` of training
    budget: dict[str, dict[str, float]] = field(default_factory=dict)
    #: round metric -> "weighted_mean" | "sum" | "pooled_only" (only as ``pooled.<name>``)
    round_metric_aggregation: dict[str, str] = field(default_factory=dict)
    #: the privacy mechanism and what it spent (``no_privacy()`` without one); ε per round is
    #: also each round's ``privacy.epsilon`` metric
    privacy: dict[str, Any] = field(default_factory=no_privacy)

    @property
    def summary(self) -> dict[str, Any]:
        m = self.primary_metric
        return {
            "metric": m,
            "pooled": {
                "local_only_mean": self.pooled["local_only"].get(m),
                "federated": self.pooled["federated"].get(m),
                "federated_finetuned": self.pooled["federated_finetuned"].get(m),
                "centralized": self.pooled["centralized"].get(m),
            },
            "privacy": {k: self.privacy.get(k) for k in SUMMARY_PRIVACY_KEYS},
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary
        return _finite(data)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    # -- tables ---------------------------------------------------------------------------------
    def table_rows(self, metric: str | None = None) -> list[dict[str, Any]]:
        """One row per institution plus a pooled row: the comparison people read."""
        metric = metric or self.primary_metric
        rows = []
        for name, modes in self.per_institution.items():
            row: dict[str, Any] = {self.institution_noun: name}
            row |= {MODE_TITLES[m]: modes.get(m, {}).get(metric) for m in MODES}
            rows.append(row)
        pooled: dict[str, Any] = {self.institution_noun: "pooled"}
        pooled |= {MODE_TITLES[m]: self.pooled.get(m, {}).get(metric) for m in MODES}
        rows.append(pooled)
        return rows

    def render_table(self, metric: str | None = None):  # -> rich.table.Table
        from rich.table import Table

        metric = metric or self.primary_metric
        table = Table(title=f"{self.vertical}: {metric.upper()} on each {self.institution_noun}'s test split")
        rows = self.table_rows(metric)
        for column in rows[0]:
            table.add_column(column, justify="left" if column == self.institution_noun else "right")
        for i, row in enumerate(rows):
            cells = [row[self.institution_noun]] + [_fmt(v) for k, v in row.items() if k != self.institution_noun]
            table.add_row(*cells, end_section=(i == len(rows) - 2))
        return table


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead so every parser can read the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
