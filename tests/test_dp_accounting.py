"""The budget -> noise arithmetic agrees with independent accountants (Flower's, Opacus's)."""

from __future__ import annotations

import pytest

from consortia.privacy.accounting import (
    client_level_epsilon,
    client_level_noise,
    record_level_epsilon,
    record_level_noise,
)


def test_client_level_epsilon_matches_flowers_accountant() -> None:
    from flwr.serverapp import PrivacyConfig
    from flwr.supercore.privacy_accounting import GaussianPrivacyEvent, NeighboringRelation, SamplingMethod
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    flower = RdpAccountant(
        PrivacyConfig(1e-5, 5, NeighboringRelation.ADD_OR_REMOVE_ONE, SamplingMethod.NO_AMPLIFICATION)
    )
    for _ in range(10):
        flower.compose(GaussianPrivacyEvent(noise_multiplier=5.0, sample_size=5, population_size=5))
    ours = client_level_epsilon(5.0, 10, 1e-5)
    assert ours == pytest.approx(flower.get_epsilon(1e-5), rel=0.01)
    assert ours == pytest.approx(2.81, abs=0.01)  # FACTS.md: z = 5, 10 rounds


@pytest.mark.parametrize(("epsilon", "rounds"), [(1.0, 5), (4.0, 20), (8.0, 50)])
def test_client_level_noise_meets_the_budget_from_below(epsilon: float, rounds: int) -> None:
    z = client_level_noise(epsilon, 1e-5, rounds)
    spent = client_level_epsilon(z, rounds, 1e-5)
    assert spent <= epsilon
    assert spent >= 0.99 * epsilon  # not needlessly noisy
    assert client_level_epsilon(z * 0.97, rounds, 1e-5) > epsilon  # a little less noise breaks it


def test_record_level_noise_agrees_with_opacus() -> None:
    from opacus.accountants.utils import get_noise_multiplier

    q, steps = 64 / 1500, 480
    ours = record_level_noise(4.0, 1e-5, q, steps)
    theirs = get_noise_multiplier(target_epsilon=4.0, target_delta=1e-5, sample_rate=q, steps=steps)
    assert ours == pytest.approx(theirs, rel=0.02)
    assert record_level_epsilon(ours, q, steps, 1e-5) <= 4.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_budgets_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        client_level_noise(bad, 1e-5, 10)


def test_bad_delta_is_refused() -> None:
    with pytest.raises(ValueError, match="delta"):
        client_level_noise(1.0, 1.5, 10)
