"""Experiment configuration: one validated pydantic model for every entry point.

The same object drives the CLI, the demo and the Flower apps. Flower passes configuration as a
flat mapping of scalars (``run_config``), so the model converts to and from that form with
dotted keys, which is also how nested tables in ``[tool.flwr.app.config]`` arrive.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from consortia.catalog import ENGINES, LEARNERS, STRATEGIES, VERTICALS
from consortia.config.attacks import parse_behaviour
from consortia.config.presets import Preset, apply_preset
from consortia.config.privacy import PrivacySettings
from consortia.config.selection import LEARNING_RATE_PARAM, SelectionConfig, default_rounds, selection_enabled
from consortia.config.stragglers import parse_profile
from consortia.config.xgboost import wire_xgboost
from consortia.errors import ConfigError

Scalar = str | int | float | bool
PartitionKind = Literal["natural", "iid", "dirichlet", "quantity"]


class PartitionConfig(BaseModel):
    """How pooled rows are spread over institutions.

    ``natural`` keeps the institution column the data came with (the realistic default);
    ``iid``, ``dirichlet`` (label skew, smaller alpha = more skew) and ``quantity`` (size skew,
    smaller alpha = more skew) re-split the pooled rows to study heterogeneity.
    """

    model_config = ConfigDict(extra="forbid")

    kind: PartitionKind = "natural"
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration for label/quantity skew")
    column: str | None = Field(None, description="column for a natural split; default: the vertical's")
    min_rows: int = Field(20, ge=1, description="smallest institution a re-split may produce")


class DataConfig(BaseModel):
    """Where rows come from: the vertical's generator (no files) or one file per institution.

    ``mapping`` holds the mapping document itself (JSON text, see ``consortia.data.mapping``)
    so that every Flower node gets it through the run config and needs no copy of the file.
    ``protocol='flamby'`` reproduces FLamby's Fed-Heart-Disease preprocessing and split.
    """

    model_config = ConfigDict(extra="forbid")

    files: list[str] = Field(default_factory=list, description="one CSV/Parquet file per institution")
    target: str | None = Field(None, description="target column in the files (overrides the mapping)")
    mapping: str | None = Field(None, description="the column mapping as JSON text")
    mapping_source: str | None = Field(None, description="where the mapping came from (for the model card)")
    protocol: Literal["consortia", "flamby"] = "consortia"
    min_rows: int = Field(10, ge=4, description="fewest rows an institution's file may have")

    @field_validator("files", mode="before")
    @classmethod
    def _files_from_text(cls, value: Any) -> Any:
        # Flower's run_config holds scalars only: lists travel as JSON text.
        if isinstance(value, str):
            return json.loads(value) if value.startswith("[") else [value]
        return value


class ExperimentConfig(BaseModel):
    """Everything that defines one run; the same config and seed give the same numbers."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    vertical: str = "healthcare"
    institutions: int = Field(5, ge=2, le=10_000)
    rows: int = Field(10_000, ge=100, description="total synthetic rows over all institutions")
    rounds: int = Field(20, ge=1, le=10_000)
    local_epochs: int = Field(1, ge=1, le=1_000)
    finetune_epochs: int = Field(2, ge=0, le=1_000, description="local fine-tuning after federation")
    model: str = "logistic"
    model_params: dict[str, Scalar] = Field(default_factory=dict)
    strategy: str = "fedavg"
    strategy_params: dict[str, Scalar] = Field(default_factory=dict)
    xgb_mode: Literal["bagging", "cyclic", "histogram"] = Field(
        "bagging", description="model xgboost: Flower tree bagging/cyclic, or lossless histogram training"
    )
    fraction_train: float = Field(1.0, gt=0, le=1)
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    test_fraction: float = Field(0.25, gt=0, lt=0.9)
    engine: str = "inprocess"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    seed: int = Field(42, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    run_dir: str | None = Field(None, description="folder for config, checkpoints, result and model card")
    resume: bool = Field(False, description="continue from the last checkpoint in run_dir")
    min_institutions: int | None = Field(
        None, ge=1, description="fewest institutions a round may go on with when nodes drop out (default: all)"
    )
    privacy: PrivacySettings = Field(
        default_factory=PrivacySettings,
        description="differential privacy (mechanism, budget ε, δ) and secure aggregation (plain, secagg+, he)",
    )
    preset: Preset = Field(
        "plain", description="the protocol: plain | secured | heterogeneous (consortia.config.presets)"
    )
    attacks: dict[str, str] = Field(
        default_factory=dict, description="simulated malicious institutions: index or name -> behaviour[:value]"
    )
    round_deadline_s: float | None = Field(
        None, gt=0, description="drop train replies later than this many seconds (consortia.federation.deadline)"
    )
    stragglers: dict[str, str] = Field(
        default_factory=dict, description="simulated slow/failing institutions: index or name -> slowdown:F,failure:P"
    )
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig,
        description="early stopping by federated validation: the best round is kept (consortia.config.selection)",
    )

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, values: Any) -> Any:
        # a preset fills in only what was not given
        if isinstance(values, dict):
            values = apply_preset(values)
        return values

    @model_validator(mode="before")
    @classmethod
    def _rounds_for_selection(cls, values: Any) -> Any:
        # with early stopping, rounds is a maximum: models that need many get a generous one unless given
        if isinstance(values, dict) and values.get("rounds") is None:
            rounds = default_rounds(values)
            values = {k: v for k, v in values.items() if k != "rounds"} | ({"rounds": rounds} if rounds else {})
        return values

    @model_validator(mode="before")
    @classmethod
    def _institutions_from_files(cls, values: Any) -> Any:
        # With real data there is one institution per file, whatever the default says.
        if isinstance(values, dict):
            data = values.get("data")
            files = data.get("files") if isinstance(data, dict) else getattr(data, "files", None)
            if isinstance(files, str):
                files = DataConfig._files_from_text(files)
            if files:
                values = {**values, "institutions": len(files)}
        return values

    @model_validator(mode="before")
    @classmethod
    def _xgboost_mode(cls, values: Any) -> Any:
        # model xgboost: its xgb_mode picks the Flower strategy and reaches the learner's params
        if isinstance(values, dict):
            values = wire_xgboost(values)
        return values

    @field_validator("vertical", "model", "strategy", "engine")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("attacks", "stragglers")
    @classmethod
    def _node_specs(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        parse = parse_behaviour if info.field_name == "attacks" else parse_profile  # config.attacks / .stragglers
        for key, spec in value.items():
            try:
                parse(spec)
            except ConfigError as exc:
                raise ValueError(f"institution {key}: {exc}") from None
        return value

    def _check_institution_keys(self, field: str, mapping: dict[str, str]) -> None:
        for key in mapping:
            if key.isdigit() and int(key) >= self.institutions:
                raise ValueError(f"{field}: institution {key} is out of range ({self.institutions} institutions)")

    @model_validator(mode="after")
    def _check_attacks(self) -> ExperimentConfig:
        # behaviours are simulated here; a deployed node sets its own node config
        self._check_institution_keys("attacks", self.attacks)
        if self.attacks and self.engine == "deployment":
            raise ValueError("attacks are simulated (inprocess, ray); a deployed node sets attack in its node config")
        return self

    @model_validator(mode="after")
    def _check_stragglers(self) -> ExperimentConfig:
        # virtual time exists only in the in-process engine; a deployed node sets its own node config
        self._check_institution_keys("stragglers", self.stragglers)
        if self.stragglers and self.engine != "inprocess":
            raise ValueError(
                "stragglers are simulated in virtual time by the inprocess engine; a deployed node sets "
                "compute-slowdown / failure-rate in its node config"
            )
        if (self.stragglers or self.round_deadline_s) and self.privacy.aggregation != "plain":
            raise ValueError(
                "round_deadline_s and stragglers need plain aggregation: secure aggregation's key stages need "
                "every sampled institution, and a deadline would drop some mid-protocol"
            )
        return self

    @model_validator(mode="after")
    def _check_selection(self) -> ExperimentConfig:
        if self.selection.early_stopping and self.model == "xgboost" and self.xgb_mode == "histogram":
            raise ValueError(
                "selection.early_stopping: histogram XGBoost trains one joint booster, not rounds of global "
                "models; use model_params.early_stopping_rounds there"
            )
        if self.selection.learning_rates:
            if self.model not in LEARNING_RATE_PARAM:
                raise ValueError(
                    f"selection.learning_rates: model '{self.model}' has no learning rate to search "
                    f"(models with one: {', '.join(LEARNING_RATE_PARAM)})"
                )
            if not self.selects_round:
                raise ValueError("selection.learning_rates needs early stopping (selection.early_stopping)")
            if self.privacy.enabled or self.resume:
                raise ValueError(
                    "selection.learning_rates cannot be combined with differential privacy (the search rounds "
                    "would spend the budget unaccounted) or with resume"
                )
        if self.selection.early_stopping and self.privacy.aggregation == "he":
            raise ValueError(
                "selection.early_stopping with HE: the server holds only the current encrypted global model, "
                "not the best round's; use secagg+ or no early stopping"
            )
        return self

    @property
    def selects_round(self) -> bool:
        """Whether the run keeps its best round by federated validation (consortia.config.selection)."""
        return selection_enabled(self)

    @model_validator(mode="after")
    def _check_names(self) -> ExperimentConfig:
        # The catalog maps names to import paths: checking a name imports nothing behind it.

        for registry, value in (
            (VERTICALS, self.vertical),
            (LEARNERS, self.model),
            (STRATEGIES, self.strategy),
            (ENGINES, self.engine),
        ):
            if value not in registry:
                raise ValueError(f"unknown {registry.kind} '{value}'; choose one of: {', '.join(registry.names())}")
        return self

    # -- construction with readable errors ---------------------------------------------------
    @classmethod
    def build(cls, **values: Any) -> ExperimentConfig:
        """Validate ``values``; raise ``ConfigError`` with one line per problem."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc)) from None

    # -- Flower run_config round trip ----------------------------------------------------------
    def to_run_config(self) -> dict[str, Scalar]:
        """Flatten to Flower's ``run_config`` form: scalar values under dotted keys."""
        return _flatten(self.model_dump(mode="json"))

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> ExperimentConfig:
        """Inverse of ``to_run_config``; unknown Flower keys (``partition-id`` ...) are ignored.

        ``experiment`` (a whole config as JSON, as ``consortia serve submit`` sends it) wins over
        every other key: Flower always passes the app's default keys too, so they cannot be
        told apart from overrides. Empty strings mean "not set" (TOML has no null).
        """
        # "" means "not set" for the app's own keys; inside a free-form mapping (model_params.hidden
        # = "" is an MLP without hidden layers) it is a value and must survive the round trip.
        free_form = ("model_params.", "strategy_params.")
        run_config = {k: v for k, v in run_config.items() if v != "" or k.startswith(free_form)}
        if run_config.get("experiment"):
            return cls.build(**json.loads(str(run_config["experiment"])))
        known = set(cls.model_fields)
        nested: dict[str, Any] = {}
        for key, value in run_config.items():
            head, _, rest = key.partition(".")
            if head not in known:
                continue
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                nested[head] = value
        return cls.build(**nested)

    def fingerprint(self) -> str:
        """A stable string that identifies the run's settings (used for caching)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Scalar]:
    flat: dict[str, Scalar] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        elif value is not None:
            flat[name] = value
    return flat


def format_validation_error(exc: ValidationError) -> str:
    """One readable line per pydantic error: ``field: message (got value)``."""
    lines = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "config"
        message = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"{location}: {message}{shown}")
    return "; ".join(lines)
