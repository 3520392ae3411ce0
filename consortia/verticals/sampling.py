"""Helpers every synthetic generator shares: institution sizes and exact event counts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def generate_institutions(
    profiles: pd.DataFrame,
    rows: int,
    min_rows: int,
    build: Callable[[str, int, pd.Series, np.random.Generator], pd.DataFrame],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Split ``rows`` over institutions by ``profiles['share']``, build each one, concatenate.

    ``profiles`` has one row per institution (index = its name); every institution gets at least
    ``min_rows`` rows so that it can be split into train and test.
    """
    sizes = np.maximum(rng.multinomial(rows, profiles["share"] / profiles["share"].sum()), min_rows)
    frames = [
        build(str(name), int(size), profile, rng)
        for (name, profile), size in zip(profiles.iterrows(), sizes, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)


def exact_count(rate: float, n: int, bounds: tuple[float, float], minimum: int) -> int:
    """``round(rate x n)``, kept inside ``bounds`` despite rounding, and at least ``minimum``."""
    count = min(max(round(rate * n), int(np.ceil(bounds[0] * n))), int(np.floor(bounds[1] * n)))
    return int(min(max(count, minimum), n // 2))
