"""Readable views of a federation and of a run: who has which data, and who gained.

The demo app and notebooks use these to show heterogeneity before training and to put a run's
comparison into one sentence. Nothing here trains; it only reads what ``load_federation`` and
``run_experiment`` return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.runs.results import MODE_TITLES, RunResult

#: metrics where a smaller value is better (everything else: larger is better)
_LOWER_IS_BETTER = ("brier", "loss", "cost", "error", "mae", "rmse", "ece")
_MISSING = "(missing)"


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in _LOWER_IS_BETTER)


def data_config(config: ExperimentConfig) -> ExperimentConfig:
    """The part of ``config`` that decides the data; training settings set to their defaults.

    Two configs that differ only in rounds, model or strategy share this, so a data view
    computed for one is valid for the other.
    """
    keep = ("vertical", "institutions", "rows", "partition", "test_fraction", "seed")
    return ExperimentConfig.build(**{key: getattr(config, key) for key in keep})


@dataclass
class DataOverview:
    """Each institution's rows as the run will see them (train and test, labelled by split)."""

    noun: str
    target: str
    features: dict[str, str]  # feature -> "numeric" | "binary" | "categorical"
    frame: pd.DataFrame  # all rows; columns: features, target, noun, "split"

    @property
    def table(self) -> pd.DataFrame:
        """One row per institution: size of each split and the positive-label rate."""
        grouped = self.frame.groupby(self.noun, sort=True)
        table = pd.DataFrame(
            {
                "train rows": grouped["split"].apply(lambda s: int((s == "train").sum())),
                "test rows": grouped["split"].apply(lambda s: int((s == "test").sum())),
                "label rate": grouped[self.target].mean(),
            }
        )
        return table.rename_axis(self.noun).reset_index()

    def distribution(self, feature: str, bins: int = 20) -> pd.DataFrame:
        """Share of each institution's rows per value (or per bin, on edges shared by all).

        Columns: institution noun, ``value`` (category or bin centre), ``share`` (0..1, each
        institution sums to 1 including missing values), ``kind``.
        """
        if feature not in self.features:
            raise KeyError(feature)
        kind = self.features[feature]
        column = self.frame[feature]
        if kind == "numeric" and column.notna().any():
            edges = np.histogram_bin_edges(column.dropna().to_numpy(dtype=float), bins=bins)
            centres = (edges[:-1] + edges[1:]) / 2
            parts = []
            for name, rows in self.frame.groupby(self.noun, sort=True):
                values = rows[feature].to_numpy(dtype=float)
                counts, _ = np.histogram(values[~np.isnan(values)], bins=edges)
                parts.append(pd.DataFrame({self.noun: name, "value": centres, "share": counts / max(len(values), 1)}))
            out = pd.concat(parts, ignore_index=True)
        else:
            labels = column.map(lambda v: _MISSING if _is_missing(v) else _label(v))
            out = (
                pd.crosstab(self.frame[self.noun], labels, normalize="index")
                .stack()
                .rename("share")
                .reset_index()
                .rename(columns={feature: "value", "col_0": "value"})
            )
            out["value"] = out["value"].astype(str)
        out["kind"] = "numeric" if kind == "numeric" else "categorical"
        return out

    def missing_rate(self, feature: str) -> pd.Series:
        """Share of missing values of ``feature`` at each institution."""
        return self.frame[feature].isna().groupby(self.frame[self.noun]).mean()


def data_overview(config: ExperimentConfig) -> DataOverview:
    """The data of ``config``'s federation, for plots and tables (no training)."""
    from consortia.data.consortium import load_federation
    from consortia.verticals import get_vertical

    vertical = get_vertical(config.vertical)
    federation = load_federation(config, vertical)
    schema = federation.schema
    noun = vertical.institution_noun
    parts = []
    for name, inst in federation.institutions.items():
        for split, rows in (("train", inst.train), ("test", inst.test)):
            part = rows[[*schema.feature_names, schema.target]].copy()
            part[noun] = name
            part["split"] = split
            parts.append(part)
    return DataOverview(
        noun=noun,
        target=schema.target,
        features={f.name: f.kind for f in schema.features},
        frame=pd.concat(parts, ignore_index=True),
    )


@dataclass
class Gains:
    """How each institution fared in the federation compared with training alone."""

    metric: str
    mode: str  # the federated mode compared with local-only
    table: pd.DataFrame  # institution, local-only, <mode>, gain (positive = better)
    sentence: str


def federation_gains(result: RunResult, mode: str = "federated_finetuned") -> Gains:
    """Gain of ``mode`` over local-only at each institution, and a sentence that says it."""
    metric = result.primary_metric
    sign = -1.0 if lower_is_better(metric) else 1.0
    noun = result.institution_noun
    title = MODE_TITLES[mode]
    rows = []
    for name, modes in result.per_institution.items():
        local = _number(modes.get("local_only", {}).get(metric))
        federated = _number(modes.get(mode, {}).get(metric))
        rows.append({noun: name, "local-only": local, title: federated, "gain": sign * (federated - local)})
    table = pd.DataFrame(rows)
    known = table.dropna(subset=["gain"])
    label = metric.upper() if len(metric) <= 6 else metric.replace("_", " ")
    if known.empty:
        return Gains(metric, mode, table, f"No {label} could be computed for local-only training.")
    winners = known[known["gain"] > 0]
    losers = known[known["gain"] < 0]
    parts = [
        f"{title.capitalize()} beat local-only training at {len(winners)} of {len(known)} {noun}s on "
        f"{label} (mean change {known['gain'].mean():+.4f}"
    ]
    if not winners.empty:
        best = winners.loc[winners["gain"].idxmax()]
        parts[-1] += f"; largest gain: {best[noun]}, {best['gain']:+.4f}"
    parts[-1] += ")."
    if len(losers) == 1:
        worst = losers.iloc[0]
        parts.append(f"{worst[noun]} did worse than alone ({worst['gain']:+.4f}).")
    elif len(losers) > 1:
        worst = losers.loc[losers["gain"].idxmin()]
        parts.append(f"{len(losers)} did worse than alone, {worst[noun]} the most ({worst['gain']:+.4f}).")
    pooled = result.summary["pooled"]
    federated, central = _number(pooled.get("federated")), _number(pooled.get("centralized"))
    if not (math.isnan(federated) or math.isnan(central)) and central:
        parts.append(
            f"On all test rows the federated model scored {federated:.4f} against {central:.4f} "
            f"for a model trained on pooled data ({federated / central:.1%})."
        )
    return Gains(metric, mode, table, " ".join(parts))


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
