"""Institutions from files: the real-data counterpart of a vertical's generator.

In simulation every file of the run is loaded (``config.data.files``) and all of them must agree
on their columns; in a deployment a node loads only the file its node config names. Either way
a file goes through the same loader, mapping and validation, and the same seeded split.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from consortia.config import ExperimentConfig
from consortia.data.institutions import (
    Federation,
    InstitutionData,
    RowSource,
    SourceKey,
    files_version,
    split_institution,
)
from consortia.data.loaders import LoadedData, institution_name, load_file, load_files
from consortia.data.mapping import DataMapping
from consortia.data.partition import partition_frame
from consortia.data.schema import TabularSchema


def mapping_of(config: ExperimentConfig) -> DataMapping | None:
    """The run's mapping: JSON text in the config, or (deployment) a path readable by the node."""
    text = config.data.mapping
    if not text:
        return None
    if text.lstrip().startswith("{"):
        return DataMapping.parse(text, source=config.data.mapping_source or "mapping")
    return DataMapping.from_file(text)


def load_data(config: ExperimentConfig, vertical: RowSource) -> LoadedData:
    """Every file of the run, mapped and validated (no split yet)."""
    return load_files(
        config.data.files, vertical.schema, mapping_of(config),
        target=config.data.target, min_rows=config.data.min_rows,
    )  # fmt: skip


def load_file_federation(
    config: ExperimentConfig, vertical: RowSource
) -> tuple[TabularSchema, dict[str, InstitutionData]]:
    """Schema and split institutions of a file-based run."""
    if config.data.protocol == "flamby":
        from consortia.data import flamby as flamby_heart

        return flamby_heart.SCHEMA, {
            institution_name(path): InstitutionData(institution_name(path), *flamby_heart.split_centre(path))
            for path in config.data.files
        }
    loaded = load_data(config, vertical)
    frames = loaded.frames
    if config.partition.kind != "natural":  # re-split the pooled rows to study heterogeneity
        column = "__institution__"
        pooled = pd.concat([f.assign(**{column: n}) for n, f in frames.items()], ignore_index=True)
        frames = partition_frame(
            pooled, config.partition, num_institutions=config.institutions,
            target=loaded.schema.target, natural_column=column, seed=config.seed,
        )  # fmt: skip
        frames = {n: f.drop(columns=[column]) for n, f in frames.items()}
    institutions = {
        name: split_institution(name, frame, vertical, loaded.schema, config) for name, frame in frames.items()
    }
    return loaded.schema, institutions


def load_node_institution(
    config: ExperimentConfig, vertical: RowSource, path: str
) -> tuple[Federation, InstitutionData]:
    """A deployed node's own institution: its file only, split with the run's seed."""
    return _node_cached(config.fingerprint(), SourceKey(vertical), path, files_version([path]))


@functools.lru_cache(maxsize=8)
def _node_cached(
    fingerprint: str, keyed: SourceKey, path: str, _version: tuple = ()
) -> tuple[Federation, InstitutionData]:
    config = ExperimentConfig.model_validate_json(fingerprint)
    vertical = keyed.source
    name = institution_name(path)
    if config.data.protocol == "flamby":
        from consortia.data import flamby as flamby_heart

        institution = InstitutionData(name, *flamby_heart.split_centre(path))
        return Federation(flamby_heart.SCHEMA, {name: institution}), institution
    loaded = load_file(
        path, vertical.schema, mapping_of(config), target=config.data.target, min_rows=config.data.min_rows
    )
    institution = split_institution(name, loaded.frame, vertical, loaded.schema, config)
    return Federation(loaded.schema, {name: institution}), institution


def write_institution_files(frame: pd.DataFrame, institution_column: str, folder: str | Path) -> list[Path]:
    """``frame`` as one CSV per institution in ``folder``, without the institution column: the form
    real data arrives in, one file per institution (what a deployment's SuperNodes each read)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in frame.groupby(institution_column):
        path = folder / f"{name}.csv"
        part.drop(columns=[institution_column]).to_csv(path, index=False)
        paths.append(path)
    return paths
