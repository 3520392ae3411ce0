"""Healthcare: coronary heart disease prediction across hospitals."""

from consortia.verticals.base import Vertical
from consortia.verticals.healthcare.generator import generate
from consortia.verticals.healthcare.metrics import healthcare_metrics
from consortia.verticals.healthcare.schema import SCHEMA

VERTICAL = Vertical(
    name="healthcare",
    title="Healthcare: disease prediction across hospitals",
    description=(
        "Hospitals predict coronary heart disease from routine measurements without sharing "
        "patient records. Sites differ in case mix, prevalence, calibration and missing tests."
    ),
    institution_noun="hospital",
    schema=SCHEMA,
    generate=generate,
    metrics=healthcare_metrics,
    primary_metric="auroc",
    split="stratified",
    default_rows=10_000,
    default_institutions=5,
    model_defaults={
        "mlp": {"hidden": "32,16", "lr": 0.005},
        # shallow trees, small steps: bagging sums one tree per hospital per round
        "xgboost": {"eta": 0.1, "max_depth": 4, "min_child_weight": 2},
    },
)
