"""The run's institutions from its data source, and the one institution a Flower node serves.

A Flower node finds its own institution through its node config, never through globals:
``partition-id`` (simulation: the i-th institution of the configured data source) or, in a
real deployment, ``data-path`` (the file that this node alone can read). Everything is cached
per run, so nodes in one process validate and split their rows once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from consortia.config import ExperimentConfig
from consortia.data.institutions import (
    Federation,
    InstitutionData,
    RowSource,
    SourceKey,
    files_version,
    split_institution,
)
from consortia.data.partition import partition_frame
from consortia.data.preprocessing import Preprocessor
from consortia.data.sources import load_file_federation, load_node_institution
from consortia.errors import ConfigError


def load_federation(config: ExperimentConfig, vertical: RowSource) -> Federation:
    """The run's institutions from its data source; cached, so nodes in one process share it."""
    return _load_federation_cached(SourceKey(vertical), config.fingerprint(), files_version(config.data.files))


@functools.lru_cache(maxsize=4)
def _load_federation_cached(keyed: SourceKey, fingerprint: str, _files: tuple = ()) -> Federation:
    config = ExperimentConfig.model_validate_json(fingerprint)
    vertical = keyed.source
    if config.data.files:
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
        return load_node_institution(config, vertical, str(node_config["data-path"]))
    federation = load_federation(config, vertical)
    if "partition-id" not in node_config:
        raise ConfigError("node config needs 'partition-id' (simulation) or 'data-path' (deployment)")
    index = int(node_config["partition-id"])
    names = federation.names
    if not 0 <= index < len(names):
        raise ConfigError(f"partition-id {index} is out of range: the run has {len(names)} institutions")
    return federation, federation.institutions[names[index]]
