"""Each institution's rows, validated and split into train and test: the types and helpers.

Where the rows come from (a vertical's generator or one file per institution) is
``consortia.data.consortium``; this module only knows what an institution's data is.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.preprocessing import FeatureSummary, Preprocessor
from consortia.data.schema import TabularSchema
from consortia.data.split import holdout_split, stratified_split, temporal_split
from consortia.errors import DataValidationError


class RowSource(Protocol):
    """What the data layer needs to know of a vertical (``consortia.verticals.Vertical`` is one).

    The data layer sits below the verticals: callers pass the vertical in, nothing here looks
    one up by name.
    """

    @property
    def name(self) -> str: ...

    @property
    def institution_noun(self) -> str: ...

    @property
    def schema(self) -> TabularSchema: ...

    @property
    def split(self) -> str: ...

    def generate(self, n_institutions: int, rows: int, seed: int, /) -> pd.DataFrame: ...


class SourceKey:
    """A vertical as part of a cache key: equal when the names are (the fingerprint has the rest)."""

    def __init__(self, source: RowSource) -> None:
        self.source = source

    def __hash__(self) -> int:
        return hash(self.source.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceKey) and other.source.name == self.source.name


@dataclass(frozen=True)
class InstitutionData:
    """One institution's validated rows, split once with the run's seed."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    #: rows held out of ``train`` for model selection (``config.selection``); None when off
    validation: pd.DataFrame | None = None

    def summary(self, schema: TabularSchema, *, min_count: int = 1) -> FeatureSummary:
        """The training rows' summary; ``min_count`` is the disclosure floor k (see FeatureSummary)."""
        return FeatureSummary.from_frame(self.train, schema, min_count=min_count)

    def arrays(self, preprocessor: Preprocessor, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            preprocessor.transform(self.train),
            self.train[target].to_numpy(dtype=int),
            preprocessor.transform(self.test),
            self.test[target].to_numpy(dtype=int),
        )


@dataclass(frozen=True)
class Federation:
    """All institutions of a run (only ever materialised together in simulation)."""

    schema: TabularSchema
    institutions: dict[str, InstitutionData]

    @property
    def names(self) -> list[str]:
        return list(self.institutions)


#: rows an institution needs at least (two of each class to split into train and test)
MIN_ROWS = 4


def split_institution(
    name: str,
    frame: pd.DataFrame,
    vertical: RowSource,
    schema: TabularSchema,
    config: ExperimentConfig,
    *,
    validated: bool = False,
) -> InstitutionData:
    """Validate one institution's rows and split them into train and test.

    ``validated``: the rows are part of a frame that ``schema.validate`` already checked and
    converted as a whole (generated data, validated once before partitioning), so only what
    depends on this institution's share is checked here: its row count and both classes.
    """
    source = f"{vertical.institution_noun} '{name}'"
    if validated:
        valid = check_share(frame, schema, source)
    else:
        valid = schema.validate(frame, source=source, min_rows=MIN_ROWS)
    if vertical.split == "temporal" and schema.time_column and schema.time_column in valid:
        train, test = temporal_split(valid, schema.time_column, config.test_fraction, source)
        if train[schema.target].nunique() < 2:
            raise DataValidationError(
                f"the earlier {1 - config.test_fraction:.0%} of its rows (the training part of a "
                f"temporal split) hold a single class of '{schema.target}'; supply more history",
                source=source,
                column=schema.target,
            )
    else:
        train, test = stratified_split(
            valid, schema.target, config.test_fraction, seed=institution_seed(config.seed, name), source=source
        )
    if not config.selects_round:
        return InstitutionData(name, train, test)
    temporal = vertical.split == "temporal" and bool(schema.time_column and schema.time_column in train)
    seed = institution_seed(config.seed, name, VALIDATION_SALT)
    fit, validation = holdout_split(train, schema.target, config.selection.validation_fraction, seed, temporal=temporal)
    return InstitutionData(name, fit, test, validation)


#: the validation hold-out's seed salt: distinct from every round number
VALIDATION_SALT = 10**6 + 1


def check_share(frame: pd.DataFrame, schema: TabularSchema, source: str) -> pd.DataFrame:
    """The per-institution part of ``TabularSchema.validate`` for rows of an already validated
    frame: pandera's checks (0.1-0.2 s per call whatever the size) ran once on the whole frame."""
    if len(frame) < MIN_ROWS:
        raise DataValidationError(f"has {len(frame)} rows; at least {MIN_ROWS} are needed", source=source)
    classes = pd.unique(frame[schema.target])
    if len(classes) < 2:
        raise DataValidationError(
            f"target '{schema.target}' has a single class ({classes[0]}); every "
            "institution needs both positive and negative examples",
            source=source,
            column=schema.target,
        )
    return frame


def files_version(paths: list[str] | tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of each input file: part of every cache key, so an edited file is
    read again in a long-lived process (the demo, a notebook) instead of served stale."""
    version = []
    for path in paths:
        try:
            stat = os.stat(path)
            version.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            version.append((str(path), -1, -1))  # the loader reports the missing file
    return tuple(version)


def institution_seed(seed: int, name: str, *salt: int) -> int:
    """A per-institution seed that does not depend on node ids or message order."""
    key = f"{seed}:{name}:" + ":".join(map(str, salt))
    return zlib.crc32(key.encode()) & 0x7FFFFFFF
