"""Columns of the cross-bank fraud task: one card transaction per row.

``timestamp`` (days since the start of the observation window) orders transactions for the
temporal split and is not a model feature; ``typology`` is the generator's ground truth
(``legit`` or the fraud scheme) and is not a feature either.
"""

from consortia.data.schema import Feature, TabularSchema

CHANNELS = ("pos", "ecommerce", "atm")
MERCHANT_CATEGORIES = (
    "grocery", "restaurant", "fuel", "retail", "electronics", "travel", "digital", "jewelry", "cash",
)  # fmt: skip
TYPOLOGIES = ("card_testing", "account_takeover", "cross_border_cashout", "lost_stolen_card", "bust_out")
TIME_COLUMN = "timestamp"
TYPOLOGY_COLUMN = "typology"

SCHEMA = TabularSchema(
    features=(
        Feature("amount", "numeric", 0, 50_000, description="transaction amount, currency units"),
        Feature("merchant_category", "categorical", categories=MERCHANT_CATEGORIES),
        Feature("channel", "categorical", categories=CHANNELS),
        Feature("hour", "numeric", 0, 23, description="local hour of day"),
        Feature("weekday", "numeric", 0, 6, description="0 = Monday"),
        Feature("card_present", "binary", description="card physically present (chip/contactless)"),
        Feature("distance_from_home_km", "numeric", 0, 20_000),
        Feature("cross_border", "binary", description="merchant or ATM abroad"),
        Feature("account_age_days", "numeric", 0, 30_000),
        Feature(
            "txn_count_1h", "numeric", 1, 500, description="card's transactions in the last hour, this one included"
        ),
        Feature("txn_count_24h", "numeric", 1, 5_000),
        Feature("spend_1h", "numeric", 0, 500_000, description="card's spend in the last hour, this one included"),
        Feature("spend_24h", "numeric", 0, 1_000_000),
        Feature("new_device", "binary", description="device or terminal never seen for this card"),
        Feature("new_merchant", "binary", description="merchant never seen for this card"),
    ),
    target="fraud",
    institution_column="bank",
    time_column=TIME_COLUMN,
    non_features=(TYPOLOGY_COLUMN,),
    description="Card fraud (1) among a bank's transactions; train on earlier, test on later days.",
)
