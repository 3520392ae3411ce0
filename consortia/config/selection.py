"""Model selection without pooling: how many rounds, chosen by federated validation.

Each institution holds out a stratified ``validation_fraction`` of its own training rows (never
trained on, never sent). Every round it scores the new global model on them, and the server
combines the institutions' validation metric (the vertical's primary metric, a mean weighted by
validation rows: the same rule whatever the aggregation protocol, since evaluation metrics travel
in the clear in all of them). The run keeps the global model of the best round and stops once
``patience`` rounds brought no improvement larger than ``min_delta``: ``rounds`` becomes a
maximum, and the default needs no per-dataset tuning of it (an MLP run given no ``rounds`` may
train up to 100: ``SELECTED_MAX_ROUNDS``). With ``learning_rates`` the server
first tries each rate for ``search_rounds`` rounds from the same starting model and trains the run
with the one whose best validation score is highest (the baselines then use that rate too).

The baselines follow the same rule with the same rows: centralized trains on the union of the
institutions' fit rows and stops on the same weighted validation metric, each local-only model on
its own; their budget in epochs (or trees) is the federation's maximum.

``early_stopping=None`` (auto) turns it on for models that get worse with too many rounds
(``mlp``, ``xgboost`` with Flower's bagging or cyclic strategies) and off for the convex logistic
models, whose rounds only converge, and under HE, whose server keeps only the current encrypted
model (asking for it there is refused). This module imports no Flower.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: models whose quality peaks at some round and then falls (over-fitting, too many trees)
SELECTED_BY_DEFAULT = ("mlp", "xgboost")
#: the most rounds a selected run of these models trains when ``rounds`` is not given: early stopping
#: makes a generous maximum safe (benchmarks/model_selection.py: the federated MLP was still improving
#: at 20 rounds on finance and manufacturing)
SELECTED_MAX_ROUNDS = {"mlp": 100}
#: metric keys of the validation split in evaluate replies and round metrics
VALIDATION_PREFIX = "validation."
VALIDATION_ROWS_KEY = "validation.num-examples"
#: train/fine-tune message key: the learning rate the server's search chose (``learning_rates``)
LEARNING_RATE_KEY = "learning-rate"
#: model -> its learning-rate option (models without one cannot search it)
LEARNING_RATE_PARAM = {"mlp": "lr", "logistic_torch": "lr", "xgboost": "eta"}


class SelectionConfig(BaseModel):
    """Early stopping on each institution's validation rows (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    early_stopping: bool | None = Field(
        None, description="keep the best round by federated validation (None: on for mlp and xgboost)"
    )
    patience: int = Field(10, ge=1, le=1_000, description="rounds without improvement before stopping")
    min_delta: float = Field(1e-4, ge=0, description="smallest gain in the validation metric that counts")
    validation_fraction: float = Field(0.15, gt=0, lt=0.5, description="share of each institution's training rows")
    learning_rates: list[float] = Field(
        default_factory=list,
        description="learning rates to try first, each for search_rounds rounds from the same start; the best "
        "by federated validation trains the run (empty: the model's own)",
    )
    search_rounds: int = Field(5, ge=1, le=1_000, description="rounds each learning rate is tried for")

    @field_validator("learning_rates", mode="before")
    @classmethod
    def _rates_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):  # Flower's run_config: a list travels as JSON text; the CLI: "0.003,0.01"
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [float(v) for v in text.split(",") if v.strip()]
        return value

    @field_validator("learning_rates")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(not rate > 0 for rate in value):
            raise ValueError(f"learning rates must be positive (got {value})")
        return value


def default_rounds(values: dict[str, Any]) -> int | None:
    """``rounds`` for an ExperimentConfig given without one (raw values, before validation): the
    generous maximum of ``SELECTED_MAX_ROUNDS`` when the run will stop early, else None (the usual 20)."""
    model = str(values.get("model", "logistic")).strip().lower()
    if model not in SELECTED_MAX_ROUNDS:
        return None
    selection = values.get("selection") or {}
    chosen = selection.get("early_stopping") if isinstance(selection, dict) else selection.early_stopping
    privacy = values.get("privacy") or {}
    aggregation = privacy.get("aggregation") if isinstance(privacy, dict) else privacy.aggregation
    if chosen is False or (chosen is None and aggregation == "he"):
        return None
    return SELECTED_MAX_ROUNDS[model]


def selection_enabled(config: Any) -> bool:
    """Whether ``config`` (an ExperimentConfig) selects its round by federated validation."""
    chosen = config.selection.early_stopping
    if chosen is not None:
        return bool(chosen)
    if config.model == "xgboost" and config.xgb_mode == "histogram":  # one joint booster, not rounds of models
        return False
    if config.privacy.aggregation == "he":  # the server holds only the current encrypted model
        return False
    return config.model in SELECTED_BY_DEFAULT
