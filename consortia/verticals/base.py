"""What a vertical is: a schema, a seeded generator, metrics and defaults. No Flower here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from consortia.data.schema import TabularSchema

#: ``metrics(y, p)``; verticals that declare ``metric_columns`` / ``tunes_on_train`` also get
#: ``frame=`` (those columns of the evaluated rows) / ``train=`` ((y, p) on the model's training rows)
MetricFn = Callable[..., dict[str, float]]
Generator = Callable[[int, int, int], pd.DataFrame]
TrainScores = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Vertical:
    """An industry package: everything the core needs to federate its prediction task.

    ``generate(n_institutions, rows, seed)`` returns one frame with the schema's institution
    column; ``metrics(y, p)`` returns named scores where ``primary_metric`` is the headline.
    The core calls ``evaluate``, which also hands ``metrics`` the evaluated rows' ``metric_columns``
    (money at stake ...) and the model's training scores (``tunes_on_train``) when declared.
    """

    name: str
    title: str
    description: str
    institution_noun: str  # "hospital", "bank", "factory"
    schema: TabularSchema
    generate: Generator
    metrics: MetricFn
    primary_metric: str
    split: Literal["stratified", "temporal"] = "stratified"
    default_rows: int = 10_000
    default_institutions: int = 5
    #: model name -> default model_params (imbalance handling, network size ...)
    model_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: columns of the evaluated rows that ``metrics`` needs beyond (y, p), e.g. transaction amounts
    metric_columns: tuple[str, ...] = ()
    #: ``metrics`` sets an operating point on the model's own training scores (never on test labels)
    tunes_on_train: bool = False
    #: metrics that add up over institutions (money saved): a round reports their sum, not a mean
    additive_metrics: tuple[str, ...] = ()
    #: metrics that neither add nor average (thresholds, ratios of sums): only the pooled value means something
    pooled_only_metrics: tuple[str, ...] = ()

    def evaluate(
        self,
        y: np.ndarray,
        p: np.ndarray,
        *,
        frame: pd.DataFrame | None = None,
        train: TrainScores | None = None,
    ) -> dict[str, float]:
        """``metrics`` with only the extras this vertical declared; the core always calls this.

        ``frame`` holds the evaluated rows (in the order of ``y``); columns it lacks (real data
        rarely has them all) are left out, and the metrics that need them report NaN.
        """
        extras: dict[str, Any] = {}
        if self.metric_columns:
            present = [c for c in self.metric_columns if frame is not None and c in frame.columns]
            if frame is None:
                extras["frame"] = None
            elif list(frame.columns) == present and frame.index.equals(pd.RangeIndex(len(frame))):
                extras["frame"] = frame  # already that view: pandas' column lookup costs ~1 ms a call
            else:
                extras["frame"] = frame[present].reset_index(drop=True)
        if self.tunes_on_train:
            extras["train"] = train
        return self.metrics(y, p, **extras)

    def model_params(self, model: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The vertical's defaults for ``model`` with the user's overrides on top."""
        return {**dict(self.model_defaults.get(model, {})), **dict(overrides or {})}
