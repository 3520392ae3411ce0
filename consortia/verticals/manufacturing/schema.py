"""Columns of the factory quality task: one produced part (or process run) per row.

``timestamp`` (hours since the start of production) orders rows for the temporal split and is
not a model feature; ``failure_mode`` is the generator's ground truth (``none`` or the rule that
fired) and is not a feature either.
"""

from consortia.data.schema import Feature, TabularSchema

MACHINE_TYPES = ("L", "M", "H")  # low / medium / high quality variants, as in the AI4I 2020 data
SUPPLIERS = ("S1", "S2", "S3", "S4")
FAILURE_MODES = ("overheating", "power", "overstrain", "tool_wear", "random")
TIME_COLUMN = "timestamp"
FAILURE_COLUMN = "failure_mode"

SCHEMA = TabularSchema(
    features=(
        Feature("ambient_temp_k", "numeric", 280, 330, description="air temperature at the machine, K"),
        Feature("process_temp_k", "numeric", 285, 345, description="process temperature, K"),
        Feature("rotational_speed_rpm", "numeric", 500, 4_000, description="spindle speed, rpm"),
        Feature("torque_nm", "numeric", 0, 120, description="spindle torque, Nm"),
        Feature("tool_wear_min", "numeric", 0, 400, description="minutes of use of the current tool"),
        Feature("vibration_mm_s", "numeric", 0, 60, description="RMS vibration velocity, mm/s"),
        Feature("coolant_pressure_bar", "numeric", 0, 20),
        Feature("humidity_pct", "numeric", 0, 100, description="relative humidity, %"),
        Feature("machine_type", "categorical", categories=MACHINE_TYPES),
        Feature("supplier", "categorical", categories=SUPPLIERS, description="raw-material supplier"),
    ),
    target="defect",
    institution_column="factory",
    time_column=TIME_COLUMN,
    non_features=(FAILURE_COLUMN,),
    description="Defective part or machine failure (1) from process sensors; train on earlier production.",
)
