"""Each institution's rows: where they come from, validated and split into train and test.

A Flower node finds its own institution through its node config, never through globals:
``partition-id`` (simulation: the i-th institution of the configured data source) or, in a
real deployment, ``data-path`` (the file that this node alone can read).
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.partition import partition_frame
from consortia.data.preprocessing import FeatureSummary, Preprocessor
from consortia.data.schema import TabularSchema
from consortia.data.split import stratified_split, temporal_split
from consortia.errors import ConfigError, DataValidationError


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

    def summary(self, schema: TabularSchema) -> FeatureSummary:
        return FeatureSummary.from_frame(self.train, schema)

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


def split_institution(
    name: str, frame: pd.DataFrame, vertical: RowSource, schema: TabularSchema, config: ExperimentConfig
) -> InstitutionData:
    """Validate one institution's rows and split them into train and test."""
    source = f"{vertical.institution_noun} '{name}'"
    valid = schema.validate(frame, source=source, min_rows=4)
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
    return InstitutionData(name, train, test)


def load_federation(config: ExperimentConfig, vertical: RowSource) -> Federation:
    """The run's institutions from its data source; cached, so nodes in one process share it."""
    return _load_federation_cached(SourceKey(vertical), config.fingerprint(), files_version(config.data.files))


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


@functools.lru_cache(maxsize=4)
def _load_federation_cached(keyed: SourceKey, fingerprint: str, _files: tuple = ()) -> Federation:
    config = ExperimentConfig.model_validate_json(fingerprint)
    vertical = keyed.source
    if config.data.files:
        from consortia.data.sources import load_file_federation

        schema, institutions = load_file_federation(config, vertical)
        return Federation(schema, institutions)
    schema = vertical.schema
    frame = vertical.generate(config.institutions, config.rows, config.seed)
    parts = partition_frame(
        frame,
        config.partition,
        num_institutions=config.institutions,
        target=schema.target,
        natural_column=schema.institution_column,
        seed=config.seed,
    )
    if len(parts) != config.institutions:
        column = config.partition.column or schema.institution_column
        raise ConfigError(
            f"the natural split by '{column}' gives {len(parts)} institutions "
            f"({', '.join(list(parts)[:6])}), but the run is configured for {config.institutions}; "
            f"set institutions={len(parts)}"
        )
    institutions = {name: split_institution(name, part, vertical, schema, config) for name, part in parts.items()}
    return Federation(schema, institutions)


def institution_arrays(
    config: ExperimentConfig,
    vertical: RowSource,
    name: str,
    preprocessor_json: str,
    data_path: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Preprocessed train/test arrays of one institution, cached per (run, preprocessor).

    Every round sends the same preprocessor, so a node transforms its rows once per run.
    ``data_path``: a deployed node's own file (its node config's ``data-path``).
    """
    files = files_version([data_path] if data_path else config.data.files)
    return _arrays_cached(SourceKey(vertical), config.fingerprint(), name, preprocessor_json, data_path, files)


@functools.lru_cache(maxsize=64)
def _arrays_cached(
    keyed: SourceKey,
    fingerprint: str,
    name: str,
    preprocessor_json: str,
    data_path: str | None = None,
    _files: tuple = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    preprocessor = Preprocessor.from_json(preprocessor_json)
    if data_path is not None:
        from consortia.data.sources import load_node_institution

        federation, institution = load_node_institution(
            ExperimentConfig.model_validate_json(fingerprint), keyed.source, data_path
        )
        return institution.arrays(preprocessor, federation.schema.target)
    federation = _load_federation_cached(keyed, fingerprint, _files)
    return federation.institutions[name].arrays(preprocessor, federation.schema.target)


def node_institution(
    config: ExperimentConfig, vertical: RowSource, node_config: Mapping[str, Any]
) -> tuple[Federation, InstitutionData]:
    """The institution a Flower node serves, found from its node config."""
    if "data-path" in node_config:  # deployment: this node reads its own file and nothing else
        from consortia.data.sources import load_node_institution

        return load_node_institution(config, vertical, str(node_config["data-path"]))
    federation = load_federation(config, vertical)
    if "partition-id" not in node_config:
        raise ConfigError("node config needs 'partition-id' (simulation) or 'data-path' (deployment)")
    index = int(node_config["partition-id"])
    names = federation.names
    if not 0 <= index < len(names):
        raise ConfigError(f"partition-id {index} is out of range: the run has {len(names)} institutions")
    return federation, federation.institutions[names[index]]


def institution_seed(seed: int, name: str, *salt: int) -> int:
    """A per-institution seed that does not depend on node ids or message order."""
    key = f"{seed}:{name}:" + ":".join(map(str, salt))
    return zlib.crc32(key.encode()) & 0x7FFFFFFF
