"""Small data factories shared by test modules."""

from __future__ import annotations

import numpy as np
import pandas as pd


def patients(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(30, 80, n),
            "sex": rng.integers(0, 2, n),
            "systolic_bp": rng.integers(100, 180, n),
            "chest_pain": rng.choice(["typical", "atypical", "non_anginal", "asymptomatic"], n),
            "disease": np.arange(n) % 2,
        }
    )


def hospital_files(folder, institutions: int = 3, rows: int = 900, seed: int = 11) -> list:
    """One CSV per synthetic hospital in ``folder`` (what a deployment's SuperNodes each read)."""
    from consortia.data.sources import write_institution_files
    from consortia.verticals import get_vertical

    return write_institution_files(get_vertical("healthcare").generate(institutions, rows, seed), "hospital", folder)
