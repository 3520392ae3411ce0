"""Differential-privacy settings of a run: the user states the budget (ε, δ), not the noise.

Two mechanisms, two guarantees (``consortia.privacy`` implements them):

* ``dp-client``: DP-FedAvg through Flower's DP strategy wrappers. It protects one whole
  institution's participation (all its rows together); ``clipping_norm`` bounds each
  institution's model update and noise is added to the aggregate every round.
* ``dp-sample``: DP-SGD with Opacus inside each institution. It protects one row (one patient,
  one transaction) of one institution; ``max_grad_norm`` bounds each row's gradient, and each
  institution derives its own noise from its own row count, so each has its own ε.

The noise multiplier is derived from (ε, δ, rounds, sampling) unless ``noise_multiplier`` is
given (tests, experts); a run whose given noise cannot stay within ε stops early, keeping its model.
This module imports nothing of Flower or the learners (import-linter contract).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: δ when the user gives none: a common choice, below 1 / (rows of an institution)
DEFAULT_DELTA = 1e-5

Mechanism = Literal["none", "dp-client", "dp-sample"]
#: how the server combines the institutions' updates (``consortia.federation.secure``):
#: ``plain`` sees each update; ``secagg+`` (Flower's SecAgg+) sees only their masked sum;
#: ``he`` (CKKS, TenSEAL) adds ciphertexts it cannot read and keeps the global model encrypted
Aggregation = Literal["plain", "secagg+", "he"]


class PrivacySettings(BaseModel):
    """What is protected and with which budget; ``mechanism='none'`` is plain federated averaging."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    mechanism: Mechanism = "none"
    epsilon: float | None = Field(None, gt=0, description="the privacy budget ε for the whole run")
    delta: float | None = Field(None, gt=0, lt=1, description=f"δ (default {DEFAULT_DELTA:g} with a DP mechanism)")
    # Measured on healthcare (5 institutions, 1 local epoch): update norms 0.2-1.0 for
    # logistic_torch and 0.7-2.7 for mlp, so 1.0 clips the large early updates and few later.
    clipping_norm: float = Field(1.0, gt=0, description="dp-client: bound on each institution's update (L2)")
    clipping: Literal["fixed", "adaptive"] = Field("fixed", description="dp-client: adaptive has no accountant")
    side: Literal["client", "server"] = Field("client", description="dp-client: where updates are clipped")
    max_grad_norm: float = Field(1.0, gt=0, description="dp-sample: bound on each row's gradient (L2)")
    noise_multiplier: float | None = Field(None, gt=0, description="derived from ε when not given")
    # Whoever knows the noise can subtract it: a seed written in the config must not drive it.
    noise: Literal["secret", "seeded"] = Field(
        "secret", description="secret: from the OS's entropy; seeded: repeats with the run's seed (tests only)"
    )

    aggregation: Aggregation = Field("plain", description="plain | secagg+ | he: what the server can see")
    # SecAgg+ quantises values in [-range, range]; an institution sends its update (its model minus
    # the global one), whose coordinates stay far below 8 for these learners; a larger one is refused
    # at the node, never clipped silently.
    secagg_clipping_range: float = Field(8.0, gt=0, description="secagg+: bound on each update coordinate")
    secagg_reconstruction: float = Field(
        0.6, gt=0, le=1, description="secagg+: share of an institution's neighbours needed to recover a drop-out"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_delta(cls, values: Any) -> Any:
        # δ has a default only when a mechanism is on: "none" reports no δ at all
        if isinstance(values, dict) and values.get("mechanism", "none") != "none" and values.get("delta") is None:
            values = {**values, "delta": DEFAULT_DELTA}
        return values

    @model_validator(mode="after")
    def _budget(self) -> PrivacySettings:
        # A DP mechanism needs a budget to derive its noise from, or the noise itself.
        if self.mechanism != "none" and self.epsilon is None and self.noise_multiplier is None:
            raise ValueError(f"{self.mechanism} needs a privacy budget: give epsilon (e.g. --epsilon 4)")
        return self

    @property
    def enabled(self) -> bool:
        return self.mechanism != "none"

    @property
    def secure(self) -> bool:
        """The server sees no single institution's update (SecAgg+ or HE)."""
        return self.aggregation != "plain"


#: what one row is, per institution noun, for the plain-words descriptions
ROW_SUBJECTS = {"hospital": "patient", "bank": "transaction", "factory": "part"}


def protects(mechanism: str, institution_noun: str = "institution") -> str:
    """What the mechanism's guarantee covers, in plain words (table footer, model card, demo)."""
    row = ROW_SUBJECTS.get(institution_noun, "row")
    if mechanism == "dp-sample":
        return (
            f"protects each {row}'s row: whatever leaves a {institution_noun} (its model updates) is nearly the "
            f"same with or without any one of its rows; each {institution_noun} has its own ε"
        )
    if mechanism == "dp-client":
        return (
            f"protects each whole {institution_noun}'s participation: the global model is nearly the same with "
            f"or without any one {institution_noun}'s data (meaningful only with many {institution_noun}s)"
        )
    return f"no differential privacy: the server sees every {institution_noun}'s exact model updates"


def server_sees(aggregation: str, institution_noun: str = "institution") -> str:
    """What the server could see of the institutions' model updates, in plain words."""
    if aggregation == "secagg+":
        return (
            f"SecAgg+: the server saw only masked vectors and their sum (the consortium's weighted average "
            f"update), each {institution_noun}'s row count, training metrics and each round's evaluation metrics; "
            f"summaries and pooled-metric histograms were summed the same way"
        )
    if aggregation == "he":
        return (
            f"homomorphic encryption (CKKS): the server added ciphertexts and kept the global model encrypted; "
            f"it saw each {institution_noun}'s row count, training and evaluation metrics; summaries and "
            f"pooled-metric histograms were summed with SecAgg+"
        )
    return f"plain aggregation: the server saw every {institution_noun}'s model update"


#: what no mechanism here covers, for notes and the model card
NOT_COVERED = (
    "not covered by ε: the feature summaries sent before training (counts, sums, category counts), "
    "the metrics and score histograms reported after each round, and the baselines (centralized, "
    "local-only), which are trained without privacy"
)
