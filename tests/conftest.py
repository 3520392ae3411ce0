"""Shared fixtures: small, fast configurations."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(autouse=True, scope="session")
def _quiet_flower():
    from consortia.logs import set_flower_verbosity

    set_flower_verbosity(False)


@pytest.fixture
def small_config():
    """A healthcare federation that trains in about a second."""
    from consortia import ExperimentConfig

    def build(**overrides):
        values = dict(vertical="healthcare", institutions=3, rows=1500, rounds=4, seed=7)
        values.update(overrides)
        return ExperimentConfig.build(**values)

    return build
