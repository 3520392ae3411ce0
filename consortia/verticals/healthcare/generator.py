"""Synthetic patients at N hospitals that really differ.

Risk model (documented so results can be reasoned about). For true, unobserved values::

    logit = -1.9 + 0.055 (age-55) + 0.0012 (age-55)^2 [ageing accelerates risk]
            + 0.55 male + 0.045 (bmi-27) + 0.018 (sbp-130) + 0.012 (sbp-130)_+ [age>60]
            + 0.006 (chol-200) - 0.035 (hdl-50) + 0.35 (hba1c-5.7) + 0.7 [hba1c>6.5]
            + smoking {never 0, former 0.3, current 0.8} + 0.5 family_history
            + 0.35 severity + site_shift
    disease ~ Bernoulli(sigmoid(logit))

Symptoms are consequences of disease (chest-pain type, exercise angina, lower max heart rate),
so they carry signal the way they do in real cohorts.

Hospitals differ in: size (Dirichlet shares), case mix (age and a latent severity that
raises bmi, blood pressure and glucose), prevalence (``site_shift``), measurement calibration
(a blood-pressure offset and a cholesterol assay factor) and which tests they record
(per-site missingness of HbA1c, HDL, stress-test results and family history).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from consortia.verticals.healthcare.schema import CHEST_PAIN, SCHEMA, SMOKING
from consortia.verticals.sampling import generate_institutions


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def hospital_profiles(n_hospitals: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per-hospital parameters: the heterogeneity of the consortium, drawn once per seed."""
    shares = rng.dirichlet(np.full(n_hospitals, 2.0))
    return pd.DataFrame(
        {
            "share": 0.3 / n_hospitals + 0.7 * shares,
            "age_mean": rng.uniform(46, 66, n_hospitals),
            "severity": rng.uniform(-0.8, 1.2, n_hospitals),
            "site_shift": rng.normal(0.0, 0.55, n_hospitals),
            "bp_offset": rng.normal(0.0, 6.0, n_hospitals),
            "chol_factor": rng.uniform(0.92, 1.08, n_hospitals),
            "miss_hba1c": rng.choice([0.0, 0.05, 0.3, 0.7], n_hospitals),
            "miss_hdl": rng.choice([0.0, 0.1, 0.4], n_hospitals),
            "miss_stress": rng.choice([0.0, 0.15, 0.5], n_hospitals),
            "miss_family": rng.choice([0.0, 0.2, 0.6], n_hospitals),
        },
        index=[f"hospital-{i + 1:02d}" for i in range(n_hospitals)],
    )


def generate(n_institutions: int = 5, rows: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Return ``rows`` patients spread over ``n_institutions`` hospitals (column ``hospital``)."""
    rng = np.random.default_rng(seed)
    profiles = hospital_profiles(n_institutions, rng)
    return generate_institutions(profiles, rows, 30, _hospital, rng)


def _hospital(name: str, n: int, site: pd.Series, rng: np.random.Generator) -> pd.DataFrame:
    severity = site["severity"] + rng.normal(0, 1, n)
    age = np.clip(rng.normal(site["age_mean"], 11, n), 18, 95)
    male = rng.random(n) < 0.52
    bmi = np.clip(rng.normal(26 + 1.2 * severity, 4.2, n), 15, 60)
    sbp = np.clip(rng.normal(118 + 0.45 * (age - 50) + 4 * severity, 14, n), 85, 220)
    chol = np.clip(rng.normal(205 + 8 * severity - 10 * ~male, 38, n), 110, 420)
    hdl = np.clip(rng.normal(52 - 3 * severity + 8 * ~male, 12, n), 20, 110)
    hba1c = np.clip(rng.lognormal(np.log(5.6) + 0.05 * severity + 0.003 * (age - 50), 0.12, n), 4, 14)
    glucose = np.clip(28.7 * hba1c - 46.7 + rng.normal(0, 12, n), 60, 400)
    smoking = rng.choice(len(SMOKING), n, p=[0.5, 0.3, 0.2])
    family = rng.random(n) < 0.22

    logit = (
        -1.9
        + 0.055 * (age - 55)
        + 0.0012 * (age - 55) ** 2
        + 0.55 * male
        + 0.045 * (bmi - 27)
        + 0.018 * (sbp - 130)
        + 0.012 * np.maximum(sbp - 130, 0) * (age > 60)
        + 0.006 * (chol - 200)
        - 0.035 * (hdl - 50)
        + 0.35 * (hba1c - 5.7)
        + 0.7 * (hba1c > 6.5)
        + np.array([0.0, 0.3, 0.8])[smoking]
        + 0.5 * family
        + 0.35 * severity
        + site["site_shift"]
    )
    disease = rng.random(n) < _sigmoid(logit)

    # Symptoms follow disease: typical angina and exercise angina are far more common in cases.
    pain_p = np.where(disease[:, None], [[0.25, 0.20, 0.15, 0.40]], [[0.05, 0.25, 0.35, 0.35]])
    chest_pain = (rng.random(n)[:, None] > np.cumsum(pain_p, axis=1)).sum(axis=1)
    exercise_angina = rng.random(n) < np.where(disease, 0.55, 0.12)
    max_hr = np.clip(208 - 0.7 * age - 14 * disease + rng.normal(0, 14, n), 60, 210)

    frame = pd.DataFrame(
        {
            "age": np.round(age),
            "sex": male.astype(float),
            "bmi": np.round(bmi, 1),
            # what the site's devices read: calibration offset plus noise, still physiological
            "systolic_bp": np.round(np.clip(sbp + site["bp_offset"] + rng.normal(0, 4, n), 75, 240)),
            "cholesterol": np.round(chol * site["chol_factor"]),
            "hdl": np.round(hdl),
            "glucose": np.round(glucose),
            "hba1c": np.round(hba1c, 1),
            "smoking": np.asarray(SMOKING, dtype=object)[smoking],
            "family_history": family.astype(float),
            "chest_pain": np.asarray(CHEST_PAIN, dtype=object)[np.minimum(chest_pain, 3)],
            "max_heart_rate": np.round(max_hr),
            "exercise_angina": exercise_angina.astype(float),
        }
    )
    for column, rate_key in (
        ("hba1c", "miss_hba1c"),
        ("hdl", "miss_hdl"),
        ("max_heart_rate", "miss_stress"),
        ("exercise_angina", "miss_stress"),
        ("family_history", "miss_family"),
    ):
        frame.loc[rng.random(n) < site[rate_key], column] = np.nan
    frame[SCHEMA.target] = disease.astype(int)
    frame.insert(0, SCHEMA.institution_column, name)
    return frame
