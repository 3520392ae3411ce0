"""Synthetic card transactions at N banks whose fraud really differs. Vectorised numpy only.

Legitimate behaviour comes from four customer segments (mass market, digital natives, affluent
travellers, small businesses) that differ in amounts, channels, travel, account age and
velocity. Banks differ in size (Dirichlet shares), customer mix (Dirichlet over segments),
fraud rate (uniform in ``FRAUD_RATE_BOUNDS``) and, above all, in which fraud they see.

Fraud typologies (each overwrites the fields a real scheme changes, never all of them):

* ``card_testing``: bursts of tiny e-commerce payments at new merchants, high 1 h velocity;
* ``account_takeover``: new device, night hours, large online purchases, far from home;
* ``cross_border_cashout``: ATM withdrawals abroad, thousands of km from home, round amounts;
* ``lost_stolen_card``: card-present spending sprees on electronics and jewelry nearby;
* ``bust_out``: young accounts that suddenly spend large sums.

Each bank has a *home* typology (bank i: typology i mod 5) that makes up ``HOME_SHARE`` of its
fraud at the start of the window; the rest is spread by Dirichlet(0.5). Over the window an
*emerging* typology (the next bank's home typology) grows to ``EMERGING_SHARE`` by the last day,
so a bank's later (test) fraud includes a scheme it has rarely seen but the consortium has.

The number of frauds per bank is exact (``round(rate x rows)``, at least ``MIN_FRAUDS``, so
the bounds hold for banks of at least ``MIN_FRAUDS / 0.002`` rows) and spread evenly over time,
so every bank's train and test periods contain fraud. Row order is by bank, then by time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from consortia.verticals.finance.schema import (
    CHANNELS,
    MERCHANT_CATEGORIES,
    SCHEMA,
    TIME_COLUMN,
    TYPOLOGIES,
    TYPOLOGY_COLUMN,
)
from consortia.verticals.sampling import exact_count, generate_institutions

FRAUD_RATE_BOUNDS = (0.002, 0.015)  # per bank, inside the 0.1-2 % of real card portfolios
HOME_SHARE = 0.7
EMERGING_SHARE = 0.4
MIN_FRAUDS = 4
DAYS = 90

# -- legitimate behaviour per segment ---------------------------------------------------------
SEGMENTS = ("mass", "digital", "traveller", "business")
SEGMENT_BASE_MIX = np.array([0.45, 0.25, 0.15, 0.15])
_SEG = {  # one value per segment, in SEGMENTS order
    "median_amount": np.array([35.0, 25.0, 90.0, 150.0]),
    "channel_p": np.array([[0.72, 0.20, 0.08], [0.40, 0.55, 0.05], [0.55, 0.35, 0.10], [0.50, 0.45, 0.05]]),
    "cross_border": np.array([0.01, 0.03, 0.15, 0.05]),
    "distance_km": np.array([4.0, 3.0, 30.0, 10.0]),
    "account_years": np.array([6.0, 2.0, 10.0, 5.0]),
    "daily_txns": np.array([3.0, 5.0, 4.0, 8.0]),
    "night_share": np.array([0.03, 0.10, 0.06, 0.02]),
    "new_device": np.array([0.03, 0.06, 0.04, 0.02]),
    "new_merchant": np.array([0.20, 0.30, 0.35, 0.15]),
}
# P(category | channel) for legitimate spending; rows: pos, ecommerce, atm (MERCHANT_CATEGORIES order)
_CATEGORY_P = np.array(
    [
        [0.32, 0.20, 0.15, 0.20, 0.05, 0.03, 0.03, 0.02, 0.00],
        [0.06, 0.05, 0.00, 0.30, 0.12, 0.12, 0.34, 0.01, 0.00],
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00],
    ]
)
_CATEGORY_LOG_OFFSET = np.array([0.0, -0.3, 0.1, 0.3, 1.3, 1.5, -0.8, 1.6, 0.7])
_CAT = {c: i for i, c in enumerate(MERCHANT_CATEGORIES)}
_CH = {c: i for i, c in enumerate(CHANNELS)}


def bank_profiles(n_banks: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per-bank size, fraud rate, customer mix and fraud-typology mix, drawn once per seed."""
    k = len(TYPOLOGIES)
    shares = 0.3 / n_banks + 0.7 * rng.dirichlet(np.full(n_banks, 1.0))
    segment_mix = rng.dirichlet(8.0 * SEGMENT_BASE_MIX, size=n_banks)
    mix = np.zeros((n_banks, k))
    for b in range(n_banks):
        home = b % k
        others = [t for t in range(k) if t != home]
        mix[b, home] = HOME_SHARE
        mix[b, others] = (1 - HOME_SHARE) * rng.dirichlet(np.full(k - 1, 0.5))
    return pd.DataFrame(
        {
            "share": shares,
            "fraud_rate": rng.uniform(*FRAUD_RATE_BOUNDS, n_banks),
            "home_typology": [TYPOLOGIES[b % k] for b in range(n_banks)],
            "emerging_typology": [TYPOLOGIES[(b + 1) % k] for b in range(n_banks)],
            **{f"segment_{s}": segment_mix[:, i] for i, s in enumerate(SEGMENTS)},
            **{f"mix_{t}": mix[:, i] for i, t in enumerate(TYPOLOGIES)},
        },
        index=[f"bank-{i + 1:02d}" for i in range(n_banks)],
    )


def generate(n_institutions: int = 5, rows: int = 200_000, seed: int = 0) -> pd.DataFrame:
    """Return ``rows`` transactions over ``n_institutions`` banks (column ``bank``)."""
    rng = np.random.default_rng(seed)
    profiles = bank_profiles(n_institutions, rng)
    return generate_institutions(profiles, rows, 50, _bank, rng)


def _pick(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row from row-wise probabilities (n, k): inverse CDF."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities))[:, None] * cumulative[:, -1:]
    return np.minimum((u > cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _bank(name: str, n: int, bank: pd.Series, rng: np.random.Generator) -> pd.DataFrame:
    seg_mix = np.array([bank[f"segment_{s}"] for s in SEGMENTS])
    seg = rng.choice(len(SEGMENTS), n, p=seg_mix / seg_mix.sum())
    p = {key: values[seg] for key, values in _SEG.items()}

    # when: day, hour (daytime bell with a segment-specific night share)
    day = np.sort(rng.integers(0, DAYS, n))
    night = rng.random(n) < p["night_share"]
    hour = np.where(night, rng.integers(0, 6, n), np.clip(np.round(rng.normal(14, 3.5, n)), 6, 23))
    minute = rng.random(n)

    channel = _pick(rng, p["channel_p"])
    category = _pick(rng, _CATEGORY_P[channel])
    amount = rng.lognormal(np.log(p["median_amount"]) + _CATEGORY_LOG_OFFSET[category], 0.9)
    amount = np.where(channel == _CH["atm"], np.maximum(20, 20 * np.round(amount / 20)), amount)
    card_present = np.where(channel == _CH["ecommerce"], 0, np.where(channel == _CH["atm"], 1, rng.random(n) < 0.96))
    cross_border = rng.random(n) < p["cross_border"]
    distance = rng.lognormal(np.log(p["distance_km"]), 1.0) + cross_border * rng.lognormal(np.log(800), 0.8, n)
    account_age = np.clip(rng.lognormal(np.log(365 * p["account_years"]), 0.8), 1, 25_000)
    count_24h = 1 + rng.poisson(p["daily_txns"] * rng.gamma(2.0, 0.5, n))
    count_1h = 1 + rng.binomial(count_24h - 1, 0.06)
    typical = p["median_amount"] * rng.lognormal(0, 0.6, n)
    new_device = rng.random(n) < np.where(channel == _CH["ecommerce"], p["new_device"], 0.01)
    new_merchant = rng.random(n) < p["new_merchant"]

    # fraud: an exact count, spread evenly over time, typology mix drifting to the emerging one
    n_fraud = exact_count(bank["fraud_rate"], n, FRAUD_RATE_BOUNDS, MIN_FRAUDS)
    idx = np.minimum(((np.arange(n_fraud) + rng.random(n_fraud)) * n / n_fraud).astype(int), n - 1)
    t = day[idx] / max(DAYS - 1, 1)
    base = np.array([bank[f"mix_{ty}"] for ty in TYPOLOGIES])
    emerging = np.eye(len(TYPOLOGIES))[TYPOLOGIES.index(bank["emerging_typology"])]
    ramp = (EMERGING_SHARE * t)[:, None]
    typology = _pick(rng, (1 - ramp) * base[None, :] + ramp * emerging[None, :])
    fraud = np.zeros(n, dtype=bool)
    fraud[idx] = True
    kind = np.full(n, -1)
    kind[idx] = typology

    cols = {
        "day": day.astype(float), "hour": hour.astype(float), "minute": minute, "channel": channel,
        "category": category,
        "amount": amount, "card_present": card_present.astype(float), "cross_border": cross_border.astype(float),
        "distance": distance, "account_age": account_age, "count_1h": count_1h.astype(float),
        "count_24h": count_24h.astype(float), "new_device": new_device.astype(float),
        "new_merchant": new_merchant.astype(float),
    }  # fmt: skip
    for code, scheme in enumerate(TYPOLOGIES):
        rows = np.flatnonzero(kind == code)
        if rows.size:
            _FRAUD[scheme](cols, rows, p["median_amount"][rows], rng)

    count_1h, count_24h = cols["count_1h"], np.maximum(cols["count_24h"], cols["count_1h"])
    # velocity spend: card testers' other attempts are tiny too; bust-out spends big all day
    testing, bust_out = kind == TYPOLOGIES.index("card_testing"), kind == TYPOLOGIES.index("bust_out")
    spend_1h = cols["amount"] + (count_1h - 1) * typical * np.where(testing, 0.02, 1.0)
    spend_24h = spend_1h + (count_24h - count_1h) * typical * np.where(bust_out, 3.0, 1.0)
    timestamp = cols["day"] + (cols["hour"] + cols["minute"]) / 24
    order = np.argsort(timestamp, kind="stable")

    frame = pd.DataFrame(
        {
            SCHEMA.institution_column: name,
            TIME_COLUMN: np.round(timestamp, 5),
            "amount": np.round(np.clip(cols["amount"], 0.01, 50_000), 2),
            "merchant_category": np.asarray(MERCHANT_CATEGORIES, dtype=object)[cols["category"]],
            "channel": np.asarray(CHANNELS, dtype=object)[cols["channel"]],
            "hour": cols["hour"],
            "weekday": (cols["day"] % 7),
            "card_present": cols["card_present"],
            "distance_from_home_km": np.round(np.clip(cols["distance"], 0, 20_000), 1),
            "cross_border": cols["cross_border"],
            "account_age_days": np.round(cols["account_age"]),
            "txn_count_1h": count_1h,
            "txn_count_24h": count_24h,
            "spend_1h": np.round(np.clip(spend_1h, 0, 500_000), 2),
            "spend_24h": np.round(np.clip(spend_24h, 0, 1_000_000), 2),
            "new_device": cols["new_device"],
            "new_merchant": cols["new_merchant"],
            SCHEMA.target: fraud.astype(int),
            TYPOLOGY_COLUMN: np.asarray(("legit", *TYPOLOGIES), dtype=object)[kind + 1],
        }
    )
    return frame.iloc[order].reset_index(drop=True)


# -- fraud typologies: each changes the fields its scheme changes -------------------------------
def _set(cols: dict, key: str, rows: np.ndarray, values) -> None:
    cols[key][rows] = values


def _choice(rng: np.random.Generator, options: list[str], p: list[float], size: int) -> np.ndarray:
    return np.array([_CAT[o] for o in options])[rng.choice(len(options), size, p=p)]


def _card_testing(cols: dict, rows: np.ndarray, median: np.ndarray, rng: np.random.Generator) -> None:
    m = rows.size
    _set(cols, "channel", rows, np.where(rng.random(m) < 0.95, _CH["ecommerce"], _CH["pos"]))
    _set(cols, "category", rows, _choice(rng, ["digital", "retail"], [0.7, 0.3], m))
    _set(cols, "amount", rows, np.clip(rng.lognormal(np.log(1.5), 0.7, m), 0.1, 20))
    _set(cols, "card_present", rows, 0.0)
    _set(cols, "new_merchant", rows, rng.random(m) < 0.8)
    _set(cols, "new_device", rows, rng.random(m) < 0.4)
    _set(cols, "hour", rows, rng.integers(0, 24, m))
    _set(cols, "count_1h", rows, 3 + rng.poisson(6, m))
    _set(cols, "count_24h", rows, cols["count_1h"][rows] + rng.poisson(3, m))
    # bursts: consecutive card-testing rows of a bank share a day and hour (a campaign), when there are enough
    size = int(np.clip(m // 8, 1, 6))
    if size > 1:
        burst = np.arange(m) // size
        first = np.searchsorted(burst, burst)
        _set(cols, "day", rows, cols["day"][rows][first])
        _set(cols, "hour", rows, cols["hour"][rows][first])


def _account_takeover(cols: dict, rows: np.ndarray, median: np.ndarray, rng: np.random.Generator) -> None:
    m = rows.size
    _set(cols, "channel", rows, np.where(rng.random(m) < 0.9, _CH["ecommerce"], _CH["pos"]))
    _set(cols, "category", rows, _choice(rng, ["electronics", "digital", "retail", "travel"], [0.4, 0.2, 0.2, 0.2], m))
    _set(cols, "amount", rows, rng.lognormal(np.log(median) + 1.6, 0.7))
    _set(cols, "card_present", rows, 0.0)
    _set(cols, "new_device", rows, rng.random(m) < 0.85)
    night = rng.random(m) < 0.5
    _set(cols, "hour", rows, np.where(night, rng.integers(0, 6, m), cols["hour"][rows]))
    _set(cols, "distance", rows, rng.lognormal(np.log(300), 1.0, m))
    _set(cols, "cross_border", rows, rng.random(m) < 0.25)
    _set(cols, "count_24h", rows, cols["count_24h"][rows] + rng.poisson(4, m))


def _cross_border_cashout(cols: dict, rows: np.ndarray, median: np.ndarray, rng: np.random.Generator) -> None:
    m = rows.size
    atm = rng.random(m) < 0.9
    _set(cols, "channel", rows, np.where(atm, _CH["atm"], _CH["pos"]))
    _set(cols, "category", rows, np.where(atm, _CAT["cash"], _CAT["jewelry"]))
    _set(cols, "card_present", rows, 1.0)
    _set(cols, "cross_border", rows, rng.random(m) < 0.9)
    _set(cols, "distance", rows, rng.lognormal(np.log(1500), 0.7, m))
    _set(cols, "amount", rows, np.maximum(20, 20 * np.round(rng.lognormal(np.log(400), 0.4, m) / 20)))
    night = rng.random(m) < 0.4
    _set(cols, "hour", rows, np.where(night, rng.integers(0, 6, m), cols["hour"][rows]))
    _set(cols, "count_1h", rows, 1 + rng.poisson(2.5, m))
    _set(cols, "new_device", rows, rng.random(m) < 0.7)


def _lost_stolen_card(cols: dict, rows: np.ndarray, median: np.ndarray, rng: np.random.Generator) -> None:
    m = rows.size
    pos = rng.random(m) < 0.85
    _set(cols, "channel", rows, np.where(pos, _CH["pos"], _CH["ecommerce"]))
    _set(
        cols, "category", rows, _choice(rng, ["electronics", "jewelry", "fuel", "retail"], [0.35, 0.25, 0.15, 0.25], m)
    )
    _set(cols, "card_present", rows, pos.astype(float))
    _set(cols, "distance", rows, rng.lognormal(np.log(25), 0.8, m))
    _set(cols, "amount", rows, rng.lognormal(np.log(median) + 1.0, 0.6))
    _set(cols, "count_1h", rows, 1 + rng.poisson(3, m))
    _set(cols, "new_merchant", rows, rng.random(m) < 0.85)
    _set(cols, "new_device", rows, rng.random(m) < 0.5)


def _bust_out(cols: dict, rows: np.ndarray, median: np.ndarray, rng: np.random.Generator) -> None:
    m = rows.size
    _set(cols, "account_age", rows, rng.uniform(5, 90, m))
    _set(cols, "amount", rows, rng.lognormal(np.log(median) + 1.8, 0.5))
    _set(cols, "category", rows, _choice(rng, ["electronics", "travel", "jewelry"], [0.4, 0.3, 0.3], m))
    ecommerce = rng.random(m) < 0.6
    _set(cols, "channel", rows, np.where(ecommerce, _CH["ecommerce"], _CH["pos"]))
    _set(cols, "card_present", rows, (~ecommerce).astype(float))
    _set(cols, "count_24h", rows, cols["count_24h"][rows] + rng.poisson(6, m))
    _set(cols, "new_merchant", rows, rng.random(m) < 0.7)


_FRAUD = {
    "card_testing": _card_testing,
    "account_takeover": _account_takeover,
    "cross_border_cashout": _cross_border_cashout,
    "lost_stolen_card": _lost_stolen_card,
    "bust_out": _bust_out,
}
