"""What a run's RunResult says about differential privacy: the spent ε, and what it covers."""

from __future__ import annotations

from typing import Any

from consortia.config import ExperimentConfig
from consortia.config.privacy import NOT_COVERED, protects, server_sees
from consortia.privacy.dp import EPSILON_KEY, spent_epsilon
from consortia.runs.results import FederatedOutcome, no_privacy


def privacy_record(config: ExperimentConfig, outcome: FederatedOutcome, institution_noun: str) -> dict[str, Any]:
    """``RunResult.privacy``: the summary's four keys, then the details behind them."""
    settings = config.privacy
    aggregation = {
        "aggregation": settings.aggregation,
        "server_saw": server_sees(settings.aggregation, institution_noun),
    }
    if not settings.enabled:
        # "protects": with secure aggregation the updates are hidden, but nothing bounds what the model reveals
        plain = protects("none", institution_noun)
        none = "no differential privacy: the model itself is not protected" if settings.secure else plain
        return {**no_privacy(), **aggregation, "protects": none}
    metrics = [r.metrics for r in outcome.rounds]
    return {
        "mechanism": settings.mechanism,
        "epsilon": spent_epsilon(metrics),
        "delta": settings.delta,
        **aggregation,
        "target_epsilon": settings.epsilon,
        "epsilon_per_round": [m.get(EPSILON_KEY) for m in metrics],
        "rounds_run": len(outcome.rounds),
        "rounds_planned": config.rounds,
        "noise_multiplier_given": settings.noise_multiplier,
        "noise": settings.noise,
        "protects": protects(settings.mechanism, institution_noun),
        "not_covered": NOT_COVERED,
    }


def privacy_notes(config: ExperimentConfig, outcome: FederatedOutcome, institution_noun: str) -> list[str]:
    """``RunResult.notes`` lines for a DP run (none without one)."""
    settings = config.privacy
    secure = [server_sees(settings.aggregation, institution_noun)] if settings.secure else []
    if not settings.enabled:
        return secure
    notes = [*secure, *outcome.notes]
    if settings.mechanism == "dp-client":
        notes.append(
            f"client-level DP: every {institution_noun} weighs the same in the average (Flower's accounted "
            "aggregation needs equal weights), whatever its size"
        )
    else:
        notes.append(
            f"record-level DP: each {institution_noun} derived its own noise from its own row count; the ε shown "
            f"is the largest over {institution_noun}s"
        )
    notes += [
        f"fine-tuning after the federation is local and not private: the fine-tuned models never leave "
        f"their {institution_noun}",
        "the baselines (centralized, local-only) are trained without differential privacy: the table compares "
        "the private federated model against non-private ones",
        NOT_COVERED,
    ]
    if settings.noise == "seeded":
        notes.append(
            "privacy.noise is 'seeded': the noise repeats from the run's seed, so anyone who knows the seed can "
            "remove it; for experiments only, no guarantee holds"
        )
    return notes
