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


@pytest.fixture(autouse=True)
def _start_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    """Every test starts in a fresh folder of its own, never in the working tree.

    ``consortia run`` without ``--run-dir`` writes ``runs/<vertical>-<time>`` into the current
    directory; a folder apart from ``tmp_path`` keeps tests that check their ``tmp_path`` is empty exact.
    """
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def small_config():
    """A healthcare federation that trains in about a second."""
    from consortia import ExperimentConfig

    def build(**overrides):
        values = {"vertical": "healthcare", "institutions": 3, "rows": 1500, "rounds": 4, "seed": 7}
        values.update(overrides)
        return ExperimentConfig.build(**values)

    return build
