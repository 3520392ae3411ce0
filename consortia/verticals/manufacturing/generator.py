"""Synthetic production records at N factories, with physics-flavoured defects. Vectorised numpy.

Defect rules (after the AI4I 2020 predictive-maintenance data set), on *true* process values,
each a soft threshold ``s(x) = sigmoid(x / width)``::

    overheating  s(8.6 + 0.8 (5.5 - pressure)_+ - (process - ambient); 0.15 K) x s(1380 - rpm; 15 rpm)
                 heat is not carried away: small temperature gap (low coolant pressure makes
                 it worse) at low speed
    power        s(3000 - P; 75 W) + s(P - 9500; 75 W),  P = torque x rpm x 2 pi / 60
    overstrain   s(wear x torque - limit; 200),  limit = 11000 / 12000 / 13000 min Nm for L / M / H
    tool_wear    0.5 s(wear - 210; 4 min)
    random       0.002, x 4 for material from the bad supplier batch (S4), + 0.002 per 10 % humidity over 60 %

``p = 1 - prod(1 - p_mode)``, then every row's log-odds shift by one factory constant so that
the mean of ``p`` is the factory's rate (uniform in ``DEFECT_RATE_BOUNDS``). The defect count is
exact, ``round(rate x rows)``: defects are drawn without replacement with weights ``p``
(Efraimidis-Spirakis keys), so physics decides *which* parts fail (the weighted draw is the
noise) and the rate cannot leave its bounds. The mode with the largest ``p_mode`` is recorded in ``failure_mode``.

Factories differ in machine mix (L/M/H), ambient level, supplier mix, sensor calibration
(process-temperature offset, torque gain, speed offset), sensor noise, and drift over the
production window: the tool replacement policy moves (tools kept longer or shorter), the coolant
pump loses pressure, and the process-temperature and vibration sensors drift, so later (test)
production differs from earlier and a factory meets failures its own past rarely showed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from consortia.verticals.manufacturing.schema import (
    FAILURE_COLUMN,
    FAILURE_MODES,
    MACHINE_TYPES,
    SCHEMA,
    SUPPLIERS,
    TIME_COLUMN,
)
from consortia.verticals.sampling import exact_count, generate_institutions

DEFECT_RATE_BOUNDS = (0.015, 0.07)  # per factory, inside the 1-8 % of the issue
HOURS = 24 * 60  # production window: 60 days
MIN_DEFECTS = 4
_STRAIN_LIMIT = np.array([11_000.0, 12_000.0, 13_000.0])  # L, M, H


def _s(x: np.ndarray, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x / width, -50, 50)))


def factory_profiles(n_factories: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per-factory parameters: the heterogeneity of the consortium, drawn once per seed."""
    shares = 0.3 / n_factories + 0.7 * rng.dirichlet(np.full(n_factories, 2.0))
    machine_mix = rng.dirichlet(6.0 * np.array([0.5, 0.3, 0.2]), size=n_factories)
    supplier_mix = rng.dirichlet(np.full(len(SUPPLIERS), 1.5), size=n_factories)
    return pd.DataFrame(
        {
            "share": shares,
            "defect_rate": rng.uniform(*DEFECT_RATE_BOUNDS, n_factories),
            **{f"machine_{m}": machine_mix[:, i] for i, m in enumerate(MACHINE_TYPES)},
            **{f"supplier_{s}": supplier_mix[:, i] for i, s in enumerate(SUPPLIERS)},
            "replace_start_min": rng.uniform(160, 250, n_factories),
            "replace_end_min": rng.uniform(160, 250, n_factories),
            "pressure_drop": rng.uniform(0.0, 1.2, n_factories),
            "ambient_offset": rng.normal(0.0, 1.5, n_factories),
            "temp_offset": rng.normal(0.0, 0.7, n_factories),
            "temp_drift": rng.normal(0.0, 0.8, n_factories),
            "torque_gain": rng.uniform(0.95, 1.05, n_factories),
            "speed_offset": rng.normal(0.0, 15.0, n_factories),
            "vibration_drift": rng.uniform(0.0, 0.3, n_factories),
            "noise": rng.uniform(0.5, 1.5, n_factories),
            "torque_mean": rng.uniform(36, 44, n_factories),
        },
        index=[f"factory-{i + 1:02d}" for i in range(n_factories)],
    )


def generate(n_institutions: int = 5, rows: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """Return ``rows`` production records over ``n_institutions`` factories (column ``factory``)."""
    rng = np.random.default_rng(seed)
    profiles = factory_profiles(n_institutions, rng)
    return generate_institutions(profiles, rows, 50, _factory, rng)


def _factory(name: str, n: int, f: pd.Series, rng: np.random.Generator) -> pd.DataFrame:
    hours = np.sort(rng.uniform(0, HOURS, n))
    phase = hours / HOURS
    machine = rng.choice(3, n, p=_mix(f, "machine_", MACHINE_TYPES))
    supplier = rng.choice(len(SUPPLIERS), n, p=_mix(f, "supplier_", SUPPLIERS))

    # true process values
    ambient = 298 + f["ambient_offset"] + 2.0 * np.sin(2 * np.pi * hours / (24 * 20)) + rng.normal(0, 0.5, n)
    pressure = np.clip(rng.normal(6.0 - f["pressure_drop"] * phase, 0.6, n), 2, 12)
    process = ambient + 10 + rng.normal(0, 1.0, n) - 0.5 * (6.0 - pressure)
    torque = np.clip(rng.normal(f["torque_mean"], 10, n), 3, 90)
    # drives run near a nominal power: more torque, less speed (as in AI4I 2020)
    speed = np.clip(rng.lognormal(np.log(1520), 0.1, n) * (40 / torque) ** 0.35, 1100, 3000)
    # tool replacement policy and coolant pump health drift over the window
    wear = rng.uniform(0, 1, n) * (f["replace_start_min"] + (f["replace_end_min"] - f["replace_start_min"]) * phase)
    humidity = np.clip(rng.normal(45, 12, n), 5, 98)
    vibration = 1.5 + 0.012 * wear + 0.002 * np.abs(speed - 1500) + 0.03 * torque + rng.normal(0, 0.4, n)

    # defect rules
    power = torque * speed * 2 * np.pi / 60
    modes = np.column_stack(
        [
            _s(8.6 + 0.8 * np.maximum(5.5 - pressure, 0) - (process - ambient), 0.15) * _s(1380 - speed, 15),
            np.minimum(_s(3000 - power, 75) + _s(power - 9500, 75), 1.0),
            _s(wear * torque - _STRAIN_LIMIT[machine], 200),
            0.5 * _s(wear - 210, 4),
            0.002 * np.where(supplier == SUPPLIERS.index("S4"), 4.0, 1.0) + 0.002 * np.maximum(humidity - 60, 0) / 10,
        ]
    )
    p = _calibrate(1 - np.prod(1 - modes, axis=1), f["defect_rate"])
    k = exact_count(f["defect_rate"], n, DEFECT_RATE_BOUNDS, MIN_DEFECTS)
    keys = np.log(rng.random(n)) / np.maximum(p, 1e-12)  # Efraimidis-Spirakis weighted sampling
    defect = np.zeros(n, dtype=bool)
    defect[np.argpartition(-keys, k - 1)[:k]] = True
    mode = np.where(defect, np.argmax(modes, axis=1) + 1, 0)

    # what the sensors report: calibration, noise and drift
    noise = f["noise"]
    frame = pd.DataFrame(
        {
            SCHEMA.institution_column: name,
            TIME_COLUMN: np.round(hours, 4),
            "ambient_temp_k": np.round(ambient + rng.normal(0, 0.2 * noise, n), 2),
            "process_temp_k": np.round(
                process + f["temp_offset"] + f["temp_drift"] * phase + rng.normal(0, 0.25 * noise, n), 2
            ),
            "rotational_speed_rpm": np.round(speed + f["speed_offset"] + rng.normal(0, 5 * noise, n)),
            "torque_nm": np.round(np.clip(torque * f["torque_gain"] + rng.normal(0, 1.0 * noise, n), 0, 120), 1),
            "tool_wear_min": np.round(wear),
            "vibration_mm_s": np.round(
                np.clip(vibration * (1 + f["vibration_drift"] * phase) + rng.normal(0, 0.3 * noise, n), 0, 60), 2
            ),
            "coolant_pressure_bar": np.round(pressure + rng.normal(0, 0.1 * noise, n), 2),
            "humidity_pct": np.round(np.clip(humidity + rng.normal(0, 2 * noise, n), 0, 100), 1),
            "machine_type": np.asarray(MACHINE_TYPES, dtype=object)[machine],
            "supplier": np.asarray(SUPPLIERS, dtype=object)[supplier],
            SCHEMA.target: defect.astype(int),
            FAILURE_COLUMN: np.asarray(("none", *FAILURE_MODES), dtype=object)[mode],
        }
    )
    return frame


def _calibrate(p: np.ndarray, rate: float) -> np.ndarray:
    """Shift every row's log-odds by one factory constant so that the mean probability is ``rate``."""
    logit = np.log(np.clip(p, 1e-9, 1 - 1e-9) / np.clip(1 - p, 1e-9, 1))
    low, high = -20.0, 20.0
    for _ in range(50):  # bisection: the mean is increasing in the shift
        mid = (low + high) / 2
        low, high = (mid, high) if _s(logit + mid, 1.0).mean() < rate else (low, mid)
    return _s(logit + (low + high) / 2, 1.0)


def _mix(f: pd.Series, prefix: str, names: tuple[str, ...]) -> np.ndarray:
    mix = np.array([f[f"{prefix}{n}"] for n in names])
    return mix / mix.sum()
