"""From a privacy budget to a noise multiplier, and back: the arithmetic of the DP guarantees.

The user states the budget (ε, δ); the noise is derived. Two guarantees, two accountants:

* **client level** (DP-FedAvg, Flower's fixed-clipping wrappers): one release per round of the
  Gaussian mechanism on the clipped, averaged updates of all institutions (no sampling
  amplification: every institution takes part every round). ε for ``rounds`` releases at noise
  multiplier ``z`` is Google's dp-accounting RDP accountant over ``rounds`` Gaussian events,
  exactly what Flower's ``RdpAccountant`` computes during the run.
* **record level** (DP-SGD inside each institution, Opacus): Poisson-sampled Gaussian steps at
  sample rate ``batch_size / n_rows``, ``steps`` of them over the whole run (every round's local
  epochs), accounted with Opacus's RDP accountant. Each institution derives its own noise from
  its own row count, so its ε is at most the target.

Both are binary searches over ``z`` on a monotone ε(z); the result meets the target within
``tolerance`` from below (ε(z) <= target).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

from consortia.config.privacy import DEFAULT_DELTA  # the config's default δ (re-exported)

__all__ = [
    "DEFAULT_DELTA", "client_level_epsilon", "client_level_noise", "record_level_epsilon", "record_level_noise",
]  # fmt: skip
_Z_MIN, _Z_MAX = 1e-3, 1e4


def client_level_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """ε after ``rounds`` Gaussian releases at ``noise_multiplier`` (add/remove one institution)."""
    import dp_accounting
    from dp_accounting import rdp

    if noise_multiplier <= 0:
        return math.inf
    accountant = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), rounds)
    return float(accountant.get_epsilon(delta))


def client_level_noise(epsilon: float, delta: float, rounds: int, tolerance: float = 0.005) -> float:
    """The smallest noise multiplier whose ε after ``rounds`` releases is at most ``epsilon``."""
    _check_budget(epsilon, delta)
    return _search(lambda z: client_level_epsilon(z, rounds, delta), epsilon, tolerance)


def record_level_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of ``steps`` DP-SGD steps (Poisson sampling at ``sample_rate``), Opacus's RDP accountant."""
    from opacus.accountants import RDPAccountant

    if noise_multiplier <= 0:
        return math.inf
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is still valid
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta))


def record_level_noise(epsilon: float, delta: float, sample_rate: float, steps: int, tolerance: float = 0.005) -> float:
    """The smallest noise multiplier whose DP-SGD ε after ``steps`` steps is at most ``epsilon``."""
    _check_budget(epsilon, delta)
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample rate must be in (0, 1] (got {sample_rate})")
    return _search(lambda z: record_level_epsilon(z, sample_rate, steps, delta), epsilon, tolerance)


def _check_budget(epsilon: float, delta: float) -> None:
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number (got {epsilon})")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1) (got {delta})")


def _search(eps_of: Callable[[float], float], target: float, tolerance: float) -> float:
    """Bisection in log space for the smallest z with eps_of(z) <= target (within ``tolerance``)."""
    lo, hi = _Z_MIN, _Z_MAX
    eps_hi = eps_of(hi)
    if eps_hi > target:
        raise ValueError(f"epsilon {target:g} cannot be reached with any noise multiplier up to {_Z_MAX:g}")
    if eps_of(lo) <= target:
        return lo
    for _ in range(200):
        if target - eps_hi <= tolerance * target or hi / lo < 1 + 1e-9:
            break
        mid = math.sqrt(lo * hi)
        eps_mid = eps_of(mid)
        if eps_mid > target:
            lo = mid
        else:
            hi, eps_hi = mid, eps_mid
    return hi
