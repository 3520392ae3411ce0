"""Differential privacy in a run: Flower's DP-FedAvg wrappers (client level), DP-SGD (record level).

* **client level** (``dp-client``): ``wrap_client_dp`` wraps the run's FedAvg/FedProx in Flower's
  ``DifferentialPrivacy{Client,Server}Side{Fixed,Adaptive}Clipping``. Each institution's update is
  clipped to ``clipping_norm`` (on the client by ``client_clipping_mod``, or by the server) and
  Gaussian noise of std ``z x clipping_norm / institutions`` is added to the average every round.
  Fixed clipping is accounted by Flower's ``RdpAccountant`` (``max_epsilon`` = the budget, so a
  round that would exceed it raises ``PrivacyBudgetExhausted`` before it starts); adaptive
  clipping has no accountant in Flower, so no ε is reported for it. Flower's accounted
  aggregation needs equal weights: under client DP every institution weighs the same
  (``EQUAL_WEIGHT_KEY`` in its train and evaluate replies).
* **record level** (``dp-sample``): each institution trains with DP-SGD (``consortia.privacy.dpsgd``)
  and plans its own noise from its own row count; it reports its ε after each round
  (``EPSILON_KEY``), and the server records the largest.

Noise is drawn from the operating system's entropy (``noise='secret'``): whoever knows the noise
can subtract it, so a seed written in the run's config must not drive it. ``noise='seeded'``
repeats the noise from the run's seed, for tests and benchmarks only.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    Strategy,
)

from consortia.config import ExperimentConfig
from consortia.config.privacy import PrivacySettings
from consortia.errors import ConfigError
from consortia.learners import require
from consortia.privacy.accounting import client_level_noise
from consortia.privacy.dpsgd import DpSgdPlan, plan_dp_sgd

#: the constant weight every reply carries under client DP (Flower's ``weighted_by_key`` then)
EQUAL_WEIGHT_KEY = "equal-weight"
#: the metric that carries ε spent so far: in train replies (record level) and in round records
EPSILON_KEY = "privacy.epsilon"
#: the strategies whose aggregate is FedAvg's weighted mean, the one Flower's wrappers calibrate for
ACCOUNTED_STRATEGIES = ("fedavg", "fedprox")
#: a budget met "exactly" by the bisection must not trip the accountant's strict comparison
BUDGET_SLACK = 1 + 1e-9


# -- checks before any round ----------------------------------------------------------------------
def check_privacy(config: ExperimentConfig) -> None:
    """Refuse, in one line and before any node is asked anything, what DP cannot run as configured."""
    settings = config.privacy
    if not settings.enabled:
        return
    if config.resume:
        raise ConfigError(
            f"resuming a {settings.mechanism} run is not supported: the privacy accounting would start again "
            "from zero and the noise was planned for the original rounds; start a new run"
        )
    if settings.mechanism == "dp-client":
        require(config.model, "aggregatable", feature="client-level DP (DP-FedAvg)")
        if config.strategy not in ACCOUNTED_STRATEGIES:
            raise ConfigError(
                f"strategy '{config.strategy}' cannot be used with client-level DP: Flower's DP wrappers calibrate "
                f"the noise to FedAvg's average of clipped updates; use {' or '.join(ACCOUNTED_STRATEGIES)}"
            )
        if config.min_institutions is not None and config.min_institutions < config.institutions:
            raise ConfigError(
                "min_institutions cannot be used with client-level DP: the accountant needs every sampled "
                "institution's update in every round"
            )
        if settings.epsilon is not None and settings.noise_multiplier is None:
            client_noise(settings, config.rounds)  # an unreachable budget fails now, in one line
    else:
        require(config.model, "supports_batch_steps", feature="record-level DP (DP-SGD)")
        if config.strategy == "fedprox":
            raise ConfigError(
                "strategy 'fedprox' cannot be used with record-level DP: DP-SGD clips per-row gradients and "
                "FedProx's proximal term is not a per-row loss; use fedavg (or another strategy)"
            )


# -- client level -------------------------------------------------------------------------------
def client_noise(settings: PrivacySettings, rounds: int) -> float:
    """The noise multiplier of a client-level run: given, or the least that keeps ε within budget."""
    if settings.noise_multiplier is not None:
        return settings.noise_multiplier
    assert settings.epsilon is not None and settings.delta is not None  # PrivacySettings validates
    try:
        return client_level_noise(settings.epsilon, settings.delta, rounds)
    except ValueError as exc:
        raise ConfigError(f"client-level DP: {exc}") from None


def wrap_client_dp(
    strategy: Strategy,
    settings: PrivacySettings,
    num_institutions: int,
    rounds: int,
    *,
    num_sampled: int | None = None,
    seed: int = 0,
) -> tuple[Strategy, float]:
    """``strategy`` inside Flower's DP wrapper for ``settings``; returns it and the noise multiplier."""
    if settings.mechanism != "dp-client":
        raise ValueError(f"wrap_client_dp is for dp-client (got {settings.mechanism})")
    if not isinstance(strategy, FedAvg) or type(strategy).aggregate_train is not FedAvg.aggregate_train:
        raise ConfigError(
            f"strategy {type(strategy).__name__} cannot be used with client-level DP: Flower's DP wrappers "
            "calibrate the noise to FedAvg's average; use fedavg or fedprox"
        )
    strategy.weighted_by_key = EQUAL_WEIGHT_KEY  # accounted aggregation: equal weights
    sampled = num_sampled or num_institutions
    z = client_noise(settings, rounds)
    noise_seed = None if settings.noise == "secret" else seed
    dp: Strategy
    if settings.clipping == "fixed":
        from flwr.serverapp import (
            NeighboringRelation,
            PrivacyConfig,
            RdpAccountant,
            SamplingMethod,
        )

        assert settings.delta is not None
        accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=settings.delta,
                population_size=num_institutions,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
                max_epsilon=settings.epsilon * BUDGET_SLACK if settings.epsilon is not None else None,
            )
        )
        fixed = ClientSideFixedClipping if settings.side == "client" else ServerSideFixedClipping
        dp = fixed(strategy, z, settings.clipping_norm, sampled, accountant=accountant, noise_seed=noise_seed)
    else:
        adaptive = ClientSideAdaptiveClipping if settings.side == "client" else ServerSideAdaptiveClipping
        # Flower splits z between the update and the clipped count (Andrew et al. 2021) and needs
        # z < 2 x the count's std; its default (sampled / 20) is far too small for a consortium.
        dp = adaptive(
            strategy, z, sampled, initial_clipping_norm=settings.clipping_norm,
            clipped_count_stddev=max(sampled / 20, z), noise_seed=noise_seed,
        )  # fmt: skip
    return dp, z


def privacy_spent(strategy: Strategy) -> float | None:
    """ε spent so far by a fixed-clipping DP strategy (None without an accountant)."""
    spent_of = getattr(strategy, "privacy_spent", None)
    spent = spent_of() if callable(spent_of) else None
    return None if spent is None else float(spent.epsilon)


def client_clipping_mod(settings_of: Callable[[Context], PrivacySettings]) -> Mod:
    """The train handler's mod: Flower's client-side clipping when the run asks for it, else nothing.

    The deployment's module-level ClientApp is built before any run config exists, so the choice
    is made per message from the run's settings. A client-DP train message without a clipping
    norm is answered with an error (Flower's mod), never with an unclipped update.
    """

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        settings = settings_of(context)
        if settings.mechanism != "dp-client" or settings.side != "client":
            return call_next(message, context)
        clip = fixedclipping_mod if settings.clipping == "fixed" else adaptiveclipping_mod
        return clip(message, context, call_next)

    return mod


@contextlib.contextmanager
def noise_drawn(seed: int | None, server_round: int) -> Iterator[None]:
    """Flower's wrappers draw their noise from NumPy's global generator: for one aggregation, give
    it a state from the OS's entropy (``seed`` None) or from (seed, round); restore it after."""
    saved = np.random.get_state()
    if seed is None:
        np.random.seed(np.random.SeedSequence().generate_state(624))  # a full MT19937 state, not 32 bits
    else:
        np.random.seed(zlib.crc32(f"{seed}:dp-noise:{server_round}".encode()))
    try:
        yield
    finally:
        np.random.set_state(saved)


class NoiseSource:
    """Mixin for Flower's DP wrappers: each aggregation's noise drawn as ``noise_drawn`` says."""

    noise_seed: int | None = None

    def __init__(self, *args: Any, noise_seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the Flower wrapper's own constructor
        self.noise_seed = noise_seed

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        with noise_drawn(self.noise_seed, server_round):
            return super().aggregate_train(server_round, replies)  # type: ignore[misc]


class ClientSideFixedClipping(NoiseSource, DifferentialPrivacyClientSideFixedClipping):
    """Flower's wrapper with its noise drawn as ``NoiseSource`` says."""


class ServerSideFixedClipping(NoiseSource, DifferentialPrivacyServerSideFixedClipping):
    """Flower's wrapper with its noise drawn as ``NoiseSource`` says."""


class ClientSideAdaptiveClipping(NoiseSource, DifferentialPrivacyClientSideAdaptiveClipping):
    """Flower's wrapper with its noise drawn as ``NoiseSource`` says."""


class ServerSideAdaptiveClipping(NoiseSource, DifferentialPrivacyServerSideAdaptiveClipping):
    """Flower's wrapper with its noise drawn as ``NoiseSource`` says."""


# -- record level -------------------------------------------------------------------------------
def dp_sgd_plan(config: ExperimentConfig, *, n_rows: int, batch_size: int) -> DpSgdPlan:
    """One institution's DP-SGD plan for the whole run, from its own row count."""
    settings = config.privacy
    assert settings.delta is not None
    try:
        return plan_dp_sgd(
            n_rows=n_rows, batch_size=batch_size, local_epochs=config.local_epochs, rounds=config.rounds,
            epsilon=settings.epsilon, delta=settings.delta, max_grad_norm=settings.max_grad_norm,
            noise_multiplier=settings.noise_multiplier,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"record-level DP with {n_rows} training rows: {exc}") from None


def within_budget(settings: PrivacySettings, epsilon: float) -> bool:
    return settings.epsilon is None or epsilon <= settings.epsilon * BUDGET_SLACK


def record_level_rounds(config: ExperimentConfig, train_sizes: Iterable[int], batch_size: int) -> int:
    """Rounds every institution can train before its ε would exceed the budget (all of them when
    the noise was derived from the budget; fewer only when a too small noise was given)."""
    settings = config.privacy
    if settings.epsilon is None or settings.noise_multiplier is None:
        return config.rounds
    allowed = config.rounds
    for n_rows in train_sizes:
        plan = dp_sgd_plan(config, n_rows=n_rows, batch_size=batch_size)
        while allowed > 0 and not within_budget(settings, plan.epsilon_after(allowed)):
            allowed -= 1
    return allowed


def training_seed(settings: PrivacySettings, seeded: int) -> int:
    """DP-SGD's seed (batch sampling and noise): the run's per-round seed only with ``noise='seeded'``;
    sampling amplification and the noise both assume the batches and the noise are secret."""
    return seeded if settings.noise == "seeded" else secrets.randbits(62)


# -- what the run spent -------------------------------------------------------------------------
def spent_epsilon(rounds_metrics: Iterable[Mapping[str, float]]) -> float | None:
    """The run's final ε: the last round's (each round's is cumulative), None if never accounted."""
    values = [m[EPSILON_KEY] for m in rounds_metrics if EPSILON_KEY in m and math.isfinite(m[EPSILON_KEY])]
    return float(values[-1]) if values else None
