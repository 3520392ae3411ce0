"""The rounds phase under differential privacy: the DP wrapper, the ε record, the budget's end.

``RoundsPrivacy.plan`` decides, before the first round, what the server does for the run's
mechanism (``consortia.config.privacy``):

* ``dp-client``: wraps the strategy in Flower's DP wrapper (``consortia.privacy.dp.wrap_client_dp``)
  and reads ε from its accountant after every round;
* ``dp-sample``: changes nothing in the strategy; each institution reports its own ε in its
  train reply and the round records the largest (``max_epsilon``, Flower's ``train_metrics_aggr_fn``).
  With a given noise multiplier the server runs only the rounds every institution's budget allows.

A round that would exceed a client-level budget raises ``PrivacyBudgetExhausted`` before it is
sent: the rounds phase then ends with the last model (``stopped_note``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from consortia.config import ExperimentConfig
from consortia.federation.strategies import train_sample_size
from consortia.learners import make_learner
from consortia.privacy.dp import (
    EPSILON_KEY,
    privacy_spent,
    record_level_rounds,
    wrap_client_dp,
)
from consortia.verticals import Vertical


@dataclass
class RoundsPrivacy:
    """What the rounds phase does for the run's privacy mechanism."""

    config: ExperimentConfig
    rounds_allowed: int
    notes: list[str] = field(default_factory=list)
    dp_strategy: Strategy | None = None
    _train_epsilon: float | None = None

    @classmethod
    def plan(
        cls, config: ExperimentConfig, vertical: Vertical, train_sizes: Mapping[str, int], n_features: int
    ) -> RoundsPrivacy:
        rounds = config.rounds
        notes: list[str] = []
        if config.privacy.mechanism == "dp-sample":
            params = vertical.model_params(config.model, config.model_params)
            learner = make_learner(config.model, n_features, params, seed=config.seed, device=config.device)
            batch_size = int(learner.batch_size)  # type: ignore[attr-defined]  # batch-step learners have one
            rounds = record_level_rounds(config, train_sizes.values(), batch_size)
            if rounds < config.rounds:
                notes.append(stopped_note(config, rounds))
        return cls(config, rounds, notes)

    def wrap(self, strategy: Strategy) -> Strategy:
        """The run's strategy inside Flower's DP wrapper (client level), else as it is."""
        config = self.config
        if config.privacy.mechanism != "dp-client":
            return strategy
        sampled = train_sample_size(config.institutions, config.fraction_train, config.min_institutions)
        dp, z = wrap_client_dp(
            strategy, config.privacy, config.institutions, config.rounds, num_sampled=sampled, seed=config.seed
        )
        self.dp_strategy = dp
        std = z * config.privacy.clipping_norm / sampled
        self.notes.append(
            f"client-level DP: noise multiplier {z:.3f}, so noise of std {std:.3g} per coordinate is added to "
            f"each round's average of {sampled} updates clipped to norm {config.privacy.clipping_norm:g}"
        )
        if config.privacy.clipping == "adaptive":
            self.notes.append(
                "adaptive clipping: Flower keeps no privacy account for it, so no epsilon is reported "
                "(the noise was derived as for fixed clipping with the same budget)"
            )
        return dp

    # -- per round ----------------------------------------------------------------------------
    def aggregate_train(self, records: list[RecordDict], weight_key: str) -> MetricRecord:
        """Flower's ``train_metrics_aggr_fn``: its weighted mean, but ε as the largest reported."""
        metrics = aggregate_metricrecords(records, weight_key)
        reported = [
            float(m[EPSILON_KEY])  # type: ignore[arg-type]
            for r in records
            for m in r.metric_records.values()
            if EPSILON_KEY in m
        ]
        if reported:
            self._train_epsilon = max([*reported, self._train_epsilon or 0.0])  # cumulative: never lower
            metrics[EPSILON_KEY] = self._train_epsilon
        return metrics

    def epsilon(self) -> float | None:
        """ε spent so far: the accountant's (client level) or the largest institution's (record level)."""
        if self.dp_strategy is not None:
            return privacy_spent(self.dp_strategy)
        return self._train_epsilon

    @property
    def enabled(self) -> bool:
        return self.config.privacy.enabled


def stopped_note(config: ExperimentConfig, rounds_run: int) -> str:
    """The note of a run that ended before ``config.rounds`` because its privacy budget ran out."""
    p = config.privacy
    return (
        f"privacy budget: with noise multiplier {p.noise_multiplier:g} the next round would exceed "
        f"epsilon {p.epsilon:g}, so the run stopped after {rounds_run} of {config.rounds} rounds, "
        "keeping the last model"
    )
