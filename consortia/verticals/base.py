"""What a vertical is: a schema, a seeded generator, metrics and defaults. No Flower here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from consortia.datasets.schema import TabularSchema

MetricFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]
Generator = Callable[[int, int, int], pd.DataFrame]


@dataclass(frozen=True)
class Vertical:
    """An industry package: everything the core needs to federate its prediction task.

    ``generate(n_institutions, rows, seed)`` returns one frame with the schema's institution
    column; ``metrics(y, p)`` returns named scores where ``primary_metric`` is the headline.
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

    def model_params(self, model: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The vertical's defaults for ``model`` with the user's overrides on top."""
        return {**dict(self.model_defaults.get(model, {})), **dict(overrides or {})}
