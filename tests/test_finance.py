"""Finance vertical: generator properties, money metrics, and a small run end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from consortia.config import ExperimentConfig
from consortia.data.consortium import load_federation
from consortia.experiment import run_experiment
from consortia.verticals import get_vertical
from consortia.verticals.finance.generator import FRAUD_RATE_BOUNDS, bank_profiles, generate
from consortia.verticals.finance.metrics import alert_threshold, finance_metrics, make_metrics, money_saved
from consortia.verticals.finance.schema import SCHEMA, TIME_COLUMN, TYPOLOGIES, TYPOLOGY_COLUMN

BANKS = 5


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(BANKS, 60_000, seed=11)


@pytest.fixture(scope="module")
def frauds(frame) -> pd.DataFrame:
    return frame[frame["fraud"] == 1]


def test_fraud_rate_is_within_bounds_at_every_bank(frame) -> None:
    rates = frame.groupby("bank")["fraud"].mean()
    low, high = FRAUD_RATE_BOUNDS
    assert len(rates) == BANKS
    assert ((rates >= low) & (rates <= high)).all(), rates.to_dict()
    assert rates.max() / rates.min() > 1.2, "banks should differ in fraud rate"


def test_fraud_rate_follows_each_banks_profile(frame) -> None:
    profiles = bank_profiles(BANKS, np.random.default_rng(11))
    rates = frame.groupby("bank")["fraud"].mean()
    np.testing.assert_allclose(rates.to_numpy(), profiles["fraud_rate"].to_numpy(), atol=2e-4)


def test_banks_differ_in_size(frame) -> None:
    sizes = frame["bank"].value_counts()
    assert sizes.max() / sizes.min() > 1.5


def test_typologies_are_uneven_across_banks(frauds) -> None:
    table = pd.crosstab(frauds["bank"], frauds[TYPOLOGY_COLUMN])
    shares = table.div(table.sum(axis=1), axis=0)
    dominant = shares.idxmax(axis=1)
    assert dominant.nunique() == BANKS, f"each bank should have its own main scheme: {dominant.to_dict()}"
    assert (shares.max(axis=1) >= 0.4).all(), shares.round(2).to_dict()
    # every scheme is someone's main scheme but a minor one (< 15 %) at some other bank
    assert (shares.min(axis=0) < 0.15).all(), shares.round(2).to_dict()
    _, p_value, _, _ = chi2_contingency(table.to_numpy())
    assert p_value < 1e-10


def test_each_bank_meets_a_growing_emerging_scheme(frame) -> None:
    profiles = bank_profiles(BANKS, np.random.default_rng(11))
    grew = 0
    for bank, rows in frame.groupby("bank"):
        cut = rows[TIME_COLUMN].quantile(0.75)
        fraud = rows[rows["fraud"] == 1]
        emerging = fraud[TYPOLOGY_COLUMN] == profiles.loc[bank, "emerging_typology"]
        early, late = emerging[fraud[TIME_COLUMN] <= cut].mean(), emerging[fraud[TIME_COLUMN] > cut].mean()
        grew += late > early
    assert grew >= BANKS - 1


def test_typologies_carry_their_fingerprints(frame, frauds) -> None:
    legit = frame[frame["fraud"] == 0]
    by = frauds.groupby(TYPOLOGY_COLUMN)
    assert set(by.groups) == set(TYPOLOGIES)
    assert by.get_group("card_testing")["amount"].median() < 0.2 * legit["amount"].median()
    assert by.get_group("card_testing")["txn_count_1h"].mean() > 3 * legit["txn_count_1h"].mean()
    cashout = by.get_group("cross_border_cashout")
    assert cashout["cross_border"].mean() > 0.7 and (cashout["channel"] == "atm").mean() > 0.7
    assert by.get_group("account_takeover")["new_device"].mean() > 10 * legit["new_device"].mean()
    assert by.get_group("bust_out")["account_age_days"].median() < 100


def test_fields_are_consistent(frame) -> None:
    assert (frame["txn_count_24h"] >= frame["txn_count_1h"]).all()
    assert (frame["txn_count_1h"] >= 1).all()
    assert (frame["spend_24h"] >= frame["spend_1h"] - 0.01).all()
    assert (frame["spend_1h"] >= frame["amount"] - 0.01).all()
    assert (frame.loc[frame["channel"] == "ecommerce", "card_present"] == 0).all()
    assert (frame.loc[frame["channel"] == "atm", "merchant_category"] == "cash").all()
    day = np.floor(frame[TIME_COLUMN])
    assert ((frame[TIME_COLUMN] - day) * 24 // 1 == frame["hour"]).mean() > 0.999
    assert (day % 7 == frame["weekday"]).all()


def test_time_and_ground_truth_are_not_features() -> None:
    assert TIME_COLUMN not in SCHEMA.feature_names
    assert TYPOLOGY_COLUMN not in SCHEMA.feature_names
    assert SCHEMA.time_column == TIME_COLUMN


def test_split_is_temporal_per_bank() -> None:
    config = ExperimentConfig.build(vertical="finance", institutions=3, rows=6_000, rounds=2, seed=5)
    federation = load_federation(config, get_vertical(config.vertical))
    for inst in federation.institutions.values():
        assert inst.train[TIME_COLUMN].max() <= inst.test[TIME_COLUMN].min()
        assert inst.train["fraud"].sum() > 0 and inst.test["fraud"].sum() > 0


# -- metrics -------------------------------------------------------------------------------------
def test_money_saved_by_hand_at_a_train_chosen_threshold() -> None:
    # training negatives score 0.00 .. 0.99: 1 % of them (just 0.99) lies above 0.98
    y_train = np.r_[np.zeros(100, dtype=int), np.ones(5, dtype=int)]
    p_train = np.r_[np.arange(100) / 100, np.full(5, 0.995)]
    threshold = alert_threshold(y_train, p_train, 0.01)
    assert threshold == pytest.approx(0.98)
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.99, 0.985, 0.5, 0.999, 0.98, 0.2, 0.1])
    amount = np.array([100.0, 50.0, 30.0, 7.0, 1.0, 1.0, 1.0])
    # flagged: scores strictly above 0.98 -> frauds 0, 1 and legit row 3 (0.98 itself is not)
    saved, share = money_saved(y, p, amount, review_cost=10.0, threshold=threshold)
    assert saved == pytest.approx(150.0 - 10.0)
    assert share == pytest.approx(140.0 / 180.0)
    out = finance_metrics(y, p, frame=pd.DataFrame({"amount": amount}), train=(y_train, p_train))
    assert out["money_saved"] == pytest.approx(140.0)
    assert out["alert_threshold"] == pytest.approx(0.98)
    assert out["alert_fpr"] == pytest.approx(1 / 4)  # realised on the evaluated rows, not the budget


def test_test_labels_do_not_move_the_alert_threshold() -> None:
    rng = np.random.default_rng(3)
    y_train = (rng.random(3_000) < 0.05).astype(int)
    p_train = rng.random(3_000) * 0.6 + 0.4 * y_train
    p = rng.random(1_000) * 0.6
    y = (rng.random(1_000) < 0.05).astype(int)
    flipped = 1 - y
    frame = pd.DataFrame({"amount": rng.lognormal(4, 1, 1_000)})
    a = finance_metrics(y, p, frame=frame, train=(y_train, p_train))
    b = finance_metrics(flipped, p, frame=frame, train=(y_train, p_train))
    assert a["alert_threshold"] == b["alert_threshold"]
    train_fpr = (p_train[y_train == 0] > a["alert_threshold"]).mean()
    assert 0.01 - 1 / (y_train == 0).sum() < train_fpr <= 0.01  # 1 % of training negatives above it
    assert a["money_saved"] != b["money_saved"]  # the labels still decide what was saved
    # the training labels do move it
    c = finance_metrics(y, p, frame=frame, train=(1 - y_train, p_train))
    assert c["alert_threshold"] != a["alert_threshold"]


def test_review_cost_is_a_parameter() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.05).astype(int)
    p = rng.random(2_000) * 0.5 + 0.4 * y
    train = (y, p)
    frame = pd.DataFrame({"amount": rng.lognormal(4, 1, 2_000)})
    cheap = make_metrics(review_cost=1.0)(y, p, frame=frame, train=train)
    dear = make_metrics(review_cost=50.0)(y, p, frame=frame, train=train)
    false_alarms = int(((p > alert_threshold(y, p, 0.01)) & (y == 0)).sum())
    assert 0 < false_alarms <= 0.01 * (y == 0).sum()
    assert cheap["money_saved"] - dear["money_saved"] == pytest.approx(49.0 * false_alarms)
    assert cheap["auprc"] == dear["auprc"]


def test_money_saved_is_nan_without_training_scores() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.3, 0.6])
    out = get_vertical("finance").evaluate(y, p, frame=pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0]}))
    assert math.isnan(out["money_saved"]) and math.isnan(out["alert_threshold"])
    assert math.isnan(out["alert_fpr"]) and out["auprc"] == pytest.approx(1.0)


def test_money_saved_is_nan_without_amounts() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.3, 0.6])
    assert math.isnan(finance_metrics(y, p)["money_saved"])
    vertical = get_vertical("finance")
    out = vertical.evaluate(y, p, frame=pd.DataFrame({"hour": [1, 2, 3, 4]}), train=(y, p))
    assert not math.isnan(out["alert_threshold"])
    assert math.isnan(out["money_saved"]) and out["auprc"] == pytest.approx(1.0)


def test_small_run_reports_money_for_every_mode() -> None:
    config = ExperimentConfig.build(vertical="finance", institutions=3, rows=6_000, rounds=4, seed=5)
    result = run_experiment(config)
    for mode in ("federated", "federated_finetuned", "centralized", "local_only"):
        metrics = result.pooled[mode]
        assert {"auprc", "auroc", "recall_at_1pct_fpr", "money_saved", "alert_threshold", "alert_fpr"} <= set(metrics)
        assert math.isfinite(metrics["money_saved"]), mode
        assert math.isfinite(metrics["alert_threshold"]) and 0 <= metrics["alert_fpr"] <= 1, mode
    for modes in result.per_institution.values():
        assert math.isfinite(modes["federated"]["money_saved"])
    assert result.primary_metric == "auprc"
