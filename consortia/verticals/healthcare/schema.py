"""Columns of the disease-prediction task (a cardiovascular-disease style cohort)."""

from consortia.data.schema import Feature, TabularSchema

SMOKING = ("never", "former", "current")
CHEST_PAIN = ("typical", "atypical", "non_anginal", "asymptomatic")

SCHEMA = TabularSchema(
    features=(
        Feature("age", "numeric", 18, 100, description="years"),
        Feature("sex", "binary", description="1 = male"),
        Feature("bmi", "numeric", 12, 70, description="kg/m^2"),
        Feature("systolic_bp", "numeric", 70, 250, description="resting systolic blood pressure, mm Hg"),
        Feature("cholesterol", "numeric", 0, 700, description="total serum cholesterol, mg/dl"),
        Feature("hdl", "numeric", 10, 150, description="HDL cholesterol, mg/dl"),
        Feature("glucose", "numeric", 40, 500, description="fasting glucose, mg/dl"),
        Feature("hba1c", "numeric", 3, 18, description="glycated haemoglobin, %"),
        Feature("smoking", "categorical", categories=SMOKING),
        Feature("family_history", "binary", description="premature heart disease in a first-degree relative"),
        Feature("chest_pain", "categorical", categories=CHEST_PAIN),
        Feature("max_heart_rate", "numeric", 50, 230, description="max heart rate in a stress test, bpm"),
        Feature("exercise_angina", "binary", description="angina induced by the stress test"),
    ),
    target="disease",
    institution_column="hospital",
    description="Coronary heart disease diagnosis (1) from routine clinical measurements.",
)
